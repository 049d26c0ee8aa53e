import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { delay, raceSignal } from '../core/async.ts'
import { ReservationFailedError } from '../core/errors.ts'
import { describeDialError } from './dial-error.ts'
import { circuitAddress, relayPeerOf, transportOf, uplinkTransport } from './transport-of.ts'
import { isPollAddr } from './https-poll/address.ts'
import type { NodeAddresses, ReservationResult, Reservations } from './components.ts'
import type { NodeCore } from './node-core.ts'
import type { DialTelemetry } from './telemetry.ts'
import type { AbortOptions, Connection, PeerId } from '@libp2p/interface'

/**
 * The slice of circuit-relay-v2's private reservation store we rely on;
 * checked at run time. This file is the only one that touches it.
 */
interface ReservationStoreLike {
  addRelay: (peerId: PeerId, type: 'configured' | 'discovered') => Promise<unknown>
  hasReservation: (peerId: PeerId) => boolean
  relayFilter?: unknown
  /** internal in @libp2p/circuit-relay-v2 5.x: each reservation records the id of the connection it was made on */
  reservations?: ReservationMapLike
  isStarted?: () => boolean
}

interface ReservationEntryLike { connection?: string, timeout?: ReturnType<typeof setTimeout> }
interface ReservationMapLike {
  get: (peerId: PeerId) => ReservationEntryLike | undefined
  set: (peerId: PeerId, entry: ReservationEntryLike) => unknown
}

/**
 * The store arms a refresh timer (the reservation's lifetime less five
 * minutes: about an hour) when a reservation completes, and clears them all
 * when it stops. A reservation in flight when the node stops completes after
 * that and arms a timer nothing clears, which holds the process open for the
 * hour (a daemon's stop, and a test file that had finished). A reservation
 * recorded while the store is stopped gets its timer cleared at once; the
 * store's own `set` still runs, so a restarted store behaves as before.
 * Exported for its unit test.
 */
export function disarmRefreshAfterStop (store: Pick<ReservationStoreLike, 'reservations' | 'isStarted'>): void {
  const map = store.reservations
  if (map == null || typeof map.set !== 'function' || typeof store.isStarted !== 'function') return
  const set = map.set.bind(map)
  const isStarted = store.isStarted.bind(store)
  map.set = (peerId, entry) => {
    if (!isStarted() && entry?.timeout != null) clearTimeout(entry.timeout)
    return set(peerId, entry)
  }
}

/** libp2p events after which our advertised circuit addresses may differ (see `CircuitReservations.circuitAddrs`). */
const ADDRESS_EVENTS = ['transport:listening', 'transport:close', 'self:peer:update'] as const

/** How often, and how many times, we look for the circuit address a granted reservation gives us. */
const CIRCUIT_ADDR_POLL_MS = 20
const CIRCUIT_ADDR_POLLS = 50

/**
 * Reservations on relays, made explicitly rather than left to libp2p's
 * auto-reservation: a failure there only reaches a debug log, and a
 * restarted static relay is never re-reserved (js-libp2p issue 3601).
 */
export class CircuitReservations implements Reservations {
  private readonly core: NodeCore
  private readonly addresses: NodeAddresses
  private readonly telemetry: DialTelemetry
  private readonly relaysListened = new Set<string>()
  /** the RESERVE request in flight per relay (see `afterReserveInFlight`) */
  private readonly requests = new Map<string, Promise<void>>()
  /**
   * Our circuit addresses (through every relay) as libp2p advertises them,
   * computed on the first read after a change. Why cached: reading them
   * through libp2p's address manager (every listener's addresses, a socket
   * name each, netmask checks, base58) was a fifth of an idle donor's CPU,
   * read by the watchdog and the coverage check of every relay. Dropped on
   * every event that can change them: a listener's addresses changed
   * (`transport:listening`: the circuit listener fires it when the store
   * records or removes a reservation), a listener closed, or the address
   * manager's view of our addresses changed (`self:peer:update`).
   */
  private circuitAddrs?: string[]
  private readonly changeListeners = new Set<() => void>()
  private readonly addressesChanged = (): void => {
    this.circuitAddrs = undefined
    for (const listener of this.changeListeners) listener()
  }

  constructor (core: NodeCore, addresses: NodeAddresses, telemetry: DialTelemetry) {
    this.core = core
    this.addresses = addresses
    this.telemetry = telemetry
    this.disableRelayBlacklist()
    const store = this.reservationStore()
    if (store != null) disarmRefreshAfterStop(store)
    for (const type of ADDRESS_EVENTS) core.libp2p.addEventListener(type, this.addressesChanged)
  }

  /**
   * Calls `listener` whenever our circuit addresses may have changed (a
   * reservation recorded or removed, a listener closed); returns the
   * unsubscribe function. Lets a watcher re-check on the change instead of
   * polling.
   */
  onChange (listener: () => void): () => void {
    this.changeListeners.add(listener)
    return () => { this.changeListeners.delete(listener) }
  }

  /**
   * Asks the relay on `conn` for a reservation (circuit relay v2 RESERVE) and
   * waits until its circuit address is ours. Recorded as a `reservation` attempt.
   */
  async reserve (conn: Connection, options: AbortOptions = {}): Promise<ReservationResult> {
    const relayId = conn.remotePeer.toString()
    const target = circuitAddress(conn.remoteAddr, relayId)
    const transport = uplinkTransport(conn.remoteAddr)
    const started = Date.now()
    const record = (outcome: 'success' | 'failure', cause: string, code: string): void => {
      this.telemetry.record({
        ts: new Date(started).toISOString(),
        target,
        peerId: relayId,
        transport,
        phase: 'reservation',
        outcome,
        cause,
        code,
        duration_ms: Date.now() - started,
        purpose: 'reservation'
      })
    }
    try {
      options.signal?.throwIfAborted()
      await this.afterReserveInFlight(relayId, options)
      await this.serialized(relayId, this.request(conn, target, options))
      const circuitAddrs = await this.waitForCircuitAddrs(relayId, conn, options)
      record('success', `reserved: ${circuitAddrs[0]}`, 'OK')
      return { relay: relayId, circuitAddrs, grantedAt: new Date() }
    } catch (err) {
      const d = describeDialError(err, { phase: 'reservation', transport, elapsedMs: Date.now() - started, cancelled: options.signal?.aborted === true })
      record('failure', d.cause, d.code)
      throw new ReservationFailedError(`reservation on relay ${relayId} failed: ${d.cause}`, { cause: err })
    }
  }

  /**
   * One RESERVE per relay at a time: two at once both reach the store, and
   * the second to finish replaces the first's entry without clearing its
   * refresh timer (an hour that holds the process open after a stop). The
   * second waits for the first, then finds the reservation held on its
   * connection and asks for nothing.
   */
  private async afterReserveInFlight (relayId: string, options: AbortOptions): Promise<void> {
    const inFlight = this.requests.get(relayId)
    if (inFlight != null) await raceSignal(inFlight, options.signal)
  }

  private async serialized (relayId: string, request: Promise<void>): Promise<void> {
    // the waiting caller learns the outcome from the store, not from this promise
    const settled = request.then(() => {}, () => {})
    this.requests.set(relayId, settled)
    try {
      await request
    } finally {
      if (this.requests.get(relayId) === settled) this.requests.delete(relayId)
    }
  }

  /** The RESERVE request: through the store when a circuit listener for this relay exists, else by listening on the relay. */
  private async request (conn: Connection, target: string, options: AbortOptions): Promise<void> {
    const relay = conn.remotePeer
    const relayId = relay.toString()
    const store = this.reservationStore()
    if (!this.relaysListened.has(relayId) || store == null) {
      // the circuit transport listens only on addresses its matcher knows (TCP, WebSocket, QUIC…);
      // over the HTTPS poll transport, name the relay alone: the listener reuses this connection
      const listenOn = isPollAddr(conn.remoteAddr) ? `/p2p/${relayId}/p2p-circuit` : target
      await raceSignal(this.core.internals.transportManager.listen([multiaddr(listenOn)]), options.signal)
      this.relaysListened.add(relayId)
      return
    }
    // a listener for this relay exists from an earlier reservation; it
    // re-applies the addresses when the store announces the new reservation.
    // A reservation the store still holds from a connection that has closed is not
    // one: the store removes it (and withdraws its circuit address) when it processes
    // that close, which under load can come after this point — and a reservation
    // "held" that way ended in "granted but advertised no address" thousands of times
    // in bench/scale.ts. Reserve again on this connection (the store replaces it).
    const heldOn = recordedOn(store, relay)
    if (!store.hasReservation(relay) || (heldOn != null && heldOn !== conn.id)) {
      await raceSignal(store.addRelay(relay, 'configured'), options.signal)
    }
  }

  private async waitForCircuitAddrs (relayId: string, conn: Connection, options: AbortOptions): Promise<string[]> {
    // the listener publishes its addresses in a microtask; bounded wait
    for (let i = 0; i < CIRCUIT_ADDR_POLLS; i++) {
      // held, not only advertised: a reservation recorded on a connection that has closed is none (see hasReservation)
      if (this.hasReservation(relayId)) return this.circuitAddrsVia(relayId)
      options.signal?.throwIfAborted()
      // the circuit listener drops a relay's addresses when the connection to it closes:
      // say that, not "no address" (seen when a CPU-starved relay dropped fresh connections)
      if (conn.status !== 'open') break
      await delay(CIRCUIT_ADDR_POLL_MS, options)
    }
    if (conn.status !== 'open') {
      throw new ReservationFailedError(`relay ${relayId} granted a reservation, but the connection to it closed (${conn.status}) before its circuit address was ours`)
    }
    throw new ReservationFailedError(`relay ${relayId} granted a reservation but advertised no address for it`)
  }

  /** Our circuit addresses through one relay (not the `…/p2p-circuit/webrtc` ones built on them). */
  circuitAddrsVia (relayId: string): string[] {
    this.circuitAddrs ??= this.addresses.advertisedAddrs().filter(a => transportOf(a) === 'circuit')
    return this.circuitAddrs.filter(a => relayPeerOf(a) === relayId)
  }

  /**
   * Whether the relay holds a reservation for us: the store has one, on a
   * connection still open, and we advertise its circuit address. Why the
   * connection: the store removes a reservation when the connection it was
   * made on closes, but a RESERVE answered as that connection closes (the
   * store waits for the stream's close after reading the answer, and the
   * connection's close event passes in that wait) is recorded afterwards, on
   * the closed connection, and nothing removes it; its circuit address is
   * advertised again. Taken at its word, it said "reserved" on every later
   * connection to the relay while the relay held nothing for us.
   */
  hasReservation (relayId: string): boolean {
    const store = this.reservationStore()
    if (store != null) {
      const relay = peerIdFromString(relayId)
      if (!store.hasReservation(relay)) return false
      const heldOn = recordedOn(store, relay)
      if (heldOn != null && !this.core.libp2p.getConnections(relay).some(c => c.id === heldOn && c.status === 'open')) return false
    }
    return this.circuitAddrsVia(relayId).length > 0
  }

  /**
   * The circuit relay transport remembers a relay whose dial failed and
   * refuses it for ever after ("The relay was previously invalid"), while the
   * donor must keep retrying its bootstrap relays for ever. Our own reservation
   * manager does the backoff, so we switch that memory off.
   */
  private disableRelayBlacklist (): void {
    const store = this.reservationStore()
    if (store != null) {
      store.relayFilter = { has: () => false, add: () => {}, remove: () => {} }
    }
  }

  private reservationStore (): ReservationStoreLike | undefined {
    const transports = this.core.internals.transportManager.getTransports() as Array<Record<string | symbol, any>>
    const circuit = transports.find(t => t[Symbol.toStringTag] === '@libp2p/circuit-relay-v2-transport')
    const store = circuit?.reservationStore
    if (store == null || typeof store.addRelay !== 'function' || typeof store.hasReservation !== 'function') {
      return undefined
    }
    return store as ReservationStoreLike
  }
}

/** The id of the connection the store recorded the relay's reservation on (circuit-relay-v2 5.x), if it says. */
function recordedOn (store: ReservationStoreLike, relay: PeerId): string | undefined {
  return store.reservations?.get(relay)?.connection
}
