/**
 * Module preparation (validate, check imports and exports, meter, compile)
 * fed byte-level mutations of the committed valid modules. It returns a
 * prepared module or refuses with the error of a job status (`invalid_module`,
 * `rejected`); an InstrumentationError (the metered module does not compile)
 * or any other throw is an executor bug.
 */
import { readdirSync, readFileSync } from 'node:fs'
import fc from 'fast-check'
import { cidForBytes } from '../../../src/executor/cid.ts'
import { PreparedModuleCache, prepareModule } from '../../../src/executor/prepare.ts'
import { mutatedBytes } from '../arbitraries.ts'
import { expectNamedError, expectWithin } from '../harness.ts'
import type { FuzzTarget } from '../harness.ts'

/** A few KiB of module: validation, metering and compiling take milliseconds; the bound leaves room for a loaded machine. */
const PREPARE_BUDGET_MS = 2_000
const CODES = ['INVALID_MODULE', 'MODULE_REJECTED'] as const

const dir = new URL('../../fixtures/wasm/', import.meta.url)
const modules = readdirSync(dir).filter(f => f.endsWith('.wasm')).sort().map(f => new Uint8Array(readFileSync(new URL(f, dir))))

/** Limits as resolveJobLimits hands them on: any memory, a call depth of at least 1 (it refuses less before preparation). */
const limits = fc.record({
  memoryBytes: fc.constantFrom(0, 64 * 1024, 16 * 1024 * 1024, 256 * 1024 * 1024, 4 * 1024 * 1024 * 1024, Number.MAX_SAFE_INTEGER),
  maxCallDepth: fc.constantFrom(1, 2, 1000, 100_000, 2 ** 31 - 1)
})

const moduleInput = fc.oneof(
  { weight: 8, arbitrary: mutatedBytes(fc.constantFrom(...modules)) },
  { weight: 1, arbitrary: fc.constantFrom(...modules) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map(tail => Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...tail])) }
)

export const prepareTarget: FuzzTarget = {
  name: 'executor.prepare',
  weight: 4,
  open: async () => ({
    property: fc.property(moduleInput, limits, (bytes, lim) => {
      const started = performance.now()
      try {
        // a fresh cache: a hit would skip the work under test
        prepareModule(bytes, cidForBytes(bytes), lim, new PreparedModuleCache({ maxEntries: 1 }))
      } catch (err) {
        expectNamedError(err, CODES, 'prepareModule')
      }
      expectWithin(started, PREPARE_BUDGET_MS, 'prepareModule')
    }),
    close: async () => {}
  })
}
