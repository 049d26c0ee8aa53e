import { noise } from '@chainsafe/libp2p-noise'
import { quic } from '@chainsafe/libp2p-quic'
import { yamux } from '@chainsafe/libp2p-yamux'
import { autoNATv2 } from '@libp2p/autonat-v2'
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import type { webRTC as WebRtcFactory } from '@libp2p/webrtc'
import { readFileSync } from 'node:fs'
import { AGENT_VERSION, DEFAULT_RESERVATION_TIMEOUT_MS } from './constants.ts'
import { makeAnnounceFilter } from './address-scope.ts'
import { agentWithStun } from './stun/announce.ts'
import { proxiedTcp, proxiedWebSockets, type ProxyRouter } from './proxy-transports.ts'
import type { HttpRouteTable } from './ws-http-routes.ts'
import { hopGater, hopGuard, type HopAdmission } from './hop-gate.ts'
import { httpsPoll } from './https-poll/transport.ts'
import { DONOR_QUIC_LIVENESS, RELAY_QUIC_LIVENESS } from './pinger.ts'
import { withPollAddrs } from './https-poll/address.ts'
import type { CircuitTraffic } from './circuit-traffic.ts'
import type { PollServerInit } from './https-poll/server.ts'
import type { RelayLimits } from '../config/config.ts'
import type { Libp2pOptions } from 'libp2p'
import type { PrivateKey } from '@libp2p/interface'
import type { DNS } from '@multiformats/dns'
import type { Multiaddr } from '@multiformats/multiaddr'

export interface RelayServerInit {
  limits: RelayLimits
  tls?: { certFile: string, keyFile: string }
  /**
   * per-IP and per-peer limits on connections, reservations and circuits, and
   * freeing the reservation of a peer that left (hop-gate.ts) @default none
   */
  admission?: HopAdmission
  /** counts the circuits and the bytes they carry, for metrics (circuit-traffic.ts) @default not counted */
  traffic?: CircuitTraffic
}

/** libp2p factories of services, by name (`capacity: capacity({ … })`). */
export type ServiceFactories = Record<string, (components: any) => unknown>

/** What building the libp2p node needs; MeshNodeInit documents each field. */
export interface NodeOptionsInit {
  privateKey: PrivateKey
  listen: readonly Multiaddr[]
  announce?: readonly Multiaddr[]
  relayServer?: RelayServerInit
  services?: ServiceFactories
  stunPorts?: readonly number[]
  webrtc?: boolean
  dns?: DNS
}

/** libp2p's internal components, for the parts of src/net that need the transport and address managers. */
export interface Internals {
  components: Record<string, any>
}

/**
 * gossipsub's heartbeat on a relay, ms (gossipsub's default). Relays are the
 * mesh's hubs: the peers they graft on a topic are the peers they forward its
 * messages to, so a relay repairs its meshes at once.
 */
export const RELAY_GOSSIP_HEARTBEAT_MS = 1_000

/**
 * gossipsub's heartbeat on a daemon (donor and broker) and the doctor, ms.
 * The heartbeat carries no message: it repairs the mesh (graft, prune),
 * sends IHAVE gossip and expires caches. A daemon needs none of that in
 * time: its own announcements are flood-published to every subscribed peer
 * at once, messages are forwarded as they arrive, joining a topic grafts
 * the known subscribers at once, and a GRAFT from a relay (whose heartbeat
 * is 1 s) is answered when it arrives. What a slower beat delays is the
 * daemon grafting a peer that subscribed after it joined (the peer's own
 * graft or the relay's comes first) and its IHAVE gossip (10 s instead of
 * 1 s to recover a missed announcement; capacity is re-announced every 30 s
 * and pulled from relays' tables). Cost per beat: one walk of each topic's
 * peers (an idle donor's: its relays) and a peer-score read per peer; at
 * 1 s it was the largest share of an idle donor's JavaScript and garbage
 * (bench/idle-cpu.ts, bench/RESULTS.md).
 */
export const DAEMON_GOSSIP_HEARTBEAT_MS = 10_000

/**
 * The WebRTC transport's factory, loaded by the caller only for a node that
 * takes WebRTC (`loadWebRtc` in webrtc-runtime.ts): its transport and the
 * native data channel, which relays, the doctor and `--no-direct` donors need
 * not load.
 */
export type WebRtcTransport = typeof WebRtcFactory

/** The options of the one libp2p node this process runs: donor, relay and doctor alike. */
export function libp2pOptions (init: NodeOptionsInit, proxies: ProxyRouter, iceServers: () => Promise<Array<{ urls: string[] }>>, webRTC?: WebRtcTransport, httpRoutes?: HttpRouteTable): Libp2pOptions<any> {
  const relay = init.relayServer
  // a relay serves the HTTPS poll transport on its WebSocket listeners (https-poll/)
  const listen = relay != null ? withPollAddrs(init.listen) : init.listen
  const announce = relay != null ? withPollAddrs(init.announce ?? []) : init.announce
  return {
    privateKey: init.privateKey,
    ...(init.dns != null ? { dns: init.dns } : {}),
    nodeInfo: { userAgent: agentWithStun(AGENT_VERSION, init.stunPorts ?? []) },
    addresses: {
      listen: [...listen.map(ma => ma.toString()), ...(init.webrtc === true ? ['/webrtc'] : [])],
      announce: (announce ?? []).map(ma => ma.toString()),
      // no loopback or private addresses to the wide mesh (address-scope.ts)
      announceFilter: makeAnnounceFilter(announce, { keepPrivateAsLastResort: relay != null })
    },
    transports: transports(init, proxies, iceServers, webRTC, httpRoutes),
    connectionEncrypters: [noise()],
    // yamux's keep-alive (its default): one ping frame each way per connection every 30 s, no stream.
    // Not on a relay: its liveness check (src/relay/relay-liveness.ts) sends the same frame, spread
    // over time and closing the connection when unanswered; donors keep theirs (their NAT mappings)
    streamMuxers: [relay != null ? yamux({ enableKeepAlive: false }) : yamux()],
    connectionManager: relay != null
      ? { maxConnections: relayMaxConnections(relay.limits), inboundConnectionThreshold: relay.limits.inboundConnectionThresholdPerHost }
      : {},
    connectionMonitor: connectionMonitor(relay != null),
    ...(relay?.admission != null ? { connectionGater: hopGater(relay.admission) } : {}),
    // a relay-only donor listens on nothing directly; that is a valid node
    transportManager: { faultTolerance: 1 /* FaultTolerance.NO_FATAL */ },
    services: services(init)
  }
}

function transports (init: NodeOptionsInit, proxies: ProxyRouter, iceServers: () => Promise<Array<{ urls: string[] }>>, webRTC?: WebRtcTransport, httpRoutes?: HttpRouteTable): Libp2pOptions['transports'] {
  const tls = init.relayServer?.tls
  const wsInit = tls != null ? { https: { cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) } } : {}
  return [
    // the library transports, with their socket opening routed through a proxy when one applies
    proxiedTcp({}, proxies),
    proxiedWebSockets(wsInit, proxies, httpRoutes),
    // the last rung: libp2p over HTTPS requests, for proxies that pass no WebSocket upgrade
    httpsPoll(init.relayServer != null ? { server: pollServerLimits(init.relayServer.limits) } : {}, proxies, httpRoutes),
    // how fast a dead peer is noticed is the transport's job on QUIC (pinger.ts)
    quic(init.relayServer != null ? RELAY_QUIC_LIVENESS : DONOR_QUIC_LIVENESS),
    // never @libp2p/webrtc's default ICE servers (public STUN servers of a
    // third party): our relays answer STUN, and with none known ICE uses
    // host candidates only. Looked up per connection: the relays we are connected to change.
    ...(init.webrtc === true && webRTC != null ? [webRTC({ rtcConfiguration: async () => ({ iceServers: await iceServers() }) })] : []),
    circuitRelayTransport({
      reservationCompletionTimeout: DEFAULT_RESERVATION_TIMEOUT_MS,
      // the default of 1 queues reservations one relay at a time, and in
      // circuit-relay-v2 4.2.x a second queued reservation never started (the
      // first was granted, the second hung until cancelled): a donor reserves
      // on each of its relays at once (the reservation manager caps how many)
      reservationConcurrency: 8
    })
  ]
}

function services (init: NodeOptionsInit): ServiceFactories {
  const out: ServiceFactories = {
    identify: identify({ runOnLimitedConnection: true }),
    ping: ping({ runOnLimitedConnection: true }),
    // v2, not v1: v1's dial-back reuses the client's connection, reports a
    // false success and then closes it, dropping the donor's relay reservation
    autoNAT: autoNATv2(),
    // the heartbeat walks the topics' meshes: its cost per peer is per peer on a topic we subscribe
    // to, which for an idle donor is only its relays (relay announcements); capacity announcements
    // are listened to only while our broker needs executors (capacity.ts). Its interval is per role
    pubsub: gossipsub({
      runOnLimitedConnection: true,
      allowPublishToZeroTopicPeers: true,
      emitSelf: false,
      heartbeatInterval: init.relayServer != null ? RELAY_GOSSIP_HEARTBEAT_MS : DAEMON_GOSSIP_HEARTBEAT_MS
    }),
    internals: (components: Record<string, any>): Internals => ({ components }),
    // after the built-in ones, so the job protocols can use pubsub
    ...init.services
  }
  const relay = init.relayServer
  if (relay != null) {
    out.relay = circuitRelayServer({
      // the default is 32 per connection; a relay serving many circuits to one donor needs more
      maxInboundHopStreams: relay.limits.maxHopStreamsPerPeer,
      reservations: {
        maxReservations: relay.limits.maxReservations,
        reservationTtl: relay.limits.reservationTtlMs,
        // js-libp2p caps each relayed connection at 2 min / 128 KiB by default,
        // which cuts any job payload: size the limit for jobs instead
        applyDefaultLimit: true,
        defaultDataLimit: BigInt(relay.limits.dataLimitBytes),
        defaultDurationLimit: relay.limits.durationLimitMs
      }
    })
    // after `relay`: it reads the relay server's reservations
    if (relay.admission != null) out.hopGuard = hopGuard(relay.admission)
    if (relay.traffic != null) out.circuitTraffic = relay.traffic.service()
  }
  return out
}

/**
 * Every reservation holds a connection to the relay, and each circuit adds
 * the source's: a relay configured for more reservations than half its
 * connection limit would refuse connections before reservations.
 */
export function relayMaxConnections (limits: Pick<RelayLimits, 'maxConnections' | 'maxReservations'>): number {
  return Math.max(limits.maxConnections, 2 * limits.maxReservations)
}

/**
 * Donors: js-libp2p pings every open connection every 10 s on a new
 * stream (negotiation, a peer-store write, encryption on both sides),
 * a cost per connection per second paid while idle. A donor's relay is
 * watched by the reservation manager's own probes (a yamux ping frame on
 * the relay connection every 1.5 s, no stream), WebRTC
 * has ICE consent checks and yamux its keepalive, so every 60 s is
 * enough here (on a WebRTC connection each ping also opens a new data
 * channel: at a 10 s interval @libp2p/webrtc and libp2p's stream opening
 * were 27% and 22% of an idle donor's main thread in a 16-donor loopback
 * mesh, bench/idle-cpu.ts). And no abort on a failed ping: in libp2p 3.3 the
 * monitor's `conn.abort()` runs inside a promise `.catch` and throws
 * (yamux sendGoAway: StreamStateError) when the connection is already
 * closing — an unhandled rejection (logged, not fatal: cli/lifecycle.ts)
 * for nothing. A dead connection to a peer shows when the broker's
 * stream on it fails, and it falls back to the relayed path.
 * Relays run no connection monitor: it pings every connection in the same
 * tick on a new stream, a burst of 1,000 streams every interval at a relay
 * serving 1,000 donors, which stalled it until every ping timed out at
 * once and it dropped all its clients together (bench/memory.ts,
 * bench/relay-scale.ts). The relay role checks its clients itself with
 * muxer ping frames spread over the interval (src/relay/relay-liveness.ts).
 */
/** The relay's HTTPS poll session limits, from `--max-poll-sessions` and `--max-poll-sessions-per-ip`. */
function pollServerLimits (limits: Pick<RelayLimits, 'maxPollSessions' | 'maxPollSessionsPerIp'>): PollServerInit {
  return { maxSessions: limits.maxPollSessions, maxSessionsPerIp: limits.maxPollSessionsPerIp }
}

function connectionMonitor (isRelay: boolean): Libp2pOptions['connectionMonitor'] {
  return isRelay ? { enabled: false } : { pingInterval: 60_000, abortConnectionOnPingFailure: false }
}
