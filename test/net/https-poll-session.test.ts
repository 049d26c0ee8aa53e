import { after, afterEach, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import net from 'node:net'
import { PollServer, parseOffset } from '../../src/net/https-poll/server.ts'
import type { ServerSession } from '../../src/net/https-poll/session.ts'
import { ClientSession, openSession } from '../../src/net/https-poll/client-session.ts'
import { pollHttp, type PollHttp } from '../../src/net/https-poll/http-client.ts'
import type { PollSink } from '../../src/net/https-poll/connection.ts'
import { ByteQueue } from '../../src/net/https-poll/byte-queue.ts'
import { createLogger } from '../../src/log/logger.ts'

const PATH = '/wc-poll/1'

/** What a sink saw, for assertions. */
class RecordingSink implements PollSink {
  readonly chunks: Uint8Array[] = []
  closedWith: Error | undefined | null = null
  resets = 0
  drains = 0
  data (bytes: Uint8Array): void { this.chunks.push(bytes) }
  drain (): void { this.drains++ }
  closed (err?: Error): void { this.closedWith = err }
  reset (): void { this.resets++ }
  text (): string { return Buffer.concat(this.chunks).toString('utf8') }
}

async function until (cond: () => boolean, what: string, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

interface Harness {
  server: PollServer
  sessions: Array<{ session: ServerSession, sink: RecordingSink }>
  port: number
  http: http.Server
}

async function startServer (init: ConstructorParameters<typeof PollServer>[0] = {}): Promise<Harness> {
  const sessions: Harness['sessions'] = []
  const server = new PollServer({ logger: createLogger('test.poll'), ...init }, (session) => {
    const sink = new RecordingSink()
    session.attach(sink)
    sessions.push({ session, sink })
  })
  const httpServer = http.createServer((req, res) => {
    if (!server.route(req, res)) { res.writeHead(400).end() }
  })
  await new Promise<void>(resolve => httpServer.listen(0, '127.0.0.1', resolve))
  const port = (httpServer.address() as net.AddressInfo).port
  return { server, sessions, port, http: httpServer }
}

function client (port: number): PollHttp {
  return pollHttp({
    authority: `127.0.0.1:${port}`,
    connect: async () => await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => { resolve(s) })
      s.once('error', reject)
    })
  })
}

async function post (h: PollHttp, path: string, body = ''): Promise<{ status: number, text: string }> {
  const res = await h.post(path, Buffer.from(body), { signal: AbortSignal.timeout(5_000) })
  return { status: res.status, text: Buffer.from(res.body).toString('utf8') }
}

describe('the poll session protocol', () => {
  let h: Harness
  let c: PollHttp

  before(async () => { h = await startServer({ pollWaitMs: 200, maxUploadBytes: 1024, maxSessionsPerIp: 3 }) })
  afterEach(() => {
    c?.close()
    h.server.closeAll()
  })
  after(async () => { await new Promise(resolve => h.http.close(resolve)) })

  it('opens a session with a 128-bit hex id', async () => {
    c = client(h.port)
    const id = await openSession(c, PATH, AbortSignal.timeout(5_000))
    assert.match(id, /^[0-9a-f]{32}$/)
    assert.equal(h.server.sessionCount, 1)
  })

  it('delivers upstream bytes once, in order, whatever retries repeat', async () => {
    c = client(h.port)
    const id = await openSession(c, PATH, AbortSignal.timeout(5_000))
    const { sink } = h.sessions.at(-1) ?? assert.fail('a session')
    assert.deepEqual(await post(c, `${PATH}/s/${id}/up/0`, 'hello'), { status: 200, text: '5' })
    // the same POST again (its answer was lost): acknowledged, not delivered twice
    assert.deepEqual(await post(c, `${PATH}/s/${id}/up/0`, 'hello'), { status: 200, text: '5' })
    // a retry that overlaps what arrived: only the new tail is delivered
    assert.deepEqual(await post(c, `${PATH}/s/${id}/up/3`, 'lo world'), { status: 200, text: '11' })
    // a gap is refused and changes nothing
    assert.equal((await post(c, `${PATH}/s/${id}/up/20`, 'x')).status, 409)
    assert.equal(sink.text(), 'hello world')
  })

  it('answers a repeated poll with the same bytes until they are acknowledged', async () => {
    c = client(h.port)
    const id = await openSession(c, PATH, AbortSignal.timeout(5_000))
    const { session } = h.sessions.at(-1) ?? assert.fail('a session')
    session.write(Buffer.from('abc'))
    assert.deepEqual(await post(c, `${PATH}/s/${id}/down/0`), { status: 200, text: 'abc' })
    // the answer was lost: the client polls from the same offset and gets the same bytes
    assert.deepEqual(await post(c, `${PATH}/s/${id}/down/0`), { status: 200, text: 'abc' })
    session.write(Buffer.from('def'))
    assert.deepEqual(await post(c, `${PATH}/s/${id}/down/3`), { status: 200, text: 'def' })
    // acknowledged bytes are gone: an older ack is out of sequence
    assert.equal((await post(c, `${PATH}/s/${id}/down/0`)).status, 409)
  })

  it('ends a poll with no bytes after the wait, and answers a held poll as soon as bytes come', async () => {
    c = client(h.port)
    const id = await openSession(c, PATH, AbortSignal.timeout(5_000))
    const { session } = h.sessions.at(-1) ?? assert.fail('a session')
    assert.deepEqual(await post(c, `${PATH}/s/${id}/down/0`), { status: 200, text: '' })
    const held = post(c, `${PATH}/s/${id}/down/0`)
    await new Promise(resolve => setTimeout(resolve, 50))
    session.write(Buffer.from('late'))
    assert.deepEqual(await held, { status: 200, text: 'late' })
  })

  it('tells the client the stream ended once this end closed and every byte was acknowledged', async () => {
    c = client(h.port)
    const id = await openSession(c, PATH, AbortSignal.timeout(5_000))
    const { session } = h.sessions.at(-1) ?? assert.fail('a session')
    session.write(Buffer.from('bye'))
    await session.close()
    assert.deepEqual(await post(c, `${PATH}/s/${id}/down/0`), { status: 200, text: 'bye' })
    assert.equal((await post(c, `${PATH}/s/${id}/down/3`)).status, 410)
    assert.equal(h.server.sessionCount, 0)
  })

  it('answers malformed requests with a 4xx and keeps serving', async () => {
    c = client(h.port)
    const id = await openSession(c, PATH, AbortSignal.timeout(5_000))
    assert.equal((await post(c, `${PATH}/s/${'0'.repeat(32)}/down/0`)).status, 404)
    assert.equal((await post(c, `${PATH}/s/${id}/down/-1`)).status, 400)
    assert.equal((await post(c, `${PATH}/s/${id}/down/1e3`)).status, 400)
    assert.equal((await post(c, `${PATH}/s/${id}/sideways/0`)).status, 400)
    assert.equal((await post(c, `${PATH}/nothing`)).status, 404)
    assert.equal((await post(c, `${PATH}/s/${id}/down/99`)).status, 409)
    assert.equal((await post(c, `${PATH}/s/${id}/up/0`, 'x'.repeat(2048))).status, 413)
    const get = await fetch(`http://127.0.0.1:${h.port}${PATH}/open`, { signal: AbortSignal.timeout(5_000) })
    assert.equal(get.status, 405)
    await get.arrayBuffer()
    assert.deepEqual(await post(c, `${PATH}/s/${id}/up/0`, 'ok'), { status: 200, text: '2' })
  })

  it('refuses sessions beyond the per-IP limit with a 429', async () => {
    c = client(h.port)
    for (let i = 0; i < 3; i++) await openSession(c, PATH, AbortSignal.timeout(5_000))
    await assert.rejects(openSession(c, PATH, AbortSignal.timeout(5_000)), { code: 'POLL_SESSION_LIMIT', phase: 'http' })
  })

  it('a client closing its session ends it on the relay', async () => {
    c = client(h.port)
    const id = await openSession(c, PATH, AbortSignal.timeout(5_000))
    const { sink } = h.sessions.at(-1) ?? assert.fail('a session')
    assert.equal((await post(c, `${PATH}/s/${id}/close`)).status, 204)
    assert.equal(sink.closedWith, undefined)
    assert.equal(h.server.sessionCount, 0)
  })
})

describe('idle poll sessions', () => {
  it('expire with a coded error when no request reaches them', async () => {
    const h = await startServer({ idleMs: 150, pollWaitMs: 50 })
    const c = client(h.port)
    try {
      await openSession(c, PATH, AbortSignal.timeout(5_000))
      const { sink } = h.sessions[0]
      await until(() => sink.closedWith != null, 'the session to expire')
      assert.equal((sink.closedWith as Error & { code: string }).code, 'POLL_SESSION_EXPIRED')
      assert.equal(h.server.sessionCount, 0)
    } finally {
      c.close()
      await new Promise(resolve => h.http.close(resolve))
    }
  })
})

describe('a client session against the relay side', () => {
  it('carries bytes both ways in order, across many requests', async () => {
    const h = await startServer({ pollWaitMs: 200, maxResponseBytes: 1000 })
    const c = client(h.port)
    try {
      const id = await openSession(c, PATH, AbortSignal.timeout(5_000))
      const session = new ClientSession({ http: c, path: PATH, id, log: createLogger('test.poll'), maxUploadBytes: 700 })
      const mine = new RecordingSink()
      session.attach(mine)
      const relay = h.sessions[0]
      const up = Buffer.alloc(10_000, 'u')
      for (let i = 0; i < 10; i++) session.write(up.subarray(i * 1000, (i + 1) * 1000))
      relay.session.write(Buffer.alloc(5_000, 'd'))
      await until(() => relay.sink.text().length === 10_000 && mine.text().length === 5_000, 'every byte')
      assert.equal(relay.sink.text(), up.toString())
      assert.equal(mine.text(), 'd'.repeat(5_000))
      await session.close({ signal: AbortSignal.timeout(5_000) })
      await until(() => relay.sink.closedWith !== null, 'the relay side to see the close')
    } finally {
      c.close()
      await new Promise(resolve => h.http.close(resolve))
    }
  })

  it('retries a request whose answer was lost and loses no byte', async () => {
    const h = await startServer({ pollWaitMs: 100 })
    const real = client(h.port)
    let dropNextUploadAnswer = true
    // a network that delivers the first upload to the relay and loses its answer
    const lossy: PollHttp = {
      post: async (path, body, options) => {
        const res = await real.post(path, body, options)
        if (path.includes('/up/') && dropNextUploadAnswer) {
          dropNextUploadAnswer = false
          throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })
        }
        return res
      },
      close: () => { real.close() }
    }
    try {
      const id = await openSession(lossy, PATH, AbortSignal.timeout(5_000))
      const session = new ClientSession({ http: lossy, path: PATH, id, log: createLogger('test.poll'), retry: { initialMs: 10, maxMs: 50 } })
      session.attach(new RecordingSink())
      session.write(Buffer.from('once only'))
      const relay = h.sessions[0]
      await until(() => !dropNextUploadAnswer && relay.sink.text() === 'once only', 'the upload')
      session.write(Buffer.from('!'))
      await until(() => relay.sink.text() === 'once only!', 'the next upload')
      session.reset(new Error('test over'))
    } finally {
      real.close()
      await new Promise(resolve => h.http.close(resolve))
    }
  })

  it('counts the session lost, with a coded error, when the relay forgot it', async () => {
    const h = await startServer({ pollWaitMs: 100 })
    const c = client(h.port)
    try {
      const session = new ClientSession({ http: c, path: PATH, id: 'f'.repeat(32), log: createLogger('test.poll') })
      const sink = new RecordingSink()
      session.attach(sink)
      await until(() => sink.closedWith != null, 'the session to be lost')
      assert.equal((sink.closedWith as Error & { code: string }).code, 'POLL_NOT_SERVED')
    } finally {
      c.close()
      await new Promise(resolve => h.http.close(resolve))
    }
  })
})

describe('ByteQueue and offsets', () => {
  it('reads across chunks from any offset it still holds', () => {
    const q = new ByteQueue()
    q.push(Buffer.from('abc'))
    q.push(Buffer.from('defg'))
    assert.equal(Buffer.from(q.read(2, 3)).toString(), 'cde')
    q.dropUntil(4)
    assert.equal(q.base, 4)
    assert.equal(Buffer.from(q.read(4, 10)).toString(), 'efg')
    assert.equal(q.end, 7)
  })

  it('parses only plain decimal offsets', () => {
    assert.equal(parseOffset('42'), 42)
    for (const bad of ['', '-1', '1e3', '0x10', '1.5', '9'.repeat(16), undefined]) assert.equal(parseOffset(bad), undefined)
  })
})
