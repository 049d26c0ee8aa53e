import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { stopAfterEach } from '../helpers/cleanup.ts'
import { captureJsonLogs } from '../helpers/logs.ts'
import { freePort, relayPeerId, reservedStatus, startTestDonor, startTestRelay, tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'
import type { DaemonHandle, RelayHandle } from '../../src/daemon/daemon.ts'

const dir = tempDir()
const { lines, records } = captureJsonLogs()
const track = stopAfterEach()

after(() => { dir.cleanup() })

describe('donor reservations on loopback', () => {
  it('two relay-only donors reserve on a relay and one reaches the other through the circuit', async () => {
    const relay: RelayHandle = track(await startTestRelay(join(dir.path, 'relay-a')))
    const bootstrap = relay.info.announceAddrs.filter(a => a.includes('/tcp/'))
    // --no-direct: this checks the relayed path (on loopback WebRTC would upgrade it)
    const a = track(await startTestDonor(join(dir.path, 'donor-a1'), bootstrap, ['/p2p-circuit'], { noDirect: true }))
    const b = track(await startTestDonor(join(dir.path, 'donor-b1'), bootstrap, ['/p2p-circuit'], { noDirect: true }))

    const statusA = await waitFor('donor A reservation', async () => await reservedStatus(a.client, relay.info.peerId))
    const statusB = await waitFor('donor B reservation', async () => await reservedStatus(b.client, relay.info.peerId))

    for (const [status, handle] of [[statusA, a], [statusB, b]] as const) {
      assert.equal(status.peerId, handle.peerId)
      assert.equal(status.reachability, 'private')
      const r = status.relays[0]
      assert.equal(r.peerId, relay.info.peerId)
      assert.equal(r.transport, 'tcp')
      assert.match(r.circuitAddr, new RegExp(`/p2p/${relay.info.peerId}/p2p-circuit/p2p/${handle.peerId}$`))
      assert.ok(!Number.isNaN(Date.parse(r.since)) && r.since.endsWith('Z'), `since is ISO 8601 UTC: ${r.since}`)
      // relay-only: every advertised address goes through the relay
      assert.ok(status.listenAddrs.length > 0)
      assert.ok(status.listenAddrs.every(addr => addr.includes('/p2p-circuit/')), status.listenAddrs.join(' '))
    }

    const pong = await a.client.call('ping', { target: b.peerId, count: 2 })
    assert.equal(pong.peerId, b.peerId)
    assert.equal(pong.probes.length, 2)
    for (const p of pong.probes) {
      assert.equal(p.ok, true, p.error)
      assert.equal(p.path, 'relay')
      assert.equal(p.relay, relay.info.peerId)
      assert.equal(typeof p.rttMs, 'number')
    }
    const statusAfter = await a.client.call('status', {})
    assert.ok(statusAfter.connections.some(c => c.peerId === b.peerId && !c.direct && c.transport === 'circuit'))

    // the bootstrap dial and the reservation were both recorded as attempts
    const dials = await a.client.call('dials', { limit: 100 })
    assert.ok(dials.attempts.some(d => d.purpose === 'bootstrap' && d.outcome === 'success' && d.transport === 'tcp'))
    assert.ok(dials.attempts.some(d => d.phase === 'reservation' && d.outcome === 'success' && d.peerId === relay.info.peerId))
  })

  it('a donor whose bootstrap relay is a dead port keeps retrying, logs each failure, and joins when the relay appears', async () => {
    const relayDir = join(dir.path, 'relay-late')
    const relayId = await relayPeerId(relayDir)
    const port = await freePort()
    const target = `/ip4/127.0.0.1/tcp/${port}/p2p/${relayId}`
    lines.length = 0
    const donor: DaemonHandle & { client: any } = track(await startTestDonor(join(dir.path, 'donor-dead'), [target]))

    const failures = (): Array<Record<string, unknown>> => records().filter(r => r.level === 'warn' && r.component === 'net.dial' && r.peer === relayId && r.purpose === 'bootstrap')
    await waitFor('three logged dial failures', () => failures().length >= 3 ? true : undefined)
    for (const r of failures()) {
      assert.equal(r.transport, 'tcp', JSON.stringify(r))
      assert.equal(r.phase, 'tcp-connect')
      assert.equal(r.code, 'ECONNREFUSED')
    }
    const status = await donor.client.call('status', {})
    assert.equal(status.relays.length, 0)
    assert.equal(status.bootstrap.length, 1)
    assert.ok(status.bootstrap[0].failures >= 3, JSON.stringify(status.bootstrap))
    assert.match(status.bootstrap[0].lastError ?? '', /ECONNREFUSED|refused/)
    const dials = await donor.client.call('dials', { limit: 100 })
    const failed = dials.attempts.filter((d: any) => d.outcome === 'failure' && d.target === target)
    assert.ok(failed.length >= 3)
    assert.ok(failed.every((d: any) => d.code === 'ECONNREFUSED' && d.phase === 'tcp-connect' && d.transport === 'tcp'))

    // the relay comes up on that port with the identity the address names
    const relay = track(await startTestRelay(relayDir, [`/ip4/127.0.0.1/tcp/${port}`]))
    assert.equal(relay.info.peerId, relayId)
    const joined = await waitFor('reservation after the relay appears', async () => await reservedStatus(donor.client, relayId))
    assert.equal(joined.relays[0].transport, 'tcp')
  })

  it('a reservation the store still holds from an earlier connection is made again on the new one, not trusted', async () => {
    const relay: RelayHandle = track(await startTestRelay(join(dir.path, 'relay-stale')))
    const bootstrap = relay.info.announceAddrs.filter(a => a.includes('/tcp/'))
    const d = track(await startTestDonor(join(dir.path, 'donor-stale'), bootstrap, ['/p2p-circuit'], { noDirect: true }))
    await waitFor('reservation', async () => await reservedStatus(d.client, relay.info.peerId))
    const { connections, reservations } = d.donor.mesh.components
    const conn = connections.bestDirect(relay.info.peerId)
    assert.ok(conn != null)
    // what the store looks like between a relay connection closing and js-libp2p processing
    // that close: a reservation recorded on a connection that is no longer ours
    const store = (reservations as any).reservationStore()
    const entry = store.reservations.get(conn.remotePeer)
    assert.equal(entry?.connection, conn.id, 'the store records the connection a reservation was made on')
    entry.connection = 'a-connection-that-closed'
    const result = await reservations.reserve(conn, { signal: AbortSignal.timeout(10_000) })
    assert.ok(result.circuitAddrs.length > 0)
    assert.equal(store.reservations.get(conn.remotePeer)?.connection, conn.id, 'reserved again on the open connection')
  })

  it('the donor reserves again by itself after its relay restarts', async () => {
    const relayDir = join(dir.path, 'relay-restart')
    const port = await freePort()
    const listen = [`/ip4/127.0.0.1/tcp/${port}`]
    const relay1 = await startTestRelay(relayDir, listen)
    const target = `/ip4/127.0.0.1/tcp/${port}/p2p/${relay1.info.peerId}`
    const donor = track(await startTestDonor(join(dir.path, 'donor-restart'), [target]))
    const first = await waitFor('first reservation', async () => await reservedStatus(donor.client, relay1.info.peerId))
    const firstSince = Date.parse(first.relays[0].since)

    lines.length = 0
    await relay1.stop()
    const lost = await waitFor('the donor notices the loss', async () => {
      const s = await donor.client.call('status', {})
      return s.relays.length === 0 ? s : undefined
    })
    assert.notEqual(lost.bootstrap[0].state, 'reserved')
    assert.ok(records().some(r => r.level === 'warn' && r.component === 'donor.reservation' && r.peer === relay1.info.peerId && r.transport === 'tcp'), 'the loss is a warning naming the relay and transport')

    const relay2 = track(await startTestRelay(relayDir, listen))
    assert.equal(relay2.info.peerId, relay1.info.peerId)
    const again = await waitFor('reservation after restart', async () => await reservedStatus(donor.client, relay2.info.peerId))
    assert.ok(Date.parse(again.relays[0].since) > firstSince, 'a new reservation, not the old one')
    assert.match(again.relays[0].circuitAddr, new RegExp(`/p2p-circuit/p2p/${donor.peerId}$`))
  })
})

describe('watchdog ping timeout', () => {
  it('is the configured one for a quick relay, and grows with a slow round trip, capped at 10 s', async () => {
    const { watchdogPingTimeout } = await import('../../src/donor/reservation-manager.ts')
    assert.equal(watchdogPingTimeout(2_000), 2_000, 'no round trip measured yet')
    assert.equal(watchdogPingTimeout(2_000, 40), 2_000, 'a relay answering in 40 ms is still lost after 2 s')
    assert.equal(watchdogPingTimeout(2_000, 900), 3_600, 'a loaded machine: 4× its recent round trip')
    assert.equal(watchdogPingTimeout(2_000, 5_000), 10_000, 'never beyond 10 s')
  })
})
