import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { DEFAULT_ADMISSION_LIMITS, type RelayAdmissionLimits } from '../../src/config/config.ts'
import { parseCidr } from '../../src/config/cidr.ts'
import { RelayGuard } from '../../src/relay/relay-guard.ts'
import { ipKeyOf } from '../../src/relay/ip-key.ts'
import { RefusalLog } from '../../src/relay/refusal-log.ts'
import { createLogger, type Fields, type Logger } from '../../src/log/logger.ts'
import type { HopConnection, HopView, HopViewListener } from '../../src/net/hop-gate.ts'

/** The relay's state as a guard reads it, written by the test, with its change feed. */
class FakeHopView implements HopView {
  conns: HopConnection[] = []
  private readonly held = new Map<string, string>()
  dropped: string[] = []
  private nextId = 0
  private readonly listeners = new Set<HopViewListener>()

  connect (peer: string, remoteAddr: string, circuits = 0): HopConnection {
    const c = { id: String(this.nextId++), peer, remoteAddr, circuits }
    this.conns.push(c)
    for (const l of this.listeners) l.connectionOpened(c)
    return c
  }

  disconnect (peer: string): void {
    for (const c of this.conns.filter(c => c.peer === peer)) for (const l of this.listeners) l.connectionClosed(c)
    this.conns = this.conns.filter(c => c.peer !== peer)
  }

  reserve (peer: string, remoteAddr: string): void {
    this.held.set(peer, remoteAddr)
    for (const l of this.listeners) l.reservationStored(peer, remoteAddr)
  }

  connections (peer?: string): HopConnection[] {
    return this.conns.filter(c => peer == null || c.peer === peer)
  }

  reservations (): Array<{ peer: string, remoteAddr: string }> {
    return [...this.held].map(([peer, remoteAddr]) => ({ peer, remoteAddr }))
  }

  hasReservation (peer: string): boolean {
    return this.held.has(peer)
  }

  dropReservation (peer: string): boolean {
    this.dropped.push(peer)
    const had = this.held.delete(peer)
    if (had) for (const l of this.listeners) l.reservationRemoved(peer)
    return had
  }

  watch (listener: HopViewListener): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }
}

function guardOn (view: HopView, limits: Partial<RelayAdmissionLimits> = {}): RelayGuard {
  const guard = new RelayGuard({ limits: { ...DEFAULT_ADMISSION_LIMITS, perIpExempt: [], ...limits }, logger: quietLogger().logger })
  guard.attach(view)
  return guard
}

function quietLogger (): { logger: Logger, warnings: Array<{ msg: string, fields?: Fields }> } {
  const warnings: Array<{ msg: string, fields?: Fields }> = []
  const base = createLogger('test')
  const logger: Logger = { ...base, warn: (msg, fields) => { warnings.push({ msg, fields }) }, debug: () => {}, info: () => {}, error: () => {}, child: () => logger }
  return { logger, warnings }
}

describe('RelayGuard', () => {
  it('refuses a reservation from an IP that holds its limit, and lets that IP\'s holders refresh', () => {
    const view = new FakeHopView()
    const guard = guardOn(view, { maxReservationsPerIp: 2 })
    for (const p of ['a', 'b']) {
      view.connect(p, `/ip4/198.51.100.7/tcp/${p === 'a' ? 1 : 2}`)
      assert.equal(guard.denyReservation(p), false)
      view.reserve(p, `/ip4/198.51.100.7/tcp/${p === 'a' ? 1 : 2}`)
    }
    view.connect('c', '/ip4/198.51.100.7/tcp/3')
    assert.equal(guard.denyReservation('c'), true)
    assert.equal(guard.denyReservation('a'), false, 'a refresh of a held reservation')
    view.connect('d', '/ip4/198.51.100.8/tcp/1')
    assert.equal(guard.denyReservation('d'), false)
    assert.equal(guard.refusalCounts()['reservations-per-ip'], 1)
  })

  it('counts reservations admitted but not yet stored, so concurrent requests from one IP cannot all pass', () => {
    const view = new FakeHopView()
    const guard = guardOn(view, { maxReservationsPerIp: 1 })
    view.connect('a', '/ip4/198.51.100.7/tcp/1')
    view.connect('b', '/ip4/198.51.100.7/tcp/2')
    assert.equal(guard.denyReservation('a'), false)
    assert.equal(guard.denyReservation('b'), true)
  })

  it('counts an IPv6 /64 as one IP and an IPv4-mapped address as its IPv4 address', () => {
    assert.equal(ipKeyOf('/ip6/2001:db8:1:2::5/tcp/1')?.key, '2001:db8:1:2::/64')
    assert.equal(ipKeyOf('/ip6/2001:db8:1:2:aaaa::9/udp/1/quic-v1')?.key, '2001:db8:1:2::/64')
    assert.equal(ipKeyOf('/ip6/::ffff:198.51.100.7/tcp/1')?.key, '198.51.100.7')
    assert.equal(ipKeyOf('/dns4/example.com/tcp/1'), undefined)
    const view = new FakeHopView()
    const guard = guardOn(view, { maxConnectionsPerIp: 1 })
    view.connect('a', '/ip6/2001:db8:1:2::5/tcp/1')
    assert.equal(guard.denyConnection('/ip6/2001:db8:1:2::6/tcp/9'), true)
    assert.equal(guard.denyConnection('/ip6/2001:db8:1:3::6/tcp/9'), false)
  })

  it('leaves exempt ranges out of the per-IP limits but not out of the per-peer ones', () => {
    const view = new FakeHopView()
    const guard = guardOn(view, { maxConnectionsPerIp: 1, maxConnectionsPerPeer: 1, perIpExempt: [parseCidr('10.0.0.0/8', 'test')] })
    view.connect('a', '/ip4/10.1.0.2/tcp/1')
    assert.equal(guard.denyConnection('/ip4/10.1.0.2/tcp/2'), false)
    assert.equal(guard.denyPeerConnection('a', '/ip4/10.1.0.2/tcp/2'), true)
    assert.equal(guard.refusalCounts()['connections-per-peer'], 1)
  })

  it('refuses a circuit beyond either end\'s per-peer limit, counting the source\'s asking stream as not yet held', () => {
    const view = new FakeHopView()
    const guard = guardOn(view, { maxCircuitsPerPeer: 2 })
    const src = view.connect('src', '/ip4/198.51.100.1/tcp/1', 2) // one held circuit + the HOP stream asking
    view.connect('dst', '/ip4/198.51.100.2/tcp/1', 1)
    assert.equal(guard.denyCircuit('src', 'dst'), false)
    src.circuits = 3
    assert.equal(guard.denyCircuit('src', 'dst'), true)
    src.circuits = 1
    view.connect('dst', '/ip4/198.51.100.2/tcp/2', 1)
    assert.equal(guard.denyCircuit('src', 'dst'), true, 'the destination holds two circuits over two connections')
    assert.equal(guard.refusalCounts()['circuits-per-peer'], 2)
  })

  it('refuses a circuit beyond the per-IP limit summed over every peer at that IP', () => {
    const view = new FakeHopView()
    const guard = guardOn(view, { maxCircuitsPerIp: 3, maxCircuitsPerPeer: 10 })
    view.connect('src', '/ip4/198.51.100.1/tcp/1', 1)
    view.connect('x', '/ip4/198.51.100.2/tcp/1', 2)
    view.connect('dst', '/ip4/198.51.100.2/tcp/2', 0)
    assert.equal(guard.denyCircuit('src', 'dst'), false)
    view.connect('y', '/ip4/198.51.100.2/tcp/3', 1)
    assert.equal(guard.denyCircuit('src', 'dst'), true)
    assert.equal(guard.refusalCounts()['circuits-per-ip'], 1)
  })

  it('drops the reservation of a peer gone for the grace, and not that of a peer back within it', async () => {
    const view = new FakeHopView()
    const guard = guardOn(view, { reservationGraceMs: 30 })
    view.reserve('gone', '/ip4/198.51.100.1/tcp/1')
    view.reserve('back', '/ip4/198.51.100.2/tcp/1')
    guard.connectionClosed('gone', 0)
    guard.connectionClosed('back', 0)
    view.connect('back', '/ip4/198.51.100.2/tcp/2')
    await new Promise(resolve => setTimeout(resolve, 80))
    assert.deepEqual(view.dropped, ['gone'])
    assert.equal(view.hasReservation('back'), true)
    guard.detach()
  })

  it('starts no grace while the peer still has a connection', async () => {
    const view = new FakeHopView()
    const guard = guardOn(view, { reservationGraceMs: 10 })
    view.reserve('a', '/ip4/198.51.100.1/tcp/1')
    guard.connectionClosed('a', 1)
    await new Promise(resolve => setTimeout(resolve, 40))
    assert.deepEqual(view.dropped, [])
  })

  it('counts a closed connection and an ended reservation out of their IP at once', () => {
    const view = new FakeHopView()
    const guard = guardOn(view, { maxConnectionsPerIp: 1, maxReservationsPerIp: 1 })
    view.connect('a', '/ip4/198.51.100.7/tcp/1')
    view.reserve('a', '/ip4/198.51.100.7/tcp/1')
    assert.equal(guard.denyConnection('/ip4/198.51.100.7/tcp/2'), true)
    view.connect('b', '/ip4/198.51.100.7/tcp/3')
    assert.equal(guard.denyReservation('b'), true)
    view.dropReservation('a')
    assert.equal(guard.denyReservation('b'), false, 'a\'s reservation ended')
    view.disconnect('a')
    view.disconnect('b')
    assert.equal(guard.denyConnection('/ip4/198.51.100.7/tcp/4'), false, 'both connections closed')
  })

  it('counts what the relay held before the guard was attached', () => {
    const view = new FakeHopView()
    view.connect('a', '/ip4/198.51.100.7/tcp/1')
    view.reserve('a', '/ip4/198.51.100.7/tcp/1')
    view.connect('b', '/ip4/198.51.100.7/tcp/2')
    const guard = guardOn(view, { maxConnectionsPerIp: 2, maxReservationsPerIp: 1 })
    assert.equal(guard.denyConnection('/ip4/198.51.100.7/tcp/3'), true)
    assert.equal(guard.denyReservation('b'), true)
  })

  it('stops counting when detached and starts again from the view when attached', () => {
    const view = new FakeHopView()
    const guard = guardOn(view, { maxConnectionsPerIp: 1 })
    guard.detach()
    view.connect('a', '/ip4/198.51.100.7/tcp/1')
    assert.equal(guard.denyConnection('/ip4/198.51.100.7/tcp/2'), false, 'not attached')
    guard.attach(view)
    assert.equal(guard.denyConnection('/ip4/198.51.100.7/tcp/2'), true)
  })

  it('allows everything before the node is up', () => {
    const guard = new RelayGuard({ limits: { ...DEFAULT_ADMISSION_LIMITS, maxConnectionsPerIp: 1 } })
    assert.equal(guard.denyConnection('/ip4/198.51.100.1/tcp/1'), false)
    assert.equal(guard.denyReservation('a'), false)
  })
})

describe('RefusalLog', () => {
  it('writes one WARN line per cause per interval and counts the rest into the next one', () => {
    const { logger, warnings } = quietLogger()
    let now = 0
    const log = new RefusalLog({ logger, intervalMs: 1_000, now: () => now })
    const refusal = { code: 'reservations-per-ip' as const, what: 'reservation' as const, peer: '12D3KooWExample', address: '198.51.100.7', held: 32, limit: 32, flag: '--max-reservations-per-ip' }
    for (let i = 0; i < 5; i++) log.record(refusal)
    log.record({ ...refusal, code: 'connections-per-ip', what: 'connection', peer: undefined })
    now = 1_500
    log.record(refusal)
    assert.deepEqual(warnings.map(w => [w.fields?.cause, w.fields?.suppressed ?? 0]), [
      ['reservations-per-ip', 0], ['connections-per-ip', 0], ['reservations-per-ip', 4]
    ])
    assert.equal(warnings[0].fields?.peer, '12D3KooWExample')
    assert.equal(warnings[0].fields?.address, '198.51.100.7')
    assert.equal(log.counts()['reservations-per-ip'], 6)
  })
})
