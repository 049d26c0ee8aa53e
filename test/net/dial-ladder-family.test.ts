/**
 * The dial ladder races the address families (RFC 8305 happy eyeballs): IPv6
 * first, IPv4 one stagger later, first to connect wins, and the winning family
 * is remembered per peer and network. A fake dialer throughout; the stagger
 * itself is measured on Node's mock clock.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { DialLadder, RungMemory, familyOf, planLadder, type AttemptDialOptions } from '../../src/net/dial-ladder.ts'
import type { Connection } from '@libp2p/interface'

const PEER = '12D3KooWCUxGstisocAwjyRccMAVqDFAksLECFj23zxN7fP231Wj'
const QUIC4 = `/ip4/192.0.2.1/udp/4001/quic-v1/p2p/${PEER}`
const QUIC6 = `/ip6/2001:db8::1/udp/4001/quic-v1/p2p/${PEER}`
const TCP4 = `/ip4/192.0.2.1/tcp/4001/p2p/${PEER}`
const TCP6 = `/ip6/2001:db8::1/tcp/4001/p2p/${PEER}`
const TCP6B = `/ip6/2001:db8::2/tcp/4001/p2p/${PEER}`
const WSS_NAME = `/dns4/relay.example/tcp/443/tls/ws/p2p/${PEER}`

const mas = (...list: string[]): Multiaddr[] => list.map(a => multiaddr(a))
const order = (list: Array<{ addr: Multiaddr }>): string[] => list.map(p => p.addr.toString())
// a stagger no test waits for: an attempt that starts early does so because the ones before it failed
const NEVER = 600_000

/** The connection a dial resolves with: only what the ladder reads. */
function connectionTo (addr: Multiaddr): Connection {
  const conn: Pick<Connection, 'id' | 'status' | 'remoteAddr' | 'close' | 'abort'> = {
    id: `conn-${addr.toString()}`,
    status: 'open',
    remoteAddr: addr,
    close: async () => {},
    abort: () => {}
  }
  return conn as Connection
}

async function hang (options: AttemptDialOptions): Promise<Connection> {
  return await new Promise<Connection>((_resolve, reject) => {
    options.signal.addEventListener('abort', () => { reject(options.signal.reason) }, { once: true })
  })
}

function unreachable (): Error {
  return Object.assign(new Error('connect ENETUNREACH 2001:db8::1:4001'), { code: 'ENETUNREACH' })
}

/** Records the order of the dials and when each started, on the ladder's own clock. */
function recordingDialer (behaviour: (addr: string, options: AttemptDialOptions) => Promise<Connection>): { dial: (addr: Multiaddr, options: AttemptDialOptions) => Promise<Connection>, calls: string[] } {
  const calls: string[] = []
  return {
    calls,
    dial: async (addr, options) => {
      calls.push(addr.toString())
      return await behaviour(addr.toString(), options)
    }
  }
}

describe('planLadder: address families', () => {
  it('names the family of IP addresses and none for names', () => {
    assert.equal(familyOf(TCP6), 'ip6')
    assert.equal(familyOf(TCP4), 'ip4')
    assert.equal(familyOf(WSS_NAME), undefined)
  })

  it('puts IPv6 before IPv4 within each rung, whatever order the addresses came in', () => {
    const plan = planLadder(mas(TCP4, QUIC4, TCP6, QUIC6, WSS_NAME))
    assert.deepEqual(order(plan), [QUIC6, QUIC4, TCP6, TCP4, WSS_NAME])
    assert.deepEqual(plan.map(p => p.family), ['ip6', 'ip4', 'ip6', 'ip4', undefined])
  })

  it('alternates the families when one has several addresses on a rung', () => {
    assert.deepEqual(order(planLadder(mas(TCP6, TCP6B, TCP4))), [TCP6, TCP4, TCP6B])
  })

  it('puts the remembered family first in every rung', () => {
    const plan = planLadder(mas(TCP6, QUIC6, TCP4, QUIC4), { transport: 'quic', addr: QUIC4, family: 'ip4' })
    assert.deepEqual(order(plan), [QUIC4, QUIC6, TCP4, TCP6])
  })
})

describe('DialLadder races the families', () => {
  it('starts IPv4 only after the stagger while IPv6 is still trying', { timeout: 10_000 }, async () => {
    let started: (() => void) | undefined
    const v6Started = new Promise<void>(resolve => { started = resolve })
    const d = recordingDialer(async (addr, options) => {
      if (addr === TCP6) {
        started?.()
        return await new Promise<Connection>((resolve, reject) => {
          options.signal.addEventListener('abort', () => { reject(options.signal.reason) }, { once: true })
          // IPv6 connects within the stagger: IPv4 is never dialled
          setTimeout(() => { resolve(connectionTo(multiaddr(addr))) }, 5)
        })
      }
      return connectionTo(multiaddr(addr))
    })
    const ladder = new DialLadder({ dial: d.dial, staggerMs: NEVER, budgetMs: NEVER })
    const result = await ladder.dial(PEER, mas(TCP4, TCP6))
    await v6Started
    assert.deepEqual(d.calls, [TCP6])
    assert.equal(result.family, 'ip6')
    assert.deepEqual(result.attempts.map(a => a.outcome), ['success', 'not-tried'])
  })

  it('on a fake clock, starts IPv4 exactly one stagger after IPv6 and lets the first to connect win', { timeout: 10_000 }, async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 })
    const settle = async (): Promise<void> => { for (let i = 0; i < 5; i++) await new Promise(resolve => setImmediate(resolve)) }
    let connectV4: (() => void) | undefined
    const d = recordingDialer(async (addr, options) => {
      if (addr.startsWith('/ip6/')) return await hang(options)
      return await new Promise<Connection>(resolve => { connectV4 = () => { resolve(connectionTo(multiaddr(addr))) } })
    })
    const ladder = new DialLadder({ dial: d.dial, staggerMs: 250, budgetMs: NEVER })
    const pending = ladder.dial(PEER, mas(TCP4, TCP6))
    await settle()
    assert.deepEqual(d.calls, [TCP6], 'IPv6 starts alone')
    t.mock.timers.tick(249)
    await settle()
    assert.deepEqual(d.calls, [TCP6], 'IPv4 waits for the whole stagger')
    t.mock.timers.tick(1)
    await settle()
    assert.deepEqual(d.calls, [TCP6, TCP4], 'IPv4 starts when the stagger is over')
    t.mock.timers.tick(40)
    connectV4?.()
    const result = await pending
    assert.equal(result.family, 'ip4')
    assert.deepEqual(result.attempts.map(a => [a.addr, a.outcome, a.startedAfterMs]), [[TCP6, 'cancelled', 0], [TCP4, 'success', 250]])
    assert.equal(result.attempts[1].durationMs, 40)
  })

  it('a broken IPv6 path costs one stagger: IPv4 starts after it and wins, and the win is remembered with its family', { timeout: 10_000 }, async () => {
    const memory = new RungMemory({ network: () => 'dual-stack' })
    const d = recordingDialer(async (addr, options) => addr.startsWith('/ip6/') ? await hang(options) : connectionTo(multiaddr(addr)))
    const ladder = new DialLadder({ dial: d.dial, memory, staggerMs: 20, budgetMs: NEVER })
    const result = await ladder.dial(PEER, mas(TCP4, TCP6))
    assert.deepEqual(d.calls, [TCP6, TCP4])
    assert.equal(result.family, 'ip4')
    assert.equal(result.attempts[0].outcome, 'cancelled')
    assert.match(result.reason, /^first to connect \(tcp\/ip6:4001: cancelled at tcp-connect after .*\)$/, 'the loser is named by its family')
    assert.ok((result.attempts[1].startedAfterMs ?? 0) >= 15, `IPv4 started ${result.attempts[1].startedAfterMs} ms after IPv6`)
    assert.deepEqual({ transport: memory.recall(PEER)?.transport, family: memory.recall(PEER)?.family }, { transport: 'tcp', family: 'ip4' })
    // next time on this network IPv4 goes first and wins at once
    d.calls.length = 0
    const again = await ladder.dial(PEER, mas(TCP6, TCP4))
    assert.deepEqual(d.calls, [TCP4])
    assert.equal(again.remembered, true)
  })

  it('an IPv6 path that fails at once (no route) hands over to IPv4 without waiting for the stagger', { timeout: 10_000 }, async () => {
    const d = recordingDialer(async (addr) => {
      if (addr.startsWith('/ip6/')) throw unreachable()
      return connectionTo(multiaddr(addr))
    })
    const ladder = new DialLadder({ dial: d.dial, staggerMs: NEVER, budgetMs: NEVER })
    const result = await ladder.dial(PEER, mas(TCP4, TCP6))
    assert.deepEqual(d.calls, [TCP6, TCP4])
    assert.equal(result.family, 'ip4')
    assert.equal(result.attempts[0].code, 'ENETUNREACH')
  })

  it('remembers a win by name without a family, and the same rung with its family as an update', () => {
    const memory = new RungMemory({ network: () => 'n' })
    memory.remember(PEER, { transport: 'tcp', addr: TCP4 })
    assert.equal(memory.recall(PEER)?.family, undefined)
    memory.remember(PEER, { transport: 'tcp', addr: TCP4, family: 'ip4' })
    assert.equal(memory.recall(PEER)?.family, 'ip4', 'the same rung with its family is an update')
  })
})
