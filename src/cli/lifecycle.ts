import { WorldComputeError } from '../core/errors.ts'
import { operatorLine, type Fields, type Level } from '../log/logger.ts'
import type { Output } from './output.ts'

/** The log component of this module's lines when they go out as JSON records (`--log-format json`). */
const COMPONENT = 'lifecycle'

/** A named error is expected (a full disk, a port taken): its one-line message says it all; anything else is a bug and keeps its stack. */
function describe (err: unknown): string {
  if (err instanceof WorldComputeError) return `${err.message} (${err.code})`
  return err instanceof Error ? err.stack ?? err.message : String(err)
}

/**
 * Starts a service and runs it until SIGINT or SIGTERM, then stops it cleanly.
 * The handlers are installed before the start begins: a signal that arrives
 * while the service is still starting (its API may already answer) must stop
 * it once started, not kill the process with half-open state. A second signal
 * while stopping forces the exit: the operator asked twice.
 *
 * A start that fails rejects with its error, the service having stopped
 * what it started: the command's caller prints a named error as one line
 * and exits non-zero, so a supervisor sees the failure and restarts.
 */
export async function runUntilSignal<H extends { stop: () => Promise<void> }> (
  o: Output,
  start: () => Promise<H>,
  onStarted: (handle: H) => void = () => {}
): Promise<void> {
  const say = (level: Level, msg: string, fields?: Fields): void => { operatorLine(o.err, COMPONENT, level, msg, fields) }
  let signals = 0
  let requested: (() => void) | undefined
  const stopRequested = new Promise<void>((resolve) => { requested = resolve })
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++
    if (signals === 1) {
      say('info', `received ${sig}, stopping (send it again to force)`, { signal: sig })
      requested?.()
    } else {
      say('warn', `received ${sig} again, forcing exit`, { signal: sig })
      process.exit(130)
    }
  }
  // A promise rejected with nobody listening, inside a library, must not take
  // a long-running daemon down (js-libp2p 3's connection monitor aborts a
  // connection from a .catch handler, and yamux throws StreamStateError there
  // when the connection is already closed). Logged in full, every time, and
  // the service carries on; an uncaught exception still ends the process.
  const onRejection = (reason: unknown): void => {
    say('error', `internal error, not fatal (an unhandled promise rejection; the service keeps running): ${reason instanceof Error ? reason.stack ?? reason.message : String(reason)}`, { code: 'UNHANDLED_REJECTION' })
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  process.on('unhandledRejection', onRejection)
  try {
    const handle = await start()
    onStarted(handle)
    await stopRequested
    try {
      await handle.stop()
    } catch (err) {
      say('error', `error while stopping: ${describe(err)}`, { code: err instanceof WorldComputeError ? err.code : undefined })
      process.exitCode = 1
    }
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    process.off('unhandledRejection', onRejection)
  }
}
