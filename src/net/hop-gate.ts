import { RELAY_V2_HOP_CODEC, RELAY_V2_STOP_CODEC } from '@libp2p/circuit-relay-v2'
import { peerIdFromString } from '@libp2p/peer-id'
import { errorWithCode } from '../core/errors.ts'
import type { Connection, ConnectionGater, Libp2pEvents, PeerId, Startable, TypedEventTarget } from '@libp2p/interface'

/** circuit-relay-v2's server no longer offers what the relay's admission control relies on. */
export class RelayLibraryChangedError extends errorWithCode('RELAY_LIBRARY_CHANGED') {}

/** A direct (not relayed) connection of the relay, as the change feed reports it. */
export interface HopConnectionRef {
  id: string
  peer: string
  remoteAddr: string
}

/** A direct (not relayed) open connection of the relay, as admission control sees it. */
export interface HopConnection extends HopConnectionRef {
  /**
   * open circuit relay streams on it: HOP streams from the peer (circuits it
   * opened, and a reservation being answered) and STOP streams to it (circuits
   * to it); a circuit holds its two streams open for its whole life
   */
  circuits: number
}

/** What the relay's admission control reads of the node and the one thing it changes. */
export interface HopView {
  /** open direct connections; only `peer`'s when given */
  connections: (peer?: string) => HopConnection[]
  /** each peer holding a reservation, with the address it reserved from */
  reservations: () => Array<{ peer: string, remoteAddr: string }>
  hasReservation: (peer: string) => boolean
  /** ends `peer`'s reservation as its expiry would; false when it holds none; throws RelayLibraryChangedError */
  dropReservation: (peer: string) => boolean
  /**
   * Tells `listener` of every change from now on, so admission control can
   * keep counts instead of listing all connections or reservations per
   * decision; returns the function that stops telling it.
   */
  watch: (listener: HopViewListener) => () => void
}

/** The changes a {@link HopView} reports. */
export interface HopViewListener {
  /** a direct connection is open (after its upgrade) */
  connectionOpened: (conn: HopConnectionRef) => void
  connectionClosed: (conn: HopConnectionRef) => void
  /** a reservation was stored or refreshed; `remoteAddr` is where it was first made from */
  reservationStored: (peer: string, remoteAddr: string) => void
  /** a reservation ended (expired, dropped, or the relay stopped) */
  reservationRemoved: (peer: string) => void
}

/** The decisions of a relay's admission control; the node asks them through libp2p's connection gater. */
export interface HopAdmission {
  /** an inbound connection from `remoteAddr` before encryption: the peer is not known yet */
  denyConnection: (remoteAddr: string) => boolean
  /** the same connection once the peer is authenticated */
  denyPeerConnection: (peer: string, remoteAddr: string) => boolean
  denyReservation: (peer: string) => boolean
  denyCircuit: (source: string, destination: string) => boolean
  /** the node's services are up: the state to decide on */
  attach: (view: HopView) => void
  /** a direct connection of `peer` closed; `remaining`: its direct connections still open */
  connectionClosed: (peer: string, remaining: number) => void
  /** the node is stopping: no timer may outlive it */
  detach: () => void
}

/** libp2p's connection gater asking `admission`: connections, reservations and circuits of a relay. */
export function hopGater (admission: HopAdmission): ConnectionGater {
  return {
    denyInboundConnection: (maConn) => admission.denyConnection(maConn.remoteAddr.toString()),
    denyInboundEncryptedConnection: (peer, maConn) => admission.denyPeerConnection(peer.toString(), maConn.remoteAddr.toString()),
    denyInboundRelayReservation: (peer) => admission.denyReservation(peer.toString()),
    denyOutboundRelayedConnection: (source, destination) => admission.denyCircuit(source.toString(), destination.toString())
  }
}

/** The libp2p components the hop guard service reads. */
export interface HopGuardComponents {
  connectionManager: { getConnections: (peerId?: PeerId) => Connection[], getConnectionsMap?: () => ConnectionsByPeer }
  events: TypedEventTarget<Libp2pEvents>
  /** the circuit relay v2 server, registered as the `relay` service before this one */
  relay: unknown
}

/** The connection manager's per-peer lists (its PeerMap), as the hop guard reads and follows them. */
export interface ConnectionsByPeer {
  entries: () => Iterable<[PeerId, Connection[]]>
  set: (peer: PeerId, conns: Connection[]) => unknown
  delete: (peer: PeerId) => boolean
  clear: () => void
}

/** A libp2p service: tells `admission` about the node once it is up, and about each closed connection. */
export function hopGuard (admission: HopAdmission): (components: HopGuardComponents) => Startable {
  return (components) => new HopGuardService(components, admission)
}

class HopGuardService implements Startable {
  private readonly components: HopGuardComponents
  private readonly admission: HopAdmission
  private view?: NodeHopView
  private restoreGetConnections?: () => void
  private readonly onOpen = (evt: CustomEvent<Connection>): void => {
    if (!isRelayed(evt.detail)) this.view?.opened(evt.detail)
  }

  private readonly onClose = (evt: CustomEvent<Connection>): void => {
    const conn = evt.detail
    const view = this.view
    if (view == null || isRelayed(conn)) return
    view.closed(conn)
    const peer = conn.remotePeer.toString()
    const remaining = view.connections(peer).filter(c => c.id !== conn.id).length
    this.admission.connectionClosed(peer, remaining)
  }

  constructor (components: HopGuardComponents, admission: HopAdmission) {
    this.components = components
    this.admission = admission
  }

  start (): void {
    this.restoreGetConnections = linearGetConnections(this.components.connectionManager)
    this.view = new NodeHopView(this.components.connectionManager, relayStoreOf(this.components))
    this.components.events.addEventListener('connection:open', this.onOpen)
    this.components.events.addEventListener('connection:close', this.onClose)
    this.admission.attach(this.view)
  }

  stop (): void {
    this.components.events.removeEventListener('connection:open', this.onOpen)
    this.components.events.removeEventListener('connection:close', this.onClose)
    this.admission.detach()
    this.view?.close()
    this.view = undefined
    this.restoreGetConnections?.()
    this.restoreGetConnections = undefined
  }
}

function isRelayed (conn: Connection): boolean {
  return conn.remoteAddr.toString().includes('/p2p-circuit')
}

function circuitStreams (conn: Connection): number {
  let n = 0
  for (const s of conn.streams) {
    if ((s.protocol === RELAY_V2_HOP_CODEC && s.direction === 'inbound') || (s.protocol === RELAY_V2_STOP_CODEC && s.direction === 'outbound')) n++
  }
  return n
}

/**
 * Makes the node's getConnections() cheap for the relay's lifetime; returns
 * the undo. js-libp2p's connection manager lists every connection on each
 * inbound connection (its maxConnections check) and its pruner again on each
 * connection:open, through getConnections(), which concatenates one array per
 * peer: quadratic in the peers, ~100 ms of the relay's event loop per new
 * client at 10,000. Instead, a flat set of every connection is kept from the
 * writes to the manager's per-peer map (getConnectionsMap), O(1) per
 * connection opened or closed, and listed by one copy. Left alone when the
 * manager has no getConnectionsMap.
 */
function linearGetConnections (cm: HopGuardComponents['connectionManager']): (() => void) | undefined {
  const map = cm.getConnectionsMap?.()
  if (map == null) return undefined
  const all = new FlatConnections(map)
  const own = Object.prototype.hasOwnProperty.call(cm, 'getConnections')
  const original = cm.getConnections
  cm.getConnections = (peerId?: PeerId) => peerId != null ? original.call(cm, peerId) : all.list()
  return () => {
    all.close()
    if (own) cm.getConnections = original
    else delete (cm as Partial<HopGuardComponents['connectionManager']>).getConnections
  }
}

/** The manager's per-peer connection lists, flattened as they are written (set, delete, clear wrapped). */
class FlatConnections {
  private readonly all = new Set<Connection>()
  /** what each peer's entry held when last written: libp2p pushes onto the stored array before set() */
  private readonly byPeer = new Map<string, Connection[]>()
  private readonly map: ConnectionsByPeer
  private readonly original: Pick<ConnectionsByPeer, 'set' | 'delete' | 'clear'>

  constructor (map: ConnectionsByPeer) {
    this.map = map
    this.original = { set: map.set, delete: map.delete, clear: map.clear }
    for (const [peer, conns] of map.entries()) this.record(peer, conns)
    const { set, delete: del, clear } = this.original
    map.set = (peer, conns) => { set.call(map, peer, conns); this.record(peer, conns); return map }
    map.delete = (peer) => { this.forget(peer); return del.call(map, peer) }
    map.clear = () => { clear.call(map); this.all.clear(); this.byPeer.clear() }
  }

  list (): Connection[] {
    return [...this.all]
  }

  close (): void {
    for (const k of ['set', 'delete', 'clear'] as const) delete (this.map as Partial<Map<unknown, Connection[]>>)[k]
  }

  private record (peer: PeerId, conns: readonly Connection[]): void {
    this.forget(peer)
    for (const c of conns) this.all.add(c)
    this.byPeer.set(peer.toString(), [...conns])
  }

  private forget (peer: PeerId): void {
    const key = peer.toString()
    for (const c of this.byPeer.get(key) ?? []) this.all.delete(c)
    this.byPeer.delete(key)
  }
}

const refOf = (c: Connection): HopConnectionRef => ({ id: c.id, peer: c.remotePeer.toString(), remoteAddr: c.remoteAddr.toString() })

/**
 * The relay node's state for admission control, and its change feed: the
 * connection events come from the service, the reservation changes from the
 * store's map, whose set/delete/clear are wrapped while the view is open.
 */
class NodeHopView implements HopView {
  private readonly cm: HopGuardComponents['connectionManager']
  private readonly store: RelayStore
  private readonly listeners = new Set<HopViewListener>()
  private readonly unwrap: () => void

  constructor (cm: HopGuardComponents['connectionManager'], store: RelayStore) {
    this.cm = cm
    this.store = store
    this.unwrap = wrapReservations(store.reservations, {
      stored: (peer, r) => { for (const l of this.listeners) l.reservationStored(peer, r.addr.toString()) },
      removed: (peer) => { for (const l of this.listeners) l.reservationRemoved(peer) }
    })
  }

  connections (peer?: string): HopConnection[] {
    return (peer != null ? this.cm.getConnections(peerIdFromString(peer)) : this.cm.getConnections())
      .filter(c => c.status === 'open' && !isRelayed(c))
      .map(c => ({ ...refOf(c), circuits: circuitStreams(c) }))
  }

  reservations (): Array<{ peer: string, remoteAddr: string }> {
    return [...this.store.reservations.entries()].map(([peer, r]) => ({ peer: peer.toString(), remoteAddr: r.addr.toString() }))
  }

  hasReservation (peer: string): boolean {
    return this.store.reservations.get(peerIdFromString(peer)) != null
  }

  dropReservation (peer: string): boolean {
    const reservation = this.store.reservations.get(peerIdFromString(peer))
    if (reservation == null) return false
    if (typeof reservation.signal?.reset !== 'function') {
      throw new RelayLibraryChangedError('@libp2p/circuit-relay-v2: a reservation has no retimeable `signal` any more; the relay cannot free the reservations of peers that left (see src/net/hop-gate.ts)')
    }
    // fire the expiry now rather than deleting the entry: the store's own
    // expiry listener removes it, and its timer cannot later remove a new
    // reservation of the same peer (it deletes by peer). The grace is kept
    // by our timer, not by reset(grace): a retimeable signal's reset leaves
    // the previous timer's listener attached, so a later refresh could not undo it.
    reservation.signal.reset(0)
    return true
  }

  watch (listener: HopViewListener): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  opened (conn: Connection): void {
    const ref = refOf(conn)
    for (const l of this.listeners) l.connectionOpened(ref)
  }

  closed (conn: Connection): void {
    const ref = refOf(conn)
    for (const l of this.listeners) l.connectionClosed(ref)
  }

  close (): void {
    this.listeners.clear()
    this.unwrap()
  }
}

interface StoreChanges {
  stored: (peer: string, r: StoredReservation) => void
  removed: (peer: string) => void
}

/** Reports every write to the store's reservation map; returns the undo. */
function wrapReservations (map: RelayStore['reservations'], on: StoreChanges): () => void {
  const { set, delete: del, clear } = map
  map.set = function (peer, r) {
    const out = set.call(this, peer, r)
    on.stored(peer.toString(), r)
    return out
  }
  map.delete = function (peer) {
    const had = del.call(this, peer)
    if (had) on.removed(peer.toString())
    return had
  }
  map.clear = function () {
    const peers = [...this.entries()].map(([p]) => p.toString())
    clear.call(this)
    for (const p of peers) on.removed(p)
  }
  return () => {
    for (const k of ['set', 'delete', 'clear'] as const) delete (map as Partial<RelayStore['reservations']>)[k]
  }
}

/**
 * The part of circuit-relay-v2's server the relay relies on: its public
 * `reservations` map (CircuitRelayService) whose entries carry the retimeable
 * expiry `signal`. Checked when the node starts; this file is the only one
 * that relies on it.
 */
interface RelayStore {
  reservations: {
    get: (peer: PeerId) => StoredReservation | undefined
    entries: () => Iterable<[PeerId, StoredReservation]>
    set: (peer: PeerId, r: StoredReservation) => unknown
    delete: (peer: PeerId) => boolean
    clear: () => void
  }
}

interface StoredReservation {
  addr: { toString: () => string }
  signal?: { reset?: (ms: number) => void }
}

function relayStoreOf (components: HopGuardComponents): RelayStore {
  let relay: unknown
  try {
    relay = components.relay
  } catch (err) {
    throw new RelayLibraryChangedError('the relay admission guard needs the circuit relay v2 server registered as the "relay" service before it', { cause: err })
  }
  const reservations = (relay as { reservations?: Partial<RelayStore['reservations']> } | undefined)?.reservations
  if (!(['get', 'entries', 'set', 'delete', 'clear'] as const).every(k => typeof reservations?.[k] === 'function')) {
    throw new RelayLibraryChangedError('@libp2p/circuit-relay-v2: the server has no `reservations` map (get, entries, set, delete, clear) any more; the relay cannot enforce its reservation limits (see src/net/hop-gate.ts)')
  }
  return relay as RelayStore
}
