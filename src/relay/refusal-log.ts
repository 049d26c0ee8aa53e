import { shortPeerId } from '../core/format.ts'
import type { Logger } from '../log/logger.ts'
import { RepeatLimiter } from '../log/repeats.ts'

/** Why the relay refused a connection, a reservation or a circuit; stable, logged as `cause`. */
export type RefusalCode =
  | 'connections-per-ip'
  | 'connections-per-peer'
  | 'reservations-per-ip'
  | 'circuits-per-ip'
  | 'circuits-per-peer'

export const REFUSAL_CODES: readonly RefusalCode[] = ['connections-per-ip', 'connections-per-peer', 'reservations-per-ip', 'circuits-per-ip', 'circuits-per-peer']

/** What was refused, as logged. */
export interface Refusal {
  code: RefusalCode
  what: 'connection' | 'reservation' | 'circuit'
  /** unknown for a connection refused before encryption */
  peer?: string
  /** the remote address, or the IP key the limit counts by */
  address: string
  /** what the peer or address holds already */
  held: number
  limit: number
  /** the flag that raises the limit */
  flag: string
}

export interface RefusalLogInit {
  logger: Logger
  /** at most one WARN line per cause in this time; the refusals in between are counted into the next line @default 10000 */
  intervalMs?: number
  now?: () => number
}

/**
 * Refusals, counted and logged at WARN at most once per cause per interval
 * (the log's RepeatLimiter, keyed by cause rather than peer): a flood of
 * throw-away identities would otherwise write one line per attempt, and the
 * log is the operator's first view of the flood.
 */
export class RefusalLog {
  private readonly log: Logger
  private readonly repeats: RepeatLimiter
  private readonly totals = new Map<RefusalCode, number>()

  constructor (init: RefusalLogInit) {
    this.log = init.logger
    this.repeats = new RepeatLimiter({ intervalMs: init.intervalMs ?? 10_000, now: init.now })
  }

  record (r: Refusal): void {
    this.totals.set(r.code, (this.totals.get(r.code) ?? 0) + 1)
    const who = r.peer != null ? `peer ${shortPeerId(r.peer)} at ${r.address}` : r.address
    this.repeats.warn(this.log, `refused ${r.what} ${r.what === 'circuit' ? 'with' : 'from'} ${who}: ${r.code}, ${r.held} held of ${r.limit} (${r.flag})`, {
      what: r.what, peer: r.peer, address: r.address, cause: r.code, code: r.code, held: r.held, limit: r.limit
    }, { perPeer: false })
  }

  /** refusals so far, per cause */
  counts (): Record<RefusalCode, number> {
    return Object.fromEntries(REFUSAL_CODES.map(c => [c, this.totals.get(c) ?? 0])) as Record<RefusalCode, number>
  }
}
