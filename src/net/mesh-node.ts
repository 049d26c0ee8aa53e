import { createLibp2p, type Libp2p } from 'libp2p'
import { peerIdFromString } from '@libp2p/peer-id'
import { createLogger, type Logger } from '../log/logger.ts'
import { MESH_TOPIC, DEFAULT_DIAL_ATTEMPT_TIMEOUT_MS } from './constants.ts'
import { DialTelemetry } from './telemetry.ts'
import { DialRecorder } from './dial-recorder.ts'
import { NO_PROXY_ENVIRONMENT, type ProxyEnvironment } from './proxy-env.ts'
import { ProxyRouter } from './proxy-transports.ts'
import { ProxyDiscovery, type ProxyDiscoveryInit } from './proxy-discovery.ts'
import { HttpRouteTable } from './ws-http-routes.ts'
import { applyPublicRanges } from './address-scope.ts'
import { acquireWebRtc, loadWebRtc, releaseWebRtc } from './webrtc-runtime.ts'
import { libp2pOptions, type Internals, type NodeOptionsInit, type ServiceFactories } from './node-options.ts'
import { AddressDialler } from './address-dialler.ts'
import { NodeConnections, NodeEvents, PeerStoreAddresses } from './connections.ts'
import { MeshPeerDialler } from './peer-dialler.ts'
import { CircuitReservations } from './reservations.ts'
import { AutoNatReachability } from './reachability.ts'
import { NodeAddressBook } from './node-addresses.ts'
import { RelayStunServers } from './stun-servers.ts'
import { MeshPinger, type PingService } from './pinger.ts'
import { GossipSub, type GossipSubLike } from './gossip.ts'
import { boundAddrsOf, libp2pAddressBook, PortMapper, type PortMapperInit } from './port-mapping.ts'
import type { Cidr } from '../config/cidr.ts'
import type { HopServer, MeshComponents, MeshHost, ProxyRoutes } from './components.ts'
import { clearHeartbeatOnStop } from './gossip-heartbeat.ts'
import { tagDialBacks } from './dial-backs.ts'
import type { NodeCore } from './node-core.ts'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { PeerId } from '@libp2p/interface'

export type { RelayServerInit, ServiceFactories } from './node-options.ts'

export interface MeshNodeInit<S extends ServiceFactories = ServiceFactories> extends NodeOptionsInit {
  /** direct listen addresses; a bare `/p2p-circuit` is handled by the donor's reservation manager, not here */
  listen: readonly Multiaddr[]
  /** addresses to advertise instead of the listen addresses */
  announce?: readonly Multiaddr[]
  telemetry?: DialTelemetry
  logger?: Logger
  /** @default 5000 */
  dialAttemptTimeoutMs?: number
  /**
   * proxies for outbound WebSocket and TCP dials, parsed from HTTPS_PROXY,
   * ALL_PROXY, NO_PROXY, … (proxy-env.ts) @default no proxy
   */
  proxy?: ProxyEnvironment
  /**
   * PAC files and WPAD (proxy-discovery.ts): with no proxy in `proxy`, a PAC
   * named here is used from the start, else WPAD is looked for once a direct
   * dial fails @default off (no PAC, no WPAD)
   */
  proxyDiscovery?: ProxyDiscoveryInit
  /** more libp2p services (the job protocols), reached typed through {@link MeshNode.services} */
  services?: S
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
   * map the listen ports at the home router (PCP, NAT-PMP, UPnP IGD;
   * port-mapping.ts), once {@link MeshNode.portMapping} is started
   * @default { enabled: false }
   */
  portMapping?: PortMapperInit
}

/** The services a node was built with, by name, each as its factory made it. */
export type ServicesOf<S extends ServiceFactories> = { [K in keyof S]: ReturnType<S[K]> }

/**
 * The libp2p node of this process, and the components roles use it through
 * (components.ts). Everything version-sensitive about js-libp2p v3 stays in
 * src/net; the libp2p node itself is private to it.
 */
export class MeshNode<S extends ServiceFactories = Record<never, never>> implements MeshHost {
  readonly components: MeshComponents
  /** the services added with {@link MeshNodeInit.services}, typed by their factories */
  readonly services: ServicesOf<S>
  /** the listen ports' mappings at the home router: started by the composition root, stopped with the node */
  readonly portMapping: PortMapper
  readonly #libp2p: Libp2p<any>
  /** whether this node has the WebRTC transport (native threads to release after stop) */
  #webrtc: boolean
  readonly #log: Logger
  #proxyDiscovery?: ProxyDiscovery

  private constructor (core: NodeCore, components: MeshComponents, services: ServicesOf<S>, webrtc: boolean, portMapping: PortMapperInit) {
    this.#libp2p = core.libp2p
    this.#log = core.log
    this.components = components
    this.services = services
    this.#webrtc = webrtc
    this.portMapping = new PortMapper({ enabled: false, logger: core.log.child('port-mapping'), ...portMapping }, { boundAddrs: boundAddrsOf(core), addresses: libp2pAddressBook(core) })
  }

  static async create <S extends ServiceFactories = Record<never, never>>(init: MeshNodeInit<S>): Promise<MeshNode<S>> {
    const log = init.logger ?? createLogger('net')
    const telemetry = init.telemetry ?? new DialTelemetry({ logger: log.child('dial') })
    // before createLibp2p: the address manager classifies addresses as they are bound
    if (init.publicRanges != null && init.publicRanges.length > 0) applyPublicRanges(init.publicRanges, log)
    const discovery = init.proxyDiscovery != null ? new ProxyDiscovery({ logger: log.child('proxy'), ...init.proxyDiscovery }) : undefined
    const proxies = new ProxyRouter(init.proxy ?? NO_PROXY_ENVIRONMENT, log.child('proxy'), discovery)
    if (proxies.enabled) log.info(`proxy: ${proxies.describe()}`)
    // a PAC the operator named is fetched at once: its failure shows at start, not at the first dial
    if (proxies.discovery?.explicit === true) proxies.discovery.start().catch((err: Error) => { log.warn(`proxy PAC: ${err.message}`, { code: 'PROXY_PAC_FAILED' }) })
    // ICE servers come from the STUN component, built once the node exists
    let components: MeshComponents | undefined
    const iceServers = async (): Promise<Array<{ urls: string[] }>> => await components?.stun.iceServers() ?? []
    const webRTC = init.webrtc === true ? await loadWebRtc() : undefined
    const httpRoutes = new HttpRouteTable()
    const libp2p = await createLibp2p(libp2pOptions(init, proxies, iceServers, webRTC, httpRoutes))
    clearHeartbeatOnStop(libp2p.services.pubsub)
    const core: NodeCore = { libp2p, internals: (libp2p.services.internals as Internals).components, log }
    components = buildComponents(core, telemetry, proxies, httpRoutes, init.dialAttemptTimeoutMs ?? DEFAULT_DIAL_ATTEMPT_TIMEOUT_MS)
    const services = Object.fromEntries(Object.keys(init.services ?? {}).map(name => [name, libp2p.services[name]])) as ServicesOf<S>
    if (init.webrtc === true) acquireWebRtc()
    const node = new MeshNode<S>(core, components, services, init.webrtc === true, init.portMapping ?? {})
    node.#proxyDiscovery = proxies.discovery
    return node
  }

  get peerId (): string {
    return this.components.peerId
  }

  get telemetry (): DialTelemetry {
    return this.components.telemetry
  }

  async start (): Promise<void> {
    await this.#libp2p.start()
    this.components.gossip.subscribe(MESH_TOPIC)
  }

  async stop (): Promise<void> {
    // the router's mappings are deleted while the ports still listen
    await this.portMapping.stop()
    await this.#libp2p.stop()
    this.#proxyDiscovery?.close()
    if (this.#webrtc) {
      this.#webrtc = false
      releaseWebRtc(this.#log)
    }
  }

  /** The libp2p node itself: for tests and benchmarks that measure libp2p, never for roles. */
  static libp2pOf (mesh: MeshHost): Libp2p<any> {
    if (!(mesh instanceof MeshNode)) throw new TypeError('not a MeshNode: no libp2p node behind it')
    return mesh.#libp2p
  }
}

function buildComponents (core: NodeCore, telemetry: DialTelemetry, proxies: ProxyRouter, httpRoutes: HttpRouteTable, dialAttemptTimeoutMs: number): MeshComponents {
  const { libp2p, log } = core
  const recorder = new DialRecorder(telemetry, log.child('dial'))
  recorder.install(core.internals.transportManager)
  tagDialBacks(libp2p.services.autoNAT, recorder)
  const connections = new NodeConnections(core)
  const peers = new PeerStoreAddresses(core)
  const attempts = new AddressDialler(core, recorder, { dialAttemptTimeoutMs })
  const dialler = new MeshPeerDialler({ attempts, connections, peers, logger: log }, { dialAttemptTimeoutMs })
  const book = new NodeAddressBook(core)
  return {
    peerId: libp2p.peerId.toString(),
    addresses: book,
    connections,
    events: new NodeEvents(core),
    peers,
    dialler,
    reservations: new CircuitReservations(core, book, telemetry),
    reachability: new AutoNatReachability(core),
    stun: new RelayStunServers({ connections, peers, logger: log }),
    pinger: new MeshPinger({ ping: libp2p.services.ping as PingService, dialler, connections, logger: log }),
    gossip: new GossipSub(libp2p.services.pubsub as GossipSubLike),
    proxies: proxyRoutes(proxies, connections),
    hop: hopServer(libp2p),
    httpRoutes,
    telemetry
  }
}

function proxyRoutes (router: ProxyRouter, connections: NodeConnections): ProxyRoutes {
  return {
    proxyFor: (use, host, port) => router.proxyFor(use, host, port),
    seenChain: (addr) => router.seenChain(addr),
    discovery: () => router.discoveryStatus(),
    status: (relayIds) => {
      const relays = new Set(relayIds)
      const relayConnections = connections.open()
        .filter(c => relays.has(c.remotePeer.toString()))
        .map(c => ({ peerId: c.remotePeer.toString(), remoteAddr: c.remoteAddr.toString() }))
      return router.status(relayConnections)
    }
  }
}

/** The circuit relay v2 server's reservation count (its `reservations` map); 0 on a node that is not a relay. */
function hopServer (libp2p: Libp2p<any>): HopServer {
  const reservations = (): { size: number, get: (peer: PeerId) => { addr: Multiaddr } | undefined } | undefined => libp2p.services.relay?.reservations
  return {
    reservationCount: () => reservations()?.size ?? 0,
    reservationAddrOf: (peerId) => {
      let peer: PeerId
      try {
        peer = peerIdFromString(peerId)
      } catch {
        // not a PeerId: nobody holds a reservation under it
        return undefined
      }
      return reservations()?.get(peer)?.addr.toString()
    }
  }
}
