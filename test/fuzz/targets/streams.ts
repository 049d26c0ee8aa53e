/**
 * Real in-memory libp2p streams for the protocol targets: a registrar that
 * keeps the handlers a service registers, a connection for them to see, and
 * the far end of a stream driven with raw bytes (framed or not).
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { streamPair } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { concat } from '../arbitraries.ts'
import type { ProtocolRegistrar } from '../../../src/protocols/components.ts'
import type { Connection, Stream, StreamHandler, Topology } from '@libp2p/interface'

/** Keeps what a service registers, so a target can call its handler with a stream of its own. */
export class CapturingRegistrar implements ProtocolRegistrar {
  readonly handlers = new Map<string, StreamHandler>()
  readonly topologies = new Map<string, Topology>()

  async handle (protocol: string, handler: StreamHandler): Promise<void> {
    this.handlers.set(protocol, handler)
  }

  async unhandle (protocol: string): Promise<void> {
    this.handlers.delete(protocol)
  }

  async register (protocol: string, topology: Topology): Promise<string> {
    this.topologies.set(protocol, topology)
    return protocol
  }

  unregister (id: string): void {
    this.topologies.delete(id)
  }

  handler (protocol: string): StreamHandler {
    const h = this.handlers.get(protocol)
    if (h == null) throw new Error(`no handler registered for ${protocol}`)
    return h
  }
}

/**
 * The connection a handler sees, or an asker opens its stream on. The
 * protocol code reads only the remote peer, the address and the limits,
 * and opens streams; the rest of libp2p's Connection is not needed here.
 */
export function fakeConnection (remotePeer: string, newStream?: () => Promise<Stream>): Connection {
  const fields = {
    remotePeer: peerIdFromString(remotePeer),
    remoteAddr: multiaddr('/ip4/127.0.0.1/tcp/4001'),
    limits: undefined,
    newStream: async () => {
      if (newStream == null) throw new Error('this connection opens no streams')
      return await newStream()
    }
  }
  return fields as Partial<Connection> as Connection
}

/** A varint length prefix then the bytes: one frame of the protocols' framing. */
export function frame (bytes: Uint8Array): Uint8Array {
  const prefix: number[] = []
  let n = bytes.byteLength
  while (n >= 0x80) {
    prefix.push((n & 0x7f) | 0x80)
    n >>>= 7
  }
  prefix.push(n)
  return concat(Uint8Array.from(prefix), bytes)
}

/** A payload as the protocols send it: frames of at most `size` bytes, then the empty frame. */
export function payloadFrames (bytes: Uint8Array, size: number): Uint8Array {
  const parts: Uint8Array[] = []
  for (let offset = 0; offset < bytes.byteLength; offset += size) parts.push(frame(bytes.subarray(offset, offset + size)))
  parts.push(frame(new Uint8Array(0)))
  return concat(...parts)
}

export interface FarEnd {
  /** everything the other side wrote */
  received: () => Uint8Array
  /** how the stream ended: closed cleanly, or reset/aborted (with the error) */
  ended: Promise<{ clean: boolean, error?: Error }>
}

/** Listens to `stream` from the start: what arrives, and how it ends. */
export function watch (stream: Stream): FarEnd {
  const chunks: Uint8Array[] = []
  stream.addEventListener('message', (evt) => { chunks.push(evt.data.subarray()) })
  const ended = new Promise<{ clean: boolean, error?: Error }>((resolve) => {
    stream.addEventListener('close', (evt) => { resolve(evt.error == null ? { clean: true } : { clean: false, error: evt.error }) }, { once: true })
  })
  return { received: () => concat(...chunks), ended }
}

/** Writes `bytes` (respecting backpressure), then closes our writing side; a stream the other side already reset is not an error here. */
export async function sendAndClose (stream: Stream, bytes: Uint8Array, chunkBytes = 64 * 1024): Promise<void> {
  try {
    for (let offset = 0; offset < bytes.byteLength; offset += chunkBytes) {
      if (!stream.send(bytes.subarray(offset, offset + chunkBytes))) await stream.onDrain()
    }
    await stream.close()
  } catch (err) {
    if (stream.status === 'open') throw err
    // the other side gave up on the input (reset): that is one of the outcomes under test, seen through `watch`
  }
}

/** A fresh pair of connected streams: [the side that opened it, the side a handler gets]. */
export async function pair (): Promise<[Stream, Stream]> {
  // fixed addresses: by default each pair takes the next TCP port number, and a long run passes 65535
  return await streamPair({ delay: 0, outboundConnection: { remoteAddr: PAIR_ADDR }, inboundConnection: { remoteAddr: PAIR_ADDR } })
}

const PAIR_ADDR = multiaddr('/ip4/127.0.0.1/tcp/4001')

/**
 * `promise`'s value, or undefined when it takes longer than `ms`. The timer
 * is not unref'd: a stream nobody ends holds no other timer, and the run
 * must stay alive to report it rather than exit mid-await.
 */
export async function settledWithin<T> (promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    return await Promise.race([promise, new Promise<undefined>(resolve => { timer = setTimeout(() => { resolve(undefined) }, ms) })])
  } finally {
    clearTimeout(timer)
  }
}
