import { describe, it } from 'node:test'
import { assertClean, runTarget } from './harness.ts'
import { FUZZ_SEED } from './seed.ts'
import { prepareTarget } from './targets/prepare.ts'

const RUNS = 1000

describe('fuzz: module preparation', () => {
  it(`prepares or refuses (invalid_module, rejected) ${RUNS} mutated valid modules, bounded in time, never an executor bug`, async () => {
    assertClean(await runTarget(prepareTarget, { seed: FUZZ_SEED, numRuns: RUNS }))
  })
})
