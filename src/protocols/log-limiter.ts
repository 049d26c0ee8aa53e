/**
 * One log line per key (a peer) per interval: a peer that sends the same
 * unwanted thing a thousand times a second gets one line, then one line per
 * interval saying how many more there were, instead of a flooded log.
 */
export interface LogLimiterInit {
  /**
   * @default 60000
   */
  intervalMs?: number
  /**
   * keys remembered at once; the oldest is forgotten first (a forgotten key
   * logs again at once, which is harmless) @default 1024
   */
  maxKeys?: number
}

/** What `allow` decided: whether to log now, and how many lines were held back since the last one. */
export interface LogTurn {
  log: boolean
  suppressed: number
}

export class LogLimiter {
  private readonly intervalMs: number
  private readonly maxKeys: number
  private readonly keys = new Map<string, { last: number, suppressed: number }>()

  constructor (init: LogLimiterInit = {}) {
    this.intervalMs = init.intervalMs ?? 60_000
    this.maxKeys = init.maxKeys ?? 1024
  }

  allow (key: string, now = Date.now()): LogTurn {
    const entry = this.keys.get(key)
    if (entry != null && now - entry.last < this.intervalMs) {
      entry.suppressed++
      return { log: false, suppressed: entry.suppressed }
    }
    const suppressed = entry?.suppressed ?? 0
    this.keys.delete(key)
    this.keys.set(key, { last: now, suppressed: 0 })
    if (this.keys.size > this.maxKeys) this.keys.delete(this.keys.keys().next().value as string)
    return { log: true, suppressed }
  }
}
