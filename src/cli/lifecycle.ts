import type { Output } from './output.ts'

/**
 * Runs until SIGINT or SIGTERM, then stops cleanly. A second signal while
 * stopping forces the exit: the operator asked twice.
 */
export async function runUntilSignal (o: Output, stop: () => Promise<void>): Promise<void> {
  await new Promise<void>((resolve) => {
    let signals = 0
    const onSignal = (sig: NodeJS.Signals): void => {
      signals++
      if (signals === 1) {
        o.err(`received ${sig}, stopping (send it again to force)`)
        stop().then(() => {
          process.off('SIGINT', onSignal)
          process.off('SIGTERM', onSignal)
          resolve()
        }, (err: Error) => {
          o.err(`error while stopping: ${err.stack ?? String(err)}`)
          process.exitCode = 1
          process.off('SIGINT', onSignal)
          process.off('SIGTERM', onSignal)
          resolve()
        })
      } else {
        o.err(`received ${sig} again, forcing exit`)
        process.exit(130)
      }
    }
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
  })
}
