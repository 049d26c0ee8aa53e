import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { DEFAULT_JOB_LIMITS } from '../../src/core/job.ts'
import { cidForBytes } from '../../src/executor/cid.ts'
import { Executor } from '../../src/executor/executor.ts'
import { prepareModule } from '../../src/executor/prepare.ts'
import { runModule, SpareInstance, type RunSpec } from '../../src/executor/run-module.ts'
import { WasiShim } from '../../src/executor/wasi-shim.ts'
import { fixture, request } from './helpers/fixtures.ts'

const MiB = 1024 * 1024

function prepared (name: string): WebAssembly.Module {
  const bytes = fixture(name)
  return prepareModule(bytes, cidForBytes(bytes), { memoryBytes: 16 * MiB, maxCallDepth: DEFAULT_JOB_LIMITS.maxCallDepth }).module
}

function spec (input: string): RunSpec {
  return { jobId: 'job-spare', input: new TextEncoder().encode(input), args: [], env: [], fuel: 2 ** 40, outputBytes: MiB, maxCallDepth: DEFAULT_JOB_LIMITS.maxCallDepth }
}

describe('SpareInstance', () => {
  for (const [name, input] of [['primes', '100000'], ['memory-grow', ''], ['upper', 'made ahead\n']] as const) {
    it(`runs ${name} to the same stdout, status and fuel as an instance made for the job`, () => {
      const module = prepared(name)
      const spare = new SpareInstance(module)
      const ahead = runModule(module, spec(input), { spare })
      const own = runModule(module, spec(input))
      assert.equal(ahead.status, 'succeeded')
      assert.deepEqual(ahead, own)
    })
  }

  it('serves one job: taken once, then the run instantiates the module itself', () => {
    const module = prepared('memory-grow')
    const spare = new SpareInstance(module)
    const first = runModule(module, spec(''), { spare })
    const shim = new WasiShim({ args: ['main.wasm'], env: [], stdin: new Uint8Array(0), outputLimit: MiB, randomSeed: 'job-spare' })
    assert.equal(spare.take(shim), undefined)
    // a grown memory handed on would show as less fuel for the growing
    assert.deepEqual(runModule(module, spec(''), { spare }), first)
  })

  it('refuses a module that imports anything but preview1 functions', () => {
    const module = new WebAssembly.Module(fixture('imported-memory'))
    assert.throws(() => new SpareInstance(module), TypeError)
  })
})

describe('Executor jobs of one module one after another', () => {
  it('each start from a fresh instance: a module that grows its memory to the cap uses the same fuel every time', async () => {
    const executor = new Executor({ maxConcurrent: 1 })
    await executor.start()
    try {
      const limits = { memoryBytes: 16 * MiB }
      const results = []
      for (let i = 0; i < 3; i++) results.push(await executor.execute(request('memory-grow', { jobId: 'grow', limits })))
      assert.ok(results.every(r => r.status === 'succeeded'), results.map(r => `${r.status} ${r.error ?? ''}`).join(', '))
      assert.deepEqual(results.map(r => new TextDecoder().decode(r.stdout)), ['pages 256\n', 'pages 256\n', 'pages 256\n'])
      assert.equal(new Set(results.map(r => r.fuelUsed)).size, 1)
    } finally {
      await executor.stop()
    }
  })
})
