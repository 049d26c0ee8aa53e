/**
 * One network write per message on TCP and WebSocket connections, not one
 * per piece.
 *
 * Noise hands each encrypted message to the transport's connection as two
 * pieces, its 2-byte length and the ciphertext, and both @libp2p/tcp and
 * @libp2p/websockets write every piece on its own: on TCP two write system
 * calls, and with TCP_NODELAY (their default) two packets, the first of them
 * carrying 2 bytes; on a WebSocket two frames (over wss two TLS records).
 * That is every muxer frame, yamux's window update after each data frame
 * included, on every connection, both ways. Here the pieces of one send
 * leave together:
 * - TCP: written between `socket.cork()` and `socket.uncork()`, which Node
 *   turns into one writev; only when the send fits in the socket's free
 *   buffer (a corked write past the high-water mark would report the socket
 *   full and wait for a drain the library's own writes avoid);
 * - WebSocket: joined into one message (one copy, of at most JOIN_MAX_BYTES;
 *   a larger send keeps the library's writes).
 *
 * This replaces one method of the libraries' connection objects (`sendData`,
 * beside their `socket` or `websocket`), as proxy-transports.ts replaces
 * `_connect`: it is checked on each connection, and a library that changed
 * shape is left as it is, with one warning.
 */
import { createLogger, type Logger } from '../log/logger.ts'
import type { MultiaddrConnection, Upgrader } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Socket } from 'node:net'

/** the largest send joined into one WebSocket message: a muxer frame with its Noise framing is at most 64 KiB + 18 bytes */
export const JOIN_MAX_BYTES = 256 * 1024

/** What the libraries hand to `sendData`: a uint8arraylist (iterable pieces, their total, `subarray()` joining them). */
interface SendList extends Iterable<Uint8Array> {
  byteLength: number
  subarray: () => Uint8Array
}

type SendData = (data: SendList) => { sentBytes: number, canSendMore: boolean }

interface ConnectionShape {
  socket?: Socket
  websocket?: { send: unknown }
  sendData?: SendData
}

const WHOLE = Symbol('whole-sends')
let warned = false

/** A library transport (@libp2p/tcp, @libp2p/websockets) whose connections, dialled or accepted, send each message in one write. */
export function sendWholeMessages (transport: { dial: (ma: Multiaddr, options: any) => Promise<any>, createListener: (options: any) => any }): void {
  const log = createLogger('net.transport')
  const dial = transport.dial.bind(transport)
  const createListener = transport.createListener.bind(transport)
  // both hand the upgrader they are given each new connection, before anything is sent on it
  transport.dial = async (ma, options) => await dial(ma, { ...options, upgrader: wholeSendsUpgrader(options.upgrader, log) })
  transport.createListener = (options) => createListener({ ...options, upgrader: wholeSendsUpgrader(options.upgrader, log) })
}

/** `upgrader`, with each connection made to send whole messages (`sendWhole`) before it is upgraded. */
function wholeSendsUpgrader (upgrader: Upgrader, log: Logger): Upgrader {
  const whole = (maConn: MultiaddrConnection): MultiaddrConnection => sendWhole(maConn, log)
  return {
    upgradeOutbound: async (maConn: MultiaddrConnection, opts: any) => await upgrader.upgradeOutbound(whole(maConn), opts),
    upgradeInbound: async (maConn: MultiaddrConnection, opts: any) => { await upgrader.upgradeInbound(whole(maConn), opts) },
    createInboundAbortSignal: (signal: AbortSignal) => upgrader.createInboundAbortSignal(signal),
    getStreamMuxers: () => upgrader.getStreamMuxers(),
    getConnectionEncrypters: () => upgrader.getConnectionEncrypters()
  } as Upgrader
}

/** Whether `sendWhole` changed this connection. */
export function sendsWhole (maConn: MultiaddrConnection): boolean {
  return (maConn as unknown as Record<symbol, unknown>)[WHOLE] === true
}

/** Makes a TCP or WebSocket connection of the libraries send each message in one write (see the module comment); returns it. */
export function sendWhole (maConn: MultiaddrConnection, log: Logger): MultiaddrConnection {
  const shape = maConn as unknown as ConnectionShape
  const { socket, websocket, sendData } = shape
  if (typeof sendData === 'function' && typeof socket?.cork === 'function') {
    shape.sendData = corked(socket, sendData)
  } else if (typeof sendData === 'function' && typeof websocket?.send === 'function') {
    shape.sendData = joined(sendData)
  } else {
    if (!warned) log.warn('a TCP or WebSocket connection without the shape src/net/whole-sends.ts expects (sendData beside socket or websocket): its messages go out in pieces, as the library writes them')
    warned = true
    return maConn
  }
  ;(maConn as unknown as Record<symbol, unknown>)[WHOLE] = true
  return maConn
}

function corked (socket: Socket, sendData: SendData): SendData {
  return function (this: unknown, data) {
    if (data.byteLength > socket.writableHighWaterMark - socket.writableLength) return sendData.call(this, data)
    socket.cork()
    try {
      return sendData.call(this, data)
    } finally {
      socket.uncork()
    }
  }
}

function joined (sendData: SendData): SendData {
  return function (this: unknown, data) {
    if (data.byteLength > JOIN_MAX_BYTES || onePiece(data)) return sendData.call(this, data)
    // a list of the same class, holding the one joined piece
    const List = data.constructor as new (...bufs: Uint8Array[]) => SendList
    return sendData.call(this, new List(data.subarray()))
  }
}

function onePiece (data: SendList): boolean {
  const pieces = data[Symbol.iterator]()
  pieces.next()
  return pieces.next().done === true
}
