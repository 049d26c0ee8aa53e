import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { ClientUnresponsiveError, RelayLiveness, type LivenessConnection } from '../../src/relay/relay-liveness.ts'
import { createLogger, type Fields, type Logger } from '../../src/log/logger.ts'
import type { AbortOptions } from '@libp2p/interface'

/** The parts of a connection the liveness check reads and acts on. */
interface FakeConn extends LivenessConnection {
  id: string
  aborted?: Error
}

async function conns (n: number): Promise<FakeConn[]> {
  const out: FakeConn[] = []
  for (let i = 0; i < n; i++) {
    const c: FakeConn = {
      id: String(i),
      status: 'open',
      remotePeer: peerIdFromPrivateKey(await generateKeyPair('Ed25519')),
      remoteAddr: multiaddr(`/ip4/127.0.0.1/tcp/${4000 + i}`),
      abort: (err) => { c.aborted = err; c.status = 'closed' }
    }
    out.push(c)
  }
  return out
}

function recordingLogger (): { logger: Logger, infos: Array<{ msg: string, fields?: Fields }> } {
  const infos: Array<{ msg: string, fields?: Fields }> = []
  const base = createLogger('test')
  const logger: Logger = { ...base, info: (msg, fields) => { infos.push({ msg, fields }) }, debug: () => {}, warn: () => {}, error: () => {}, child: () => logger }
  return { logger, infos }
}

/** The node's connection events, fired by the test. */
class FakeEvents {
  private readonly target = new EventTarget()
  on (type: string, listener: (evt: CustomEvent<FakeConn>) => void): void { this.target.addEventListener(type, listener as (evt: Event) => void) }
  off (type: string, listener: (evt: CustomEvent<FakeConn>) => void): void { this.target.removeEventListener(type, listener as (evt: Event) => void) }
  fire (type: 'connection:open' | 'connection:close', conn: FakeConn): void { this.target.dispatchEvent(new CustomEvent(type, { detail: conn })) }
}

function liveness (open: FakeConn[], answers: (c: FakeConn, options: AbortOptions) => Promise<number>, logger: Logger, events = new FakeEvents(), init = { intervalMs: 10_000, tickMs: 1_000, timeoutMs: 50 }): RelayLiveness<FakeConn> {
  return new RelayLiveness<FakeConn>({
    connections: { open: () => open },
    events,
    pinger: { linkRtt: async (conn, options) => await answers(conn, options ?? {}) },
    logger
  }, init)
}

describe('relay liveness', () => {
  it('comes round to every connection once per interval, a tenth of them per tick', async () => {
    const open = await conns(25)
    const l = liveness(open, async () => 1, recordingLogger().logger)
    l.start()
    const seen: string[] = []
    for (let tick = 0; tick < 9; tick++) seen.push(...l.nextSlice().map(c => c.id))
    l.stop()
    assert.equal(seen.length, 25)
    assert.deepEqual([...seen].sort(), open.map(c => c.id).sort())
  })

  it('checks each of a few connections once per interval, not once per tick', async () => {
    const open = await conns(3)
    const l = liveness(open, async () => 1, recordingLogger().logger)
    l.start()
    // 10 ticks per interval: three intervals
    const perTick = Array.from({ length: 30 }, () => l.nextSlice().map(c => c.id))
    l.stop()
    const checks = perTick.flat()
    assert.equal(checks.length, 9, `three checks per interval in all, one per connection: ${JSON.stringify(perTick)}`)
    for (const c of open) assert.equal(checks.filter(id => id === c.id).length, 3, `connection ${c.id} checked once per interval`)
    for (let i = 0; i < 3; i++) assert.deepEqual(perTick.slice(i * 10, i * 10 + 10).flat().sort(), open.map(c => c.id).sort())
  })

  it('checks a connection opened later from the next round on, and forgets a closed one', async () => {
    const [a, b, late] = await conns(3)
    const events = new FakeEvents()
    const l = liveness([a, b], async () => 1, recordingLogger().logger, events)
    l.start()
    events.fire('connection:open', late)
    events.fire('connection:close', b)
    // two connections, a tenth per tick rounded up: one per tick, and a round lasts ten ticks
    const round = (): string[] => Array.from({ length: 10 }, () => l.nextSlice()).flat().map(c => c.id)
    const first = round()
    const second = round()
    l.stop()
    assert.deepEqual(first.sort(), [a.id, late.id].sort())
    assert.deepEqual(second.sort(), [a.id, late.id].sort())
  })

  it('keeps a connection whose peer answers the ping', async () => {
    const [c] = await conns(1)
    const l = liveness([c], async () => 3, recordingLogger().logger)
    assert.equal(await l.check(c, new AbortController().signal), true)
    assert.equal(c.aborted, undefined)
  })

  it('closes a connection whose peer leaves the ping unanswered, and logs it with peer, address and code', async () => {
    const [c] = await conns(1)
    const { logger, infos } = recordingLogger()
    const never = async (_c: FakeConn, options: AbortOptions): Promise<number> => await new Promise((_resolve, reject) => {
      options.signal?.addEventListener('abort', () => { reject(options.signal?.reason) })
    })
    const l = liveness([c], never, logger)
    assert.equal(await l.check(c, new AbortController().signal), false)
    assert.ok(c.aborted instanceof ClientUnresponsiveError)
    assert.equal((c.aborted as ClientUnresponsiveError).code, 'RELAY_CLIENT_UNRESPONSIVE')
    assert.equal(infos.length, 1)
    assert.equal(infos[0].fields?.peer, c.remotePeer.toString())
    assert.equal(infos[0].fields?.addr, c.remoteAddr.toString())
    assert.equal(infos[0].fields?.code, 'RELAY_CLIENT_UNRESPONSIVE')
  })

  it('closes the silent connection of a slice when the slice\'s shared answer window ends, and keeps the one that answered', async () => {
    const [talks, silent] = await conns(2)
    const answers = async (c: FakeConn, options: AbortOptions): Promise<number> => c === talks
      ? 1
      : await new Promise((_resolve, reject) => { options.signal?.addEventListener('abort', () => { reject(options.signal?.reason) }) })
    const { logger, infos } = recordingLogger()
    const l = liveness([talks, silent], answers, logger, new FakeEvents(), { intervalMs: 10, tickMs: 10, timeoutMs: 30 })
    l.start()
    await new Promise(resolve => setTimeout(resolve, 120))
    l.stop()
    assert.ok(silent.aborted instanceof ClientUnresponsiveError)
    assert.equal(talks.aborted, undefined)
    assert.deepEqual(infos.map(i => i.fields?.peer), [silent.remotePeer.toString()])
  })

  it('keeps a connection whose ping fails before the answer window ends (the peer ended the stream: it is there), and logs it', async () => {
    const [c] = await conns(1)
    const { logger, infos } = recordingLogger()
    const ended = async (): Promise<number> => { throw new Error('Unexpected EOF - stream closed while reading 0/1 bytes') }
    const l = liveness([c], ended, logger)
    assert.equal(await l.check(c, new AbortController().signal), true)
    assert.equal(c.aborted, undefined)
    assert.equal(infos.length, 1)
    assert.equal(infos[0].fields?.peer, c.remotePeer.toString())
    assert.equal(infos[0].fields?.phase, 'liveness')
    assert.match(infos[0].msg, /Unexpected EOF/)
  })

  it('never pings a QUIC connection (its idle timeout closes a silent one), opened before the start or after', async () => {
    const [tcp, quicEarly, quicLate] = await conns(3)
    quicEarly.remoteAddr = multiaddr('/ip4/127.0.0.1/udp/4001/quic-v1')
    quicLate.remoteAddr = multiaddr('/ip4/127.0.0.1/udp/4002/quic-v1')
    const events = new FakeEvents()
    const l = liveness([tcp, quicEarly], async () => 1, recordingLogger().logger, events, { intervalMs: 10_000, tickMs: 1_000, timeoutMs: 50 })
    l.start()
    events.fire('connection:open', quicLate)
    const round = Array.from({ length: 20 }, () => l.nextSlice()).flat().map(c => c.id)
    l.stop()
    assert.deepEqual([...new Set(round)], [tcp.id])
  })

  it('leaves connections alone when it is stopping', async () => {
    const [c] = await conns(1)
    const stopping = new AbortController()
    const l = liveness([c], async (_c, options) => await new Promise((_resolve, reject) => {
      options.signal?.addEventListener('abort', () => { reject(options.signal?.reason) })
    }), recordingLogger().logger)
    const checked = l.check(c, stopping.signal)
    stopping.abort()
    assert.equal(await checked, false)
    assert.equal(c.aborted, undefined)
  })
})
