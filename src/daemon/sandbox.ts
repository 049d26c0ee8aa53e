import { backoffDelay, pause, type BackoffPolicy } from '../core/async.ts'
import { codeOf, messageOf } from '../protocols/errors.ts'
import type { Executor } from '../executor/index.ts'
import type { Logger } from '../log/logger.ts'

/**
 * Pauses between attempts to start an executor sandbox that failed to start:
 * 5 s, 15 s, 45 s, then every 60 s, never giving up.
 */
export const SANDBOX_RETRY: BackoffPolicy = { initialMs: 5_000, maxMs: 60_000, factor: 3 }

export interface SandboxKeeperInit {
  executor: Pick<Executor, 'start'>
  logger: Logger
  /** @default SANDBOX_RETRY */
  retry?: BackoffPolicy
}

/**
 * Keeps the executor sandbox running. A sandbox that does not start is not
 * fatal: a loaded machine can take longer than the start timeout to bring it
 * up, so the donor stays in the mesh, declines offers saying why
 * (`unavailable()`), and retries with capped backoff until it runs.
 */
export class SandboxKeeper {
  private readonly executor: Pick<Executor, 'start'>
  private readonly log: Logger
  private readonly retry: BackoffPolicy
  private readonly stopped = new AbortController()
  /** why the sandbox is not running after a failed start (undefined: it runs, or is still starting) */
  private down?: string

  constructor (init: SandboxKeeperInit) {
    this.executor = init.executor
    this.log = init.logger
    this.retry = init.retry ?? SANDBOX_RETRY
  }

  /** Why this donor cannot run jobs now, or undefined when the sandbox is not known to be down. */
  unavailable (): string | undefined {
    return this.down != null ? `the executor sandbox is not running (${this.down})` : undefined
  }

  /** The first start failed with `err`: says so and retries in the background; `onUp` runs once it is up. */
  startFailed (err: unknown, onUp: () => void): void {
    this.down = messageOf(err)
    this.log.error(`the executor sandbox did not start: ${this.down}; this donor takes no jobs until it does, retrying in ${backoffDelay(this.retry, 1) / 1000} s`, { code: codeOf(err) })
    void this.keepStarting(onUp)
  }

  /** Ends the retries (the executor itself is stopped by its owner). */
  stop (): void {
    this.stopped.abort()
  }

  private async keepStarting (onUp: () => void): Promise<void> {
    // attempt 1 was the start beside joining the mesh
    for (let attempt = 2; ; attempt++) {
      if (await pause(backoffDelay(this.retry, attempt - 1), { signal: this.stopped.signal })) return
      try {
        await this.executor.start()
        this.down = undefined
        this.log.info(`the executor sandbox is up after ${attempt} attempts: this donor takes jobs again`)
        onUp()
        return
      } catch (err) {
        this.down = messageOf(err)
        this.log.error(`the executor sandbox did not start (attempt ${attempt}): ${this.down}; retrying in ${backoffDelay(this.retry, attempt) / 1000} s`, { code: codeOf(err) })
      }
    }
  }
}
