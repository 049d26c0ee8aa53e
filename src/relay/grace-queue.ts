export interface GraceQueueInit {
  /** how long an entry waits */
  graceMs: number
  /** called with each entry whose grace is over */
  onExpired: (peer: string) => void
  now?: () => number
}

/**
 * Peers waiting out a fixed grace, with one timer for all of them: every
 * entry waits the same time, so insertion order is deadline order and the
 * timer only ever needs the oldest entry's deadline. Cost: one timer armed
 * while the queue is non-empty, and per peer one map entry, whatever the
 * number of peers that left at once (a relay restart upstream, a NAT reset).
 */
export class GraceQueue {
  private readonly graceMs: number
  private readonly onExpired: (peer: string) => void
  private readonly now: () => number
  /** peer → deadline, oldest first (a re-added peer moves to the end) */
  private readonly deadlines = new Map<string, number>()
  private timer?: NodeJS.Timeout

  constructor (init: GraceQueueInit) {
    this.graceMs = init.graceMs
    this.onExpired = init.onExpired
    this.now = init.now ?? Date.now
  }

  /** Starts (or restarts) `peer`'s grace. */
  add (peer: string): void {
    this.deadlines.delete(peer)
    this.deadlines.set(peer, this.now() + this.graceMs)
    if (this.timer == null) this.arm()
  }

  get size (): number {
    return this.deadlines.size
  }

  clear (): void {
    clearTimeout(this.timer)
    this.timer = undefined
    this.deadlines.clear()
  }

  private arm (): void {
    const first = this.deadlines.values().next()
    if (first.done === true) return
    this.timer = setTimeout(() => { this.expire() }, Math.max(0, first.value - this.now()))
    this.timer.unref()
  }

  private expire (): void {
    this.timer = undefined
    const now = this.now()
    for (const [peer, deadline] of this.deadlines) {
      if (deadline > now) break
      this.deadlines.delete(peer)
      this.onExpired(peer)
    }
    if (this.timer == null) this.arm()
  }
}
