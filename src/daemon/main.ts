// Entry point of the `worldcompute` command (bin/worldcompute runs this on the pinned Node 24).
import { enableCompileCache } from 'node:module'

// Start-up time is part of "start → dispatchable" (target ≤ 3 s): V8's compile
// cache (in the OS temp dir; NODE_DISABLE_COMPILE_CACHE=1 turns it off) cuts
// a cold start of the CLI by about a third, measured 1.12 s → 0.77 s for `id`.
// It must be on before the rest of the CLI is loaded, hence the dynamic import.
enableCompileCache()
const { main } = await import('./commands/index.ts')
const { operatorLine } = await import('../log/logger.ts')

/**
 * How long the process may linger once its command has ended. Whatever is
 * still open then (a socket or timer a library did not release after a
 * failed start) must not keep it alive: a supervisor restarts a process that
 * exits, not one that hangs with no API.
 */
const EXIT_GRACE_MS = 3_000

process.exitCode = await main(process.argv.slice(2))
// unref'd: it fires only when something else keeps the process alive
setTimeout(() => {
  const open = process.getActiveResourcesInfo()
  operatorLine((line) => { process.stderr.write(line + '\n') }, 'worldcompute', 'warn', `worldcompute: still open ${EXIT_GRACE_MS / 1000} s after the command ended: ${open.join(', ')}; exiting`, { code: 'EXIT_GRACE', open })
  process.exit()
}, EXIT_GRACE_MS).unref()
