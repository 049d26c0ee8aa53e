/**
 * What every fuzz target shares: its shape, the rule for which errors are
 * answers (a named error of ours with one of the target's codes) and which are
 * bugs (anything else, or a catch-all error wrapping a TypeError), a time
 * bound per input, and one run of a target under a seed, used by both the
 * bounded run in `npm test` and the long `npm run fuzz`.
 */
import fc from 'fast-check'
import { WorldComputeError } from '../../src/core/errors.ts'

export interface OpenTarget {
  property: fc.IRawProperty<any>
  /** stops whatever the target started (services, a server) */
  close: () => Promise<void>
}

export interface FuzzTarget {
  /** a stable name: `--only` and the replay command use it */
  name: string
  /** its share of a long run's inputs, relative to the others */
  weight: number
  /** builds the property, starting what it needs */
  open: () => Promise<OpenTarget>
  /** shrink a failing input to a smaller one (cheap for pure functions, slow against live services) @default false */
  shrink?: boolean
}

/** A failure of the property that names what it saw. */
export class FuzzFinding extends Error {}

/**
 * Codes of errors that wrap whatever failed under them (a request, a
 * dispatch): under these a language error is a bug hidden by the wrapper.
 * Other named errors wrap a library's refusal on purpose (a PeerId that does
 * not parse is MALFORMED_MESSAGE with the parser's TypeError as its cause).
 */
const CATCH_ALL_CODES = ['PROTOCOL_REQUEST_FAILED', 'DISPATCH_FAILED']

/** Errors of the language that only a bug raises: none of them may come out of a decoder, even as the cause of a named error. */
const BUG_ERRORS = [TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError]

function describeError (err: unknown): string {
  if (err instanceof Error) return `${err.name}${(err as { code?: unknown }).code != null ? ` [${String((err as { code?: unknown }).code)}]` : ''}: ${err.message}`
  return `a thrown ${typeof err}: ${String(err)}`
}

/** The first error in the cause chain that only a bug raises. */
export function bugInChain (err: unknown): Error | undefined {
  for (let e: unknown = err, depth = 0; e != null && depth < 16; e = (e as { cause?: unknown }).cause, depth++) {
    if (BUG_ERRORS.some(C => e instanceof C && e.constructor === C)) return e as Error
  }
  return undefined
}

/**
 * Passes when `err` is a named error of ours whose code is one of `codes`
 * and that does not wrap a language error; throws a FuzzFinding otherwise.
 */
export function expectNamedError (err: unknown, codes: readonly string[], what: string): void {
  if (!(err instanceof WorldComputeError)) {
    throw new FuzzFinding(`${what} threw ${describeError(err)} (expected a named error with one of ${codes.join(', ')})`, { cause: err })
  }
  if (!codes.includes(err.code)) {
    throw new FuzzFinding(`${what} threw ${describeError(err)}: code ${err.code} is not one of ${codes.join(', ')}`, { cause: err })
  }
  const bug = CATCH_ALL_CODES.includes(err.code) ? bugInChain(err) : undefined
  if (bug != null) {
    throw new FuzzFinding(`${what} threw ${err.code} wrapping ${describeError(bug)}: a bug under a named error`, { cause: err })
  }
}

/** Throws when one input took longer than `budgetMs`: a bound on the time per input, checked after the fact. */
export function expectWithin (startedAt: number, budgetMs: number, what: string): void {
  const ms = performance.now() - startedAt
  if (ms > budgetMs) throw new FuzzFinding(`${what} took ${ms.toFixed(0)} ms, over the ${budgetMs} ms bound for one input`)
}

export interface RunOptions {
  seed: number
  /** inputs to try */
  numRuns: number
  /** stop early after this long (the inputs tried so far count) */
  timeLimitMs?: number
  /** replays one failing input: the path fast-check printed */
  path?: string
}

export interface TargetReport {
  name: string
  seed: number
  /** inputs tried */
  runs: number
  ms: number
  failure?: { path: string, message: string, counterexample: string }
  /** errors that escaped to the process while the target ran (unhandled rejections, uncaught exceptions) */
  escaped: string[]
}

/**
 * Runs one target. An error that escapes to the process while it runs (an
 * unhandled rejection, an uncaught exception in a timer) is reported too:
 * in a daemon it would be a crash.
 */
export async function runTarget (target: FuzzTarget, options: RunOptions): Promise<TargetReport> {
  const escaped: string[] = []
  const onEscape = (err: unknown): void => { escaped.push(describeError(err)) }
  process.on('unhandledRejection', onEscape)
  process.on('uncaughtException', onEscape)
  const opened = await target.open()
  const started = performance.now()
  try {
    const details = await fc.check(opened.property, {
      seed: options.seed,
      numRuns: options.numRuns,
      ...(options.path != null ? { path: options.path } : {}),
      ...(options.timeLimitMs != null ? { interruptAfterTimeLimit: options.timeLimitMs, markInterruptAsFailure: false } : {}),
      endOnFailure: target.shrink !== true
    })
    const report: TargetReport = { name: target.name, seed: options.seed, runs: details.numRuns, ms: performance.now() - started, escaped }
    if (details.failed) {
      report.failure = {
        path: details.counterexamplePath ?? '',
        message: describeError(details.errorInstance),
        counterexample: fc.stringify(details.counterexample).slice(0, 2000)
      }
    }
    return report
  } finally {
    await opened.close()
    // let late rejections of the last inputs arrive before the watch ends
    await new Promise(resolve => setTimeout(resolve, 50))
    process.off('unhandledRejection', onEscape)
    process.off('uncaughtException', onEscape)
  }
}

/** One line to reproduce a failure of `report`. */
export function replayCommand (report: TargetReport): string {
  return `npm run fuzz -- --only ${report.name} --seed ${report.seed} --replay '${report.failure?.path ?? ''}'`
}

/** For `node:test`: fails with the finding, its seed and path. */
export function assertClean (report: TargetReport): void {
  const problems: string[] = []
  if (report.failure != null) {
    problems.push(`${report.name}: ${report.failure.message}\n  input: ${report.failure.counterexample}\n  reproduce: ${replayCommand(report)}`)
  }
  if (report.escaped.length > 0) {
    problems.push(`${report.name}: errors escaped to the process: ${report.escaped.slice(0, 5).join('; ')}`)
  }
  if (problems.length > 0) throw new FuzzFinding(problems.join('\n'))
}
