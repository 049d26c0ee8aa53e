/**
 * Prints the cost of metering on the primes fixture: the same module run
 * unmetered (straight through the WASI shim) and metered (prepared, through
 * runModule), in this process, several rounds each, median wall time.
 * Not a test: it asserts nothing about time.
 *
 * The unmetered baseline gets the same declared memory maximum as the metered
 * module: V8 grows a memory with a declared maximum differently (measured: at
 * n = 1e8 the unclamped original was slower than the metered module), and that
 * is not the cost of metering.
 *
 *   node_modules/.bin/node test/executor/metering-overhead.bench.ts [n] [rounds]
 */

import { readFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import { cidForBytes } from '../../src/executor/cid.ts'
import { ByteReader, ByteWriter } from '../../src/executor/wasm-binary.ts'
import { prepareModule } from '../../src/executor/prepare.ts'
import { runModule } from '../../src/executor/run-module.ts'
import { WasiExit, WasiShim } from '../../src/executor/wasi-shim.ts'

const n = process.argv[2] ?? '20000000'
const rounds = Number(process.argv[3] ?? '7')
const bytes = readFileSync(new URL('../fixtures/wasm/primes.wasm', import.meta.url))
const input = new TextEncoder().encode(n)
const decoder = new TextDecoder()

const MEMORY_PAGES = 4096 // 256 MiB, the cap used for the metered module below

/** The original module with only its memory section rewritten to declare a maximum. */
function withMemoryMaximum (original: Uint8Array, maxPages: number): Uint8Array {
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

const baseline = new WebAssembly.Module(withMemoryMaximum(bytes, MEMORY_PAGES))

function runUnmetered (): string {
  const module = baseline
  const shim = new WasiShim({ args: ['primes.wasm'], env: [], stdin: input, outputLimit: 1 << 20, randomSeed: 'bench' })
  const instance = new WebAssembly.Instance(module, shim.importsFor(module))
  shim.attach(instance.exports.memory as WebAssembly.Memory)
  try {
    (instance.exports._start as () => void)()
  } catch (err) {
    if (!(err instanceof WasiExit) || err.code !== 0) throw err
  }
  return decoder.decode(shim.stdout)
}

const prepared = prepareModule(bytes, cidForBytes(bytes), { memoryBytes: MEMORY_PAGES * 65536, maxCallDepth: 10_000 })
let fuelUsed = 0
function runMetered (): string {
  const out = runModule(prepared.module, { jobId: 'bench', input, args: [], env: [], fuel: 2 ** 50, outputBytes: 1 << 20, maxCallDepth: 10_000 })
  if (out.status !== 'succeeded') throw new Error(`metered run ended ${out.status}: ${out.error ?? ''}`)
  fuelUsed = out.fuelUsed
  return decoder.decode(out.stdout)
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

const times: Record<'unmetered' | 'metered', number[]> = { unmetered: [], metered: [] }
let lastOutput = ''
for (let i = 0; i < rounds; i++) {
  // alternate, so that drift in machine load hits both sides alike
  for (const [name, fn] of [['unmetered', runUnmetered], ['metered', runMetered]] as const) {
    const t0 = performance.now()
    const output = fn()
    times[name].push(performance.now() - t0)
    if (lastOutput !== '' && output !== lastOutput) throw new Error(`outputs differ: ${lastOutput} vs ${output}`)
    lastOutput = output
  }
}

const base = median(times.unmetered)
const metered = median(times.metered)
process.stdout.write(
  `primes n=${n}, ${rounds} rounds, output ${JSON.stringify(lastOutput.trim())}\n` +
  `module ${bytes.length} B -> metered ${prepared.bytes.length} B, fuelUsed ${fuelUsed}\n` +
  `unmetered median ${base.toFixed(1)} ms  (all: ${times.unmetered.map(t => t.toFixed(0)).join(' ')})\n` +
  `metered   median ${metered.toFixed(1)} ms  (all: ${times.metered.map(t => t.toFixed(0)).join(' ')})\n` +
  `overhead  ${((metered / base - 1) * 100).toFixed(1)}%\n`
)
