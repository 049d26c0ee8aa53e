import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { cidForBytes } from '../../src/executor/cid.ts'
import { InvalidModuleError, ModuleRejectedError } from '../../src/executor/errors.ts'
import { FUEL_EXPORT, START_EXPORT, TRAP_EXPORT, instrumentModule } from '../../src/executor/instrument.ts'
import { PreparedModuleCache, prepareModule, type PrepareLimits } from '../../src/executor/prepare.ts'
import { runModule, type RunOutcome } from '../../src/executor/run-module.ts'
import { WasiExit, WasiShim } from '../../src/executor/wasi-shim.ts'
import { fixture, text } from './helpers/fixtures.ts'
import { command } from './helpers/wasm-builder.ts'

const MiB = 1024 * 1024
const LIMITS: PrepareLimits = { memoryBytes: 16 * MiB, maxCallDepth: 1000 }

function prepare (name: string, limits: Partial<PrepareLimits> = {}, cache = new PreparedModuleCache()): ReturnType<typeof prepareModule> {
  const bytes = fixture(name)
  return prepareModule(bytes, cidForBytes(bytes), { ...LIMITS, ...limits }, cache)
}

function run (name: string, opts: { input?: string, args?: string[], env?: string[], fuel?: number, jobId?: string, limits?: Partial<PrepareLimits>, outputBytes?: number } = {}): RunOutcome {
  const limits = { ...LIMITS, ...opts.limits }
  return runModule(prepare(name, limits).module, {
    jobId: opts.jobId ?? 'job-1',
    input: new TextEncoder().encode(opts.input ?? ''),
    args: opts.args ?? [],
    env: opts.env ?? [],
    fuel: opts.fuel ?? 2 ** 50,
    outputBytes: opts.outputBytes ?? MiB,
    maxCallDepth: limits.maxCallDepth
  })
}

/** Prepares and runs hand-built module bytes. */
function runBytes (bytes: Uint8Array, fuel = 2 ** 50): RunOutcome {
  const prepared = prepareModule(bytes, cidForBytes(bytes), LIMITS, new PreparedModuleCache())
  return runModule(prepared.module, { jobId: 'job-1', input: new Uint8Array(0), args: [], env: [], fuel, outputBytes: MiB, maxCallDepth: LIMITS.maxCallDepth })
}

/** Runs the original, uninstrumented module through the same shim: the reference for differential tests. */
function runOriginal (name: string, opts: { input?: string, args?: string[], jobId?: string } = {}): { stdout: string, exitCode: number } {
  const module = new WebAssembly.Module(fixture(name))
  const shim = new WasiShim({ args: ['main.wasm', ...(opts.args ?? [])], env: [], stdin: new TextEncoder().encode(opts.input ?? ''), outputLimit: MiB, randomSeed: opts.jobId ?? 'job-1' })
  const instance = new WebAssembly.Instance(module, shim.importsFor(module))
  shim.attach(instance.exports.memory as WebAssembly.Memory)
  let exitCode = 0
  try {
    (instance.exports._start as () => void)()
  } catch (err) {
    if (!(err instanceof WasiExit)) throw err
    exitCode = err.code
  }
  return { stdout: text(shim.stdout), exitCode }
}

describe('prepareModule: checks before anything runs', () => {
  it('refuses bytes that do not hash to the claimed CID as invalid_module', () => {
    const other = cidForBytes(fixture('primes'))
    assert.throws(() => prepareModule(fixture('hello'), other, LIMITS, new PreparedModuleCache()), (err: unknown) => {
      assert.ok(err instanceof InvalidModuleError)
      assert.equal(err.status, 'invalid_module')
      assert.match(err.message, /hash to bafkrei\w+, not to the moduleCid bafkrei\w+/)
      return true
    })
  })

  it('checks the CID even when the module is already cached', () => {
    const cache = new PreparedModuleCache()
    const bytes = fixture('hello')
    prepareModule(bytes, cidForBytes(bytes), LIMITS, cache)
    const tampered = bytes.slice()
    tampered[tampered.length - 1] ^= 1
    assert.throws(() => prepareModule(tampered, cidForBytes(bytes), LIMITS, cache), InvalidModuleError)
  })

  it('reports garbage bytes as invalid_module with the engine\'s reason', () => {
    assert.throws(() => prepare('garbage'), /not a valid WebAssembly module: .*magic/)
  })

  const rejections: Array<[string, RegExp]> = [
    ['simd', /SIMD instructions \(0xFD prefix\) are not allowed/],
    ['atomics', /shared memory \(threads\) is not allowed/],
    ['forbidden-import', /import "env"\."f" is not allowed: a module may import only functions from "wasi_snapshot_preview1"/],
    ['two-memories', /defines 2 memories; at most one is allowed/],
    ['imported-memory', /imported memories are not allowed/],
    ['no-start', /does not export a "_start" function/],
    ['bad-wasi-signature', /"fd_write" has type \(i64\) -> i64, but WASI preview1 defines it as \(i32, i32, i32, i32\) -> i32/],
    ['tail-call', /tail call instruction 0x12 is not supported/]
  ]
  for (const [name, reason] of rejections) {
    it(`rejects the ${name} fixture with a reason`, () => {
      assert.throws(() => prepare(name), (err: unknown) => {
        assert.ok(err instanceof ModuleRejectedError, `expected ModuleRejectedError, got ${String(err)}`)
        assert.equal(err.status, 'rejected')
        assert.match(err.message, reason)
        return true
      })
    })
  }

  it('rejects a memory whose minimum is above the cap and names both sizes', () => {
    // hello.wasm starts with 2 pages; a 1-page cap cannot hold it
    assert.throws(() => prepare('hello', { memoryBytes: 65536 }), /starts at 2 pages \(0\.13 MiB\), above this job's memory cap of 1 pages/)
  })

  it('caches prepared modules by CID, memory cap and depth limit', () => {
    const cache = new PreparedModuleCache()
    const a = prepare('hello', {}, cache)
    assert.equal(prepare('hello', {}, cache), a)
    assert.notEqual(prepare('hello', { memoryBytes: 32 * MiB }, cache), a)
    assert.notEqual(prepare('hello', { maxCallDepth: 50 }, cache), a)
    assert.equal(cache.size, 3)
  })

  it('evicts the least recently used module when the cache is full', () => {
    const cache = new PreparedModuleCache({ maxEntries: 2 })
    const hello = prepare('hello', {}, cache)
    prepare('upper', {}, cache)
    prepare('hello', {}, cache) // hello is now the most recent
    prepare('primes', {}, cache) // evicts upper
    assert.equal(cache.size, 2)
    assert.equal(prepare('hello', {}, cache), hello)
  })
})

describe('the instrumented module', () => {
  const accepted = ['hello', 'upper', 'primes', 'exit-code', 'clock-random', 'malloc-until-fail', 'recursion', 'infinite-loop',
    'memory-grow', 'huge-output', 'deep-recursion', 'trap-unreachable', 'trap-divide-by-zero', 'start-section', 'fuel-exact',
    'fuel-bulk', 'control-flow', 'memory-max', 'unknown-wasi-import']
  it('validates for every accepted fixture', () => {
    for (const name of accepted) {
      const out = instrumentModule(fixture(name), { maxMemoryPages: 256, maxCallDepth: 100 })
      assert.ok(WebAssembly.validate(out.bytes), `${name}: instrumented module does not validate`)
    }
  })

  it('exports the fuel and trap globals, and the moved start function', () => {
    const exports = WebAssembly.Module.exports(prepare('start-section').module).map(e => `${e.name}:${e.kind}`)
    assert.ok(exports.includes(`${FUEL_EXPORT}:global`))
    assert.ok(exports.includes(`${TRAP_EXPORT}:global`))
    assert.ok(exports.includes(`${START_EXPORT}:function`))
  })

  it('runs the start section\'s function before _start, after the fuel is set', () => {
    const out = run('start-section')
    assert.equal(out.status, 'succeeded')
    assert.equal(text(out.stdout), 'from start\nfrom _start\n')
  })

  it('charges exactly one fuel per original instruction', () => {
    // the hand count is in test/fixtures/wasm/fuel-exact.wat
    assert.equal(run('fuel-exact').fuelUsed, 55)
  })

  it('charges memory.fill one extra fuel per 64 bytes', () => {
    assert.equal(run('fuel-bulk').fuelUsed, 105)
  })

  it('carries the fuel a callee charges back into its caller\'s count', () => {
    // _start: call f ×3, end = 4; f: nop, end = 2 each
    const bytes = command({ start: [0x10, 0x01, 0x10, 0x01, 0x10, 0x01], functions: [[0x01]] })
    assert.equal(runBytes(bytes).fuelUsed, 10)
    const starved = runBytes(bytes, 7)
    assert.equal(starved.status, 'out_of_fuel')
    assert.equal(starved.fuelUsed, 7)
  })

  it('reports, for a trap that is not the meter\'s, the fuel counted up to the last call, return or entry', () => {
    // _start: [call f, loop] = 2, f = [nop, return] = 2, then [nop, end] = 2 and [unreachable] = 1 after the
    // last call: the counter is in a local between calls, so the trap shows 4, not 7 (f returns, so it is not
    // a straight leaf, which its caller would charge: straight-leaves.test.ts)
    const bytes = command({ start: [0x10, 0x01, 0x03, 0x40, 0x01, 0x0b, 0x00], functions: [[0x01, 0x0f]] })
    const out = runBytes(bytes)
    assert.equal(out.status, 'failed')
    assert.equal(out.error, 'unreachable executed')
    assert.equal(out.fuelUsed, 4)
  })

  it('stops an endless loop with out_of_fuel at exactly the budget', () => {
    const out = run('infinite-loop', { fuel: 1_000_000 })
    assert.equal(out.status, 'out_of_fuel')
    assert.equal(out.fuelUsed, 1_000_000)
  })

  it('computes what the original computes, for every exit path of control-flow.wat', () => {
    const original = runOriginal('control-flow')
    const metered = run('control-flow', { limits: { maxCallDepth: 13 } })
    assert.equal(metered.status, 'succeeded')
    assert.equal(text(metered.stdout), original.stdout)
    assert.equal(original.stdout, '1431624447\n')
  })

  it('keeps the call-depth counter balanced: control-flow.wat needs depth 13 and fails at 12', () => {
    // 1000 rounds through returns, br_table and br_if to the function label: any leak would exceed 13 at once
    assert.equal(run('control-flow', { limits: { maxCallDepth: 13 } }).status, 'succeeded')
    const shallow = run('control-flow', { limits: { maxCallDepth: 12 } })
    assert.equal(shallow.status, 'failed')
    assert.equal(shallow.error, 'call depth limit 12 exceeded')
  })

  const differential: Array<[string, { input?: string, args?: string[] }]> = [
    ['hello', { args: ['x', 'y z'] }], ['upper', { input: 'Mixed Case\n' }], ['primes', { input: '50000' }], ['clock-random', {}], ['recursion', { args: ['300'] }]
  ]
  for (const [name, opts] of differential) {
    it(`prints the same as the unmetered module for ${name}`, () => {
      const original = runOriginal(name, opts)
      const metered = run(name, opts)
      assert.equal(metered.status, 'succeeded')
      assert.equal(text(metered.stdout), original.stdout)
    })
  }

  it('gives the same fuel for the same job on every run', () => {
    const a = run('primes', { input: '100000' })
    const b = run('primes', { input: '100000' })
    assert.equal(text(a.stdout), 'primes below 100000: 9592\n')
    assert.equal(a.fuelUsed, b.fuelUsed)
    assert.ok(a.fuelUsed > 100000, `fuel ${a.fuelUsed} should exceed n for a sieve`)
  })

  it('lowers the declared memory maximum to the cap and keeps a smaller one', () => {
    assert.deepEqual(instrumentModule(fixture('memory-max'), { maxMemoryPages: 4, maxCallDepth: 10 }).memory, { initialPages: 1, maximumPages: 4, declaredMaximumPages: 8 })
    assert.deepEqual(instrumentModule(fixture('memory-max'), { maxMemoryPages: 64, maxCallDepth: 10 }).memory, { initialPages: 1, maximumPages: 8, declaredMaximumPages: 8 })
    assert.deepEqual(instrumentModule(fixture('memory-grow'), { maxMemoryPages: 64, maxCallDepth: 10 }).memory, { initialPages: 1, maximumPages: 64, declaredMaximumPages: undefined })
  })

  it('lets memory.grow fail at the cap, as on a real machine', () => {
    const out = run('memory-grow', { limits: { memoryBytes: 16 * MiB } })
    assert.equal(out.status, 'succeeded')
    assert.equal(text(out.stdout), 'pages 256\n')
  })

  it('puts the injected globals after imported and defined globals', () => {
    // policy forbids "env" imports, so this calls the instrumenter directly
    const out = instrumentModule(fixture('imported-global'), { maxMemoryPages: 1, maxCallDepth: 10 })
    const instance = new WebAssembly.Instance(new WebAssembly.Module(out.bytes), { env: { base: 37 } })
    const fuel = instance.exports[FUEL_EXPORT] as WebAssembly.Global
    fuel.value = 100n
    ;(instance.exports._start as () => void)()
    assert.equal((instance.exports.total as WebAssembly.Global).value, 42)
    assert.equal(fuel.value, 95n) // global.get, global.get, i32.add, global.set, end
  })

  it('links an unknown wasi_snapshot_preview1 import to an ENOSYS stub', () => {
    const out = run('unknown-wasi-import')
    assert.equal(out.status, 'failed')
    assert.equal(out.exitCode, 52)
  })
})
