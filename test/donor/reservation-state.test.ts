/**
 * One relay's reservation state machine (RelayEntry) and the `status` views
 * computed from it, without a network: the phases the loop moves through
 * and what `status` shows in each.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { multiaddr } from '@multiformats/multiaddr'
import { RelayEntry } from '../../src/donor/relay-entry.ts'
import type { RelayPath } from '../../src/core/types.ts'

/** the relay connection, as far as the entry is concerned: a handle it carries from phase to phase */
interface FakeConn { id: string }

const RELAY = '12D3KooWFHoexRyGtSjZ4w9efbFsD5R1bDvjAg5WcKkMe38NtXpC'
const ADDR = `/ip4/198.51.100.10/tcp/4001/p2p/${RELAY}`
const PATH: RelayPath = { transport: 'tcp', addr: ADDR, reason: 'first to connect', remembered: false, at: '2025-01-01T00:00:00.000Z' }

function entry (source: 'bootstrap' | 'gossip' = 'bootstrap'): RelayEntry<FakeConn> {
  return new RelayEntry<FakeConn>({ peerId: RELAY, addrs: [multiaddr(ADDR)], source, lastHeard: 0 })
}

describe('a relay reservation state machine', () => {
  it('goes connecting, connected, reserved, and status shows each with the path once connected', () => {
    const relay = entry()
    assert.deepEqual(relay.bootstrapView(), { addr: ADDR, peerId: RELAY, state: 'connecting', failures: 0 }, 'before the loop starts')
    relay.begin()
    relay.dialling()
    assert.equal(relay.bootstrapView().state, 'connecting')
    assert.equal(relay.coming, true)
    relay.connected({ id: 'c1' }, PATH)
    assert.equal(relay.bootstrapView().state, 'connected')
    assert.deepEqual(relay.bootstrapView().path, PATH)
    const grantedAt = new Date()
    relay.reserved({ id: 'c1' }, grantedAt)
    assert.equal(relay.bootstrapView().state, 'reserved')
    assert.equal(relay.grantedAt, grantedAt)
    assert.equal(relay.coming, false)
  })

  it('is on its first round from the start of its loop until it is reserved, and never again after a loss or a failed round', () => {
    const relay = entry()
    relay.begin()
    relay.dialling()
    assert.equal(relay.firstRound, true, 'dialling at start')
    relay.connected({ id: 'c1' }, PATH)
    assert.equal(relay.firstRound, true, 'connected, reserving')
    relay.reserved({ id: 'c1' }, new Date())
    assert.equal(relay.firstRound, false, 'reserved: held, not coming')
    relay.lost('the connection to the relay closed')
    assert.equal(relay.coming, true)
    assert.equal(relay.firstRound, false, 'redialling after a loss: it may be dead')
    const failing = entry()
    failing.begin()
    failing.backingOff('connection refused', Date.now() + 1_000)
    failing.retry()
    assert.equal(failing.coming, true)
    assert.equal(failing.firstRound, false, 'a round failed already')
  })

  it('counts failed rounds while backing off, says when the next starts, and forgets them once reserved', () => {
    const relay = entry()
    relay.begin()
    const until = Date.parse('2030-01-01T00:00:00.000Z')
    relay.backingOff('connection refused', until)
    relay.retry()
    relay.backingOff('connection refused again', until)
    const backingOff = relay.bootstrapView()
    assert.equal(backingOff.state, 'backing-off')
    assert.equal(backingOff.failures, 2)
    assert.equal(backingOff.lastError, 'connection refused again')
    assert.equal(backingOff.nextAttemptAt, '2030-01-01T00:00:00.000Z')
    relay.retry()
    assert.equal(relay.bootstrapView().nextAttemptAt, undefined, 'no next attempt time once the attempt runs')
    relay.connected({ id: 'c2' }, PATH)
    relay.reserved({ id: 'c2' }, new Date())
    const reserved = relay.bootstrapView()
    assert.equal(reserved.failures, 0)
    assert.equal(reserved.lastError, undefined)
  })

  it('after a loss, reconnects with the cause as the last error and no reservation time', () => {
    const relay = entry()
    relay.begin()
    relay.connected({ id: 'c1' }, PATH)
    relay.reserved({ id: 'c1' }, new Date())
    relay.lost('the connection to the relay closed')
    assert.equal(relay.phase.name, 'connecting')
    assert.equal(relay.grantedAt, undefined)
    assert.equal(relay.bootstrapView().lastError, 'the connection to the relay closed')
  })

  it('retires a learned relay that failed: cooling down until its retry time, then standby, and a new loop starts clean', () => {
    const relay = entry('gossip')
    relay.loop = Promise.resolve()
    relay.begin()
    assert.equal(relay.knownView(0).state, 'connecting')
    relay.retired('no answer', 10_000)
    relay.loop = undefined
    relay.parked()
    assert.equal(relay.phase.name, 'retired', 'a stop keeps the retry time')
    assert.deepEqual(relay.knownView(5_000), { peerId: RELAY, source: 'gossip', addrs: [ADDR], state: 'cooling-down', retryAt: new Date(10_000).toISOString(), lastError: 'no answer' })
    assert.equal(relay.idleAt(5_000), false)
    assert.equal(relay.knownView(10_000).state, 'standby')
    assert.equal(relay.idleAt(10_000), true)
    assert.equal(relay.learnedFailures, 1)
    relay.begin()
    assert.equal(relay.lastError, undefined)
    assert.equal(relay.phase.name, 'connecting')
  })

  it('shows the last finished TLS check and how the names were resolved', () => {
    const relay = entry()
    relay.resolution = [{ addr: ADDR, via: 'literal', resolved: [ADDR] }]
    relay.tlsVerdict = { intercepted: 'yes', interceptor: 'Corp CA', addr: ADDR, reason: 're-signed by Corp CA' }
    const view = relay.bootstrapView()
    assert.equal(view.resolvedVia, 'literal')
    assert.equal(view.tlsIntercepted, 'yes')
    assert.equal(view.tlsInterceptor, 'Corp CA')
    assert.equal(view.tlsCheck, 're-signed by Corp CA')
  })
})
