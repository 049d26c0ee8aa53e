import { createLogger, type Logger } from '../log/logger.ts'
import { ReservationManager, type ReservationManagerInit } from './reservation-manager.ts'
import { NatProber, type NatProberInit } from './nat-prober.ts'
import { RelayDirectory } from '../net/relay-directory.ts'
import { peerIdOf } from '../net/transport-of.ts'
import type { DaemonStatus, PingResult } from '../core/types.ts'
import type { MeshNode } from '../net/mesh-node.ts'
import type { AbortOptions } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

export interface DonorServiceInit {
  mesh: MeshNode
  bootstrap: readonly Multiaddr[]
  version: string
  reservation?: Omit<ReservationManagerInit, 'bootstrap' | 'logger'>
  /** NAT classification with the relays' STUN responders (test seam: timing) */
  nat?: Omit<NatProberInit, 'logger'>
  logger?: Logger
}

/**
 * The donor role: holds relay reservations so it can be reached from
 * anywhere, and answers what it is doing (status, ping, recent dials).
 * The job pipeline issue adds the executor to this role.
 */
export class DonorService {
  readonly mesh: MeshNode
  private readonly reservations: ReservationManager
  private readonly nat: NatProber
  /** relays beyond the bootstrap list (their gossip announcements, identify), handed to the reservation manager */
  private readonly directory: RelayDirectory
  private unlearn?: () => void
  private readonly version: string
  private readonly log: Logger
  private startedAt?: Date

  constructor (init: DonorServiceInit) {
    this.mesh = init.mesh
    this.version = init.version
    this.log = init.logger ?? createLogger('donor')
    this.reservations = new ReservationManager(init.mesh, {
      ...init.reservation,
      bootstrap: init.bootstrap,
      logger: this.log.child('reservation')
    })
    this.nat = new NatProber(init.mesh, { ...init.nat, logger: this.log.child('nat') })
    const bootstrapIds = new Set(init.bootstrap.map(ma => peerIdOf(ma)).filter(id => id != null))
    this.directory = new RelayDirectory(init.mesh, { ignore: id => bootstrapIds.has(id), logger: this.log.child('relays') })
  }

  async start (): Promise<void> {
    if (this.startedAt != null) return
    await this.mesh.start()
    this.startedAt = new Date()
    this.nat.start()
    this.reservations.start()
    this.unlearn = this.directory.onRelay(relay => { this.reservations.learn(relay) })
    this.directory.start()
  }

  async stop (): Promise<void> {
    if (this.startedAt == null) return
    this.startedAt = undefined
    this.unlearn?.()
    this.directory.stop()
    await this.nat.stop()
    await this.reservations.stop()
    await this.mesh.stop()
  }

  status (): DaemonStatus {
    const reach = this.mesh.reachability()
    const nat = this.nat.report()
    return {
      peerId: this.mesh.peerId,
      reachability: reach.value,
      reachabilityReason: reach.reason,
      natMapping: nat.mapping,
      natFiltering: nat.filtering,
      udp: nat.udp,
      nat,
      listenAddrs: this.mesh.advertisedAddrs(),
      relays: this.reservations.reservations(),
      connections: this.mesh.connections(),
      bootstrap: this.reservations.bootstrapStatus(),
      knownRelays: this.reservations.knownRelays(),
      proxies: this.mesh.proxyStatus(this.reservations.connectedRelays()),
      startedAt: (this.startedAt ?? new Date()).toISOString(),
      version: this.version
    }
  }

  /** Relays this donor holds a connection to. */
  connectedRelays (): string[] {
    return this.reservations.connectedRelays()
  }

  async ping (target: string, count: number, options: AbortOptions = {}): Promise<PingResult> {
    return await this.mesh.ping(target, count, { ...options, relays: this.reservations.connectedRelays() })
  }
}
