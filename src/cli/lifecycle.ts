import type { Output } from './output.ts'

/**
 * Starts a service and runs it until SIGINT or SIGTERM, then stops it cleanly.
 * The handlers are installed before the start begins: a signal that arrives
 * while the service is still starting (its API may already answer) must stop
 * it once started, not kill the process with half-open state. A second signal
 * while stopping forces the exit: the operator asked twice.
 */
export async function runUntilSignal<H extends { stop: () => Promise<void> }> (
  o: Output,
  start: () => Promise<H>,
  onStarted: (handle: H) => void = () => {}
): Promise<void> {
  let signals = 0
  let requested: (() => void) | undefined
  const stopRequested = new Promise<void>((resolve) => { requested = resolve })
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++
    if (signals === 1) {
      o.err(`received ${sig}, stopping (send it again to force)`)
      requested?.()
    } else {
      o.err(`received ${sig} again, forcing exit`)
      process.exit(130)
    }
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  try {
    const handle = await start()
    onStarted(handle)
    await stopRequested
    try {
      await handle.stop()
    } catch (err) {
      o.err(`error while stopping: ${err instanceof Error ? err.stack ?? err.message : String(err)}`)
      process.exitCode = 1
    }
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}
