import { codeOf, messageOf } from '../protocols/errors.ts'
import type { Logger } from '../log/logger.ts'

export interface TeardownInit {
  /** where a part that fails to stop is reported */
  logger: Logger
}

/**
 * What the composition root has started, stopped last-first: by `stop()` of
 * a running daemon, and when a later start step fails, so a start that
 * rejects leaves nothing running behind its error (no node listening, no
 * open store, no API port held).
 */
export class Teardown {
  private readonly parts: Array<{ name: string, stop: () => void | Promise<void> }> = []
  private readonly log: Logger

  constructor (init: TeardownInit) {
    this.log = init.logger
  }

  /** Registers a part that has just started: it is stopped before every part registered earlier. */
  add (name: string, stop: () => void | Promise<void>): void {
    this.parts.push({ name, stop })
  }

  /**
   * Stops every registered part, last registered first, each once. A part
   * that fails to stop is logged and the others are still stopped; resolves
   * with the failures (empty when every part stopped).
   */
  async stopAll (): Promise<unknown[]> {
    const failures: unknown[] = []
    for (let part = this.parts.pop(); part != null; part = this.parts.pop()) await this.stopPart(part, failures)
    return failures
  }

  /** Stops the part registered as `name` now, ahead of its turn; resolves with its failure, if any, as `stopAll` does. */
  async stopNow (name: string): Promise<unknown[]> {
    const failures: unknown[] = []
    const i = this.parts.findIndex(p => p.name === name)
    if (i !== -1) await this.stopPart(this.parts.splice(i, 1)[0], failures)
    return failures
  }

  private async stopPart (part: { name: string, stop: () => void | Promise<void> }, failures: unknown[]): Promise<void> {
    try {
      await part.stop()
    } catch (err) {
      this.log.error(`stopping the ${part.name} failed: ${messageOf(err)}`, { code: codeOf(err) })
      failures.push(err)
    }
  }

  /**
   * A start step failed with `err`: stops everything the earlier steps
   * started and rejects with `err` itself (a part that fails to stop is
   * logged, not allowed to hide why the start failed).
   */
  async rollBack (err: unknown): Promise<never> {
    await this.stopAll()
    throw err
  }
}
