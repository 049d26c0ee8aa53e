import { noise } from '@chainsafe/libp2p-noise'
import { quic } from '@chainsafe/libp2p-quic'
import { yamux } from '@chainsafe/libp2p-yamux'
import { autoNATv2 } from '@libp2p/autonat-v2'
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { peerIdFromString } from '@libp2p/peer-id'
import { ping } from '@libp2p/ping'
import { webRTC } from '@libp2p/webrtc'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2p } from 'libp2p'
import { readFileSync } from 'node:fs'
import { PeerUnreachableError, ReservationFailedError } from '../core/errors.ts'
import { createLogger, type Logger } from '../log/logger.ts'
import { AGENT_VERSION, DEFAULT_DIAL_ATTEMPT_TIMEOUT_MS, DEFAULT_RESERVATION_TIMEOUT_MS, MESH_TOPIC } from './constants.ts'
import { describeDialError, initialPhase, phaseForProgress } from './dial-error.ts'
import { DialTelemetry } from './telemetry.ts'
import { DialRecorder } from './dial-recorder.ts'
import { NO_PROXY_ENVIRONMENT, type ProxyEnvironment } from './proxy-env.ts'
import { ProxyRouter, proxiedTcp, proxiedWebSockets } from './proxy-transports.ts'
import { relayPeerOf, transportOf, uplinkTransport, viaRelay } from './transport-of.ts'
import { applyPublicRanges, makeAnnounceFilter, publicRanges, scopeOf } from './address-scope.ts'
import type { Cidr } from '../config/cidr.ts'
import { agentWithStun, stunPortsFromAgent } from './stun/announce.ts'
import { acquireWebRtc, releaseWebRtc } from './webrtc-runtime.ts'
import type { StunServer } from './stun/probe.ts'
import type { ConnectionStatus, DialAttempt, DialPhase, DialPurpose, PingProbe, PingResult, ProxyStatus, Reachability } from '../core/types.ts'
import type { RelayLimits } from '../config/config.ts'
import type { AbortOptions, Connection, PeerId, PrivateKey } from '@libp2p/interface'
import type { DNS } from '@multiformats/dns'

export interface RelayServerInit {
  limits: RelayLimits
  tls?: { certFile: string, keyFile: string }
}

export interface MeshNodeInit {
  privateKey: PrivateKey
  /** direct listen addresses; a bare `/p2p-circuit` is handled by the donor's reservation manager, not here */
  listen: readonly Multiaddr[]
  /** addresses to advertise instead of the listen addresses */
  announce?: readonly Multiaddr[]
  /** present for the `relay` role */
  relayServer?: RelayServerInit
  telemetry?: DialTelemetry
  logger?: Logger
  /** @default 5000 */
  dialAttemptTimeoutMs?: number
  /**
   * proxies for outbound WebSocket and TCP dials, parsed from HTTPS_PROXY,
   * ALL_PROXY, NO_PROXY, … (proxy-env.ts) @default no proxy
   */
  proxy?: ProxyEnvironment
  /** more libp2p services (the job protocols), added after the built-in ones so they can use pubsub */
  services?: Record<string, (components: any) => unknown>
  /**
   * address ranges to treat as public (config "publicRanges"); process-wide,
   * because js-libp2p's notion of "private" is (address-scope.ts)
   */
  publicRanges?: readonly Cidr[]
  /** the relay's STUN responder ports, told to peers in the identify agent version (stun/announce.ts) */
  stunPorts?: readonly number[]
  /**
   * private-to-private WebRTC (donors): listen on `/webrtc` (one
   * `…/p2p-circuit/webrtc` address per reservation) and dial such addresses,
   * ICE using the STUN responders of the relays we are connected to
   * @default false
   */
  webrtc?: boolean
  /**
   * the resolver libp2p uses for the `/dnsaddr` addresses it dials by itself
   * (a MeshResolver: OS resolver, then DNS-over-HTTPS) @default libp2p's node:dns
   */
  dns?: DNS
}

export interface DialOptions extends AbortOptions {
  purpose: DialPurpose
  timeoutMs?: number
}

export interface TransportDialOptions extends AbortOptions {
  purpose: DialPurpose
  /** libp2p progress events of this one attempt */
  onProgress?: (evt: { type: string }) => void
  /** the telemetry record of this attempt, when it is written */
  onRecord?: (attempt: DialAttempt) => void
}

export interface ReservationResult {
  relay: string
  circuitAddrs: string[]
  grantedAt: Date
}

interface Internals {
  components: Record<string, any>
}

/** The slice of circuit-relay-v2's private reservation store we rely on; checked at run time. */
interface ReservationStoreLike {
  addRelay: (peerId: PeerId, type: 'configured' | 'discovered') => Promise<unknown>
  hasReservation: (peerId: PeerId) => boolean
  relayFilter?: unknown
  /** internal in @libp2p/circuit-relay-v2 5.x: each reservation records the id of the connection it was made on */
  reservations?: { get: (peerId: PeerId) => { connection?: string } | undefined }
}

/**
 * A libp2p node as the roles need it: dial with telemetry, reserve on a relay
 * with telemetry, ping, and report state. Roles never touch libp2p internals;
 * everything version-sensitive about js-libp2p v3 stays in this file.
 */
export class MeshNode {
  readonly libp2p: Libp2p<any>
  readonly telemetry: DialTelemetry
  private readonly log: Logger
  private readonly dialAttemptTimeoutMs: number
  private readonly relaysListened = new Set<string>()
  private readonly recorder: DialRecorder
  /** whether this node has the WebRTC transport (native threads to release after stop) */
  private webrtc = false
  /** which dials go through a proxy, and the tunnels open now */
  proxies: ProxyRouter = new ProxyRouter(NO_PROXY_ENVIRONMENT)

  private constructor (node: Libp2p<any>, telemetry: DialTelemetry, log: Logger, dialAttemptTimeoutMs: number) {
    this.libp2p = node
    this.telemetry = telemetry
    this.log = log
    this.dialAttemptTimeoutMs = dialAttemptTimeoutMs
    this.recorder = new DialRecorder(telemetry, log.child('dial'))
    this.recorder.install(this.components.transportManager)
  }

  static async create (init: MeshNodeInit): Promise<MeshNode> {
    const log = init.logger ?? createLogger('net')
    const telemetry = init.telemetry ?? new DialTelemetry({ logger: log.child('dial') })
    const relay = init.relayServer
    const wsInit = relay?.tls != null
      ? { https: { cert: readFileSync(relay.tls.certFile), key: readFileSync(relay.tls.keyFile) } }
      : {}

    const services: Record<string, any> = {
      identify: identify({ runOnLimitedConnection: true }),
      ping: ping({ runOnLimitedConnection: true }),
      // v2, not v1: v1's dial-back reuses the client's connection, reports a
      // false success and then closes it, dropping the donor's relay reservation
      // (design notes §3)
      autoNAT: autoNATv2(),
      pubsub: gossipsub({ runOnLimitedConnection: true, allowPublishToZeroTopicPeers: true, emitSelf: false }),
      internals: (components: Record<string, any>): Internals => ({ components }),
      ...init.services
    }
    if (relay != null) {
      services.relay = circuitRelayServer({
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
    }

    // before createLibp2p: the address manager classifies addresses as they are bound
    if (init.publicRanges != null && init.publicRanges.length > 0) applyPublicRanges(init.publicRanges, log)
    const proxies = new ProxyRouter(init.proxy ?? NO_PROXY_ENVIRONMENT, log.child('proxy'))
    if (proxies.enabled) log.info(`proxy: ${proxies.describe()}`)

    // ICE servers are looked up per WebRTC connection: the relays we are connected to change
    let iceServers = async (): Promise<Array<{ urls: string[] }>> => []
    const node = await createLibp2p({
      privateKey: init.privateKey,
      ...(init.dns != null ? { dns: init.dns } : {}),
      nodeInfo: { userAgent: agentWithStun(AGENT_VERSION, init.stunPorts ?? []) },
      addresses: {
        listen: [...init.listen.map(ma => ma.toString()), ...(init.webrtc === true ? ['/webrtc'] : [])],
        announce: (init.announce ?? []).map(ma => ma.toString()),
        // no loopback or private addresses to the wide mesh (address-scope.ts)
        announceFilter: makeAnnounceFilter(init.announce, { keepPrivateAsLastResort: relay != null })
      },
      transports: [
        // the library transports, with their socket opening routed through a proxy when one applies
        proxiedTcp({}, proxies),
        proxiedWebSockets(wsInit, proxies),
        quic(),
        // never @libp2p/webrtc's default ICE servers (public STUN servers of a
        // third party): our relays answer STUN, and with none known ICE uses
        // host candidates only
        ...(init.webrtc === true ? [webRTC({ rtcConfiguration: async () => ({ iceServers: await iceServers() }) })] : []),
        circuitRelayTransport({
          reservationCompletionTimeout: DEFAULT_RESERVATION_TIMEOUT_MS,
          // the default of 1 queues reservations one relay at a time, and in
          // circuit-relay-v2 4.2.x a second queued reservation never started (the
          // first was granted, the second hung until cancelled): a donor reserves
          // on each of its relays at once (the reservation manager caps how many)
          reservationConcurrency: 8
        })
      ],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      connectionManager: relay != null
        ? { maxConnections: relay.limits.maxConnections, inboundConnectionThreshold: relay.limits.inboundConnectionThresholdPerHost }
        : {},
      // Donors: js-libp2p pings every open connection every 10 s on a new
      // stream (negotiation, a peer-store write, encryption on both sides),
      // a cost per connection per second paid while idle. A donor's relay is
      // watched by the reservation manager's own pings (every 1.5 s), WebRTC
      // has ICE consent checks and yamux its keepalive, so every 60 s is
      // enough here (on a WebRTC connection each ping also opens a new data
      // channel: @libp2p/webrtc and libp2p's stream opening were 27% and 22%
      // of an idle donor's main thread in a 16-donor loopback mesh before,
      // bench/idle-cpu.ts). And no abort on a failed ping: in libp2p 3.3 the
      // monitor's `conn.abort()` runs inside a promise `.catch` and throws
      // (yamux sendGoAway: StreamStateError) when the connection is already
      // closing — an unhandled rejection (logged, not fatal: cli/lifecycle.ts)
      // for nothing. A dead connection to a peer shows when the broker's
      // stream on it fails, and it falls back to the relayed path.
      // Relays keep the abort (it frees the reservations of dead donors) but
      // ping every 30 s: at 10 s a relay serving 1,000 donors opens 100 ping
      // streams a second, and in the memory benchmark (400–1,000 reserving
      // clients) that load stalled it until every ping timed out at once and
      // it dropped all its clients together.
      connectionMonitor: relay == null
        ? { pingInterval: 60_000, abortConnectionOnPingFailure: false }
        : { pingInterval: 30_000 },
      // a relay-only donor listens on nothing directly; that is a valid node
      transportManager: { faultTolerance: 1 /* FaultTolerance.NO_FATAL */ },
      services
    })
    const mesh = new MeshNode(node, telemetry, log, init.dialAttemptTimeoutMs ?? DEFAULT_DIAL_ATTEMPT_TIMEOUT_MS)
    mesh.proxies = proxies
    iceServers = async () => await mesh.iceServers()
    if (init.webrtc === true) {
      mesh.webrtc = true
      acquireWebRtc()
    }
    mesh.disableRelayBlacklist()
    return mesh
  }

  get peerId (): string {
    return this.libp2p.peerId.toString()
  }

  private get components (): Record<string, any> {
    return (this.libp2p.services.internals as Internals).components
  }

  async start (): Promise<void> {
    await this.libp2p.start()
    const pubsub = this.libp2p.services.pubsub as { subscribe: (t: string) => void }
    pubsub.subscribe(MESH_TOPIC)
  }

  async stop (): Promise<void> {
    await this.libp2p.stop()
    if (this.webrtc) {
      this.webrtc = false
      releaseWebRtc(this.log)
    }
  }

  /**
   * A relay with no `--announce` advertises its bound addresses at once:
   * libp2p hides public addresses until AutoNAT confirms them, and a relay
   * that advertises nothing cannot hand out usable reservations.
   */
  confirmListenAddrs (): void {
    const am = this.components.addressManager
    for (const entry of am.getAddressesWithMetadata() as Array<{ multiaddr: Multiaddr, verified: boolean, type: string }>) {
      if (!entry.verified && entry.type === 'transport') {
        am.confirmObservedAddr(entry.multiaddr, { type: 'transport' })
      }
    }
  }

  /** Bound listen addresses, wildcards expanded by libp2p, with our PeerId. */
  listenAddrs (): string[] {
    const tm = this.components.transportManager
    const bound = (tm.getAddrs() as Multiaddr[]).map(ma => ma.toString())
    const advertised = this.libp2p.getMultiaddrs().map(ma => ma.toString())
    return dedupe([...advertised, ...bound.map(a => a.includes('/p2p/') ? a : `${a}/p2p/${this.peerId}`)])
  }

  /** Addresses other peers are told about. */
  advertisedAddrs (): string[] {
    return dedupe(this.libp2p.getMultiaddrs().map(ma => ma.toString()))
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
    const transports = this.components.transportManager.getTransports() as Array<Record<string | symbol, any>>
    const circuit = transports.find(t => t[Symbol.toStringTag] === '@libp2p/circuit-relay-v2-transport')
    const store = circuit?.reservationStore
    if (store == null || typeof store.addRelay !== 'function' || typeof store.hasReservation !== 'function') {
      return undefined
    }
    return store as ReservationStoreLike
  }

  /**
   * Dials exactly one address and records the attempt once: one address per
   * call because js-libp2p's multi-address dial throws away which address
   * failed how.
   */
  async dial (target: Multiaddr, options: DialOptions): Promise<Connection> {
    const text = target.toString()
    const transport = transportOf(target)
    let phase: DialPhase = initialPhase(text, transport)
    const started = Date.now()
    const timeout = AbortSignal.timeout(options.timeoutMs ?? this.dialAttemptTimeoutMs)
    const signal = options.signal != null ? AbortSignal.any([options.signal, timeout]) : timeout
    let reused = false
    // the transport-level recorder writes the attempt record; this only tags it with our purpose
    const { onProgress, context } = this.recorder.track(options.purpose, (evt) => {
      if (evt.type === 'dial-queue:already-connected') reused = true
      phase = phaseForProgress(evt.type, transport, phase)
    })
    try {
      const conn = await this.libp2p.dial(target, { signal, onProgress })
      if (reused) {
        // nothing was dialled: libp2p handed back an open connection to that peer
        this.log.debug(`dial skipped: already connected to ${conn.remotePeer.toString()} via ${conn.remoteAddr.toString()}`)
      }
      return conn
    } catch (err) {
      if (!context.reachedTransport) {
        const cancelled = options.signal?.aborted === true
        this.recorder.recordEarlyFailure(text, options.purpose, err, phase, started, cancelled, timeout.aborted && !cancelled)
      }
      throw err
    }
  }

  /**
   * Dials one address with the transport manager itself, outside libp2p's dial
   * queue, for the dial ladder's parallel attempts. The queue joins concurrent
   * dials to the same peer into one job ("joining existing dial target",
   * libp2p 3.3 connection-manager/dial-queue.js), which would turn parallel
   * attempts back into one sequential dial and lose which address did what.
   * `transportManager.dial` is what the queue calls per address; the upgrader
   * announces the new connection ('connection:open') so the connection manager
   * tracks it as usual, and the recorder wrapped around it records the attempt
   * exactly once. Skipped on this path: the queue's connection gater checks
   * (we configure no gater) and its join/reuse logic (callers look for an open
   * connection first). An address no transport dials by itself (`/dnsaddr`,
   * which only the queue resolves) goes through {@link dial}.
   */
  async dialTransport (target: Multiaddr, options: TransportDialOptions): Promise<Connection> {
    options.signal?.throwIfAborted()
    const tm = this.components.transportManager
    if (tm.dialTransportForMultiaddr(target) == null) {
      return await this.dial(target, { purpose: options.purpose, signal: options.signal })
    }
    // the ladder always gives a signal; anyone else still gets a bounded attempt
    const signal = options.signal ?? AbortSignal.timeout(this.dialAttemptTimeoutMs)
    const { onProgress } = this.recorder.track(options.purpose, (evt) => { options.onProgress?.(evt) }, options.onRecord)
    // The dial signal must stop mattering once the dial is over: @libp2p/tcp
    // hands it to net.connect(), which destroys the socket whenever it fires,
    // for the socket's whole life, so a per-attempt timeout would kill the
    // connection that won a few seconds later. The dial queue avoids this by
    // clearing its own combined signal after each dial; we do the same.
    const dialController = new AbortController()
    const forward = (): void => { dialController.abort(signal.reason) }
    signal.addEventListener('abort', forward, { once: true })
    let conn: Connection
    try {
      conn = await tm.dial(target, { signal: dialController.signal, onProgress })
    } finally {
      signal.removeEventListener('abort', forward)
    }
    // what the dial queue does after a success: keep the address that worked in
    // the address book (for libp2p's reconnects); not awaited so the winner is not held up
    this.libp2p.peerStore.merge(conn.remotePeer, { multiaddrs: [conn.remoteAddr] }).catch((err: Error) => {
      this.log.debug(`could not store ${conn.remoteAddr.toString()} for ${conn.remotePeer.toString()}: ${err.message}`)
    })
    return conn
  }

  /**
   * Asks the relay on `conn` for a reservation (circuit relay v2 RESERVE) and
   * waits until its circuit address is ours. Recorded as a `reservation`
   * attempt. Explicit, not left to libp2p's auto-reservation, because a
   * failure there only reaches a debug log and a restarted static relay is
   * never re-reserved (js-libp2p issue 3601).
   */
  async reserve (conn: Connection, options: AbortOptions = {}): Promise<ReservationResult> {
    const relay = conn.remotePeer
    const relayId = relay.toString()
    const target = `${conn.remoteAddr.toString()}${conn.remoteAddr.toString().includes('/p2p/') ? '' : `/p2p/${relayId}`}/p2p-circuit`
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
      const store = this.reservationStore()
      if (this.relaysListened.has(relayId) && store != null) {
        // a listener for this relay exists from an earlier reservation; it
        // re-applies the addresses when the store announces the new reservation
        // a reservation the store still holds from a connection that has closed is not
        // one: the store removes it (and withdraws its circuit address) when it processes
        // that close, which under load can come after this point — and a reservation
        // "held" that way ended in "granted but advertised no address" thousands of times
        // in bench/scale.ts. Reserve again on this connection (the store replaces it).
        const heldOn = store.reservations?.get(relay)?.connection
        if (!store.hasReservation(relay) || (heldOn != null && heldOn !== conn.id)) {
          await withSignal(store.addRelay(relay, 'configured'), options.signal)
        }
      } else {
        const tm = this.components.transportManager
        await withSignal(tm.listen([multiaddr(`${conn.remoteAddr.toString().includes('/p2p/') ? conn.remoteAddr.toString() : `${conn.remoteAddr.toString()}/p2p/${relayId}`}/p2p-circuit`)]), options.signal)
        this.relaysListened.add(relayId)
      }
      const circuitAddrs = await this.waitForCircuitAddrs(relayId, conn, options)
      record('success', `reserved: ${circuitAddrs[0]}`, 'OK')
      return { relay: relayId, circuitAddrs, grantedAt: new Date() }
    } catch (err) {
      const d = describeDialError(unwrapListenError(err), { phase: 'reservation', transport, elapsedMs: Date.now() - started, cancelled: options.signal?.aborted === true })
      record('failure', d.cause, d.code)
      throw new ReservationFailedError(`reservation on relay ${relayId} failed: ${d.cause}`, { cause: err })
    }
  }

  private async waitForCircuitAddrs (relayId: string, conn: Connection, options: AbortOptions): Promise<string[]> {
    // the listener publishes its addresses in a microtask; bounded wait
    for (let i = 0; i < 50; i++) {
      const addrs = this.circuitAddrsVia(relayId)
      if (addrs.length > 0) return addrs
      options.signal?.throwIfAborted()
      // the circuit listener drops a relay's addresses when the connection to it closes:
      // say that, not "no address" (seen when a CPU-starved relay dropped fresh connections)
      if (conn.status !== 'open') break
      await new Promise(resolve => setTimeout(resolve, 20))
    }
    if (conn.status !== 'open') {
      throw new ReservationFailedError(`relay ${relayId} granted a reservation, but the connection to it closed (${conn.status}) before its circuit address was ours`)
    }
    throw new ReservationFailedError(`relay ${relayId} granted a reservation but advertised no address for it`)
  }

  /** Our circuit addresses through one relay (not the `…/p2p-circuit/webrtc` ones built on them). */
  circuitAddrsVia (relayId: string): string[] {
    return this.advertisedAddrs().filter(a => relayPeerOf(a) === relayId && transportOf(a) === 'circuit')
  }

  hasReservation (relayId: string): boolean {
    const store = this.reservationStore()
    if (store != null) {
      return store.hasReservation(peerIdFromString(relayId)) && this.circuitAddrsVia(relayId).length > 0
    }
    return this.circuitAddrsVia(relayId).length > 0
  }

  /**
   * The proxies from the environment, credentials redacted, each with whether
   * a connection to one of `relayIds` goes through it now.
   */
  proxyStatus (relayIds: readonly string[]): ProxyStatus[] {
    const relays = new Set(relayIds)
    const relayConnections = this.libp2p.getConnections()
      .filter(c => c.status === 'open' && relays.has(c.remotePeer.toString()))
      .map(c => ({ peerId: c.remotePeer.toString(), remoteAddr: c.remoteAddr.toString() }))
    return this.proxies.status(relayConnections)
  }

  isConnected (peerId: string): boolean {
    return this.libp2p.getConnections(peerIdFromString(peerId)).some(c => c.status === 'open')
  }

  /** Direct (non-relayed) open connection to a peer, if any. */
  directConnection (peerId: string): Connection | undefined {
    return this.libp2p.getConnections(peerIdFromString(peerId)).find(c => c.status === 'open' && transportOf(c.remoteAddr) !== 'circuit')
  }

  connections (): ConnectionStatus[] {
    return this.libp2p.getConnections().filter(c => c.status === 'open').map(c => ({
      peerId: c.remotePeer.toString(),
      remoteAddr: c.remoteAddr.toString(),
      transport: transportOf(c.remoteAddr),
      direct: transportOf(c.remoteAddr) !== 'circuit'
    }))
  }

  /**
   * Reachability as far as we know it, with the reason, from what AutoNAT v2
   * has verified (js-libp2p v3 has no reachability event or property: a
   * transport address on a public IP is `verified` once one AutoNAT v2 server
   * dialled it back, and marked unverified with an expiry after 8 failed
   * dial-backs). A donor that listens only through relays is private by
   * choice; addresses libp2p counts as private (RFC 1918, TEST-NET, … minus
   * publicRanges) are never tested, so they say "private" at once.
   */
  reachability (): { value: Reachability, reason: string } {
    const entries = this.components.addressManager.getAddressesWithMetadata() as Array<{ multiaddr: Multiaddr, verified: boolean, type: string, expires: number, lastVerified?: number }>
    // a `/p2p-circuit/webrtc` address is signalled through a relay: not a direct listen address
    const direct = entries.filter(e => !viaRelay(e.multiaddr))
    const isPublic = (e: { multiaddr: Multiaddr }): boolean => scopeOf(e.multiaddr) === 'public'
    const announced = direct.filter(e => e.type === 'announce' && isPublic(e))
    if (announced.length > 0) {
      return { value: 'public', reason: `announced public address ${announced[0].multiaddr.toString()} (--announce; not checked by AutoNAT)` }
    }
    const verified = direct.filter(e => e.verified && isPublic(e))
    if (verified.length > 0) {
      return { value: 'public', reason: `AutoNAT v2 confirmed ${verified[0].multiaddr.toString()} is dialable from outside` }
    }
    // our own bound addresses decide the rest: an unverified observed address
    // (what a peer saw of a NAT mapping) is a guess that AutoNAT may never
    // settle in a small mesh (it needs 4 confirmations from 4 networks)
    const own = direct.filter(e => e.type === 'transport')
    const publicDirect = own.filter(isPublic)
    if (own.length === 0) {
      return { value: 'private', reason: 'listening only through relays (--listen /p2p-circuit)' }
    }
    if (publicDirect.length === 0) {
      const ranges = publicRanges()
      return { value: 'private', reason: `no public address on any interface (${own.map(e => e.multiaddr.toString().split('/')[2]).filter((v, i, a) => a.indexOf(v) === i).join(', ')}): reachable only through relays${ranges.length === 0 ? '; a private deployment can declare its ranges public with --public-range / "publicRanges"' : ''}` }
    }
    const failed = publicDirect.filter(e => !e.verified && e.expires > 0)
    if (failed.length === publicDirect.length) {
      return { value: 'private', reason: `AutoNAT v2: peers could not dial back ${failed[0].multiaddr.toString()} (a NAT or firewall in the way): reachable only through relays` }
    }
    const progress = this.autonatProgress(publicDirect[0].multiaddr)
    return {
      value: 'unknown',
      reason: progress != null
        ? `AutoNAT v2 is checking ${publicDirect[0].multiaddr.toString()}: ${progress.success} dial-back(s) succeeded, ${progress.failure} failed so far`
        : `AutoNAT v2 has not checked ${publicDirect[0].multiaddr.toString()} yet (it needs a connected peer running an AutoNAT v2 server, such as a relay)`
    }
  }

  /** The AutoNAT v2 client's running tally for an address (its private state; undefined when absent or changed). */
  private autonatProgress (ma: Multiaddr): { success: number, failure: number } | undefined {
    const client = (this.libp2p.services.autoNAT as { client?: { dialResults?: Map<string, { success: number, failure: number }> } } | undefined)?.client
    const results = client?.dialResults
    if (!(results instanceof Map)) return undefined
    const r = results.get(ma.toString())
    return r != null && typeof r.success === 'number' ? { success: r.success, failure: r.failure } : undefined
  }

  /**
   * STUN responders of the peers we hold a direct connection to: relays
   * announce their STUN ports in the identify agent version, and the IP is
   * the one we reached them on.
   */
  async stunServers (): Promise<Array<StunServer & { peerId: string }>> {
    const out: Array<StunServer & { peerId: string }> = []
    const seen = new Set<string>()
    for (const conn of this.libp2p.getConnections()) {
      if (conn.status !== 'open' || viaRelay(conn.remoteAddr)) continue
      const peerId = conn.remotePeer.toString()
      const ip = conn.remoteAddr.getComponents().find(c => c.name === 'ip4' || c.name === 'ip6')?.value
      if (ip == null || seen.has(peerId)) continue
      let agent: string | undefined
      try {
        const peer = await this.libp2p.peerStore.get(conn.remotePeer)
        const bytes = peer.metadata.get('AgentVersion')
        agent = bytes != null ? new TextDecoder().decode(bytes) : undefined
      } catch (err) {
        if ((err as Error).name !== 'NotFoundError') throw err
      }
      const ports = stunPortsFromAgent(agent)
      if (ports.length === 0) continue
      seen.add(peerId)
      out.push({ peerId, address: ip, ports })
    }
    return out
  }

  /**
   * ICE servers for a WebRTC connection: the STUN responders of the relays
   * we hold a direct connection to (first port of each), `stun:IP:PORT`.
   */
  async iceServers (): Promise<Array<{ urls: string[] }>> {
    let servers: Array<StunServer & { peerId: string }> = []
    try {
      servers = await this.stunServers()
    } catch (err) {
      this.log.warn(`WebRTC: cannot list the relays' STUN responders, ICE will use host candidates only: ${(err as Error).message}`, { phase: 'ice', transport: 'webrtc' })
    }
    const urls = servers.filter(s => s.ports.length > 0).map(s => `stun:${s.address.includes(':') ? `[${s.address}]` : s.address}:${s.ports[0]}`)
    return urls.length > 0 ? [{ urls }] : []
  }

  /**
   * Reaches a peer (PeerId or multiaddr) and measures round trips with the
   * libp2p ping protocol, reporting the path each probe took.
   */
  async ping (target: string, count: number, options: AbortOptions & { relays?: string[] } = {}): Promise<PingResult> {
    const conn = await this.connectForPing(target, options)
    const peer = conn.remotePeer
    const probes: PingProbe[] = []
    const pingService = this.libp2p.services.ping as { ping: (p: PeerId, o?: AbortOptions) => Promise<number> }
    for (let seq = 1; seq <= count; seq++) {
      options.signal?.throwIfAborted()
      const signal = options.signal != null ? AbortSignal.any([options.signal, AbortSignal.timeout(10_000)]) : AbortSignal.timeout(10_000)
      try {
        const rtt = await pingService.ping(peer, { signal })
        const used = this.libp2p.getConnections(peer).find(c => c.status === 'open') ?? conn
        const t = transportOf(used.remoteAddr)
        probes.push({
          seq,
          ok: true,
          rttMs: rtt,
          path: t === 'circuit' ? 'relay' : 'direct',
          transport: t === 'circuit' ? uplinkTransport(used.remoteAddr) : t,
          relay: relayPeerOf(used.remoteAddr),
          remoteAddr: used.remoteAddr.toString()
        })
      } catch (err) {
        const d = describeDialError(err, { phase: 'protocol', transport: transportOf(conn.remoteAddr), elapsedMs: 10_000 })
        this.log.warn(`ping ${seq} to ${peer.toString()} failed: ${d.cause}`, { peer: peer.toString(), code: d.code })
        probes.push({ seq, ok: false, error: d.cause })
      }
      if (seq < count) await sleep(1000, options.signal)
    }
    return { target, peerId: peer.toString(), probes }
  }

  private async connectForPing (target: string, options: AbortOptions & { relays?: string[] }): Promise<Connection> {
    if (target.startsWith('/')) {
      return this.dial(multiaddr(target), { purpose: 'ping', signal: options.signal })
    }
    let peer: PeerId
    try {
      peer = peerIdFromString(target)
    } catch (err) {
      throw new PeerUnreachableError(`"${target}" is neither a PeerId nor a multiaddr`, { cause: err })
    }
    const existing = this.libp2p.getConnections(peer).find(c => c.status === 'open')
    if (existing != null) return existing
    const candidates: Multiaddr[] = []
    try {
      const known = await this.libp2p.peerStore.get(peer)
      candidates.push(...known.addresses.map(a => a.multiaddr))
    } catch (err) {
      if ((err as Error).name !== 'NotFoundError') throw err
    }
    // through each relay we hold a connection to: the target may be reserved there too
    for (const relayId of options.relays ?? []) {
      const relayConn = this.directConnection(relayId)
      if (relayConn == null) continue
      const base = relayConn.remoteAddr.toString().includes('/p2p/') ? relayConn.remoteAddr.toString() : `${relayConn.remoteAddr.toString()}/p2p/${relayId}`
      candidates.push(multiaddr(`${base}/p2p-circuit/p2p/${peer.toString()}`))
    }
    const errors: string[] = []
    for (const ma of candidates) {
      const withPeer = ma.toString().includes(peer.toString()) ? ma : ma.encapsulate(`/p2p/${peer.toString()}`)
      try {
        return await this.dial(withPeer, { purpose: 'ping', signal: options.signal })
      } catch (err) {
        errors.push(`${withPeer.toString()}: ${(err as Error).message ?? String(err)}`)
      }
    }
    throw new PeerUnreachableError(candidates.length === 0
      ? `no address known for ${target} and no relay to try: give a multiaddr, or connect to a relay it uses`
      : `could not reach ${target} on any of ${candidates.length} address(es)`, { cause: new AggregateError(errors) })
  }
}

function unwrapListenError (err: unknown): unknown {
  // transportManager.listen wraps the relay's answer in UnsupportedListenAddressesError text
  return err
}

async function withSignal<T> (promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (signal == null) return promise
  signal.throwIfAborted()
  return await new Promise<T>((resolve, reject) => {
    const onAbort = (): void => { reject(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(resolve, reject).finally(() => { signal.removeEventListener('abort', onAbort) })
  })
}

export async function sleep (ms: number, signal?: AbortSignal): Promise<void> {
  await new Promise<void>((resolve) => {
    const t = setTimeout(done, ms)
    function done (): void {
      clearTimeout(t)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    signal?.addEventListener('abort', done, { once: true })
  })
}

function dedupe (list: string[]): string[] {
  return [...new Set(list)]
}

/**
 * True for an address on a public IP: not private to js-libp2p (RFC 1918,
 * loopback, link-local, CGNAT, ULA, TEST-NET, …) or inside a configured
 * public range (address-scope.ts). The namespace lab's TEST-NET "internet"
 * therefore counts as public only when the lab passes --public-range.
 */
export function isPublicAddr (ma: Multiaddr): boolean {
  return scopeOf(ma) === 'public'
}
