import { setMaxListeners } from 'node:events'

/**
 * One abort signal for a whole exchange whose time budget changes by phase.
 * `enter` starts a phase with its own budget; `touch` restarts the current
 * budget, which makes it a stall timeout (no progress for `ms`) rather than a
 * cap on the whole transfer, so a 64 MiB payload over a slow relay is fine as
 * long as it keeps moving.
 *
 * libp2p's stream helpers reject with a generic AbortError when the signal
 * fires; `expired` gives back the named timeout error to throw instead.
 */
export class PhaseTimer<P extends string> {
  readonly signal: AbortSignal
  private readonly controller = new AbortController()
  private readonly makeError: (phase: P, ms: number) => Error
  private timer: ReturnType<typeof setTimeout> | undefined
  private phase: P | undefined
  private ms = 0

  constructor (makeError: (phase: P, ms: number) => Error, parent?: AbortSignal) {
    this.makeError = makeError
    this.signal = parent == null ? this.controller.signal : AbortSignal.any([parent, this.controller.signal])
    // every read and write of a long transfer listens on this one signal
    setMaxListeners(Infinity, this.signal)
  }

  get current (): P | undefined {
    return this.phase
  }

  /** The timeout error, once a phase has run out of time. */
  get expired (): Error | undefined {
    return this.controller.signal.aborted ? this.controller.signal.reason as Error : undefined
  }

  enter (phase: P, ms: number): void {
    this.phase = phase
    this.ms = ms
    this.touch()
  }

  touch (): void {
    if (this.phase === undefined || this.controller.signal.aborted) return
    clearTimeout(this.timer)
    const phase = this.phase
    const ms = this.ms
    this.timer = setTimeout(() => { this.controller.abort(this.makeError(phase, ms)) }, ms)
  }

  dispose (): void {
    clearTimeout(this.timer)
    this.timer = undefined
  }
}
