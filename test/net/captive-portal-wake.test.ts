/**
 * The reservation manager's side of captive portals: it asks for a probe
 * when a round fails with no reservation held (`onUnreachable`), and when
 * the portal lets the device out (`networkChanged`) it dials at once instead
 * of waiting out its back-off.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { multiaddr } from '@multiformats/multiaddr'
import { ReservationManager, type RelayDialler, type ReservationManagerComponents } from '../../src/donor/reservation-manager.ts'
import { MeshResolver } from '../../src/net/dns-resolver.ts'
import { DialTelemetry } from '../../src/net/telemetry.ts'
import { recordingLogger } from '../helpers/recording-logger.ts'
import { waitFor } from '../helpers/wait.ts'
import type { Connections, MeshEvents, Pinger, ProxyRoutes, Reservations, PeerDialler } from '../../src/net/components.ts'

const RELAY = '12D3KooWFHoexRyGtSjZ4w9efbFsD5R1bDvjAg5WcKkMe38NtXpC'
const ADDR = `/ip4/198.51.100.10/tcp/80/ws/p2p/${RELAY}`

const unused = (what: string) => (): never => { throw new Error(`${what} is not used by this test`) }

/** A node with no connection and no reservation: every relay dial goes through `relayDialler`. */
function offlineNode (): ReservationManagerComponents {
  const connections: Connections = {
    open: () => [],
    isConnected: () => false,
    bestDirect: () => undefined,
    relayed: () => undefined,
    best: () => undefined,
    list: () => []
  }
  const events: MeshEvents = { on: () => {}, off: () => {} }
  const reservations: Reservations = { reserve: unused('reserve'), hasReservation: () => false, circuitAddrsVia: () => [], onChange: () => () => {} }
  const pinger: Pinger = { ping: unused('ping'), rtt: unused('rtt'), linkRtt: unused('linkRtt') }
  const proxies: ProxyRoutes = { proxyFor: () => undefined, seenChain: () => undefined, status: () => [] }
  const dialler: PeerDialler = { reach: unused('reach'), dial: unused('dial'), dialTransport: unused('dialTransport'), dialAll: unused('dialAll') }
  return { connections, events, reservations, pinger, proxies, dialler, telemetry: new DialTelemetry({ logger: recordingLogger() }) }
}

describe('the reservation manager behind a captive portal', () => {
  it('asks for a probe after a failed round, and dials at once when the network changed instead of after its back-off', async () => {
    let dials = 0
    let unreachable = 0
    const relayDialler: RelayDialler = {
      dial: async () => {
        dials++
        throw new Error('the WebSocket upgrade was answered with a 302 (a sign-in page)')
      }
    }
    const manager = new ReservationManager(offlineNode(), {
      bootstrap: [multiaddr(ADDR)],
      relayDialler,
      resolver: new MeshResolver({ doh: [], logger: recordingLogger() }),
      // a back-off of a minute: only networkChanged can bring the next dial within the test's bound
      initialBackoffMs: 60_000,
      maxBackoffMs: 60_000,
      underTargetMaxBackoffMs: 60_000,
      downMaxBackoffMs: 60_000,
      onUnreachable: () => { unreachable++ },
      logger: recordingLogger()
    })
    manager.start()
    try {
      await waitFor('the first round to fail', () => manager.bootstrapStatus()[0].state === 'backing-off' ? true : undefined, 5_000)
      assert.equal(dials, 1)
      assert.equal(unreachable, 1, 'a failed round with no reservation held asks whether a portal is in the way')
      assert.equal(manager.bootstrapStatus()[0].failures, 1)
      const t0 = Date.now()
      manager.networkChanged()
      await waitFor('a dial right after the network changed', () => dials >= 2 ? true : undefined, 5_000)
      assert.ok(Date.now() - t0 < 5_000)
      await waitFor('the second round to fail', () => manager.bootstrapStatus()[0].state === 'backing-off' ? true : undefined, 5_000)
      assert.equal(manager.bootstrapStatus()[0].failures, 1, 'the back-off started afresh')
      assert.equal(unreachable, 2)
    } finally {
      await manager.stop()
    }
  })
})
