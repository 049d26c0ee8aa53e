/**
 * The executor against bare engines, on the same C/WASI programs:
 *
 *   native      the C source built with `cc -O2` (skipped when there is no cc)
 *   bare V8     the original module under node:wasi (input and output through
 *               real files, which node:wasi needs), compiled once
 *   shim        the original module, unmetered, through our WASI shim, with the
 *               same declared memory maximum as the metered module (see
 *               bench/metering-overhead.ts), in this process
 *   in-process  prepareModule + runModule (metered, our shim), in this process
 *   executor    Executor.execute(): the sandbox process, its worker thread, IPC
 *
 * Workloads: primes.wasm with stdin "20000000" (compute bound) and upper.wasm
 * over 16 MiB of text (stdin/stdout bound). Then the cost of an executor call
 * itself: a trivial job (primes.wasm with stdin "10") with the module as it is
 * and padded to 1 MiB and 4 MiB (a custom section), executor vs in-process. Every variant runs once per round,
 * rounds interleaved with the order rotated, after warm-up runs; outputs are
 * checked against each other outside the timed region. Nothing asserts on time.
 *
 * Besides wall time, CPU time per run (Linux): this process's (process.cpuUsage)
 * and, for the executor, the sandbox process's too (/proc/PID/stat, all its
 * threads, in clock ticks: summed over the rounds, not per round), also split
 * into the parent, the sandbox's main thread (/proc/PID/task/PID/stat: inputs
 * in, stdout out) and its other threads (the job's worker, GC). On a machine
 * shared with other work, wall time grows with the wait for a core and CPU time
 * does not: the CPU ratio says what the executor costs, the wall ratio what it
 * costs with the cores this run got.
 *
 *   node_modules/.bin/node bench/executor.ts [--quick] [--json-out FILE]
 */
import { fork, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { WASI } from 'node:wasi'
import { cidForBytes } from '../src/executor/cid.ts'
import { Executor } from '../src/executor/index.ts'
import { prepareModule, runModule } from '../src/executor/index.ts'
import { MEMORY_PAGES, runUnmeteredShim, withMemoryMaximum } from './metering-overhead.ts'
import { CLK_TCK, parseStat } from './lib/proc-cpu.ts'
import { benchMain, progress, row, skippedRow, within, type BenchRow } from './lib/report.ts'
import { fmt, pairedRatios, num, rotate, summarize, type Summary } from './lib/stats.ts'

const MiB = 1024 * 1024
const FIXTURES = fileURLToPath(new URL('../test/fixtures/wasm/', import.meta.url))
const OUTPUT_LIMIT = 32 * MiB
const LIMITS = { outputBytes: OUTPUT_LIMIT, memoryBytes: MEMORY_PAGES * 65536 }

type Variant = 'native' | 'bareV8' | 'shim' | 'inProcess' | 'executor' | 'ipc'
const LABEL: Record<Variant, string> = {
  native: 'native (cc -O2)',
  bareV8: 'bare V8 (node:wasi)',
  shim: 'V8 + our shim, unmetered',
  inProcess: 'metered, in-process',
  executor: 'executor (sandbox)',
  ipc: 'raw fork IPC echo'
}

/** A child that sends each message's input straight back: the cost of the IPC channel alone. */
const IPC_ECHO_SOURCE = `process.on('message', (m) => { process.send({ stdout: m.input }) })
process.on('disconnect', () => { process.exit(0) })
process.send({ ready: true })
`

interface IpcEcho { roundTrip: (module: Uint8Array, input: Uint8Array) => Promise<Uint8Array>, stop: () => Promise<void> }

/** Forks the echo child like the Executor forks its sandbox (advanced serialization, empty env). */
async function startIpcEcho (dir: string): Promise<IpcEcho> {
  const script = join(dir, 'ipc-echo.mjs')
  writeFileSync(script, IPC_ECHO_SOURCE)
  const child = fork(script, [], { execPath: process.execPath, execArgv: [], serialization: 'advanced', stdio: ['ignore', 'ignore', 'inherit', 'ipc'], env: {} })
  const exited = new Promise<void>(resolve => child.once('exit', () => { resolve() }))
  await within('the IPC echo child to start', 15_000, new Promise<void>((resolve, reject) => {
    child.once('message', () => { resolve() })
    child.once('error', reject)
  }))
  return {
    roundTrip: async (module, input) => await within('an IPC echo', 30_000, new Promise<Uint8Array>((resolve) => {
      child.once('message', (m: { stdout: Uint8Array }) => { resolve(m.stdout) })
      child.send({ module, input })
    })),
    stop: async () => {
      if (child.exitCode == null && child.signalCode == null) child.kill('SIGTERM')
      await within('the IPC echo child to exit', 10_000, exited)
    }
  }
}

interface Workload {
  name: string
  module: string
  source: string
  input: Uint8Array
  /** fingerprint of the expected stdout, when known in advance */
  expect?: (stdout: Uint8Array) => string | undefined
  rounds: number
  warmup: number
}

interface Measured {
  times: Record<Variant, number[]>
  /** CPU ms per run, this process and (executor) the sandbox; absent where /proc cannot be read */
  cpuMs: Partial<Record<Variant, number>>
  /** the executor's CPU per run by thread; absent where /proc cannot be read */
  executorCpu?: ExecutorCpuSplit
  /** executor's own durationMs (dispatch to result, IPC included) */
  executorInternal: number[]
  fuelUsed: number
  output: string
}

function fingerprint (b: Uint8Array): string {
  return `${b.byteLength} B sha256 ${createHash('sha256').update(b).digest('hex').slice(0, 16)}`
}

/** Builds the native binary; undefined (with the reason printed) when cc is missing or fails. */
function buildNative (source: string, out: string): { ok: true } | { ok: false, why: string } {
  const r = spawnSync('cc', ['-O2', '-o', out, join(FIXTURES, source)], { encoding: 'utf8', timeout: 60_000 })
  if (r.error != null) return { ok: false, why: `cc not usable (${(r.error as NodeJS.ErrnoException).code ?? r.error.message})` }
  if (r.status !== 0) return { ok: false, why: `cc failed: ${r.stderr.trim().split('\n')[0]}` }
  return { ok: true }
}

async function measure (w: Workload, executor: Executor, ipcEcho: IpcEcho, dir: string, nativeBin: string | undefined): Promise<Measured> {
  const bytes = new Uint8Array(readFileSync(join(FIXTURES, w.module)))
  const moduleCid = cidForBytes(bytes)
  const inPath = join(dir, `${w.name}.in`)
  const outPath = join(dir, `${w.name}.out`)
  const errPath = join(dir, `${w.name}.err`)
  writeFileSync(inPath, w.input)

  // compiled once each, outside the timed region, as the executor caches its prepared modules
  const bare = new WebAssembly.Module(bytes)
  const clamped = new WebAssembly.Module(withMemoryMaximum(bytes, MEMORY_PAGES))
  const prepared = prepareModule(bytes, moduleCid, { memoryBytes: LIMITS.memoryBytes, maxCallDepth: 10_000 })
  let fuelUsed = 0
  let seq = 0

  /** Each variant: run once, return [wall ms, stdout]. */
  const run: Partial<Record<Variant, () => Promise<[number, Uint8Array]>>> = {
    bareV8: async () => {
      const stdin = openSync(inPath, 'r')
      const stdout = openSync(outPath, 'w')
      const stderr = openSync(errPath, 'w')
      let ms: number
      try {
        const wasi = new WASI({ version: 'preview1', args: [w.module], env: {}, stdin, stdout, stderr, returnOnExit: true })
        const t0 = performance.now()
        const instance = new WebAssembly.Instance(bare, wasi.getImportObject() as WebAssembly.Imports)
        const code = wasi.start(instance)
        ms = performance.now() - t0
        if (code !== 0) throw new Error(`node:wasi run of ${w.module} exited ${code}: ${readFileSync(errPath, 'utf8')}`)
      } finally {
        closeSync(stdin)
        closeSync(stdout)
        closeSync(stderr)
      }
      return [ms, new Uint8Array(readFileSync(outPath))]
    },
    shim: async () => {
      const t0 = performance.now()
      const out = runUnmeteredShim(clamped, w.input, w.module, OUTPUT_LIMIT)
      return [performance.now() - t0, out]
    },
    inProcess: async () => {
      const t0 = performance.now()
      const out = runModule(prepared.module, { jobId: `bench-${seq++}`, input: w.input, args: [], env: [], moduleName: w.module, fuel: 2 ** 50, outputBytes: OUTPUT_LIMIT, maxCallDepth: 10_000 })
      const ms = performance.now() - t0
      if (out.status !== 'succeeded') throw new Error(`in-process run of ${w.module} ended ${out.status}: ${out.error ?? ''}`)
      fuelUsed = out.fuelUsed
      return [ms, out.stdout]
    },
    executor: async () => {
      const id = `bench-${seq++}`
      const t0 = performance.now()
      const res = await executor.execute({ jobId: id, taskId: `${id}.t`, module: bytes, moduleCid, input: w.input, args: [], env: [], limits: LIMITS, moduleName: w.module })
      const ms = performance.now() - t0
      if (res.status !== 'succeeded') throw new Error(`executor run of ${w.module} ended ${res.status}: ${res.error ?? ''}`)
      if (res.fuelUsed !== fuelUsed && fuelUsed !== 0) throw new Error(`fuel differs: executor ${res.fuelUsed}, in-process ${fuelUsed}`)
      internal.push(res.durationMs)
      return [ms, res.stdout]
    },
    ipc: async () => {
      const t0 = performance.now()
      const back = await ipcEcho.roundTrip(bytes, w.input)
      return [performance.now() - t0, back]
    }
  }
  if (nativeBin != null) {
    run.native = async () => {
      const stdin = openSync(inPath, 'r')
      const stdout = openSync(outPath, 'w')
      let ms: number
      try {
        const t0 = performance.now()
        const r = spawnSync(nativeBin, [], { stdio: [stdin, stdout, 'pipe'], timeout: 60_000 })
        ms = performance.now() - t0
        if (r.status !== 0) throw new Error(`native ${w.name} exited ${String(r.status)} ${String(r.signal)}: ${String(r.stderr)}`)
      } finally {
        closeSync(stdin)
        closeSync(stdout)
      }
      return [ms, new Uint8Array(readFileSync(outPath))]
    }
  }

  const variants = (Object.keys(run) as Variant[])
  const internal: number[] = []
  const times = { native: [], bareV8: [], shim: [], inProcess: [], executor: [], ipc: [] } as Record<Variant, number[]>
  const cpu = new CpuTally(executor)
  let reference: string | undefined
  const check = (v: Variant, out: Uint8Array): void => {
    if (v === 'ipc') {
      if (out.byteLength !== w.input.byteLength) throw new Error(`IPC echo returned ${out.byteLength} bytes, sent ${w.input.byteLength}`)
      return
    }
    const fp = fingerprint(out)
    const problem = w.expect?.(out)
    if (problem != null) throw new Error(`${LABEL[v]} on ${w.name}: ${problem}`)
    reference ??= fp
    if (fp !== reference) throw new Error(`${LABEL[v]} on ${w.name}: output ${fp} differs from ${reference}`)
  }
  for (let i = 0; i < w.warmup; i++) {
    for (const v of variants) check(v, (await (run[v] as () => Promise<[number, Uint8Array]>)())[1])
  }
  internal.length = 0
  const deadline = Date.now() + 100_000
  for (let i = 0; i < w.rounds && Date.now() < deadline; i++) {
    for (const v of rotate(variants, i)) {
      const before = cpu.read(v)
      const [ms, out] = await (run[v] as () => Promise<[number, Uint8Array]>)()
      cpu.add(v, before)
      times[v].push(ms)
      check(v, out)
    }
    progress(`${w.name} round ${i + 1}/${w.rounds}: ${variants.map(v => `${v} ${num(times[v][times[v].length - 1])} ms`).join(', ')}`)
  }
  let output = reference ?? ''
  if (w.name === 'primes') output = new TextDecoder().decode((await (run.inProcess as () => Promise<[number, Uint8Array]>)())[1]).trim()
  return { times, cpuMs: cpu.perRun(times), executorCpu: cpu.executorSplit(times.executor.length), executorInternal: internal, fuelUsed, output }
}

/** CPU ms so far: this process's, the sandbox's (all its threads) and the sandbox's main thread alone. */
interface CpuSnapshot { own: number, sandbox: number, sandboxMain: number }

/** The executor's CPU per run by where it is spent: the parent, the sandbox's main thread (inputs in, stdout out, messages), the sandbox's other threads (the job's worker, GC). */
interface ExecutorCpuSplit { parent: number, sandboxMain: number, sandboxOther: number }

/**
 * CPU time of each variant's runs: this process's, plus the sandbox
 * process's for the executor (native and the IPC echo run in other processes
 * and are left out).
 */
class CpuTally {
  private readonly totals: Partial<Record<Variant, number>> = {}
  private readonly split: ExecutorCpuSplit = { parent: 0, sandboxMain: 0, sandboxOther: 0 }
  private sandboxUnreadable?: string

  private readonly executor: Executor

  constructor (executor: Executor) {
    this.executor = executor
  }

  read (v: Variant): CpuSnapshot {
    const own = process.cpuUsage()
    const ownMs = (own.user + own.system) / 1000
    if (v !== 'executor') return { own: ownMs, sandbox: 0, sandboxMain: 0 }
    return { own: ownMs, sandbox: this.sandboxMs('stat'), sandboxMain: this.sandboxMs(`task/${this.executor.sandboxPid ?? ''}/stat`) }
  }

  add (v: Variant, before: CpuSnapshot): void {
    if (v === 'native' || v === 'ipc' || (v === 'executor' && this.sandboxUnreadable !== undefined)) return
    const now = this.read(v)
    const parent = now.own - before.own
    const sandbox = now.sandbox - before.sandbox
    const sandboxMain = now.sandboxMain - before.sandboxMain
    this.totals[v] = (this.totals[v] ?? 0) + parent + sandbox
    if (v !== 'executor') return
    this.split.parent += parent
    this.split.sandboxMain += sandboxMain
    this.split.sandboxOther += sandbox - sandboxMain
  }

  perRun (times: Record<Variant, number[]>): Partial<Record<Variant, number>> {
    if (this.sandboxUnreadable !== undefined) process.stdout.write(`no executor CPU figure: ${this.sandboxUnreadable}\n`)
    return Object.fromEntries(Object.entries(this.totals).map(([v, ms]) => [v, ms / times[v as Variant].length]))
  }

  /** The executor's CPU per run by thread; undefined when the sandbox's could not be read. */
  executorSplit (runs: number): ExecutorCpuSplit | undefined {
    if (this.sandboxUnreadable !== undefined || runs === 0) return undefined
    const { parent, sandboxMain, sandboxOther } = this.split
    return { parent: parent / runs, sandboxMain: sandboxMain / runs, sandboxOther: sandboxOther / runs }
  }

  /** The sandbox's CPU ms so far from /proc/PID/<file> (its own utime + stime); the sandbox does not restart in this bench. */
  private sandboxMs (file: string): number {
    const pid = this.executor.sandboxPid
    try {
      if (pid === undefined) throw new Error('no sandbox process')
      return parseStat(readFileSync(`/proc/${pid}/${file}`, 'utf8')).self * 1000 / CLK_TCK
    } catch (err) {
      this.sandboxUnreadable ??= `cannot read the sandbox's CPU time: ${(err as Error).message}`
      return 0
    }
  }
}

/** `bytes` with a custom section of `padBytes` at the end: the same program in a bigger module. */
function padded (bytes: Uint8Array, padBytes: number): Uint8Array {
  if (padBytes === 0) return bytes
  const name = new TextEncoder().encode('pad')
  const payload = 1 + name.byteLength + padBytes
  const leb: number[] = []
  for (let v = payload; ; v >>>= 7) {
    leb.push((v & 0x7f) | (v >= 0x80 ? 0x80 : 0))
    if (v < 0x80) break
  }
  const out = new Uint8Array(bytes.byteLength + 1 + leb.length + payload)
  out.set(bytes)
  out.set([0, ...leb, name.byteLength, ...name], bytes.byteLength)
  return out
}

/**
 * A trivial job's executor call (execute() wall time, IPC and worker hand-off
 * included) against running it in-process, per module size: what a job pays
 * for the sandbox besides its own compute, and how it grows with the module.
 */
async function measureTrivial (executor: Executor, rounds: number): Promise<BenchRow[]> {
  const rows: BenchRow[] = []
  const input = new TextEncoder().encode('10')
  for (const padBytes of [0, MiB, 4 * MiB]) {
    const bytes = padded(new Uint8Array(readFileSync(join(FIXTURES, 'primes.wasm'))), padBytes)
    const moduleCid = cidForBytes(bytes)
    const prepared = prepareModule(bytes, moduleCid, { memoryBytes: LIMITS.memoryBytes, maxCallDepth: 10_000 })
    const executorMs: number[] = []
    const inProcessMs: number[] = []
    for (let i = -3; i < rounds; i++) {
      let t0 = performance.now()
      const res = await executor.execute({ jobId: `trivial-${i}`, taskId: `trivial-${i}.t`, module: bytes, moduleCid, input, args: [], env: [], limits: LIMITS })
      if (i >= 0) executorMs.push(performance.now() - t0)
      if (res.status !== 'succeeded') throw new Error(`trivial executor job ended ${res.status}: ${res.error ?? ''}`)
      t0 = performance.now()
      runModule(prepared.module, { jobId: `trivial-${i}`, input, args: [], env: [], fuel: 2 ** 40, outputBytes: OUTPUT_LIMIT, maxCallDepth: 10_000 })
      if (i >= 0) inProcessMs.push(performance.now() - t0)
    }
    const size = `${(bytes.byteLength / MiB).toFixed(2)} MiB module`
    rows.push(row({ benchmark: `executor call: trivial job (${size})`, baselineName: LABEL.inProcess, baseline: summarize(inProcessMs), figure: summarize(executorMs), unit: 'ms', ratioLabel: 'executor / in-process metered' }))
    process.stdout.write(`trivial job, ${size}: executor ${fmt(summarize(executorMs), 'ms')}, in-process ${fmt(summarize(inProcessMs), 'ms')}\n`)
  }
  return rows
}

async function main (): Promise<void> {
  await benchMain('bench/executor', { quick: 120_000, full: 240_000 }, async (args, cleanup) => {
    const dir = mkdtempSync(join(tmpdir(), 'wc-bench-exec-'))
    cleanup.add('remove temp dir', () => { rmSync(dir, { recursive: true, force: true }) })
    const executor = new Executor({ maxConcurrent: 1, maxLimits: { outputBytes: 64 * MiB } })
    await executor.start()
    cleanup.add('stop executor', async () => { await executor.stop() })
    const ipcEcho = await startIpcEcho(dir)
    cleanup.add('stop the IPC echo child', async () => { await ipcEcho.stop() })

    const upperInput = Buffer.alloc(16 * MiB, 'the quick brown fox jumps over the lazy dog, 0123456789.\n')
    const upperExpected = fingerprint(Buffer.from(upperInput.toString('latin1').toUpperCase(), 'latin1'))
    const workloads: Workload[] = [
      {
        name: 'primes',
        module: 'primes.wasm',
        source: 'primes.c',
        input: new TextEncoder().encode('20000000'),
        expect: (out) => new TextDecoder().decode(out) === 'primes below 20000000: 1270607\n' ? undefined : `unexpected output ${JSON.stringify(new TextDecoder().decode(out))}`,
        rounds: args.quick ? 5 : 25,
        warmup: 2
      },
      {
        name: 'upper',
        module: 'upper.wasm',
        source: 'upper.c',
        input: new Uint8Array(upperInput.buffer, upperInput.byteOffset, upperInput.byteLength),
        expect: (out) => fingerprint(out) === upperExpected ? undefined : `output ${fingerprint(out)} is not the upper-cased input (${upperExpected})`,
        rounds: args.quick ? 3 : 21,
        warmup: 1
      }
    ]

    const rows: BenchRow[] = []
    const notes: string[] = []
    for (const w of workloads) {
      const nativeBin = join(dir, `${w.name}-native`)
      const built = buildNative(w.source, nativeBin)
      if (!built.ok) process.stdout.write(`${w.name}: no native column: ${built.why}\n`)
      progress(`${w.name}: ${w.rounds} rounds after ${w.warmup} warm-up`)
      const m = await measure(w, executor, ipcEcho, dir, built.ok ? nativeBin : undefined)
      const s = Object.fromEntries(Object.entries(m.times).map(([k, v]) => [k, summarize(v)])) as Record<Variant, Summary>
      const label = `${w.name} (${w.name === 'primes' ? 'n=2e7' : '16 MiB'})`
      process.stdout.write(`\n${w.module}, ${m.times.bareV8.length} rounds; output ${m.output}; fuelUsed ${m.fuelUsed}\n`)
      for (const v of Object.keys(LABEL) as Variant[]) {
        if (m.times[v].length > 0) process.stdout.write(`  ${LABEL[v].padEnd(28)} ${fmt(s[v], 'ms')}\n`)
      }
      const ei = summarize(m.executorInternal)
      process.stdout.write(`  executor's own durationMs    ${fmt(ei, 'ms')} (dispatch to result inside Executor)\n`)
      const pe = pairedRatios(m.times.executor, m.times.bareV8)
      process.stdout.write(`  executor/bare V8 per round:  ${num(pe.median)} (${num(pe.min)}–${num(pe.max)})\n`)
      const cpu = m.cpuMs
      process.stdout.write(`  CPU per run (mean):          ${(Object.keys(cpu) as Variant[]).map(v => `${v} ${num(cpu[v] as number)} ms`).join(', ')}${cpu.executor !== undefined ? ' (executor: this process + the sandbox)' : ''}\n`)
      const split = m.executorCpu
      if (split !== undefined) process.stdout.write(`  executor CPU per run (mean):  parent ${num(split.parent)} ms, sandbox main thread ${num(split.sandboxMain)} ms, sandbox other threads ${num(split.sandboxOther)} ms\n`)

      rows.push(row({ benchmark: `executor: ${label}`, baselineName: LABEL.bareV8, baseline: s.bareV8, figure: s.executor, unit: 'ms', ratioLabel: 'executor / bare V8', target: { op: '<=', value: 1.15 } }))
      if (cpu.executor !== undefined && cpu.bareV8 !== undefined) {
        rows.push(row({ benchmark: `executor CPU: ${label}`, baselineName: `${LABEL.bareV8}, CPU`, baseline: summarize([cpu.bareV8]), figure: summarize([cpu.executor]), unit: 'ms', ratioLabel: 'executor (parent + sandbox) / bare V8, CPU per run' }))
      }
      rows.push(row({ benchmark: `metering+shim: ${label}`, baselineName: LABEL.bareV8, baseline: s.bareV8, figure: s.inProcess, unit: 'ms', ratioLabel: 'in-process metered / bare V8' }))
      rows.push(row({ benchmark: `metering alone: ${label}`, baselineName: LABEL.shim, baseline: s.shim, figure: s.inProcess, unit: 'ms', ratioLabel: 'metered / unmetered, same shim' }))
      rows.push(row({ benchmark: `sandbox+IPC: ${label}`, baselineName: LABEL.inProcess, baseline: s.inProcess, figure: s.executor, unit: 'ms', ratioLabel: 'executor / in-process metered' }))
      if (m.times.native.length > 0) {
        rows.push(row({ benchmark: `bare V8 vs native: ${label}`, baselineName: LABEL.native, baseline: s.native, figure: s.bareV8, unit: 'ms', ratioLabel: 'bare V8 / native' }))
      } else {
        rows.push(skippedRow(`bare V8 vs native: ${label}`, LABEL.native, built.ok ? 'not measured' : built.why))
      }
      const sandboxMs = s.executor.median - s.inProcess.median
      const meterMs = s.inProcess.median - s.shim.median
      notes.push(`${w.name}: of the executor's ${num(s.executor.median - s.bareV8.median)} ms over bare V8 (medians), metering accounts for ~${num(meterMs)} ms, our shim vs node:wasi for ~${num(s.shim.median - s.bareV8.median)} ms and the sandbox process (IPC of module/input/output, worker hand-off) for ~${num(sandboxMs)} ms, of which a raw fork IPC echo of the same bytes (module + input out, input back) takes ${fmt(s.ipc, 'ms')}.`)
    }
    rows.push(...await measureTrivial(executor, args.quick ? 20 : 60))
    notes.push('Timed regions: native = spawnSync of the binary (process start included); bare V8 = instantiate + _start (module compiled once, stdin/stdout are files); shim/in-process = instantiate + _start; executor = the whole execute() call. Each figure is the median of interleaved rounds on this machine, in the same run.')
    return { bench: 'executor', rows, notes }
  })
}

if (import.meta.main) await main()
