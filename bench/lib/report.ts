/**
 * What every benchmark hands back (rows of the results table), the markdown
 * rendering, and the scaffolding that runs one benchmark as a program:
 * argument parsing, a hard wall-clock bound, cleanup on every exit path, and
 * the JSON hand-off to bench/run.ts.
 */
import { writeFileSync } from 'node:fs'
import { fmt, ratioText, type Summary } from './stats.ts'

export interface Target {
  /** '<=': the ratio must not exceed `value`; '>=': it must reach it */
  op: '<=' | '>='
  value: number
}

export interface BenchRow {
  benchmark: string
  /** the baseline's name and its median (min–max) */
  baseline: string
  /** median (min–max) */
  figure: string
  ratio: number
  /** what the ratio divides, e.g. "executor / bare V8" */
  ratioLabel: string
  /** e.g. "≤ 1.15×", or "—" for an informational row */
  target: string
  /** null: no target (informational) */
  met: boolean | null
}

export interface BenchReport {
  bench: string
  rows: BenchRow[]
  /** free text printed under the table: setup, counts, what limits a missed target */
  notes: string[]
}

export interface RowInit {
  benchmark: string
  baselineName: string
  baseline: Summary
  figure: Summary
  unit: string
  /** @default figure.median / baseline.median */
  ratio?: number
  ratioLabel: string
  target?: Target
}

export function targetText (t?: Target): string {
  if (t == null) return '—'
  return `${t.op === '<=' ? '≤' : '≥'} ${ratioText(t.value)}`
}

export function isMet (ratio: number, t?: Target): boolean | null {
  if (t == null) return null
  if (!Number.isFinite(ratio)) return false
  return t.op === '<=' ? ratio <= t.value : ratio >= t.value
}

export function row (init: RowInit): BenchRow {
  const ratio = init.ratio ?? init.figure.median / init.baseline.median
  return {
    benchmark: init.benchmark,
    baseline: `${init.baselineName}: ${fmt(init.baseline, init.unit)}`,
    figure: fmt(init.figure, init.unit),
    ratio,
    ratioLabel: init.ratioLabel,
    target: targetText(init.target),
    met: isMet(ratio, init.target)
  }
}

/** A row for a measurement that could not be made (e.g. no C compiler): shown, never "met". */
export function skippedRow (benchmark: string, baseline: string, why: string): BenchRow {
  return { benchmark, baseline, figure: `skipped: ${why}`, ratio: NaN, ratioLabel: '', target: '—', met: null }
}

function cell (s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ')
}

export function markdownTable (rows: readonly BenchRow[]): string {
  const lines = [
    '| Benchmark | Baseline | Figure (median, min–max) | Ratio | Target | Met? |',
    '|---|---|---|---|---|---|'
  ]
  for (const r of rows) {
    const ratio = Number.isFinite(r.ratio) ? `${ratioText(r.ratio)} (${r.ratioLabel})` : 'n/a'
    const met = r.met == null ? '—' : r.met ? 'yes' : '**no**'
    lines.push(`| ${cell(r.benchmark)} | ${cell(r.baseline)} | ${cell(r.figure)} | ${cell(ratio)} | ${cell(r.target)} | ${met} |`)
  }
  return lines.join('\n')
}

export interface BenchArgs {
  quick: boolean
  /** where bench/run.ts wants the report as JSON */
  jsonOut?: string
}

export function parseBenchArgs (argv: readonly string[]): BenchArgs {
  const args: BenchArgs = { quick: false }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--quick') args.quick = true
    else if (a === '--json-out') args.jsonOut = argv[++i]
    else if (a.startsWith('--json-out=')) args.jsonOut = a.slice('--json-out='.length)
    else throw new Error(`unknown argument "${a}" (expected --quick, --json-out FILE)`)
  }
  return args
}

/** Things to undo at the end, in reverse order, each bounded in time. */
export class Cleanup {
  private readonly steps: Array<{ what: string, fn: () => Promise<void> | void }> = []
  private running?: Promise<void>

  add (what: string, fn: () => Promise<void> | void): void {
    this.steps.push({ what, fn })
  }

  async run (): Promise<void> {
    this.running ??= (async () => {
      for (const step of this.steps.splice(0).reverse()) {
        let timer: NodeJS.Timeout | undefined
        try {
          await Promise.race([
            Promise.resolve().then(step.fn),
            new Promise((_resolve, reject) => { timer = setTimeout(() => { reject(new Error('did not finish within 15 s')) }, 15_000) })
          ])
        } catch (err) {
          process.stderr.write(`bench cleanup: ${step.what}: ${(err as Error).message}\n`)
        } finally {
          clearTimeout(timer)
        }
      }
    })()
    await this.running
  }
}

/** Rejects after `ms` with a message naming `what`; every wait in the benchmarks goes through this or waitFor. */
export async function within<T> (what: string, ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      p,
      new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`${what}: not done within ${ms} ms`)) }, ms) })
    ])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Runs one benchmark as a program: parses its arguments, bounds the whole run
 * by `hardLimitMs`, always runs the cleanup (also on SIGINT/SIGTERM), prints
 * the table and notes, and writes the JSON for bench/run.ts. Exits the
 * process when done, so a stray handle cannot keep it alive.
 */
export async function benchMain (name: string, hardLimitMs: { quick: number, full: number }, body: (args: BenchArgs, cleanup: Cleanup) => Promise<BenchReport>): Promise<void> {
  const args = parseBenchArgs(process.argv.slice(2))
  const cleanup = new Cleanup()
  const limit = args.quick ? hardLimitMs.quick : hardLimitMs.full
  const abortRun = (why: string, code: number): void => {
    process.stderr.write(`\n${name}: ${why}; cleaning up\n`)
    void cleanup.run().finally(() => process.exit(code))
  }
  const hard = setTimeout(() => { abortRun(`the run exceeded its bound of ${Math.round(limit / 1000)} s`, 3) }, limit)
  process.once('SIGINT', () => { abortRun('interrupted', 130) })
  process.once('SIGTERM', () => { abortRun('terminated', 143) })
  let code = 0
  try {
    const report = await body(args, cleanup)
    await cleanup.run()
    process.stdout.write(`\n${markdownTable(report.rows)}\n`)
    for (const n of report.notes) process.stdout.write(`- ${n}\n`)
    if (args.jsonOut != null) writeFileSync(args.jsonOut, JSON.stringify(report, null, 2))
  } catch (err) {
    process.stderr.write(`${name} failed: ${(err as Error).stack ?? String(err)}\n`)
    await cleanup.run()
    code = 1
  } finally {
    clearTimeout(hard)
  }
  process.exit(code)
}

/** Prints a progress line on stderr (stdout carries the results). */
export function progress (msg: string): void {
  process.stderr.write(`  ${msg}\n`)
}
