import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, it } from 'node:test'
import { runUntilSignal } from '../../src/cli/lifecycle.ts'
import { WorldComputeError } from '../../src/core/errors.ts'
import type { Output } from '../../src/cli/output.ts'

const FIXTURE = fileURLToPath(new URL('../fixtures/cli/rejection-survivor.ts', import.meta.url))
const LIFECYCLE = fileURLToPath(new URL('../../src/cli/lifecycle.ts', import.meta.url))
const ERRORS = fileURLToPath(new URL('../../src/core/errors.ts', import.meta.url))

function collecting (): Output & { lines: string[] } {
  const lines: string[] = []
  return { lines, out: (s: string) => { lines.push(s) }, err: (s: string) => { lines.push(s) } }
}

describe('runUntilSignal', () => {
  // in a child process: the test runner has its own rejection handling
  it('an unhandled rejection inside the service is logged in full and does not end it', () => {
    const r = spawnSync(process.execPath, [FIXTURE], { encoding: 'utf8', timeout: 20_000 })
    assert.equal(r.status, 0, `exit ${String(r.status)} ${r.stderr}`)
    assert.match(r.stderr, /internal error, not fatal .*StreamStateError: Cannot write to a stream that is closed/)
    assert.match(r.stdout, /still running\nstopped\n/)
    assert.match(r.stderr, /received SIGTERM, stopping/)
  })

  it('a start that fails rejects with its own error, prints nothing of its own and leaves no signal handler behind', async () => {
    class PortTaken extends WorldComputeError {}
    const o = collecting()
    const before = { int: process.listenerCount('SIGINT'), term: process.listenerCount('SIGTERM'), rejection: process.listenerCount('unhandledRejection') }
    const failure = new PortTaken('the port is taken: stop the other process', 'PORT_TAKEN')
    let started = false
    await assert.rejects(runUntilSignal(o, async () => { throw failure }, () => { started = true }), (err: unknown) => err === failure)
    assert.equal(started, false)
    assert.deepEqual(o.lines, [])
    assert.deepEqual({ int: process.listenerCount('SIGINT'), term: process.listenerCount('SIGTERM'), rejection: process.listenerCount('unhandledRejection') }, before)
  })

  // in a child process: it sends itself SIGTERM
  it('a named error while stopping is one line with its code, no stack, and exit code 1', () => {
    const script = `
      import { runUntilSignal } from ${JSON.stringify(LIFECYCLE)}
      import { errorWithCode } from ${JSON.stringify(ERRORS)}
      class DiskGone extends errorWithCode('DISK_GONE') {}
      const o = { out: (s) => process.stdout.write(s + '\\n'), err: (s) => process.stderr.write(s + '\\n') }
      await runUntilSignal(o, async () => {
        const keepAlive = setInterval(() => {}, 1000)
        setTimeout(() => { process.kill(process.pid, 'SIGTERM') }, 100)
        return { stop: async () => { clearInterval(keepAlive); throw new DiskGone('the disk went away: check it') } }
      })`
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 })
    assert.equal(r.status, 1, r.stderr)
    const lines = r.stderr.trim().split('\n')
    assert.deepEqual(lines.slice(-1), ['error while stopping: the disk went away: check it (DISK_GONE)'])
    assert.doesNotMatch(r.stderr, /^\s+at /m)
  })
})
