/**
 * The async primitives every layer shares: one delay, one race against a
 * signal, one waker, one backoff policy. Written here rather than taken from
 * a library because each is a few lines over the platform's AbortSignal and
 * timers, and the whole mesh must agree on one behaviour: a wait that is
 * aborted rejects with the signal's reason (callers never re-check a flag),
 * and every timer is cleared when its wait ends.
 */

/** The reason a wait stopped because its signal fired: the signal's own reason, or an AbortError. */
function abortReason (signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError')
}

/**
 * Waits `ms`; rejects with the signal's reason as soon as `signal` aborts
 * (also when it already has).
 */
export async function delay (ms: number, options: { signal?: AbortSignal } = {}): Promise<void> {
  const { signal } = options
  if (signal?.aborted === true) throw abortReason(signal)
  await new Promise<void>((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer)
      reject(abortReason(signal as AbortSignal))
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, Math.max(0, ms))
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/**
 * Waits `ms` or until `signal` aborts, whichever comes first, and never
 * rejects: for loops that must finish their own clean-up after a stop
 * (they look at `signal.aborted` next). Returns whether the wait was cut short.
 */
export async function pause (ms: number, options: { signal?: AbortSignal } = {}): Promise<boolean> {
  try {
    await delay(ms, options)
    return false
  } catch (err) {
    if (options.signal?.aborted === true) return true
    throw err
  }
}

/**
 * Settles with `promise`, or rejects with the signal's reason when `signal`
 * aborts first. The promise is not cancelled (it may go on running); its
 * later rejection is consumed so it never surfaces as unhandled.
 */
export async function raceSignal<T> (promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (signal == null) return await promise
  if (signal.aborted) {
    promise.catch(outcomeNoLongerWanted)
    throw abortReason(signal)
  }
  return await new Promise<T>((resolve, reject) => {
    const onAbort = (): void => { reject(abortReason(signal)) }
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(resolve, reject).finally(() => { signal.removeEventListener('abort', onAbort) })
  })
}

/**
 * Aborts `controller` with `parent`'s reason when `parent` aborts (at once
 * when it has); returns what stops following, to call when the work the
 * controller guards ends. One listener on `parent`, where AbortSignal.any
 * makes a composite signal that costs more to make, and more again for
 * every listener added to it (each read and write of a stream adds one).
 * A long-lived parent that many follow at once needs its listener limit
 * raised (`setMaxListeners`) by its owner.
 */
export function follow (parent: AbortSignal | undefined, controller: AbortController): () => void {
  if (parent == null) return unfollowed
  if (parent.aborted) {
    controller.abort(parent.reason)
    return unfollowed
  }
  const onAbort = (): void => { controller.abort(parent.reason) }
  parent.addEventListener('abort', onAbort, { once: true })
  return () => { parent.removeEventListener('abort', onAbort) }
}

/** `follow` of no parent, or of one aborted already: nothing to undo. */
function unfollowed (): void {}

/** The caller stopped waiting (its signal fired): what the abandoned promise ends with is not anyone's to report. */
function outcomeNoLongerWanted (_err: unknown): void {}

/**
 * A sleeper that can be woken early: `wait(ms)` resolves with `'woken'` when
 * `wake()` is called during the wait, `'timeout'` when `ms` passes, and
 * rejects with the signal's reason when `signal` aborts. A `wake()` while
 * nobody waits is remembered until the next `wait` only if `latch` is set,
 * so a wake-up that lands between two waits is not lost.
 */
export class Waker {
  private pending?: (reason: 'woken') => void
  private latched = false
  private readonly latch: boolean

  constructor (options: { latch?: boolean } = {}) {
    this.latch = options.latch ?? false
  }

  /** Whether someone is waiting now. */
  get waiting (): boolean {
    return this.pending != null
  }

  wake (): void {
    const pending = this.pending
    if (pending != null) {
      this.pending = undefined
      pending('woken')
    } else if (this.latch) {
      this.latched = true
    }
  }

  async wait (ms: number, options: { signal?: AbortSignal } = {}): Promise<'woken' | 'timeout'> {
    const { signal } = options
    if (signal?.aborted === true) throw abortReason(signal)
    if (this.latched) {
      this.latched = false
      return 'woken'
    }
    return await new Promise<'woken' | 'timeout'>((resolve, reject) => {
      const finish = (): void => {
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
        if (this.pending === onWake) this.pending = undefined
      }
      const onWake = (reason: 'woken'): void => { finish(); resolve(reason) }
      const onAbort = (): void => { finish(); reject(abortReason(signal as AbortSignal)) }
      const timer = setTimeout(() => { finish(); resolve('timeout') }, Math.max(0, ms))
      this.pending = onWake
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }
}

/**
 * How long to wait before attempt N+1 after N consecutive failures: capped
 * exponential growth with optional jitter, the one backoff policy of the
 * code base (reservations, retries, direct-path attempts).
 */
export interface BackoffPolicy {
  /** the wait after the first failure */
  initialMs: number
  /** the longest wait */
  maxMs: number
  /** growth per failure @default 2 */
  factor?: number
  /**
   * ± this share of the wait, at random, so that many peers retrying the
   * same target do not do so in lock-step @default 0
   */
  jitter?: number
}

/**
 * The wait after `failures` consecutive failures (1 = the first). `random`
 * is injectable for tests.
 */
export function backoffDelay (policy: BackoffPolicy, failures: number, random: () => number = Math.random): number {
  const factor = policy.factor ?? 2
  const exp = Math.min(policy.maxMs, policy.initialMs * factor ** Math.min(Math.max(failures - 1, 0), 30))
  const jitter = policy.jitter ?? 0
  return Math.round(exp * (1 - jitter + random() * 2 * jitter))
}
