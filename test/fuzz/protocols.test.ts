import { describe, it } from 'node:test'
import { configureLogging, resetLogging } from '../../src/log/logger.ts'
import { assertClean, runTarget } from './harness.ts'
import { FUZZ_SEED } from './seed.ts'
import { protocolTargets } from './targets/protocols.ts'
import { serviceTargets } from './targets/services.ts'

/** Each exchange runs over real in-memory streams (a few ms): 100 inputs a target keeps the file near ten seconds. */
const RUNS = 100

describe('fuzz: protocol services over in-memory streams', () => {
  for (const target of [...protocolTargets, ...serviceTargets]) {
    it(`${target.name} survives ${RUNS} hostile inputs: no throw, named errors only, bounded in time, answers what is well-formed`, async () => {
      // the refusals are expected: their WARN lines would only bury the test output
      configureLogging({ spec: 'error' })
      try {
        assertClean(await runTarget(target, { seed: FUZZ_SEED, numRuns: RUNS }))
      } finally {
        resetLogging()
      }
    })
  }
})
