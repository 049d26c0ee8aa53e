/**
 * Stops what a test started. At the top of a test file:
 *
 *   const track = stopAfterEach()
 *
 * then `track(await startSomething())` in a test or a set-up helper. After each
 * test every tracked handle is stopped, newest first: a donor goes before the
 * relay it reserved on.
 */
import { afterEach } from 'node:test'

export interface Stoppable {
  stop: () => Promise<void>
}

/** Registers `handle` to be stopped after the current test; returns it. */
export type Track = <T extends Stoppable>(handle: T) => T

export function stopAfterEach (): Track {
  const running: Stoppable[] = []
  afterEach(async () => {
    for (const r of running.splice(0).reverse()) await r.stop()
  })
  return handle => {
    running.push(handle)
    return handle
  }
}
