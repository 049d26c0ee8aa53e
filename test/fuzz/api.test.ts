import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { routes } from '../../src/api/routes.ts'
import { configureLogging, resetLogging } from '../../src/log/logger.ts'
import { assertClean, runTarget } from './harness.ts'
import { FUZZ_SEED } from './seed.ts'
import { apiTargets } from './targets/api.ts'

/** Parsers are pure (thousands a second); each HTTP request is a round trip on 127.0.0.1 (a few ms). */
const RUNS: Record<string, number> = { 'api.parsers': 1000, 'api.http': 300 }

describe('fuzz: the local API', () => {
  for (const target of apiTargets) {
    const runs = RUNS[target.name] ?? 100
    it(`${target.name} refuses ${runs} hostile requests with a 4xx and an error code, never a 500, and keeps serving`, async () => {
      configureLogging({ spec: 'error' })
      try {
        assertClean(await runTarget(target, { seed: FUZZ_SEED, numRuns: runs }))
      } finally {
        resetLogging()
      }
    })
  }
})

/** Inputs the long run found, kept as plain cases. */
describe('fuzz findings: the local API', () => {
  it('refuses a limit that is a map with a "toString" key with a plain Error, which the server answers as 400', () => {
    assert.throws(() => routes.jobs.parseRequest({ limit: { toString: {} } }), (err: unknown) => err instanceof Error && err.constructor === Error && /limit must be an integer/.test(err.message))
  })
})
