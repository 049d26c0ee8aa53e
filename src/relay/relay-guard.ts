import { createLogger, type Logger } from '../log/logger.ts'
import { duration, shortPeerId } from '../core/format.ts'
import { IpRanges, ipKeyOf, type IpKey } from './ip-key.ts'
import { RefusalLog, type Refusal, type RefusalCode } from './refusal-log.ts'
import type { HopAdmission, HopConnection, HopView } from '../net/hop-gate.ts'
import type { RelayAdmissionLimits } from '../config/config.ts'

export interface RelayGuardInit {
  limits: RelayAdmissionLimits
  logger?: Logger
  /** at most one WARN line per refusal cause in this time @default 10000 */
  refusalLogIntervalMs?: number
}

/**
 * A relay's admission control: per-IP and per-peer limits on connections,
 * reservations and circuits, and a reservation freed `reservationGraceMs`
 * after its holder's last connection closed (js-libp2p keeps it for the whole
 * TTL, so identities that reserve and leave could hold the table for hours).
 * Asked by libp2p's connection gater (net/hop-gate.ts); refusals are logged
 * with peer, address and cause, rate-limited.
 */
export class RelayGuard implements HopAdmission {
  private readonly limits: RelayAdmissionLimits
  private readonly exempt: IpRanges
  private readonly log: Logger
  private readonly refusals: RefusalLog
  private view?: HopView
  private readonly graceTimers = new Map<string, NodeJS.Timeout>()
  /**
   * reservations admitted whose store entry is not written yet (peer → IP key):
   * the store writes it right after the gater answers, so concurrent requests
   * from one IP could otherwise all pass the same count
   */
  private readonly admitting = new Map<string, string>()

  constructor (init: RelayGuardInit) {
    this.limits = init.limits
    this.exempt = new IpRanges(init.limits.perIpExempt)
    this.log = init.logger ?? createLogger('relay.admission')
    this.refusals = new RefusalLog({ logger: this.log, intervalMs: init.refusalLogIntervalMs })
  }

  attach (view: HopView): void {
    this.view = view
  }

  detach (): void {
    for (const t of this.graceTimers.values()) clearTimeout(t)
    this.graceTimers.clear()
    this.view = undefined
  }

  /** refusals so far, per cause */
  refusalCounts (): Record<RefusalCode, number> {
    return this.refusals.counts()
  }

  denyConnection (remoteAddr: string): boolean {
    const ip = this.limitedIp(remoteAddr)
    if (ip == null || this.view == null) return false
    const held = this.byIp(this.view.connections(), ip).length
    return this.refuseAt(held >= this.limits.maxConnectionsPerIp, {
      code: 'connections-per-ip', what: 'connection', address: remoteAddr, held, limit: this.limits.maxConnectionsPerIp, flag: '--max-connections-per-ip'
    })
  }

  denyPeerConnection (peer: string, remoteAddr: string): boolean {
    if (this.view == null) return false
    const held = this.view.connections(peer).length
    return this.refuseAt(held >= this.limits.maxConnectionsPerPeer, {
      code: 'connections-per-peer', what: 'connection', peer, address: remoteAddr, held, limit: this.limits.maxConnectionsPerPeer, flag: '--max-connections-per-peer'
    })
  }

  /** A peer refreshing its own reservation is never refused: its slot is already counted. */
  denyReservation (peer: string): boolean {
    const view = this.view
    if (view == null || view.hasReservation(peer)) return false
    const keys = this.limitedIps(view.connections(peer))
    if (keys.length === 0) return false
    const perIp = this.reservationsByIp(view)
    for (const ip of keys) {
      const held = perIp.get(ip.key) ?? 0
      if (this.refuseAt(held >= this.limits.maxReservationsPerIp, {
        code: 'reservations-per-ip', what: 'reservation', peer, address: ip.key, held, limit: this.limits.maxReservationsPerIp, flag: '--max-reservations-per-ip'
      })) return true
    }
    this.admitting.set(peer, keys[0].key)
    setImmediate(() => { this.admitting.delete(peer) })
    return false
  }

  /**
   * Each end within its per-peer and per-IP circuit limits. The source's HOP
   * stream for this circuit is open while it is asked: counted, not yet held.
   */
  denyCircuit (source: string, destination: string): boolean {
    const view = this.view
    if (view == null) return false
    const all = view.connections()
    const held = (conns: readonly HopConnection[]): number => Math.max(0, sumCircuits(conns) - (conns.some(c => c.peer === source) ? 1 : 0))
    for (const peer of [source, destination]) {
      const conns = view.connections(peer)
      const address = conns[0]?.remoteAddr ?? '?'
      const n = held(conns)
      if (this.refuseAt(n >= this.limits.maxCircuitsPerPeer, {
        code: 'circuits-per-peer', what: 'circuit', peer, address, held: n, limit: this.limits.maxCircuitsPerPeer, flag: '--max-circuits-per-peer'
      })) return true
      for (const ip of this.limitedIps(conns)) {
        const ipHeld = held(this.byIp(all, ip))
        if (this.refuseAt(ipHeld >= this.limits.maxCircuitsPerIp, {
          code: 'circuits-per-ip', what: 'circuit', peer, address: ip.key, held: ipHeld, limit: this.limits.maxCircuitsPerIp, flag: '--max-circuits-per-ip'
        })) return true
      }
    }
    return false
  }

  /** The peer's last connection closed: its reservation goes after the grace unless it is back by then. */
  connectionClosed (peer: string, remaining: number): void {
    if (remaining > 0 || this.view?.hasReservation(peer) !== true) return
    clearTimeout(this.graceTimers.get(peer))
    const timer = setTimeout(() => { this.graceOver(peer) }, this.limits.reservationGraceMs)
    timer.unref()
    this.graceTimers.set(peer, timer)
  }

  private graceOver (peer: string): void {
    this.graceTimers.delete(peer)
    const view = this.view
    if (view == null || view.connections(peer).length > 0) return
    try {
      if (view.dropReservation(peer)) this.log.debug(`freed the reservation of ${shortPeerId(peer)}: no connection for ${duration(this.limits.reservationGraceMs)}`, { peer })
    } catch (err) {
      this.log.error(`cannot free the reservation of ${shortPeerId(peer)}, which left ${duration(this.limits.reservationGraceMs)} ago: ${(err as Error).message}`, { peer, code: (err as { code?: string }).code, cause: String((err as Error).cause ?? '') })
    }
  }

  private refuseAt (refuse: boolean, refusal: Refusal): boolean {
    if (refuse) this.refusals.record(refusal)
    return refuse
  }

  /** the IP key of `remoteAddr` when the per-IP limits apply to it */
  private limitedIp (remoteAddr: string): IpKey | undefined {
    const ip = ipKeyOf(remoteAddr)
    return ip == null || this.exempt.has(ip) ? undefined : ip
  }

  private limitedIps (conns: readonly HopConnection[]): IpKey[] {
    const keys = new Map<string, IpKey>()
    for (const c of conns) {
      const ip = this.limitedIp(c.remoteAddr)
      if (ip != null) keys.set(ip.key, ip)
    }
    return [...keys.values()]
  }

  private byIp (conns: readonly HopConnection[], ip: IpKey): HopConnection[] {
    return conns.filter(c => ipKeyOf(c.remoteAddr)?.key === ip.key)
  }

  /** reservations held (lingering ones in their grace too) and being admitted, per IP key */
  private reservationsByIp (view: HopView): Map<string, number> {
    const counts = new Map<string, number>()
    const add = (key: string | undefined): void => { if (key != null) counts.set(key, (counts.get(key) ?? 0) + 1) }
    for (const r of view.reservations()) add(ipKeyOf(r.remoteAddr)?.key)
    for (const [peer, key] of this.admitting) if (!view.hasReservation(peer)) add(key)
    return counts
  }
}

function sumCircuits (conns: readonly HopConnection[]): number {
  return conns.reduce((n, c) => n + c.circuits, 0)
}
