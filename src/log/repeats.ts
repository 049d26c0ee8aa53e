/**
 * One WARN line per (component, peer, cause code) per interval for input a
 * peer sent that we refuse: a peer can send garbage as fast as the link
 * carries it, and one line each would drown every other line of the log (and
 * fill the disk of whoever keeps it). The first occurrence is written at once;
 * repeats within the interval are counted, and the count is written when the
 * interval ends ("… and 4,211 more like it in the last 60 s") on the next
 * occurrence, or by a sweep when the flood has stopped.
 *
 * Free identities make peers cheap: past `maxKeys` live keys, new peers of a
 * component share one key per cause code (peer `*`), so a flood from many
 * PeerIds still writes a bounded number of lines.
 */
import type { Fields, Logger } from './logger.ts'

export interface RepeatLimiterInit {
  /**
   * Length of the window in which repeats of one key are counted, not written.
   *
   * @default 60000
   */
  intervalMs?: number
  /**
   * Keys tracked at once; past it new peers share the key `(component, *, code)`.
   *
   * @default 1024
   */
  maxKeys?: number
  /**
   * The clock, in ms (tests pass a fake one).
   *
   * @default Date.now
   */
  now?: () => number
  /**
   * Sweep ended windows on a timer (unref'd, so it never keeps the process
   * alive); tests turn it off and call `sweep()`.
   *
   * @default true
   */
  autoSweep?: boolean
}

/** What a repeated line is keyed on, besides its component. */
export interface RepeatFields extends Fields {
  /** the peer that sent the input; absent for a local source */
  peer?: string
  /** the stable code of the cause (MALFORMED_MESSAGE, PROTOCOL_VIOLATION, …) */
  code?: string
}

interface Window {
  log: Logger
  startedAt: number
  suppressed: number
  /** the last suppressed line, written with the count when the window ends */
  lastMsg: string
  lastFields: RepeatFields
}

export const DEFAULT_REPEAT_INTERVAL_MS = 60_000
export const DEFAULT_REPEAT_MAX_KEYS = 1024
const ANY_PEER = '*'

export class RepeatLimiter {
  private readonly intervalMs: number
  private readonly maxKeys: number
  private readonly now: () => number
  private readonly autoSweep: boolean
  private readonly windows = new Map<string, Window>()
  private timer: ReturnType<typeof setInterval> | undefined

  constructor (init: RepeatLimiterInit = {}) {
    this.intervalMs = init.intervalMs ?? DEFAULT_REPEAT_INTERVAL_MS
    this.maxKeys = init.maxKeys ?? DEFAULT_REPEAT_MAX_KEYS
    this.now = init.now ?? Date.now
    this.autoSweep = init.autoSweep ?? true
  }

  /** Keys with an open window (for tests and diagnostics). */
  get size (): number {
    return this.windows.size
  }

  /**
   * Writes `msg` at WARN on `log` unless a line with the same key was written
   * within the interval. `perPeer: false` keys on the component and code
   * alone: a flood from many identities is one cause (the relay's refusals).
   */
  warn (log: Logger, msg: string, fields: RepeatFields = {}, options: { perPeer?: boolean } = {}): void {
    const now = this.now()
    const key = this.keyOf(log.component, options.perPeer === false ? { ...fields, peer: ANY_PEER } : fields)
    const open = this.windows.get(key)
    if (open != null && now - open.startedAt < this.intervalMs) {
      open.suppressed++
      open.lastMsg = msg
      open.lastFields = fields
      return
    }
    const carried = open?.suppressed ?? 0
    this.windows.delete(key)
    this.windows.set(key, { log, startedAt: now, suppressed: 0, lastMsg: msg, lastFields: fields })
    this.ensureTimer()
    if (carried > 0 && open != null) {
      log.warn(`${msg} ${moreLikeIt(carried, now - open.startedAt)}`, { ...fields, suppressed: carried })
    } else {
      log.warn(msg, fields)
    }
  }

  /** Ends every window older than the interval, writing the count of what it held back. */
  sweep (): void {
    const now = this.now()
    for (const [key, w] of this.windows) {
      if (now - w.startedAt < this.intervalMs) continue
      this.windows.delete(key)
      if (w.suppressed > 0) {
        w.log.warn(`${w.lastMsg} ${moreLikeIt(w.suppressed, now - w.startedAt)}`, { ...w.lastFields, suppressed: w.suppressed })
      }
    }
    if (this.windows.size === 0) this.stopTimer()
  }

  /** Writes every pending count now and forgets all windows (at shutdown, or between tests). */
  flush (): void {
    const now = this.now()
    for (const w of this.windows.values()) {
      if (w.suppressed > 0) {
        w.log.warn(`${w.lastMsg} ${moreLikeIt(w.suppressed, now - w.startedAt)}`, { ...w.lastFields, suppressed: w.suppressed })
      }
    }
    this.windows.clear()
    this.stopTimer()
  }

  private keyOf (component: string, fields: RepeatFields): string {
    const code = typeof fields.code === 'string' ? fields.code : ''
    const peer = typeof fields.peer === 'string' ? fields.peer : ''
    const key = JSON.stringify([component, peer, code])
    if (this.windows.has(key) || this.windows.size < this.maxKeys) return key
    return JSON.stringify([component, ANY_PEER, code])
  }

  private ensureTimer (): void {
    if (!this.autoSweep || this.timer != null) return
    this.timer = setInterval(() => { this.sweep() }, this.intervalMs)
    this.timer.unref()
  }

  private stopTimer (): void {
    if (this.timer == null) return
    clearInterval(this.timer)
    this.timer = undefined
  }
}

/** "… and 4,211 more like it in the last 60 s" */
export function moreLikeIt (count: number, spanMs: number): string {
  const seconds = Math.max(1, Math.round(spanMs / 1000))
  return `… and ${count.toLocaleString('en-US')} more like it in the last ${seconds} s`
}

let shared = new RepeatLimiter()

/**
 * The process-wide limiter every site that logs refused peer input goes
 * through, so one flood is counted once whichever protocol it arrives on.
 */
export function warnRepeated (log: Logger, msg: string, fields: RepeatFields = {}): void {
  shared.warn(log, msg, fields)
}

/** Replaces the process-wide limiter (tests: a fake clock, a short interval); pending counts are written first. */
export function configureRepeats (init: RepeatLimiterInit = {}): RepeatLimiter {
  shared.flush()
  shared = new RepeatLimiter(init)
  return shared
}
