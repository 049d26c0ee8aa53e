import { setMaxListeners } from 'node:events'
import { follow } from '../core/async.ts'

/**
 * One abort signal for a whole exchange whose time budget changes by phase.
 * `enter` starts a phase with its own budget; `touch` restarts the current
 * budget, which makes it a stall timeout (no progress for `ms`) rather than a
 * cap on the whole transfer, so a 64 MiB payload over a slow relay is fine as
 * long as it keeps moving.
 *
 * libp2p's stream helpers reject with a generic AbortError when the signal
 * fires; `expired` gives back the named timeout error to throw instead.
 *
 * The signal is a plain controller's that follows `parent` from `enter` to
 * `dispose` (one listener on it, removed there), not AbortSignal.any: every
 * read and write of the exchange adds a listener to this signal, and one on
 * a composite signal costs several times more.
 */
export class PhaseTimer<P extends string> {
  readonly signal: AbortSignal
  private readonly controller = new AbortController()
  private readonly parent: AbortSignal | undefined
  private readonly makeError: (phase: P, ms: number) => Error
  private timer: ReturnType<typeof setTimeout> | undefined
  private phase: P | undefined
  private ms = 0
  private timedOut: Error | undefined
  /** stops following the parent; set while a phase runs */
  private unfollow: (() => void) | undefined

  constructor (makeError: (phase: P, ms: number) => Error, parent?: AbortSignal) {
    this.makeError = makeError
    this.parent = parent
    this.signal = this.controller.signal
    // every read and write of a long transfer listens on this one signal, and every exchange under the parent on it
    setMaxListeners(Infinity, this.signal)
    if (parent != null) setMaxListeners(Infinity, parent)
    // aborted already: so is this signal, from the start (nothing to undo)
    if (parent?.aborted === true) this.controller.abort(parent.reason)
  }

  get current (): P | undefined {
    return this.phase
  }

  /** The timeout error, once a phase has run out of time. */
  get expired (): Error | undefined {
    return this.timedOut
  }

  enter (phase: P, ms: number): void {
    this.phase = phase
    this.ms = ms
    this.unfollow ??= follow(this.parent, this.controller)
    this.touch()
  }

  touch (): void {
    if (this.phase === undefined || this.controller.signal.aborted) return
    clearTimeout(this.timer)
    const phase = this.phase
    const ms = this.ms
    this.timer = setTimeout(() => {
      if (this.controller.signal.aborted) return
      this.timedOut = this.makeError(phase, ms)
      this.controller.abort(this.timedOut)
    }, ms)
  }

  /** Stops the clock and the following of the parent (a later `enter` starts both again). */
  dispose (): void {
    clearTimeout(this.timer)
    this.timer = undefined
    this.unfollow?.()
    this.unfollow = undefined
  }
}
