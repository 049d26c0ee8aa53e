/**
 * Runs every benchmark, each in its own Node process (a fresh V8, and nothing
 * one leaves behind can slow the next), prints one markdown table and writes
 * it to bench/RESULTS.md with the machine, the date and the exact command.
 *
 *   node_modules/.bin/node bench/run.ts [--quick] [--only executor,round-trip,throughput,dispatchable,lab-paths,memory,idle-cpu,scale,relay-flood,startup,batch-scale,upload,circuit-throughput,relay-scale,scale-model,https-poll,cpu-limit,mesh48] [--cpu-prof]
 *   npm run bench -- --quick
 *
 * --quick   short, CI-friendly (fewer rounds, smaller bursts)
 * --only    a comma-separated subset
 * --cpu-prof  each benchmark process writes a V8 CPU profile to bench/profiles/
 *
 * RESULTS.md keeps what follows the line HAND_WRITTEN_MARK: sections added by
 * hand from separate runs (before/after comparisons, profiles) survive a
 * full run, which rewrites only the part above that line.
 *
 * Benchmarks print figures and never assert on time: a missed target is
 * reported, not an error. The exit code is non-zero only if a benchmark could
 * not run to the end.
 */
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import { availableParallelism, cpus, loadavg, release, tmpdir, totalmem } from 'node:os'
import { join, relative } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { summarizeProfile } from './lib/profile.ts'
import { markdownTable, type BenchReport } from './lib/report.ts'

const BENCH_DIR = fileURLToPath(new URL('./', import.meta.url))
const ROOT = fileURLToPath(new URL('../', import.meta.url))
/** The first line RESULTS.md keeps across runs, and everything after it. */
const HAND_WRITTEN_MARK = '<!-- bench/run.ts writes everything above this line; the sections below come from separate runs and are kept -->'
const ALL = ['executor', 'round-trip', 'throughput', 'dispatchable', 'lab-paths', 'memory', 'idle-cpu', 'scale', 'relay-flood', 'startup', 'batch-scale', 'upload', 'circuit-throughput', 'relay-scale', 'scale-model', 'https-poll', 'cpu-limit', 'mesh48'] as const
/** per benchmark process, a little beyond its own internal bound (benchMain's): then it is killed */
const KILL_AFTER_MS: Record<string, { quick: number, full: number }> = {
  executor: { quick: 150_000, full: 270_000 },
  'round-trip': { quick: 150_000, full: 210_000 },
  throughput: { quick: 210_000, full: 270_000 },
  dispatchable: { quick: 270_000, full: 630_000 },
  'lab-paths': { quick: 930_000, full: 2_430_000 },
  memory: { quick: 270_000, full: 630_000 },
  'idle-cpu': { quick: 930_000, full: 2_430_000 },
  scale: { quick: 930_000, full: 3_030_000 },
  'relay-flood': { quick: 210_000, full: 450_000 },
  startup: { quick: 180_000, full: 450_000 },
  'batch-scale': { quick: 630_000, full: 1_830_000 },
  upload: { quick: 150_000, full: 330_000 },
  'circuit-throughput': { quick: 150_000, full: 270_000 },
  'relay-scale': { quick: 330_000, full: 1_530_000 },
  'scale-model': { quick: 330_000, full: 1_830_000 },
  'https-poll': { quick: 150_000, full: 270_000 },
  'cpu-limit': { quick: 180_000, full: 360_000 },
  // a little beyond its own bound (benchMain: 15 and 40 min)
  mesh48: { quick: 930_000, full: 2_430_000 }
}

interface Options { quick: boolean, only: string[], cpuProf: boolean }

function parse (argv: readonly string[]): Options {
  const o: Options = { quick: false, only: [...ALL], cpuProf: false }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--quick') o.quick = true
    else if (a === '--cpu-prof') o.cpuProf = true
    else if (a === '--only' || a.startsWith('--only=')) {
      const v = a === '--only' ? argv[++i] ?? '' : a.slice('--only='.length)
      o.only = v.split(',').map(s => s.trim()).filter(s => s !== '')
      for (const name of o.only) if (!(ALL as readonly string[]).includes(name)) throw new Error(`--only: unknown benchmark "${name}" (one of ${ALL.join(', ')})`)
    } else {
      throw new Error(`unknown argument "${a}" (expected --quick, --only LIST, --cpu-prof)`)
    }
  }
  return o
}

/** The command as typed, with the node binary as a path relative to the project when it is the pinned one. */
function commandLine (): string {
  let node = process.execPath
  const pinned = join(ROOT, 'node_modules/.bin/node')
  try {
    if (existsSync(pinned) && realpathSync(pinned) === realpathSync(process.execPath)) node = 'node_modules/.bin/node'
  } catch (err) {
    console.error(`bench: could not compare ${pinned} with ${process.execPath} (${String(err)}); the command line shows the full path`)
  }
  return [node, relative(ROOT, process.argv[1]), ...process.argv.slice(2)].join(' ')
}

function machine (): string[] {
  let model = cpus()[0]?.model ?? 'unknown'
  let mem = `${(totalmem() / 2 ** 30).toFixed(1)} GiB`
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8')
    model = /^model name\s*:\s*(.+)$/m.exec(info)?.[1] ?? model
  } catch (err) {
    console.error(`bench: /proc/cpuinfo unreadable (${String(err)}); CPU model from os.cpus()`)
  }
  try {
    const kb = Number(/^MemTotal:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1])
    if (Number.isFinite(kb)) mem = `${(kb / 2 ** 20).toFixed(1)} GiB`
  } catch (err) {
    console.error(`bench: /proc/meminfo unreadable (${String(err)}); memory from os.totalmem()`)
  }
  const nproc = spawnSync('nproc', [], { encoding: 'utf8', timeout: 5_000 })
  return [
    `- CPUs (nproc): ${nproc.status === 0 ? nproc.stdout.trim() : `${availableParallelism()} (os.availableParallelism)`}`,
    `- CPU model: ${model}`,
    `- Memory: ${mem}`,
    `- Node: ${process.version} (${process.execPath})`,
    `- Kernel: ${release()}`,
    `- Load average at start (1/5/15 min): ${loadavg().map(x => x.toFixed(2)).join(' / ')}`
  ]
}

/** Which source was measured: the commit, and any uncommitted changes outside bench/ (read-only git queries). */
function sourceState (): string {
  const git = (args: string[]): string | undefined => {
    const r = spawnSync('git', args, { cwd: ROOT, encoding: 'utf8', timeout: 10_000 })
    return r.status === 0 ? r.stdout.trimEnd() : undefined
  }
  const head = git(['rev-parse', '--short', 'HEAD'])
  if (head == null) return '- Source: not a git checkout'
  const changed = (git(['status', '--porcelain']) ?? '').split('\n').filter(l => l.trim() !== '').map(l => l.slice(3)).filter(f => !f.startsWith('bench/'))
  return `- Source: commit ${head}${changed.length === 0 ? ', no uncommitted changes outside bench/' : `, with uncommitted changes outside bench/ in ${changed.length} path(s): ${changed.slice(0, 12).join(', ')}${changed.length > 12 ? ', …' : ''}`}`
}

async function runOne (name: string, opts: Options, jsonOut: string): Promise<{ report?: BenchReport, code: number | null, ms: number, profile?: string[] }> {
  const execArgv = ['--disable-warning=ExperimentalWarning']
  const profDir = join(BENCH_DIR, 'profiles', name)
  if (opts.cpuProf) {
    // one directory per benchmark, emptied first, so the profile read below is this run's
    rmSync(profDir, { recursive: true, force: true })
    mkdirSync(profDir, { recursive: true })
    execArgv.push('--cpu-prof', `--cpu-prof-dir=${profDir}`)
  }
  const args = [...execArgv, join(BENCH_DIR, `${name}.ts`), ...(opts.quick ? ['--quick'] : []), '--json-out', jsonOut]
  const t0 = performance.now()
  process.stdout.write(`\n## ${name}\n\n`)
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] })
  const limit = opts.quick ? KILL_AFTER_MS[name].quick : KILL_AFTER_MS[name].full
  let killTimer: NodeJS.Timeout | undefined
  const timer = setTimeout(() => {
    process.stderr.write(`bench/run: ${name} still running after ${limit / 1000} s; stopping it\n`)
    child.kill('SIGTERM')
    killTimer = setTimeout(() => { child.kill('SIGKILL') }, 20_000)
  }, limit)
  const code = await new Promise<number | null>((resolve) => {
    child.once('error', () => { resolve(null) })
    child.once('exit', (c) => { resolve(c) })
  })
  clearTimeout(timer)
  clearTimeout(killTimer)
  const ms = performance.now() - t0
  let report: BenchReport | undefined
  if (code === 0 && existsSync(jsonOut)) report = JSON.parse(readFileSync(jsonOut, 'utf8')) as BenchReport
  let profile: string[] | undefined
  if (opts.cpuProf) {
    const file = readdirSync(profDir).find(f => f.endsWith('.cpuprofile'))
    profile = file == null
      ? ['no profile written (the process did not exit normally)']
      : [`${relative(ROOT, join(profDir, file))}:`, ...summarizeProfile(join(profDir, file))]
    for (const line of profile) process.stdout.write(`  profile: ${line}\n`)
  }
  return { report, code, ms, profile }
}

/** The mark and what follows it in the current RESULTS.md; without a mark, the whole old file goes below one, so nothing is lost. */
function handWritten (file: string): string {
  const old = existsSync(file) ? readFileSync(file, 'utf8') : ''
  const at = old.indexOf(HAND_WRITTEN_MARK)
  return at < 0 ? `${HAND_WRITTEN_MARK}\n\n${old}` : old.slice(at)
}

async function main (): Promise<void> {
  let opts: Options
  try {
    opts = parse(process.argv.slice(2))
  } catch (err) {
    process.stderr.write(`bench/run: ${(err as Error).message}\n`)
    process.exit(2)
  }
  const major = Number(process.versions.node.split('.')[0])
  if (major < 24) {
    process.stderr.write(`bench/run: Node ${process.version} cannot strip types; run it with the pinned Node: node_modules/.bin/node bench/run.ts\n`)
    process.exit(2)
  }
  const command = commandLine()
  const started = new Date()
  const head = [...machine(), sourceState()]
  const tmp = mkdtempSync(join(tmpdir(), 'wc-bench-run-'))
  const reports: BenchReport[] = []
  const failures: string[] = []
  const durations: string[] = []
  const profiles: string[] = []
  try {
    for (const name of opts.only) {
      const r = await runOne(name, opts, join(tmp, `${name}.json`))
      durations.push(`${name} ${(r.ms / 1000).toFixed(0)} s`)
      if (r.profile != null) profiles.push(`- **${name}** (main process only; sandbox processes are not profiled): ${r.profile[0]}`, ...r.profile.slice(1).map(l => `  - ${l}`))
      if (r.report != null) reports.push(r.report)
      else failures.push(`${name} did not complete (exit ${String(r.code)}); see its output above`)
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true })
  }
  const rows = reports.flatMap(r => r.rows)
  const table = markdownTable(rows)
  const missed = rows.filter(r => r.met === false)
  const md = [
    '# World Compute benchmark results',
    '',
    `Mode: **${opts.quick ? 'quick' : 'full'}**. Date: ${started.toISOString()} (took ${durations.join(', ')}).`,
    '',
    'Command:',
    '',
    '```sh',
    command,
    '```',
    '',
    'Machine:',
    '',
    ...head,
    `- Load average at end (1/5/15 min): ${loadavg().map(x => x.toFixed(2)).join(' / ')}`,
    '',
    'Every figure is the median over repeated runs with min–max in brackets; every ratio is against a baseline measured in the same run (interleaved with it), because the machine is shared and noisy. Benchmarks print figures and never assert on time.',
    '',
    table,
    '',
    `Targets: ${rows.filter(r => r.met != null).length} with a target, ${missed.length} missed${missed.length > 0 ? ` (${missed.map(r => r.benchmark).join('; ')})` : ''}.`,
    '',
    '## Notes',
    '',
    ...reports.flatMap(r => r.notes.map(n => `- **${r.bench}**: ${n}`)),
    ...failures.map(f => `- **failed**: ${f}`),
    ...(profiles.length > 0 ? ['', '## CPU profiles (--cpu-prof)', '', ...profiles] : []),
    ''
  ].join('\n')
  process.stdout.write(`\n# Results\n\n${table}\n\n`)
  for (const f of failures) process.stdout.write(`FAILED: ${f}\n`)
  writeFileSync(join(BENCH_DIR, 'RESULTS.md'), `${md}\n${handWritten(join(BENCH_DIR, 'RESULTS.md'))}`)
  process.stdout.write(`written to ${relative(process.cwd(), join(BENCH_DIR, 'RESULTS.md')) || 'bench/RESULTS.md'}\n`)
  process.exit(failures.length > 0 ? 1 : 0)
}

await main()
