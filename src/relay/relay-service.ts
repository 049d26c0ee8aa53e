import { createLogger, type Logger } from '../log/logger.ts'
import { RelayAnnouncer } from '../net/relay-directory.ts'
import { capacity, CAPACITY_TOPIC } from '../protocols/capacity/index.ts'
import { relayInfo, type RelayTlsCertificate } from '../protocols/relay-info/index.ts'
import { directIpOf, observedAddr } from '../protocols/observed-addr/index.ts'
import { leafFingerprintOfPem } from '../net/tls-intercept.ts'
import { readFileSync } from 'node:fs'
import { startRelayStun, stunAddrs, type RelayStun } from './relay-stun.ts'
import { RelayGuard } from './relay-guard.ts'
import { RelayLiveness, type RelayLivenessInit } from './relay-liveness.ts'
import { servePortalProbe } from './portal-probe.ts'
import type { HopServer, MeshHost } from '../net/components.ts'
import type { MeshNodeInit } from '../net/mesh-node.ts'
import { CircuitTraffic } from '../net/circuit-traffic.ts'
import type { RelayConfig } from '../config/config.ts'
import type { PrivateKey } from '@libp2p/interface'

export interface RelayInfo {
  peerId: string
  listenAddrs: string[]
  announceAddrs: string[]
  limits: RelayConfig['limits']
  /** the STUN responder's endpoints (`/ip4/…/udp/3478`), empty when it is off or could not start */
  stunAddrs: string[]
  /** the WSS listener's certificate, published to donors over relay-info so they can detect TLS interception */
  tlsCertificate?: RelayTlsCertificate
}

/**
 * Where the relay sees each reservation holder, for brokers placing replicas
 * in distinct networks (observed-addr): bound to the node's hop server once
 * the node exists, since the protocol service is built before it.
 */
export class ReservationAddresses {
  private hop?: Pick<HopServer, 'reservationAddrOf'>

  attach (hop: Pick<HopServer, 'reservationAddrOf'>): void {
    this.hop = hop
  }

  /** The IP address the peer reserved from; undefined without a reservation, or before the relay runs. */
  ipOf (peerId: string): string | undefined {
    const addr = this.hop?.reservationAddrOf(peerId)
    return addr != null ? directIpOf(addr) : undefined
  }
}

/** What the composition root builds a relay's node from. */
export interface RelayParts {
  /** started before the node: its identify agent version tells donors the STUN ports actually bound */
  stun?: RelayStun
  /** donors compare this with the certificate they see: a different one means a middlebox re-signed it */
  tlsCertificate?: RelayTlsCertificate
  /** answers brokers asking where a reservation holder is; hand it to {@link RelayService} */
  observedAddrs: ReservationAddresses
  /** the node a relay runs: circuit relay v2 server with job-sized limits, relay-info, observed-addr, the capacity table */
  node: MeshNodeInit
  /** the node's admission control (per-IP and per-peer limits, reservations of peers that left freed) */
  guard: RelayGuard
  /** circuits opened and bytes relayed, for metrics */
  traffic: CircuitTraffic
}

/** Starts the relay's STUN responder and describes the node it needs; the composition root builds the node. */
export async function prepareRelay (config: RelayConfig, privateKey: PrivateKey, logger: Logger): Promise<RelayParts> {
  const stun = await startRelayStun(config, logger.child('stun'))
  const tls = config.tls != null ? leafFingerprintOfPem(readFileSync(config.tls.certFile)) : undefined
  const guard = new RelayGuard({ limits: config.limits, logger: logger.child('admission') })
  const observedAddrs = new ReservationAddresses()
  const traffic = new CircuitTraffic()
  return {
    stun,
    tlsCertificate: tls,
    guard,
    traffic,
    observedAddrs,
    node: {
      privateKey,
      listen: config.listen,
      announce: config.announce,
      relayServer: { limits: config.limits, tls: config.tls, admission: guard, traffic },
      publicRanges: config.publicRanges,
      stunPorts: stun != null ? [...new Set(stun.endpoints().map(e => e.port))] : [],
      services: {
        relayInfo: relayInfo({ getInfo: () => ({ tls: tls != null ? [tls] : [] }), logger: logger.child('info') }),
        observedAddr: observedAddr({ lookup: (peer) => observedAddrs.ipOf(peer), logger: logger.child('observed-addr') }),
        // the relay hears every announcement of the donors behind it, and asks each
        // donor that connects (one query per connection): a broker that starts
        // listening pulls that table instead of waiting an announce interval
        capacity: capacity({ listen: 'always', serveTable: true, logger: logger.child('capacity') })
      },
      logger: logger.child('net')
    }
  }
}

export interface RelayServiceInit {
  config: RelayConfig
  /** the relay's node, built by the composition root from {@link prepareRelay}; started and stopped by this role */
  mesh: MeshHost
  /** the STUN responder from {@link prepareRelay}; stopped with the relay */
  stun?: RelayStun
  tlsCertificate?: RelayTlsCertificate
  /** from {@link prepareRelay}: bound to the node's hop server when the relay starts */
  observedAddrs?: ReservationAddresses
  /** how often the relay announces itself on the relay gossip topic @default 10000 */
  announceIntervalMs?: number
  /** how the relay notices clients that vanished (relay-liveness.ts) @default each connection pinged once a minute */
  liveness?: RelayLivenessInit
  logger?: Logger
}

/**
 * A publicly reachable relay: circuit relay v2 server with job-sized limits,
 * identify, ping, AutoNAT v2 server and the mesh gossip.
 */
export class RelayService {
  private readonly init: RelayServiceInit
  private readonly log: Logger
  private readonly mesh: MeshHost
  private started = false
  private announcer?: RelayAnnouncer
  private liveness?: RelayLiveness
  private stun?: RelayStun
  private readonly onConnect = (evt: CustomEvent<{ toString: () => string }>): void => { this.log.debug(`peer connected: ${evt.detail.toString()}`) }
  private readonly onDisconnect = (evt: CustomEvent<{ toString: () => string }>): void => { this.log.debug(`peer disconnected: ${evt.detail.toString()}`) }

  constructor (init: RelayServiceInit) {
    this.init = init
    this.mesh = init.mesh
    this.stun = init.stun
    this.log = init.logger ?? createLogger('relay')
  }

  async start (): Promise<RelayInfo> {
    const { config } = this.init
    const net = this.mesh.components
    try {
      await this.mesh.start()
    } catch (err) {
      // the UDP sockets must not outlive a relay that failed to start
      await this.stop()
      throw err
    }
    this.started = true
    this.init.observedAddrs?.attach(net.hop)
    servePortalProbe(net.httpRoutes, this.mesh.peerId)
    if (config.announce.length === 0) net.addresses.confirmListenAddrs()
    // the relay is the gossip hub of donors that can only reach each other
    // through it: gossipsub forwards only topics a node is subscribed to
    net.gossip.subscribe(CAPACITY_TOPIC)
    // donors learn relays beyond their bootstrap list from these announcements
    // and reserve on a second one, so losing one relay never leaves them undialable
    this.announcer = new RelayAnnouncer(net, { intervalMs: this.init.announceIntervalMs, logger: this.log.child('announce') })
    this.announcer.start()
    // the node's own connection monitor is off on a relay (node-options.ts): this replaces it
    this.liveness = new RelayLiveness({ connections: net.connections, events: net.events, pinger: net.pinger, logger: this.log.child('liveness') }, this.init.liveness)
    this.liveness.start()
    net.events.on('peer:connect', this.onConnect)
    net.events.on('peer:disconnect', this.onDisconnect)
    return this.info()
  }

  /** Peers holding a reservation on this relay right now. */
  reservationCount (): number {
    return this.started ? this.mesh.components.hop.reservationCount() : 0
  }

  info (): RelayInfo {
    if (!this.started) throw new Error('relay not started')
    const addresses = this.mesh.components.addresses
    return {
      peerId: this.mesh.peerId,
      listenAddrs: addresses.listenAddrs(),
      announceAddrs: addresses.advertisedAddrs(),
      limits: this.init.config.limits,
      stunAddrs: stunAddrs(this.stun, addresses.advertisedAddrs()),
      ...(this.init.tlsCertificate != null ? { tlsCertificate: this.init.tlsCertificate } : {})
    }
  }

  async stop (): Promise<void> {
    this.started = false
    this.announcer?.stop()
    this.announcer = undefined
    this.liveness?.stop()
    this.liveness = undefined
    this.mesh.components.events.off('peer:connect', this.onConnect)
    this.mesh.components.events.off('peer:disconnect', this.onDisconnect)
    const stun = this.stun
    this.stun = undefined
    await stun?.stop()
    await this.mesh.stop()
  }
}
