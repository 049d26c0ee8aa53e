/**
 * The cost of metering alone on the primes fixture: the same module run
 * unmetered (straight through our WASI shim) and metered (prepared, through
 * runModule), in this process, rounds interleaved, median wall time with
 * min–max. Moved here from test/executor/metering-overhead.bench.ts; also the
 * home of the helpers bench/executor.ts uses for its "shim, unmetered" column.
 * Not a test: it asserts nothing about time.
 *
 * Besides wall time, each run's CPU time on this thread (getrusage
 * RUSAGE_THREAD): on a machine shared with other work, a run that waits for a
 * core grows in wall time but not in CPU time, so the CPU ratio is the steadier
 * figure of the two.
 *
 * The unmetered baseline gets the same declared memory maximum as the metered
 * module: V8 grows a memory with a declared maximum differently (measured: at
 * n = 1e8 the unclamped original was slower than the metered module), and that
 * is not the cost of metering.
 *
 * Then the cost of tiny host calls: a module that makes 1,000,000 one-byte
 * fd_write calls, metered through our shim, against the same module under
 * node:wasi writing to /dev/null (a write syscall per call), CPU time per call.
 *
 *   node_modules/.bin/node bench/metering-overhead.ts [n] [rounds]
 */

import { closeSync, openSync, readFileSync } from 'node:fs'
import { WASI } from 'node:wasi'
import { performance } from 'node:perf_hooks'
import { cidForBytes } from '../src/executor/cid.ts'
import { prepareModule } from '../src/executor/prepare.ts'
import { runModule } from '../src/executor/run-module.ts'
import { WasiExit, WasiShim } from '../src/executor/wasi-shim.ts'
import { ByteReader, ByteWriter } from '../src/executor/wasm-binary.ts'
import { command, s32 } from '../test/executor/helpers/wasm-builder.ts'
import { fmt, num, pairedRatios, ratioText, rotate, summarize } from './lib/stats.ts'

/** 256 MiB: the default job memory cap, which the metered module is clamped to. */
export const MEMORY_PAGES = 4096

/** The original module with only its memory section rewritten to declare a maximum. */
export function withMemoryMaximum (original: Uint8Array, maxPages: number): Uint8Array {
  const r = new ByteReader(original, 8)
  const out = new ByteWriter(original.length + 16).bytes(original.subarray(0, 8))
  while (!r.atEnd) {
    const start = r.pos
    const id = r.u8()
    const size = r.u32()
    const payload = r.slice(size)
    if (id !== 5) {
      out.bytes(original.subarray(start, r.pos))
      continue
    }
    const m = new ByteReader(payload)
    m.u32() // count: 1
    const flags = m.u8()
    const min = m.u32()
    if (flags === 1) m.u32()
    out.u8(5).sized(new ByteWriter().u32(1).u8(1).u32(min).u32(maxPages).toBytes())
  }
  return out.toBytes()
}

/** Runs an unmetered module through our WASI shim on this thread; returns stdout. */
export function runUnmeteredShim (module: WebAssembly.Module, input: Uint8Array, argv0: string, outputLimit: number): Uint8Array {
  const shim = new WasiShim({ args: [argv0], env: [], stdin: input, outputLimit, randomSeed: 'bench' })
  const instance = new WebAssembly.Instance(module, shim.importsFor(module))
  shim.attach(instance.exports.memory as WebAssembly.Memory)
  try {
    (instance.exports._start as () => void)()
  } catch (err) {
    if (!(err instanceof WasiExit) || err.code !== 0) throw err
  }
  return shim.stdout
}

function main (): void {
  const n = process.argv[2] ?? '20000000'
  const rounds = Number(process.argv[3] ?? '7')
  if (!Number.isSafeInteger(rounds) || rounds < 1 || rounds > 100) throw new Error(`rounds must be 1–100, got ${process.argv[3]}`)
  const bytes = new Uint8Array(readFileSync(new URL('../test/fixtures/wasm/primes.wasm', import.meta.url)))
  const input = new TextEncoder().encode(n)
  const decoder = new TextDecoder()

  const baseline = new WebAssembly.Module(withMemoryMaximum(bytes, MEMORY_PAGES))
  const prepared = prepareModule(bytes, cidForBytes(bytes), { memoryBytes: MEMORY_PAGES * 65536, maxCallDepth: 10_000 })
  let fuelUsed = 0
  const variants = {
    unmetered: (): string => decoder.decode(runUnmeteredShim(baseline, input, 'primes.wasm', 1 << 20)),
    metered: (): string => {
      const out = runModule(prepared.module, { jobId: 'bench', input, args: [], env: [], fuel: 2 ** 50, outputBytes: 1 << 20, maxCallDepth: 10_000 })
      if (out.status !== 'succeeded') throw new Error(`metered run ended ${out.status}: ${out.error ?? ''}`)
      fuelUsed = out.fuelUsed
      return decoder.decode(out.stdout)
    }
  }
  const names = Object.keys(variants) as Array<keyof typeof variants>
  const wall: Record<keyof typeof variants, number[]> = { unmetered: [], metered: [] }
  const cpu: Record<keyof typeof variants, number[]> = { unmetered: [], metered: [] }
  let lastOutput = ''
  for (const name of names) variants[name]() // warm-up: compile tiers
  for (let i = 0; i < rounds; i++) {
    // interleaved, order alternating, so drift in machine load hits both sides alike
    for (const name of rotate(names, i)) {
      const c0 = process.threadCpuUsage()
      const t0 = performance.now()
      const output = variants[name]()
      wall[name].push(performance.now() - t0)
      const c = process.threadCpuUsage(c0)
      cpu[name].push((c.user + c.system) / 1000)
      if (lastOutput !== '' && output !== lastOutput) throw new Error(`outputs differ: ${lastOutput} vs ${output}`)
      lastOutput = output
    }
  }
  process.stdout.write(
    `primes n=${n}, ${rounds} rounds, output ${JSON.stringify(lastOutput.trim())}\n` +
    `module ${bytes.length} B -> metered ${prepared.bytes.length} B, fuelUsed ${fuelUsed}\n` +
    compared('wall', wall) + compared('CPU ', cpu)
  )
}

/** The two variants' figures and their ratio (of medians, and per round). */
function compared (what: string, t: Record<'unmetered' | 'metered', number[]>): string {
  const paired = pairedRatios(t.metered, t.unmetered)
  return `${what} unmetered (shim, same memory max) ${fmt(summarize(t.unmetered), 'ms')}\n` +
    `${what} metered   (prepareModule+runModule) ${fmt(summarize(t.metered), 'ms')}\n` +
    `${what} metered / unmetered: ${ratioText(summarize(t.metered).median / summarize(t.unmetered).median)} of medians; ` +
    `per round ${num(paired.median)} (${num(paired.min)}–${num(paired.max)})\n`
}

const TINY_WRITES = 1_000_000

/** _start: iovec {16, 1} at 0, then TINY_WRITES times fd_write(1, 0, 1, 8). */
function tinyWritesModule (): Uint8Array {
  const start = [
    0x41, 0x00, 0x41, 0x10, 0x36, 0x02, 0x00, // i32.store (0) 16
    0x41, 0x04, 0x41, 0x01, 0x36, 0x02, 0x00, // i32.store (4) 1
    0x41, ...s32(TINY_WRITES), 0x21, 0x00, // local 0 = count
    0x03, 0x40, // loop
    0x41, 0x01, 0x41, 0x00, 0x41, 0x01, 0x41, 0x08, 0x10, 0x00, 0x1a, // drop (fd_write 1 0 1 8)
    0x20, 0x00, 0x41, 0x01, 0x6b, 0x22, 0x00, 0x0d, 0x00, // br_if 0 (local 0 -= 1)
    0x0b
  ]
  return command({ types: [[0x60, 0x04, 0x7f, 0x7f, 0x7f, 0x7f, 0x01, 0x7f]], imports: [['fd_write', 1]], start, locals: [[1, 0x7f]] })
}

/** Thread CPU ms of `fn`. */
function cpuMs (fn: () => void): number {
  const c0 = process.threadCpuUsage()
  fn()
  const c = process.threadCpuUsage(c0)
  return (c.user + c.system) / 1000
}

function tinyWrites (rounds: number): void {
  const bytes = tinyWritesModule()
  const prepared = prepareModule(bytes, cidForBytes(bytes), { memoryBytes: MEMORY_PAGES * 65536, maxCallDepth: 10_000 })
  const bare = new WebAssembly.Module(bytes)
  const devNull = openSync('/dev/null', 'w')
  const variants = {
    ours: () => {
      const out = runModule(prepared.module, { jobId: 'bench', input: new Uint8Array(0), args: [], env: [], fuel: 2 ** 50, outputBytes: 2 * TINY_WRITES, maxCallDepth: 10_000 })
      if (out.status !== 'succeeded' || out.stdout.length !== TINY_WRITES) throw new Error(`tiny writes ended ${out.status} with ${out.stdout.length} bytes: ${out.error ?? ''}`)
    },
    nodeWasi: () => {
      const wasi = new WASI({ version: 'preview1', args: [], env: {}, stdout: devNull, returnOnExit: true })
      wasi.start(new WebAssembly.Instance(bare, wasi.getImportObject() as WebAssembly.Imports))
    }
  }
  const names = Object.keys(variants) as Array<keyof typeof variants>
  const cpu: Record<keyof typeof variants, number[]> = { ours: [], nodeWasi: [] }
  try {
    for (const name of names) variants[name]()
    for (let i = 0; i < rounds; i++) {
      for (const name of rotate(names, i)) cpu[name].push(cpuMs(variants[name]))
    }
  } finally {
    closeSync(devNull)
  }
  const perCall = (t: number[]): string => `${num(summarize(t).median * 1000 / TINY_WRITES)} µs per call`
  const paired = pairedRatios(cpu.ours, cpu.nodeWasi)
  process.stdout.write(
    `tiny writes: ${TINY_WRITES} one-byte fd_write calls, ${rounds} rounds, CPU time\n` +
    `  node:wasi to /dev/null          ${fmt(summarize(cpu.nodeWasi), 'ms')} (${perCall(cpu.nodeWasi)})\n` +
    `  our shim, metered, in-process   ${fmt(summarize(cpu.ours), 'ms')} (${perCall(cpu.ours)})\n` +
    `  ours / node:wasi: ${ratioText(summarize(cpu.ours).median / summarize(cpu.nodeWasi).median)} of medians; per round ${num(paired.median)} (${num(paired.min)}–${num(paired.max)})\n`
  )
}

if (import.meta.main) {
  main()
  tinyWrites(Math.min(Number(process.argv[3] ?? '7'), 11))
}
