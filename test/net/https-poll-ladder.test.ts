import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { DialLadder, HTTPS_POLL_STALL_MS, type AttemptDialOptions } from '../../src/net/dial-ladder.ts'
import type { Connection } from '@libp2p/interface'

const PEER = '12D3KooWQDkDvGNNGUoD3kFFaVSzTZ3udBbj3zMxiFHdb7aAmDgY'
const WSS = `/ip4/192.0.2.1/tcp/443/tls/ws/p2p/${PEER}`
const QUIC = `/ip4/192.0.2.1/udp/4001/quic-v1/p2p/${PEER}`
const POLL = `/ip4/192.0.2.1/tcp/443/tls/http/http-path/wc-poll%2F1/p2p/${PEER}`

/** The fields of a connection the ladder reads. */
function openConnection (addr: Multiaddr): Connection {
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

type Behaviour = (addr: Multiaddr, options: AttemptDialOptions) => Promise<Connection>

function dialer (behaviours: Record<string, Behaviour>): { dial: Behaviour, starts: Map<string, number> } {
  const starts = new Map<string, number>()
  return {
    starts,
    dial: async (addr, options) => {
      starts.set(addr.toString(), Date.now())
      const b = behaviours[addr.toString()] ?? assert.fail(`unexpected dial to ${addr.toString()}`)
      return await b(addr, options)
    }
  }
}

describe('the HTTPS poll rung of the dial ladder', () => {
  it('is derived from a /tls/ws address and starts at once when WebSocket over TLS fails', { timeout: 10_000 }, async () => {
    const d = dialer({
      [WSS]: async () => { throw Object.assign(new Error('the WebSocket upgrade failed'), { code: 'WS_UPGRADE_FAILED' }) },
      [POLL]: async (addr) => openConnection(addr)
    })
    const t0 = Date.now()
    const result = await new DialLadder({ dial: d.dial, staggerMs: 250 }).dial(PEER, [multiaddr(WSS)])
    assert.equal(result.transport, 'https-poll')
    assert.ok((d.starts.get(POLL) ?? Infinity) - t0 < HTTPS_POLL_STALL_MS / 2, 'no stall wait after a failure')
    assert.deepEqual(result.attempts.map(a => [a.transport, a.outcome]), [['wss', 'failure'], ['https-poll', 'success']])
  })

  it('starts when WebSocket over TLS failed even while QUIC still waits for an answer', { timeout: 10_000 }, async () => {
    const d = dialer({
      [QUIC]: async (_a, o) => await hang(o),
      [WSS]: async () => { throw Object.assign(new Error('the WebSocket upgrade failed'), { code: 'WS_UPGRADE_FAILED' }) },
      [POLL]: async (addr) => openConnection(addr)
    })
    const result = await new DialLadder({ dial: d.dial, staggerMs: 50 }).dial(PEER, [multiaddr(QUIC), multiaddr(WSS)])
    assert.equal(result.transport, 'https-poll')
    const gap = (d.starts.get(POLL) ?? Infinity) - (d.starts.get(WSS) ?? 0)
    assert.ok(gap < HTTPS_POLL_STALL_MS / 2, `the poll rung started ${gap} ms after WSS, not after the stall wait`)
  })

  it('waits for a stalled WebSocket over TLS before it starts', { timeout: 15_000 }, async () => {
    const d = dialer({ [WSS]: async (_a, o) => await hang(o), [POLL]: async (addr) => openConnection(addr) })
    const result = await new DialLadder({ dial: d.dial, staggerMs: 250 }).dial(PEER, [multiaddr(WSS)])
    assert.equal(result.transport, 'https-poll')
    const gap = (d.starts.get(POLL) ?? 0) - (d.starts.get(WSS) ?? 0)
    assert.ok(gap >= HTTPS_POLL_STALL_MS - 20, `the poll rung started ${gap} ms after WSS`)
  })

  it('is not started while a slow WebSocket over TLS keeps moving through its phases, and starts 2 s after it stops moving', { timeout: 15_000 }, async () => {
    // the upgrade at 1.2 s, Noise at 2.4 s, the muxer at 3.6 s: never 2 s without progress, so no poll; then it hangs
    // (WSS and the budget given room beyond their defaults, so the stall and not WSS's timeout starts the poll)
    const phases = ['websockets:upgrade', 'upgrader:encrypt-outbound-connection', 'upgrader:multiplex-outbound-connection']
    let lastProgress = 0
    const d = dialer({
      [WSS]: async (_a, o) => {
        for (const [i, type] of phases.entries()) {
          setTimeout(() => { lastProgress = Date.now(); o.onProgress({ type }) }, 1_200 * (i + 1))
        }
        return await hang(o)
      },
      [POLL]: async (addr) => openConnection(addr)
    })
    const ladder = new DialLadder({ dial: d.dial, staggerMs: 250, budgetMs: 12_000, timeoutsMs: { wss: 10_000 }, maxPatience: 1 })
    const result = await ladder.dial(PEER, [multiaddr(WSS)])
    assert.equal(result.transport, 'https-poll')
    const pollStart = d.starts.get(POLL) ?? 0
    assert.ok(pollStart - (d.starts.get(WSS) ?? 0) >= 3 * 1_200, 'the poll rung waited while WSS made progress')
    assert.ok(pollStart - lastProgress >= HTTPS_POLL_STALL_MS - 20, `the poll rung started ${pollStart - lastProgress} ms after WSS's last progress`)
  })

  it('is not tried when WebSocket over TLS connects', { timeout: 10_000 }, async () => {
    const d = dialer({ [WSS]: async (addr) => openConnection(addr) })
    const result = await new DialLadder({ dial: d.dial, staggerMs: 250 }).dial(PEER, [multiaddr(WSS)])
    assert.equal(result.transport, 'wss')
    assert.equal(result.attempts.find(a => a.transport === 'https-poll')?.outcome, 'not-tried')
  })

  it('is left out when the caller probes addresses one at a time', { timeout: 10_000 }, async () => {
    const d = dialer({ [WSS]: async () => { throw new Error('refused') } })
    const ladder = new DialLadder({ dial: d.dial, staggerMs: 250, pollFallback: false })
    await assert.rejects(ladder.dial(PEER, [multiaddr(WSS)]), (err: { attempts: unknown[] }) => err.attempts.length === 1)
  })
})
