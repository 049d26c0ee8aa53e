import type { IncomingMessage, ServerResponse } from 'node:http'
/**
 * The network layer's face: one narrow interface per concern, the way
 * js-libp2p hands `Components` to its services. Roles (donor, broker, relay,
 * doctor) import these as types and receive the objects from the composition
 * root; the libp2p node behind them stays inside src/net.
 */
import type { ConnectionStatus, DialAttempt, DialPurpose, PingResult, ProxyDiscoveryStatus, ProxyStatus, Reachability } from '../core/types.ts'
import type { DialTelemetry } from './telemetry.ts'
import type { StunServer } from './stun/probe.ts'
import type { ProxiedUse, ProxySpec } from './proxy-env.ts'
import type { TlsChain } from './tls-intercept.ts'
import type { AbortOptions, Connection, IdentifyResult, PeerId, PeerUpdate } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** This node's own addresses. */
export interface NodeAddresses {
  /** bound listen addresses, wildcards expanded, each with our PeerId */
  listenAddrs: () => string[]
  /** addresses other peers are told about */
  advertisedAddrs: () => string[]
  /** the addresses a transport is listening on now, announced ones aside: empty when every listen failed */
  boundAddrs: () => string[]
  /**
   * advertise the bound addresses at once instead of waiting for AutoNAT (a
   * relay with no `--announce`: one that advertises nothing cannot hand out
   * usable reservations)
   */
  confirmListenAddrs: () => void
}

/** The open connections, and the one notion of which connection to a peer is best. */
export interface Connections {
  /** open connections, to one peer or to all */
  open: (peerId?: string) => Connection[]
  isConnected: (peerId: string) => boolean
  /**
   * the best open direct (not relayed) connection to a peer: TCP/QUIC before
   * WebRTC, which carries bulk data worse
   */
  bestDirect: (peerId: string) => Connection | undefined
  /** an open relayed connection to a peer, not through one of `avoidRelays` */
  relayed: (peerId: string, avoidRelays?: ReadonlySet<string>) => Connection | undefined
  /** the best open connection of any kind: {@link bestDirect}, else {@link relayed} */
  best: (peerId: string) => Connection | undefined
  /** what `status` shows */
  list: () => ConnectionStatus[]
}

/** The events roles react to, typed; libp2p's own event names and details. */
export interface MeshEventMap {
  'connection:open': CustomEvent<Connection>
  'connection:close': CustomEvent<Connection>
  'peer:connect': CustomEvent<PeerId>
  'peer:disconnect': CustomEvent<PeerId>
  'peer:update': CustomEvent<PeerUpdate>
  'peer:identify': CustomEvent<IdentifyResult>
  /** this node's own record changed: its addresses (a reservation made or lost, a confirmed address) */
  'self:peer:update': CustomEvent<PeerUpdate>
}

export interface MeshEvents {
  on: <K extends keyof MeshEventMap>(type: K, listener: (evt: MeshEventMap[K]) => void) => void
  off: <K extends keyof MeshEventMap>(type: K, listener: (evt: MeshEventMap[K]) => void) => void
}

/** What the peer store knows about other peers. */
export interface PeerAddresses {
  /** the peer's known addresses (identify, earlier dials); empty when the peer is unknown */
  addressesOf: (peerId: string, options?: AbortOptions) => Promise<string[]>
  /** the agent version the peer told us in identify, if any */
  agentOf: (peerId: string, options?: AbortOptions) => Promise<string | undefined>
}

export interface TransportDialOptions extends AbortOptions {
  purpose: DialPurpose
  /** libp2p progress events of this one attempt */
  onProgress?: (evt: { type: string }) => void
  /** the telemetry record of this attempt, when it is written */
  onRecord?: (attempt: DialAttempt) => void
}

export interface AddressDialOptions extends AbortOptions {
  purpose: DialPurpose
  /** @default the node's dial attempt timeout (5 s) */
  timeoutMs?: number
}

export interface ReachOptions extends AbortOptions {
  purpose: DialPurpose
  /** addresses the caller knows beyond the peer store (an announcement, a status entry) */
  addrs?: readonly string[]
  /**
   * relays we hold a connection to: the peer is tried through each of them as
   * well. A function is asked only when a dial is planned (not when an open
   * connection answers), so a caller need not gather them for every reach
   */
  relays?: readonly string[] | (() => readonly string[])
  /** use the peer-store addresses; `circuit` takes only its relayed ones @default 'all' */
  stored?: 'all' | 'circuit' | 'none'
  /** hand back an open connection instead of dialling @default true */
  reuse?: boolean
  /** dial the direct addresses before settling for an open relayed connection @default false */
  preferDirect?: boolean
  /** no circuit addresses, no relayed connection @default false */
  directOnly?: boolean
  /** relays whose circuit just broke: tried last */
  avoidRelays?: ReadonlySet<string>
  /** each direct attempt's timeout @default the node's dial attempt timeout (5 s) */
  directTimeoutMs?: number
  /**
   * skip direct addresses whose dial failed recently (see
   * DIRECT_FAILURE_MEMORY_MS) @default true
   */
  skipRecentFailures?: boolean
  /** at most this many direct addresses are tried @default all */
  maxDirect?: number
  /** told before each attempt */
  onAttempt?: (addr: string) => void
}

/**
 * One way to reach a peer: an existing connection first, then its known
 * addresses in the dial ladder's order, then circuits through our relays;
 * each attempt recorded once by the dial telemetry.
 */
export interface PeerDialler {
  /** reaches a PeerId or dials a multiaddr */
  reach: (peerOrAddr: string, options: ReachOptions) => Promise<Connection>
  /** one address through libp2p's dial queue (which also resolves `/dnsaddr`) */
  dial: (target: Multiaddr, options: AddressDialOptions) => Promise<Connection>
  /** one address outside the dial queue: always a new connection attempt (the dial ladder's rungs) */
  dialTransport: (target: Multiaddr, options: TransportDialOptions) => Promise<Connection>
  /** js-libp2p's own multi-address dial (the benchmark baseline) */
  dialAll: (targets: Multiaddr[], options?: AbortOptions) => Promise<Connection>
}

export interface ReservationResult {
  relay: string
  circuitAddrs: string[]
  grantedAt: Date
}

/** Circuit relay v2 reservations this node holds on relays. */
export interface Reservations {
  /** RESERVE on the relay at the other end of `conn`; resolves once the circuit address is ours */
  reserve: (conn: Connection, options?: AbortOptions) => Promise<ReservationResult>
  hasReservation: (relayId: string) => boolean
  /** our circuit addresses through one relay */
  circuitAddrsVia: (relayId: string) => string[]
  /** calls `listener` whenever what the other two answer may have changed; returns the unsubscribe function */
  onChange: (listener: () => void) => () => void
}

/** What AutoNAT v2 says about this node. */
export interface ReachabilityView {
  reachability: () => { value: Reachability, reason: string }
}

/** STUN responders of the relays we are connected to. */
export interface StunServers {
  stunServers: () => Promise<Array<StunServer & { peerId: string }>>
  /** the same as ICE servers for a WebRTC connection */
  iceServers: () => Promise<Array<{ urls: string[] }>>
}

/** libp2p ping. */
export interface Pinger {
  /** reaches a peer (PeerId or multiaddr) and measures `count` round trips, with the path each took */
  ping: (target: string, count: number, options?: AbortOptions & { relays?: readonly string[] }) => Promise<PingResult>
  /** one round trip to a peer we are connected to, ms */
  rtt: (peerId: string, options?: AbortOptions) => Promise<number>
  /**
   * one round trip on this very connection, ms: a ping frame of its stream
   * muxer (yamux) where it has one — no new stream, no protocol negotiation,
   * one small frame each way — else the ping protocol on a new stream (QUIC)
   */
  linkRtt: (conn: Connection, options?: AbortOptions) => Promise<number>
}

/** A gossipsub message as roles see it. */
export type GossipMessage = { type: 'signed', from: { toString: () => string }, topic: string, data: Uint8Array } | { type: 'unsigned', topic: string, data: Uint8Array }

/** gossipsub's answer to a message on a validated topic */
export type GossipVerdict = 'accept' | 'reject' | 'ignore'

/** The mesh gossip (gossipsub). */
export interface Gossip {
  subscribe: (topic: string) => void
  unsubscribe: (topic: string) => void
  publish: (topic: string, data: Uint8Array) => Promise<void>
  /** only messages the validator accepts are delivered and forwarded */
  validate: (topic: string, validator: (msg: GossipMessage) => GossipVerdict) => void
  onMessage: (listener: (msg: GossipMessage) => void) => () => void
  /** peers subscribed to or left topics */
  onSubscriptionChange: (listener: (subscriptions: Array<{ topic: string, subscribe: boolean }>) => void) => () => void
}

/** The proxies outbound dials go through (HTTPS_PROXY, ALL_PROXY, …). */
export interface ProxyRoutes {
  proxyFor: (use: ProxiedUse, host: string, port: number) => ProxySpec | undefined
  /** the certificate chain a proxied TLS dial to `addr` was served, when one was */
  seenChain: (addr: string) => TlsChain | undefined
  /** each proxy, credentials redacted, with whether a connection to one of `relayIds` goes through it now */
  status: (relayIds: readonly string[]) => ProxyStatus[]
  /** PAC / WPAD discovery (proxy-discovery.ts); undefined when the node does none */
  discovery?: () => ProxyDiscoveryStatus | undefined
}

/** A handler for one plain HTTP request on a WebSocket listener: returns true when it answered. */
export type HttpRoute = (req: IncomingMessage, res: ServerResponse) => boolean

/** Plain HTTP requests on this node's WebSocket listeners (ws-http-routes.ts); upgrades never reach them. */
export interface HttpRoutes {
  /** consulted in the order added; returns the function that removes the route */
  add: (route: HttpRoute) => () => void
}

/** The circuit relay v2 server of a relay node. */
export interface HopServer {
  /** peers holding a reservation on this relay now */
  reservationCount: () => number
  /** the remote address of the connection a peer made its reservation on; undefined when it holds none */
  reservationAddrOf: (peerId: string) => string | undefined
}

/** Starts and stops the node behind the components. */
export interface Startable {
  start: () => Promise<void>
  stop: () => Promise<void>
}

/** Every component of a mesh node; a role asks for the ones it needs with `Pick<MeshComponents, …>`. */
export interface MeshComponents {
  peerId: string
  addresses: NodeAddresses
  connections: Connections
  events: MeshEvents
  peers: PeerAddresses
  dialler: PeerDialler
  reservations: Reservations
  reachability: ReachabilityView
  stun: StunServers
  pinger: Pinger
  gossip: Gossip
  proxies: ProxyRoutes
  hop: HopServer
  httpRoutes: HttpRoutes
  telemetry: DialTelemetry
}

/** A node with its components, as the composition root hands it to a role that also starts and stops it. */
export interface MeshHost extends Startable {
  readonly peerId: string
  readonly components: MeshComponents
}
