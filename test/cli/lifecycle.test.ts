import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, it } from 'node:test'

const FIXTURE = fileURLToPath(new URL('../fixtures/cli/rejection-survivor.ts', import.meta.url))

describe('runUntilSignal', () => {
  // in a child process: the test runner has its own rejection handling
  it('an unhandled rejection inside the service is logged in full and does not end it', () => {
    const r = spawnSync(process.execPath, [FIXTURE], { encoding: 'utf8', timeout: 20_000 })
    assert.equal(r.status, 0, `exit ${String(r.status)} ${r.stderr}`)
    assert.match(r.stderr, /internal error, not fatal .*StreamStateError: Cannot write to a stream that is closed/)
    assert.match(r.stdout, /still running\nstopped\n/)
    assert.match(r.stderr, /received SIGTERM, stopping/)
  })
})
