import { RELAY_V2_HOP_CODEC, RELAY_V2_STOP_CODEC } from '@libp2p/circuit-relay-v2'
import { peerIdFromString } from '@libp2p/peer-id'
import { errorWithCode } from '../core/errors.ts'
import type { Connection, ConnectionGater, Libp2pEvents, PeerId, Startable, TypedEventTarget } from '@libp2p/interface'

/** circuit-relay-v2's server no longer offers what the relay's admission control relies on. */
export class RelayLibraryChangedError extends errorWithCode('RELAY_LIBRARY_CHANGED') {}

/** A direct (not relayed) open connection of the relay, as admission control sees it. */
export interface HopConnection {
  id: string
  peer: string
  remoteAddr: string
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
  connectionManager: { getConnections: (peerId?: PeerId) => Connection[], getConnectionsMap?: () => Map<unknown, Connection[]> }
  events: TypedEventTarget<Libp2pEvents>
  /** the circuit relay v2 server, registered as the `relay` service before this one */
  relay: unknown
}

/** A libp2p service: tells `admission` about the node once it is up, and about each closed connection. */
export function hopGuard (admission: HopAdmission): (components: HopGuardComponents) => Startable {
  return (components) => new HopGuardService(components, admission)
}

class HopGuardService implements Startable {
  private readonly components: HopGuardComponents
  private readonly admission: HopAdmission
  private view?: HopView
  private readonly onClose = (evt: CustomEvent<Connection>): void => {
    const conn = evt.detail
    if (this.view == null || isRelayed(conn)) return
    const peer = conn.remotePeer.toString()
    const remaining = this.view.connections(peer).filter(c => c.id !== conn.id).length
    this.admission.connectionClosed(peer, remaining)
  }

  constructor (components: HopGuardComponents, admission: HopAdmission) {
    this.components = components
    this.admission = admission
  }

  start (): void {
    this.view = nodeHopView(this.components.connectionManager, relayStoreOf(this.components))
    this.components.events.addEventListener('connection:close', this.onClose)
    this.admission.attach(this.view)
  }

  stop (): void {
    this.components.events.removeEventListener('connection:close', this.onClose)
    this.admission.detach()
    this.view = undefined
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
 * Every connection. Not getConnections(): js-libp2p 3.x builds that list
 * with one concat per peer, quadratic in the peers (tens of ms per call at
 * 10,000 donors, paid on every inbound connection the per-IP limit checks).
 */
function allConnections (cm: HopGuardComponents['connectionManager']): Connection[] {
  const map = cm.getConnectionsMap?.()
  if (map == null) return cm.getConnections()
  const out: Connection[] = []
  for (const conns of map.values()) for (const c of conns) out.push(c)
  return out
}

function nodeHopView (connectionManager: HopGuardComponents['connectionManager'], store: RelayStore): HopView {
  return {
    connections: (peer) => (peer != null ? connectionManager.getConnections(peerIdFromString(peer)) : allConnections(connectionManager))
      .filter(c => c.status === 'open' && !isRelayed(c))
      .map(c => ({ id: c.id, peer: c.remotePeer.toString(), remoteAddr: c.remoteAddr.toString(), circuits: circuitStreams(c) })),
    reservations: () => [...store.reservations.entries()].map(([peer, r]) => ({ peer: peer.toString(), remoteAddr: r.addr.toString() })),
    hasReservation: (peer) => store.reservations.get(peerIdFromString(peer)) != null,
    dropReservation: (peer) => {
      const reservation = store.reservations.get(peerIdFromString(peer))
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
  if (typeof reservations?.get !== 'function' || typeof reservations.entries !== 'function') {
    throw new RelayLibraryChangedError('@libp2p/circuit-relay-v2: the server has no `reservations` map (get, entries) any more; the relay cannot enforce its reservation limits (see src/net/hop-gate.ts)')
  }
  return relay as RelayStore
}
