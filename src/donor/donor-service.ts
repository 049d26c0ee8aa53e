import { createLogger, type Logger } from '../log/logger.ts'
import { ReservationManager, type ReservationManagerInit } from './reservation-manager.ts'
import { NatProber, type NatProberInit } from './nat-prober.ts'
import { DirectPaths, type DirectPathsInit } from './direct-paths.ts'
import { CaptivePortalWatch, type CaptivePortalWatchInit } from './captive-portal-watch.ts'
import { portalProbeUrls, relayOfProbeUrl } from '../net/captive-portal.ts'
import { RelayDirectory } from '../net/relay-directory.ts'
import { peerIdOf } from '../net/transport-of.ts'
import { endpointIp, lanListenAddrs } from '../net/lan.ts'
import { MAX_LAN_ADDRS, type NatInfoMessage } from '../protocols/nat-info/index.ts'
import type { DaemonStatus, PingResult, RelayReservationStatus } from '../core/types.ts'
import type { MeshHost } from '../net/components.ts'
import type { AbortOptions } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

export interface DonorServiceInit {
  /** the node this role starts and stops, with the net components its parts use */
  mesh: MeshHost
  bootstrap: readonly Multiaddr[]
  version: string
  reservation?: Omit<ReservationManagerInit, 'bootstrap' | 'logger'>
  /** NAT classification with the relays' STUN responders (test seam: timing) */
  nat?: Omit<NatProberInit, 'logger' | 'onReport'>
  /**
   * direct upgrades of relayed peers (public address, WebRTC); absent or
   * `false` keeps every peer relayed (`--no-direct`, the doctor's throw-away
   * node). The mesh node must have the WebRTC transport for the WebRTC part
   * (MeshNodeInit.webrtc) @default false
   */
  direct?: Omit<DirectPathsInit, 'logger' | 'nat'> | false
  /** captive portal detection on the bootstrap relays' WebSocket addresses (test seam: probe, timing) */
  captivePortal?: Omit<CaptivePortalWatchInit, 'urls' | 'onLetOut' | 'logger'>
  logger?: Logger
}

/**
 * The donor role: holds relay reservations so it can be reached from
 * anywhere, and answers what it is doing (status, ping, recent dials).
 * The job pipeline issue adds the executor to this role.
 */
export class DonorService {
  readonly mesh: MeshHost
  private readonly reservations: ReservationManager
  private readonly nat: NatProber
  /** direct upgrades; undefined with `--no-direct` */
  readonly direct?: DirectPaths
  private readonly webrtc: boolean
  /** relays beyond the bootstrap list (their gossip announcements, identify), handed to the reservation manager */
  private readonly directory: RelayDirectory
  /** is a sign-in page (captive portal) in the way of the relays? */
  private readonly portal: CaptivePortalWatch
  private unlearn?: () => void
  private readonly bootstrapIds: ReadonlySet<string>
  private readonly onPeerConnect = (evt: CustomEvent<{ toString: () => string }>): void => {
    if (this.bootstrapIds.has(evt.detail.toString())) this.portal.relayReached()
  }
  private readonly version: string
  private readonly log: Logger
  private startedAt?: Date

  constructor (init: DonorServiceInit) {
    this.mesh = init.mesh
    this.version = init.version
    this.log = init.logger ?? createLogger('donor')
    this.reservations = new ReservationManager(init.mesh.components, {
      ...init.reservation,
      bootstrap: init.bootstrap,
      onUnreachable: () => { this.portal.suspect() },
      logger: this.log.child('reservation')
    })
    this.portal = new CaptivePortalWatch({
      ...init.captivePortal,
      urls: portalProbeUrls(init.bootstrap),
      relayOf: url => relayOfProbeUrl(init.bootstrap, url),
      onLetOut: () => { this.reservations.networkChanged() },
      logger: this.log.child('portal')
    })
    this.webrtc = init.direct != null && init.direct !== false && init.direct.webrtc !== false
    if (init.direct != null && init.direct !== false) {
      this.direct = new DirectPaths(init.mesh.components, { ...init.direct, nat: () => this.nat.report(), logger: this.log.child('direct') })
    }
    this.nat = new NatProber(init.mesh.components, { ...init.nat, onReport: () => { this.direct?.natChanged() }, logger: this.log.child('nat') })
    const bootstrapIds = new Set(init.bootstrap.map(ma => peerIdOf(ma)).filter(id => id != null))
    this.bootstrapIds = bootstrapIds
    this.directory = new RelayDirectory(init.mesh.components, { ignore: id => bootstrapIds.has(id), logger: this.log.child('relays') })
  }

  async start (): Promise<void> {
    if (this.startedAt != null) return
    await this.mesh.start()
    this.startedAt = new Date()
    this.nat.start()
    this.direct?.start()
    this.reservations.start()
    this.portal.start()
    this.mesh.components.events.on('peer:connect', this.onPeerConnect)
    this.unlearn = this.directory.onRelay(relay => { this.reservations.learn(relay) })
    this.directory.start()
  }

  async stop (): Promise<void> {
    if (this.startedAt == null) return
    this.startedAt = undefined
    this.unlearn?.()
    this.directory.stop()
    this.direct?.stop()
    await this.nat.stop()
    this.mesh.components.events.off('peer:connect', this.onPeerConnect)
    await this.portal.stop()
    await this.reservations.stop()
    await this.mesh.stop()
  }

  status (): DaemonStatus {
    const net = this.mesh.components
    const reach = net.reachability.reachability()
    const nat = this.nat.report()
    return {
      peerId: this.mesh.peerId,
      reachability: reach.value,
      reachabilityReason: reach.reason,
      natMapping: nat.mapping,
      natFiltering: nat.filtering,
      udp: nat.udp,
      nat,
      listenAddrs: net.addresses.advertisedAddrs(),
      relays: this.reservations.reservations(),
      connections: net.connections.list(),
      directPaths: this.direct?.status() ?? [],
      bootstrap: this.reservations.bootstrapStatus(),
      knownRelays: this.reservations.knownRelays(),
      proxies: net.proxies.status(this.reservations.connectedRelays()),
      ...(net.proxies.discovery?.() != null ? { proxyDiscovery: net.proxies.discovery() } : {}),
      captivePortal: this.portal.status(),
      startedAt: (this.startedAt ?? new Date()).toISOString(),
      version: this.version
    }
  }

  /**
   * What `/worldcompute/nat-info/1.0.0` tells peers: this donor's NAT, whether
   * it takes WebRTC, and for a peer on the same network its private listen
   * addresses and the public IP its STUN servers saw (net/lan.ts) — those two
   * only while it takes direct connections (not with --no-direct).
   */
  natInfo (): NatInfoMessage {
    const nat = this.nat.report()
    const direct = this.direct != null
    const lanAddrs = direct ? lanListenAddrs(this.mesh.components.addresses.boundAddrs(), MAX_LAN_ADDRS) : []
    const publicIp = direct ? endpointIp(nat.mappedAddress) : undefined
    return {
      mapping: nat.mapping,
      filtering: nat.filtering,
      udp: nat.udp,
      webrtc: this.webrtc,
      ...(nat.portDelta != null ? { portDelta: nat.portDelta } : {}),
      ...(lanAddrs.length > 0 ? { lanAddrs } : {}),
      ...(publicIp != null ? { publicIp } : {})
    }
  }

  /** The reservations held now: what `status()` lists as relays, without the rest of the status. */
  heldReservations (): RelayReservationStatus[] {
    return this.reservations.reservations()
  }

  /** Relays this donor holds a connection to. */
  connectedRelays (): string[] {
    return this.reservations.connectedRelays()
  }

  async ping (target: string, count: number, options: AbortOptions = {}): Promise<PingResult> {
    return await this.mesh.components.pinger.ping(target, count, { ...options, relays: this.reservations.connectedRelays() })
  }
}
