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
 *   node_modules/.bin/node bench/metering-overhead.ts [n] [rounds]
 */

import { readFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import { cidForBytes } from '../src/executor/cid.ts'
import { prepareModule } from '../src/executor/prepare.ts'
import { runModule } from '../src/executor/run-module.ts'
import { WasiExit, WasiShim } from '../src/executor/wasi-shim.ts'
import { ByteReader, ByteWriter } from '../src/executor/wasm-binary.ts'
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

if (import.meta.main) main()
