/**
 * Polls `probe` every `intervalMs` until it returns something other than
 * undefined or false, and returns that. A probe that throws is asked again (a
 * daemon's API may not answer yet); after `timeoutMs` the wait fails, naming
 * `what` and the last error seen.
 */
export async function waitFor<T> (
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 15_000,
  intervalMs = 50
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const value = await probe()
      if (value !== undefined && value !== false) return value
    } catch (err) {
      last = err
    }
    await new Promise(resolve => setTimeout(resolve, intervalMs))
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last != null ? ` (last error: ${String(last)})` : ''}`)
}

/**
 * Calls `sample` at every turn of the event loop (each `setImmediate`) until
 * `stop()`, which returns how many times it ran. Microtasks never interleave
 * with a sample: it sees the state a macrotask left.
 */
export function everyTurn (sample: () => void): { stop: () => number } {
  let samples = 0
  let running = true
  const tick = (): void => {
    if (!running) return
    samples++
    sample()
    setImmediate(tick)
  }
  setImmediate(tick)
  return { stop: () => { running = false; return samples } }
}

