import { createLogger, type Logger } from '../log/logger.ts'
import { ReservationManager, type ReservationManagerInit } from './reservation-manager.ts'
import type { DaemonStatus, PingResult } from '../core/types.ts'
import type { MeshNode } from '../net/mesh-node.ts'
import type { AbortOptions } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

export interface DonorServiceInit {
  mesh: MeshNode
  bootstrap: readonly Multiaddr[]
  version: string
  reservation?: Omit<ReservationManagerInit, 'bootstrap' | 'logger'>
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
  }

  async start (): Promise<void> {
    if (this.startedAt != null) return
    await this.mesh.start()
    this.startedAt = new Date()
    this.reservations.start()
  }

  async stop (): Promise<void> {
    if (this.startedAt == null) return
    this.startedAt = undefined
    await this.reservations.stop()
    await this.mesh.stop()
  }

  status (): DaemonStatus {
    const reach = this.mesh.reachability()
    return {
      peerId: this.mesh.peerId,
      reachability: reach.value,
      reachabilityReason: reach.reason,
      listenAddrs: this.mesh.advertisedAddrs(),
      relays: this.reservations.reservations(),
      connections: this.mesh.connections(),
      bootstrap: this.reservations.bootstrapStatus(),
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
