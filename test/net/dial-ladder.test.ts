import assert from 'node:assert/strict'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, afterEach, describe, it } from 'node:test'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import {
  DialAttemptCancelledError,
  DialLadder,
  DialLadderError,
  RUNG_MEMORY_FILE,
  RungMemory,
  describeAttempt,
  explain,
  networkFingerprint,
  planLadder,
  type AttemptDialOptions,
  type LadderAttempt
} from '../../src/net/dial-ladder.ts'
import { configureLogging, resetLogging } from '../../src/log/logger.ts'
import { tempDir } from '../helpers/mesh.ts'
import type { Connection } from '@libp2p/interface'

const PEER = '12D3KooWCUxGstisocAwjyRccMAVqDFAksLECFj23zxN7fP231Wj'
const QUIC = `/ip4/192.0.2.1/udp/4001/quic-v1/p2p/${PEER}`
const QUIC6 = `/ip6/2001:db8::1/udp/4001/quic-v1/p2p/${PEER}`
const TCP = `/ip4/192.0.2.1/tcp/4001/p2p/${PEER}`
const TCP6 = `/ip6/2001:db8::1/tcp/4001/p2p/${PEER}`
const WS80 = `/ip4/192.0.2.1/tcp/80/ws/p2p/${PEER}`
const WSS443 = `/ip4/192.0.2.1/tcp/443/tls/ws/p2p/${PEER}`
const WS443 = `/ip4/192.0.2.2/tcp/443/ws/p2p/${PEER}`
const WSS8443 = `/ip4/192.0.2.1/tcp/8443/wss/p2p/${PEER}`
const DNSADDR = `/dnsaddr/relay.example/p2p/${PEER}`
const CIRCUIT = `/ip4/198.51.100.1/tcp/4001/p2p/12D3KooWQCGu6KdcfFGmdfzcKHFHpV4hnhrQ8mkDNJquUCdjkrCu/p2p-circuit/p2p/${PEER}`

const mas = (...list: string[]): Multiaddr[] => list.map(a => multiaddr(a))
const order = (list: Array<{ addr: Multiaddr }>): string[] => list.map(p => p.addr.toString())

const dir = tempDir('wc-ladder-unit-')
after(() => { dir.cleanup() })
afterEach(() => { resetLogging() })

describe('planLadder: address ranking', () => {
  it('ranks QUIC, then TCP, then WebSockets with 443 first, then others, then circuit', () => {
    const plan = planLadder(mas(CIRCUIT, WS80, DNSADDR, WSS8443, TCP, WS443, WSS443, QUIC))
    assert.deepEqual(order(plan), [QUIC, TCP, WSS443, WS443, WSS8443, WS80, DNSADDR, CIRCUIT])
    assert.deepEqual(plan.map(p => p.transport), ['quic', 'tcp', 'wss', 'ws', 'wss', 'ws', 'unknown', 'circuit'])
    assert.ok(plan.every(p => !p.remembered))
  })

  it('keeps the given order within a rung and drops duplicates', () => {
    const plan = planLadder(mas(TCP6, QUIC6, TCP, QUIC, TCP6))
    assert.deepEqual(order(plan), [QUIC6, QUIC, TCP6, TCP])
  })

  it('puts the remembered rung first, its winning address first within it, and the rest in the usual order', () => {
    const plan = planLadder(mas(QUIC, TCP, WS80, WSS443, WSS8443), { transport: 'wss', addr: WSS8443 })
    assert.deepEqual(order(plan), [WSS8443, WSS443, QUIC, TCP, WS80])
    assert.deepEqual(plan.map(p => p.remembered), [true, true, false, false, false])
  })

  it('a remembered rung the peer no longer offers changes nothing', () => {
    const plan = planLadder(mas(WS80, TCP, QUIC), { transport: 'wss', addr: WSS443 })
    assert.deepEqual(order(plan), [QUIC, TCP, WS80])
    assert.ok(plan.every(p => !p.remembered))
  })

  it('a remembered address that changed port still brings its rung first', () => {
    const plan = planLadder(mas(QUIC, TCP), { transport: 'tcp', addr: `/ip4/192.0.2.1/tcp/4999/p2p/${PEER}` })
    assert.deepEqual(order(plan), [TCP, QUIC])
  })
})

interface FakeConn { conn: Connection, closed: () => boolean }

function fakeConnection (addr: Multiaddr): FakeConn {
  let closed = false
  const conn = {
    id: `conn-${addr.toString()}`,
    status: 'open',
    remoteAddr: addr,
    remotePeer: { toString: () => PEER },
    close: async () => { closed = true },
    abort: () => { closed = true }
  }
  return { conn: conn as unknown as Connection, closed: () => closed }
}

/** Rejects with the signal's reason when it fires, like a transport honouring its signal. */
async function hang (options: AttemptDialOptions): Promise<Connection> {
  return await new Promise<Connection>((_resolve, reject) => {
    if (options.signal.aborted) reject(options.signal.reason)
    options.signal.addEventListener('abort', () => { reject(options.signal.reason) }, { once: true })
  })
}

function refused (): Error {
  return Object.assign(new Error('connect ECONNREFUSED 192.0.2.1:4001'), { code: 'ECONNREFUSED' })
}

type Behaviour = (addr: Multiaddr, options: AttemptDialOptions) => Promise<Connection>

/** A dialer that follows one behaviour per address and remembers the order and signals of the calls. */
function fakeDialer (behaviours: Record<string, Behaviour>): { dial: Behaviour, calls: string[], signals: Map<string, AbortSignal> } {
  const calls: string[] = []
  const signals = new Map<string, AbortSignal>()
  const dial: Behaviour = async (addr, options) => {
    const text = addr.toString()
    calls.push(text)
    signals.set(text, options.signal)
    const behaviour = behaviours[text]
    assert.ok(behaviour != null, `unexpected dial to ${text}`)
    return await behaviour(addr, options)
  }
  return { dial, calls, signals }
}

// a stagger no test would ever wait for: when an attempt starts early, it is because the previous failed
const NEVER = 600_000

describe('DialLadder with a fake dialer', () => {
  it('starts the next rung at once when every attempt so far has failed', { timeout: 10_000 }, async () => {
    const d = fakeDialer({
      [QUIC]: async () => { throw refused() },
      [TCP]: async () => { throw refused() },
      [WS80]: async (addr) => fakeConnection(addr).conn
    })
    const ladder = new DialLadder({ dial: d.dial, staggerMs: NEVER, budgetMs: NEVER })
    const result = await ladder.dial(PEER, mas(WS80, TCP, QUIC))
    assert.deepEqual(d.calls, [QUIC, TCP, WS80])
    assert.equal(result.transport, 'ws')
    assert.deepEqual(result.attempts.map(a => a.outcome), ['failure', 'failure', 'success'])
    assert.equal(result.attempts[0].code, 'ECONNREFUSED')
  })

  it('the first connection wins; attempts still running are cancelled, not timed out, and a late connection is closed', { timeout: 10_000 }, async () => {
    let connectTcp: (() => void) | undefined
    const tcpConn = fakeConnection(multiaddr(TCP))
    let wsStarted: (() => void) | undefined
    const wsRunning = new Promise<void>(resolve => { wsStarted = resolve })
    let connectWs: (() => void) | undefined
    const d = fakeDialer({
      [QUIC]: async (_a, o) => await hang(o),
      // TCP ignores its signal (as QUIC really does) and connects after WS has won
      [TCP]: async () => await new Promise<Connection>(resolve => { connectTcp = () => { resolve(tcpConn.conn) } }),
      [WS80]: async (addr) => await new Promise<Connection>(resolve => {
        connectWs = () => { resolve(fakeConnection(addr).conn) }
        wsStarted?.()
      })
    })
    const ladder = new DialLadder({ dial: d.dial, staggerMs: 1, budgetMs: NEVER })
    const pending = ladder.dial(PEER, mas(QUIC, TCP, WS80))
    await wsRunning
    connectWs?.()
    const result = await pending
    assert.equal(result.transport, 'ws')
    assert.deepEqual(result.attempts.map(a => a.outcome), ['cancelled', 'cancelled', 'success'])
    assert.match(result.reason, /^first to connect \(quic: cancelled at tls after .*; tcp: cancelled at tcp-connect after .*\)$/)
    for (const addr of [QUIC, TCP]) {
      const signal = d.signals.get(addr)
      assert.equal(signal?.aborted, true)
      assert.ok(signal?.reason instanceof DialAttemptCancelledError, `${addr}: ${String(signal?.reason)}`)
    }
    connectTcp?.()
    await new Promise(resolve => setImmediate(resolve))
    assert.equal(tcpConn.closed(), true, 'the connection that opened after the winner was closed')
  })

  it('an attempt that stalls is abandoned at its transport timeout and the next rung takes over', { timeout: 10_000 }, async () => {
    const d = fakeDialer({
      [TCP]: async (_a, o) => {
        o.onProgress({ type: 'tcp:open-connection' })
        o.onProgress({ type: 'upgrader:encrypt-outbound-connection' })
        return await hang(o)
      },
      [WSS443]: async (addr) => fakeConnection(addr).conn
    })
    const ladder = new DialLadder({ dial: d.dial, staggerMs: NEVER, budgetMs: NEVER, timeoutsMs: { tcp: 20 } })
    const result = await ladder.dial(PEER, mas(WSS443, TCP))
    assert.equal(result.transport, 'wss')
    const tcp = result.attempts[0]
    assert.equal(tcp.outcome, 'failure')
    assert.equal(tcp.timedOut, true)
    assert.equal(tcp.phase, 'noise')
    assert.equal(tcp.code, 'TIMEOUT')
    assert.match(result.reason, /^first to connect \(tcp: stalled at noise after /)
  })

  it('uses the telemetry record of a failure when it says more than the error', { timeout: 10_000 }, async () => {
    const d = fakeDialer({
      [WS80]: async (addr, o) => {
        // the WebSocket error says nothing; the recorder's probe finds the cause a moment later
        setImmediate(() => {
          o.onRecord({ ts: new Date().toISOString(), target: addr.toString(), transport: 'ws', phase: 'tcp-connect', outcome: 'failure', cause: 'connection refused', code: 'ECONNREFUSED', duration_ms: 1, purpose: 'bootstrap' })
        })
        throw Object.assign(new Event('error'), { message: '' })
      },
      [CIRCUIT]: async (addr) => await new Promise<Connection>(resolve => { setTimeout(() => { resolve(fakeConnection(addr).conn) }, 50) })
    })
    const ladder = new DialLadder({ dial: d.dial, staggerMs: NEVER, budgetMs: NEVER })
    const result = await ladder.dial(PEER, mas(CIRCUIT, WS80))
    assert.equal(result.transport, 'circuit')
    assert.equal(result.attempts[0].code, 'ECONNREFUSED')
    assert.equal(result.attempts[0].phase, 'tcp-connect')
  })

  it('fails with every address attributed when all fail', { timeout: 10_000 }, async () => {
    const d = fakeDialer({
      [QUIC]: async () => { throw refused() },
      [TCP]: async () => { throw refused() }
    })
    const ladder = new DialLadder({ dial: d.dial, staggerMs: NEVER, budgetMs: NEVER })
    await assert.rejects(ladder.dial(PEER, mas(TCP, QUIC)), (err: unknown) => {
      assert.ok(err instanceof DialLadderError)
      assert.equal(err.code, 'DIAL_LADDER_FAILED')
      assert.deepEqual(err.attempts.map(a => [a.addr, a.outcome, a.code]), [[QUIC, 'failure', 'ECONNREFUSED'], [TCP, 'failure', 'ECONNREFUSED']])
      assert.match(err.message, /^all 2 address\(es\) of 12D3KooW\w+ failed: quic: failed at tcp-connect \(ECONNREFUSED\)/)
      return true
    })
  })

  it('ends at its budget: running attempts time out and the rest are not tried', { timeout: 10_000 }, async () => {
    const d = fakeDialer({ [QUIC]: async (_a, o) => await hang(o) })
    const ladder = new DialLadder({ dial: d.dial, staggerMs: NEVER, budgetMs: 30 })
    await assert.rejects(ladder.dial(PEER, mas(QUIC, TCP)), (err: unknown) => {
      assert.ok(err instanceof DialLadderError)
      assert.match(err.message, /within the ladder's 30 ms budget/)
      assert.deepEqual(err.attempts.map(a => a.outcome), ['failure', 'not-tried'])
      assert.equal(err.attempts[0].timedOut, true)
      return true
    })
    assert.deepEqual(d.calls, [QUIC])
  })

  it('after a ladder in which every attempt timed out, the next to that peer waits twice as long (up to ×4); a refusal does not count; a connection resets it', { timeout: 10_000 }, async () => {
    const lines: string[] = []
    configureLogging({ spec: 'info', format: 'text', sink: (line) => { lines.push(line) } })
    let tcp: 'hang' | 'refuse' | 'connect' = 'hang'
    const d = fakeDialer({
      [QUIC]: async (_a, o) => await hang(o),
      [TCP]: async (addr, o) => tcp === 'connect' ? fakeConnection(addr).conn : tcp === 'refuse' ? await Promise.reject(refused()) : await hang(o)
    })
    const ladder = new DialLadder({ dial: d.dial, staggerMs: 1, budgetMs: NEVER, timeoutsMs: { quic: 30, tcp: 30 } })
    for (const factor of [1, 2, 4, 4]) {
      assert.equal(ladder.patienceFor(PEER), factor)
      const started = Date.now()
      await assert.rejects(ladder.dial(PEER, mas(QUIC, TCP)), (err: unknown) => {
        assert.ok(err instanceof DialLadderError)
        assert.ok(err.attempts.every(a => a.timedOut === true), JSON.stringify(err.attempts))
        if (factor > 1) assert.match(err.message, new RegExp(`failed \\(timeouts ×${factor}: earlier ladders to it timed out\\)`))
        else assert.doesNotMatch(err.message, /timeouts ×/)
        return true
      })
      // an abort timer never fires early: the attempts really waited factor × 30 ms
      assert.ok(Date.now() - started >= 30 * factor - 2, `ladder ×${factor} took ${Date.now() - started} ms`)
    }
    assert.ok(lines.some(l => /INFO\s+net\.ladder: every attempt to \S+ timed out \(2\); the next ladder to it waits ×2 as long \(quic 60 ms, tcp 60 ms; budget/.test(l)), lines.join('\n'))
    // a refusal is an answer: the peer is there, so no more patience (and no less)
    tcp = 'refuse'
    await assert.rejects(ladder.dial(PEER, mas(QUIC, TCP)), DialLadderError)
    assert.equal(ladder.patienceFor(PEER), 4)
    tcp = 'connect'
    const result = await ladder.dial(PEER, mas(QUIC, TCP))
    assert.equal(result.transport, 'tcp')
    assert.equal(ladder.patienceFor(PEER), 1)
    assert.ok(lines.some(l => /tcp to \S+ connected in \d+ ms with timeouts ×4 .*back to the usual timeouts/.test(l)), lines.join('\n'))
    // another peer was never affected
    assert.equal(ladder.patienceFor('12D3KooWQCGu6KdcfFGmdfzcKHFHpV4hnhrQ8mkDNJquUCdjkrCu'), 1)
  })

  it('a network change puts every peer back at the usual timeouts', { timeout: 10_000 }, async () => {
    const d = fakeDialer({ [QUIC]: async (_a, o) => await hang(o), [TCP]: async (_a, o) => await hang(o) })
    const ladder = new DialLadder({ dial: d.dial, staggerMs: 1, budgetMs: NEVER, timeoutsMs: { quic: 20, tcp: 20 } })
    await assert.rejects(ladder.dial(PEER, mas(QUIC, TCP)), DialLadderError)
    assert.equal(ladder.patienceFor(PEER), 2, 'a ladder that only timed out grows the patience')
    ladder.networkChanged()
    assert.equal(ladder.patienceFor(PEER), 1)
  })

  it('stops when the caller aborts, cancelling what runs', { timeout: 10_000 }, async () => {
    const d = fakeDialer({ [QUIC]: async (_a, o) => await hang(o) })
    const ladder = new DialLadder({ dial: d.dial, staggerMs: NEVER, budgetMs: NEVER })
    const controller = new AbortController()
    const pending = ladder.dial(PEER, mas(QUIC, TCP), { signal: controller.signal })
    await new Promise(resolve => setImmediate(resolve))
    controller.abort()
    await assert.rejects(pending, (err: unknown) => {
      assert.ok(err instanceof DialLadderError)
      assert.deepEqual(err.attempts.map(a => a.outcome), ['cancelled', 'not-tried'])
      return true
    })
  })

  it('refuses an empty address list with a named error', async () => {
    const ladder = new DialLadder({ dial: async () => { throw new Error('not called') } })
    await assert.rejects(ladder.dial(PEER, []), DialLadderError)
  })

  it('remembers the winner, and the next ladder starts with it and says so', { timeout: 10_000 }, async () => {
    const memory = new RungMemory({ network: () => 'net-a' })
    const d = fakeDialer({
      [QUIC]: async () => { throw refused() },
      [TCP]: async () => { throw refused() },
      [WSS443]: async (addr) => fakeConnection(addr).conn
    })
    const ladder = new DialLadder({ dial: d.dial, memory, staggerMs: NEVER, budgetMs: NEVER })
    const first = await ladder.dial(PEER, mas(QUIC, TCP, WSS443))
    assert.equal(first.remembered, false)
    assert.deepEqual(memory.recall(PEER)?.transport, 'wss')
    d.calls.length = 0
    const second = await ladder.dial(PEER, mas(QUIC, TCP, WSS443))
    assert.deepEqual(d.calls, [WSS443], 'the remembered rung went first and won at once')
    assert.equal(second.remembered, true)
    // the HTTPS poll rung derived from the /tls/ws address comes last
    assert.equal(second.reason, 'remembered from the last run on this network (quic: not tried; tcp: not tried; https-poll: not tried)')
  })
})

describe('explaining the choice', () => {
  const base = { remembered: false, durationMs: 2500, startedAfterMs: 0 }
  it('says how each other attempt ended', () => {
    const winner: LadderAttempt = { ...base, addr: QUIC, transport: 'quic', outcome: 'success', phase: 'protocol', durationMs: 8 }
    const attempts: LadderAttempt[] = [
      { ...base, addr: TCP, transport: 'tcp', outcome: 'failure', phase: 'noise', timedOut: true, code: 'TIMEOUT' },
      winner,
      { ...base, addr: WS80, transport: 'ws', outcome: 'failure', phase: 'tcp-connect', code: 'ECONNREFUSED', durationMs: 3 },
      { addr: WSS443, transport: 'wss', outcome: 'not-tried', remembered: false }
    ]
    assert.equal(explain(winner, attempts, false), 'first to connect (tcp: stalled at noise after 2.5 s, TCP connected but the handshake got no answer (protocol-inspecting firewall?); ws: failed at tcp-connect (ECONNREFUSED) after 3 ms; wss: not tried)')
    assert.equal(explain(winner, [winner], true), 'remembered from the last run on this network')
  })

  it('names the port when a peer has several addresses on one transport', () => {
    const a: LadderAttempt = { ...base, addr: WS80, transport: 'ws', outcome: 'cancelled', phase: 'ws-upgrade', durationMs: 300 }
    const b: LadderAttempt = { ...base, addr: WS443, transport: 'ws', outcome: 'closed-late', remembered: true }
    assert.equal(describeAttempt(a, [a, b]), 'ws:80: cancelled at ws-upgrade after 300 ms')
    assert.equal(describeAttempt(b, [a, b]), 'ws:443 (remembered): connected too late, closed')
  })
})

describe('RungMemory', () => {
  it('keeps the winning rung per peer and network in a JSON file that a new process reads back', () => {
    const stateDir = join(dir.path, 'state-a')
    const memory = RungMemory.inStateDir(stateDir, { network: () => 'home' })
    assert.equal(memory.recall(PEER), undefined)
    memory.remember(PEER, { transport: 'quic', addr: QUIC })
    const file = JSON.parse(readFileSync(join(stateDir, RUNG_MEMORY_FILE), 'utf8'))
    assert.equal(file.version, 1)
    assert.equal(file.entries[`home|${PEER}`].transport, 'quic')

    const again = RungMemory.inStateDir(stateDir, { network: () => 'home' })
    assert.equal(again.recall(PEER)?.addr, QUIC)
    // another network: what worked at home is no first guess there
    assert.equal(RungMemory.inStateDir(stateDir, { network: () => 'hotel' }).recall(PEER), undefined)
  })

  it('a damaged file is reported and the memory starts empty', () => {
    const lines: string[] = []
    configureLogging({ spec: 'warn', sink: line => { lines.push(line) } })
    const stateDir = join(dir.path, 'state-bad')
    mkdirSync(stateDir, { recursive: true })
    writeFileSync(join(stateDir, RUNG_MEMORY_FILE), '{ not json')
    const memory = RungMemory.inStateDir(stateDir, { network: () => 'home' })
    assert.equal(memory.recall(PEER), undefined)
    assert.ok(lines.some(l => /not valid JSON/.test(l)), lines.join('\n'))
    memory.remember(PEER, { transport: 'tcp', addr: TCP })
    assert.equal(RungMemory.inStateDir(stateDir, { network: () => 'home' }).recall(PEER)?.transport, 'tcp')
  })

  it('keeps at most maxEntries, dropping the oldest', () => {
    const memory = new RungMemory({ network: () => 'n', maxEntries: 2 })
    memory.remember('a', { transport: 'tcp', addr: TCP })
    memory.remember('b', { transport: 'tcp', addr: TCP })
    memory.remember('c', { transport: 'tcp', addr: TCP })
    assert.equal(memory.recall('a'), undefined)
    assert.equal(memory.recall('c')?.transport, 'tcp')
  })

  it('names the network by its interface addresses, cheaply and stably', () => {
    const a = networkFingerprint()
    assert.equal(networkFingerprint(), a)
    assert.match(a, /^([0-9a-f]{16}|no-network)$/)
  })
})
