import { createLogger, type Logger } from '../log/logger.ts'
import type { DialAttempt } from '../core/types.ts'

export interface DialTelemetryInit {
  /** how many recent attempts to keep for the API @default 500 */
  capacity?: number
  logger?: Logger
}

export type DialAttemptListener = (attempt: DialAttempt) => void

/**
 * Every outbound dial attempt the daemon makes ends here exactly once.
 * Failures are one readable line at the default log level (warn): the seed's
 * complaint was that libp2p put them where nobody looked.
 */
export class DialTelemetry {
  private readonly capacity: number
  private readonly buffer: DialAttempt[] = []
  private readonly listeners = new Set<DialAttemptListener>()
  private readonly log: Logger
  private total = 0

  constructor (init: DialTelemetryInit = {}) {
    this.capacity = init.capacity ?? 500
    this.log = init.logger ?? createLogger('net.dial')
  }

  record (attempt: DialAttempt): void {
    this.total++
    this.buffer.push(attempt)
    if (this.buffer.length > this.capacity) this.buffer.shift()
    this.logAttempt(attempt)
    for (const listener of this.listeners) {
      try {
        listener(attempt)
      } catch (err) {
        this.log.error('dial telemetry listener threw', { err })
      }
    }
  }

  /** The most recent attempts, oldest first. */
  recent (limit = this.capacity): DialAttempt[] {
    return this.buffer.slice(Math.max(0, this.buffer.length - limit))
  }

  /** How many attempts were recorded since start (the buffer only keeps the last ones). */
  count (): number {
    return this.total
  }

  onAttempt (listener: DialAttemptListener): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  private logAttempt (a: DialAttempt): void {
    const took = a.duration_ms >= 1000 ? `${(a.duration_ms / 1000).toFixed(1)} s` : `${Math.round(a.duration_ms)} ms`
    const fields = {
      peer: a.peerId,
      transport: a.transport,
      phase: a.phase,
      code: a.code,
      purpose: a.purpose,
      duration_ms: Math.round(a.duration_ms)
    }
    const what = a.phase === 'reservation' ? 'reservation' : 'dial'
    if (a.outcome === 'success') {
      this.log.info(`${what} ok: ${a.target} (${a.transport}) in ${took}`, fields)
    } else if (a.outcome === 'cancelled') {
      this.log.debug(`${what} cancelled: ${a.target} (${a.transport}) after ${took} at ${a.phase}: ${a.cause}`, fields)
    } else if (a.purpose === 'dial-back') {
      // the answer to another peer's reachability check, sent to that peer; nothing this node needs failed
      this.log.info(`dial-back failed (an AutoNAT check another peer asked for: not reachable there): ${a.target} (${a.transport}) after ${took} at ${a.phase}: ${a.cause}`, fields)
    } else {
      this.log.warn(`${what} failed: ${a.target} (${a.transport}) after ${took} at ${a.phase}: ${a.cause}`, fields)
    }
  }
}
