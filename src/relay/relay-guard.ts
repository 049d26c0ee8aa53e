import { createLogger, type Logger } from '../log/logger.ts'
import { duration, shortPeerId } from '../core/format.ts'
import { IpRanges, ipKeyOf, type IpKey } from './ip-key.ts'
import { RefusalLog, type Refusal, type RefusalCode } from './refusal-log.ts'
import { IpIndex } from './ip-index.ts'
import { GraceQueue } from './grace-queue.ts'
import type { HopAdmission, HopConnection, HopView, HopViewListener } from '../net/hop-gate.ts'
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
 *
 * Every per-IP count is kept by IP key from the node's change feed (HopView
 * watch), so a decision costs the same at 10 and 10,000 held reservations;
 * the per-peer ones read that peer's connections only.
 */
export class RelayGuard implements HopAdmission {
  private readonly limits: RelayAdmissionLimits
  private readonly exempt: IpRanges
  private readonly log: Logger
  private readonly refusals: RefusalLog
  private view?: HopView
  private unwatch?: () => void
  /** open direct connections by IP key (id → peer), kept from the view's change feed */
  private readonly connsByIp = new IpIndex()
  /** stored reservations (lingering ones in their grace too) by the IP key they were made from */
  private readonly reservationsByIp = new IpIndex()
  /** peers whose last connection closed, their reservation freed when the grace is over */
  private readonly grace: GraceQueue
  /**
   * reservations admitted whose store entry is not written yet (peer → IP key):
   * the store writes it right after the gater answers, so concurrent requests
   * from one IP could otherwise all pass the same count
   */
  private readonly admitting = new Map<string, string>()
  private readonly feed: HopViewListener = {
    connectionOpened: (c) => { this.index(this.connsByIp, c.id, c.remoteAddr, c.peer) },
    connectionClosed: (c) => { this.connsByIp.remove(c.id) },
    reservationStored: (peer, remoteAddr) => { this.index(this.reservationsByIp, peer, remoteAddr, peer) },
    reservationRemoved: (peer) => { this.reservationsByIp.remove(peer) }
  }

  constructor (init: RelayGuardInit) {
    this.limits = init.limits
    this.exempt = new IpRanges(init.limits.perIpExempt)
    this.log = init.logger ?? createLogger('relay.admission')
    this.refusals = new RefusalLog({ logger: this.log, intervalMs: init.refusalLogIntervalMs })
    this.grace = new GraceQueue({ graceMs: init.limits.reservationGraceMs, onExpired: (peer) => { this.graceOver(peer) } })
  }

  /** Reads the view's state once, then keeps its per-IP counts from the view's changes. */
  attach (view: HopView): void {
    this.detach()
    this.view = view
    this.unwatch = view.watch(this.feed)
    for (const c of view.connections()) this.feed.connectionOpened(c)
    for (const r of view.reservations()) this.feed.reservationStored(r.peer, r.remoteAddr)
  }

  detach (): void {
    this.grace.clear()
    this.unwatch?.()
    this.unwatch = undefined
    this.connsByIp.clear()
    this.reservationsByIp.clear()
    this.view = undefined
  }

  /** refusals so far, per cause */
  refusalCounts (): Record<RefusalCode, number> {
    return this.refusals.counts()
  }

  denyConnection (remoteAddr: string): boolean {
    const ip = this.limitedIp(remoteAddr)
    if (ip == null || this.view == null) return false
    const held = this.connsByIp.count(ip.key)
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
    for (const ip of keys) {
      const held = this.reservationsAt(ip.key, view)
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
    const held = (conns: readonly HopConnection[]): number => Math.max(0, sumCircuits(conns) - (conns.some(c => c.peer === source) ? 1 : 0))
    for (const peer of [source, destination]) {
      const conns = view.connections(peer)
      const address = conns[0]?.remoteAddr ?? '?'
      const n = held(conns)
      if (this.refuseAt(n >= this.limits.maxCircuitsPerPeer, {
        code: 'circuits-per-peer', what: 'circuit', peer, address, held: n, limit: this.limits.maxCircuitsPerPeer, flag: '--max-circuits-per-peer'
      })) return true
      for (const ip of this.limitedIps(conns)) {
        const ipHeld = held(this.connectionsAt(ip, view))
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
    this.grace.add(peer)
  }

  private graceOver (peer: string): void {
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

  /** Indexes `id` under the IP key of `remoteAddr`; an address without one (a name, a circuit) counts against no IP. */
  private index (index: IpIndex, id: string, remoteAddr: string, peer: string): void {
    const key = ipKeyOf(remoteAddr)?.key
    if (key != null) index.add(id, key, peer)
    else index.remove(id)
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

  /** the open connections from `ip`, read through the peers the index has there (at most the per-IP limit) */
  private connectionsAt (ip: IpKey, view: HopView): HopConnection[] {
    const out: HopConnection[] = []
    for (const peer of this.connsByIp.peers(ip.key)) {
      for (const c of view.connections(peer)) if (ipKeyOf(c.remoteAddr)?.key === ip.key) out.push(c)
    }
    return out
  }

  /** reservations held from `key` (lingering ones in their grace too) and being admitted */
  private reservationsAt (key: string, view: HopView): number {
    let n = this.reservationsByIp.count(key)
    for (const [peer, k] of this.admitting) if (k === key && !this.reservationsByIp.has(peer) && !view.hasReservation(peer)) n++
    return n
  }
}

function sumCircuits (conns: readonly HopConnection[]): number {
  return conns.reduce((n, c) => n + c.circuits, 0)
}
