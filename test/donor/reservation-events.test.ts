/**
 * The reservation watchdog's local check runs on events, not on a timer: a
 * reservation withdrawn while the relay stays connected (the store removed
 * it; our circuit address went with it) is noticed as soon as
 * `Reservations.onChange` fires, long before the watchdog's safety-net
 * interval, and between events the watch does not poll the reservation.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { multiaddr } from '@multiformats/multiaddr'
import { ReservationManager, type RelayDialler, type ReservationManagerComponents } from '../../src/donor/reservation-manager.ts'
import { MeshResolver } from '../../src/net/dns-resolver.ts'
import { DialTelemetry } from '../../src/net/telemetry.ts'
import { recordingLogger } from '../helpers/recording-logger.ts'
import { waitFor } from '../helpers/wait.ts'
import type { Connections, MeshEvents, Pinger, ProxyRoutes, Reservations, PeerDialler, ReservationResult } from '../../src/net/components.ts'
import type { Connection } from '@libp2p/interface'

const RELAY = '12D3KooWFHoexRyGtSjZ4w9efbFsD5R1bDvjAg5WcKkMe38NtXpC'
/** QUIC: the transport watches liveness itself, so the watch sends no pings and only events or its safety net wake it */
const ADDR = `/ip4/198.51.100.10/udp/4001/quic-v1/p2p/${RELAY}`

const unused = (what: string) => (): never => { throw new Error(`${what} is not used by this test`) }

/** The slice of a libp2p Connection the manager reads. */
function fakeConnection (): Connection {
  const conn = { id: 'relay-conn-1', remoteAddr: multiaddr(ADDR), remotePeer: { toString: () => RELAY }, status: 'open' }
  return conn as unknown as Connection
}

/** Reservations whose store the test controls: `withdraw()` removes ours and fires onChange, as the circuit listener does. */
class ControlledReservations implements Reservations {
  held = false
  reserves = 0
  checks = 0
  private readonly listeners = new Set<() => void>()

  async reserve (): Promise<ReservationResult> {
    this.reserves++
    this.held = true
    this.changed()
    return { relay: RELAY, circuitAddrs: [`${ADDR}/p2p-circuit`], grantedAt: new Date() }
  }

  hasReservation (): boolean {
    this.checks++
    return this.held
  }

  circuitAddrsVia (): string[] { return this.held ? [`${ADDR}/p2p-circuit`] : [] }

  onChange (listener: () => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  withdraw (): void {
    this.held = false
    this.changed()
  }

  private changed (): void {
    for (const listener of this.listeners) listener()
  }
}

function connectedNode (reservations: Reservations, conn: Connection): ReservationManagerComponents {
  const connections: Connections = {
    open: () => [conn],
    isConnected: () => true,
    bestDirect: () => conn,
    relayed: () => undefined,
    best: () => conn,
    list: () => []
  }
  const events: MeshEvents = { on: () => {}, off: () => {} }
  const pinger: Pinger = { ping: unused('ping'), rtt: unused('rtt'), linkRtt: unused('linkRtt') }
  const proxies: ProxyRoutes = { proxyFor: () => undefined, seenChain: () => undefined, status: () => [] }
  const dialler: PeerDialler = { reach: unused('reach'), dial: unused('dial'), dialTransport: unused('dialTransport'), dialAll: unused('dialAll') }
  return { connections, events, reservations, pinger, proxies, dialler, telemetry: new DialTelemetry({ logger: recordingLogger() }) }
}

describe('the reservation watchdog on events', () => {
  it('notices a reservation withdrawn while connected at once, without polling between events, and reserves again', async () => {
    const reservations = new ControlledReservations()
    const conn = fakeConnection()
    const relayDialler: RelayDialler = { dial: unused('dial') }
    const logger = recordingLogger()
    const manager = new ReservationManager(connectedNode(reservations, conn), {
      bootstrap: [multiaddr(ADDR)],
      relayDialler,
      resolver: new MeshResolver({ doh: [], logger: recordingLogger() }),
      // a minute: only the event can bring the check within the test's bounds
      watchdogIntervalMs: 60_000,
      logger
    })
    manager.start()
    try {
      await waitFor('the first reservation', () => manager.bootstrapStatus()[0].state === 'reserved' ? true : undefined, 5_000)
      assert.equal(reservations.reserves, 1)

      // idle: nothing changes, so nothing is checked
      const checksBefore = reservations.checks
      await new Promise(resolve => setTimeout(resolve, 1_000))
      assert.ok(reservations.checks - checksBefore <= 1, `the watch checked ${reservations.checks - checksBefore} times in an idle second`)

      const t0 = Date.now()
      reservations.withdraw()
      await waitFor('the reservation made again', () => reservations.reserves >= 2 ? true : undefined, 5_000)
      assert.ok(Date.now() - t0 < 1_000, `noticed after ${Date.now() - t0} ms`)
      assert.ok(logger.lines.some(r => r.level === 'warn' && r.fields?.peer === RELAY), 'the loss is logged with the relay')
      await waitFor('reserved again', () => manager.bootstrapStatus()[0].state === 'reserved' ? true : undefined, 5_000)
    } finally {
      await manager.stop()
    }
  })
})
