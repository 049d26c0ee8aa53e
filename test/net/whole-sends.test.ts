/**
 * Each message in one network write (net/whole-sends.ts): on TCP the pieces
 * of a send reach the socket as one writev, on a WebSocket as one message; a
 * send too large for that keeps the library's own writes, and a connection
 * of another shape is left as it is. Real sockets on 127.0.0.1.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, connect, type Socket } from 'node:net'
import { describe, it } from 'node:test'
import { JOIN_MAX_BYTES, sendWhole, sendsWhole } from '../../src/net/whole-sends.ts'
import { createLogger } from '../../src/log/logger.ts'
import { Uint8ArrayList } from 'uint8arraylist'
import type { MultiaddrConnection } from '@libp2p/interface'

/** A connected pair on loopback: the client end and everything the server end reads. */
async function socketPair (): Promise<{ client: Socket, received: () => Buffer, close: () => void }> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as { port: number }).port
  const accepted = once(server, 'connection')
  const client = connect(port, '127.0.0.1')
  await once(client, 'connect')
  const [peer] = await accepted as [Socket]
  const chunks: Buffer[] = []
  peer.on('data', (b: Buffer) => chunks.push(b))
  return { client, received: () => Buffer.concat(chunks), close: () => { client.destroy(); peer.destroy(); server.close() } }
}

/** What @libp2p/tcp's connection does in `sendData`: one socket.write per piece. */
function libraryShaped (socket: Socket): MultiaddrConnection {
  return {
    socket,
    sendData (data: Uint8ArrayList) {
      let sentBytes = 0
      let canSendMore = true
      for (const buf of data) {
        sentBytes += buf.byteLength
        canSendMore = socket.write(buf)
        if (!canSendMore) break
      }
      return { sentBytes, canSendMore }
    }
  } as unknown as MultiaddrConnection
}

/** What Noise hands down: its 2-byte length and the ciphertext, as a list. */
function pieces (...sizes: number[]): Uint8ArrayList {
  return new Uint8ArrayList(...sizes.map((n, i) => new Uint8Array(n).fill(i + 1)))
}

/** Counts the socket's single writes and vectored writes. */
function countWrites (socket: Socket): { single: number, vectored: number[] } {
  const seen = { single: 0, vectored: [] as number[] }
  const s = socket as unknown as { _write: (...a: unknown[]) => void, _writev: (chunks: unknown[], cb: unknown) => void }
  const write = s._write.bind(socket)
  const writev = s._writev.bind(socket)
  s._write = (...a) => { seen.single++; write(...a) }
  s._writev = (chunks, cb) => { seen.vectored.push(chunks.length); writev(chunks, cb) }
  return seen
}

const send = (maConn: MultiaddrConnection, data: Uint8ArrayList): { sentBytes: number, canSendMore: boolean } =>
  (maConn as unknown as { sendData: (d: typeof data) => { sentBytes: number, canSendMore: boolean } }).sendData(data)

describe('whole sends', () => {
  it('writes the pieces of one send as one vectored write, and the bytes arrive in order', async () => {
    const { client, received, close } = await socketPair()
    try {
      const conn = sendWhole(libraryShaped(client), createLogger('test.tcp'))
      const writes = countWrites(client)
      assert.deepEqual(send(conn, pieces(2, 100)), { sentBytes: 102, canSendMore: true })
      assert.deepEqual(send(conn, pieces(2, 30)), { sentBytes: 32, canSendMore: true })
      assert.deepEqual(writes, { single: 0, vectored: [2, 2] })
      const want = Buffer.concat([pieces(2, 100).subarray(), pieces(2, 30).subarray()])
      for (let i = 0; i < 200 && received().length < want.length; i++) await new Promise(resolve => setTimeout(resolve, 5))
      assert.deepEqual(received(), want)
    } finally {
      close()
    }
  })

  it('leaves a send larger than the socket\'s free buffer to the library\'s own writes', async () => {
    const { client, received, close } = await socketPair()
    try {
      const conn = sendWhole(libraryShaped(client), createLogger('test.tcp'))
      const writes = countWrites(client)
      const big = client.writableHighWaterMark + 1
      send(conn, pieces(2, big))
      assert.equal(writes.vectored.length, 0)
      assert.equal(writes.single, 2)
      for (let i = 0; i < 200 && received().length < big + 2; i++) await new Promise(resolve => setTimeout(resolve, 5))
      assert.equal(received().length, big + 2)
    } finally {
      close()
    }
  })

  it('on a WebSocket, sends the pieces of one send as one message; a send over JOIN_MAX_BYTES or of one piece as it is', () => {
    const sent: Uint8Array[] = []
    const websocket = { send: (b: Uint8Array) => { sent.push(b) } }
    // what @libp2p/websockets' connection does in `sendData`: one message per piece
    const conn = sendWhole({
      websocket,
      sendData (data: Uint8ArrayList) {
        for (const buf of data) websocket.send(buf)
        return { sentBytes: data.byteLength, canSendMore: true }
      }
    } as unknown as MultiaddrConnection, createLogger('test.ws'))
    assert.deepEqual(send(conn, pieces(2, 100)), { sentBytes: 102, canSendMore: true })
    assert.equal(sent.length, 1)
    assert.deepEqual(sent[0], pieces(2, 100).subarray())
    send(conn, pieces(5))
    assert.equal(sent.length, 2)
    send(conn, pieces(2, JOIN_MAX_BYTES))
    assert.deepEqual(sent.slice(2).map(b => b.byteLength), [2, JOIN_MAX_BYTES])
  })

  it('leaves a connection of another shape as it is', () => {
    const other = { sendData: () => ({ sentBytes: 0, canSendMore: true }) } as unknown as MultiaddrConnection
    const before = (other as unknown as { sendData: unknown }).sendData
    assert.equal(sendWhole(other, createLogger('test.tcp')), other)
    assert.equal((other as unknown as { sendData: unknown }).sendData, before)
  })
})

describe('the TCP and WebSocket transports the daemon uses', () => {
  for (const [name, listenOn] of [['TCP', '/ip4/127.0.0.1/tcp/0'], ['WebSocket', '/ip4/127.0.0.1/tcp/0/ws']] as const) {
    it(`${name}: connections it accepts and dials send whole messages (the library still has the shape changed)`, async () => {
      const { proxiedTcp, proxiedWebSockets, ProxyRouter } = await import('../../src/net/proxy-transports.ts')
      const { NO_PROXY_ENVIRONMENT } = await import('../../src/net/proxy-env.ts')
      const { defaultLogger } = await import('@libp2p/logger')
      const { multiaddr } = await import('@multiformats/multiaddr')
      const seen: Array<{ direction: string, whole: boolean }> = []
      const accepted: MultiaddrConnection[] = []
      const upgrader = {
        upgradeInbound: async (maConn: MultiaddrConnection) => { seen.push({ direction: 'inbound', whole: sendsWhole(maConn) }); accepted.push(maConn) },
        upgradeOutbound: async (maConn: MultiaddrConnection) => { seen.push({ direction: 'outbound', whole: sendsWhole(maConn) }); maConn.abort(new Error('test: not upgraded')); throw new Error('test: not upgraded') },
        createInboundAbortSignal: (signal: AbortSignal) => signal,
        getStreamMuxers: () => new Map(),
        getConnectionEncrypters: () => new Map()
      }
      const router = new ProxyRouter(NO_PROXY_ENVIRONMENT, createLogger('test.proxy'))
      const factory = name === 'TCP' ? proxiedTcp({}, router) : proxiedWebSockets({}, router)
      const transport = factory({ logger: defaultLogger(), events: new EventTarget() })
      const listener = transport.createListener({ upgrader })
      await listener.listen(multiaddr(listenOn))
      try {
        const addr = listener.getAddrs()[0]
        await assert.rejects(transport.dial(addr, { upgrader, signal: AbortSignal.timeout(5_000) }), /not upgraded/)
        for (let i = 0; i < 200 && seen.length < 2; i++) await new Promise(resolve => setTimeout(resolve, 5))
        assert.deepEqual(seen.sort((a, b) => a.direction.localeCompare(b.direction)), [{ direction: 'inbound', whole: true }, { direction: 'outbound', whole: true }])
      } finally {
        for (const c of accepted) c.abort(new Error('test over'))
        await listener.close()
      }
    })
  }
})
