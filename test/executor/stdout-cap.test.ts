/**
 * The parent's own stdout cap, checked from each frame's header. A real
 * sandbox's shim stops the guest at the job's cap (executor.test.ts covers that:
 * `output_too_large`), so the parent's check can only be reached when the
 * sandbox runs under a larger cap than the parent holds: here the `run`
 * message the real sandbox process receives carries a larger `outputBytes`,
 * as a sandbox that is not the code we started would behave. Everything else
 * (the sandbox process, its worker, the module, the data socket) is the
 * product's own.
 */
import assert from 'node:assert/strict'
import childProcess, { type ChildProcess } from 'node:child_process'
import { syncBuiltinESMExports } from 'node:module'
import { after, before, describe, it } from 'node:test'
import type { ParentMessage } from '../../src/executor/protocol.ts'
import { Executor } from '../../src/executor/executor.ts'
import { STREAM_CHUNK_BYTES } from '../../src/executor/stream-io.ts'
import { request, text } from './helpers/fixtures.ts'
import { alive } from './helpers/process.ts'

const MiB = 1024 * 1024
const PARENT_CAP = 100_000
/** what the sandbox is told: several frames' worth, so its shim lets a whole frame past the parent's cap */
const SANDBOX_CAP = 4 * STREAM_CHUNK_BYTES

type Send = (message: ParentMessage, callback?: (err: Error | null) => void) => boolean

/** Forks as the executor does, with `run` messages for `jobId` raised to SANDBOX_CAP on their way to the real sandbox. */
function forkRaisingCapOf (jobId: string, realFork: typeof childProcess.fork): typeof childProcess.fork {
  return ((...args: Parameters<typeof childProcess.fork>): ChildProcess => {
    const child = realFork(...args)
    const send = child.send.bind(child) as Send
    const raised: Send = (message, callback) => {
      if (message.type !== 'run' || message.job.jobId !== jobId) return send(message, callback)
      // a copy: the executor's own limits (the same object) keep the parent's cap
      return send({ ...message, job: { ...message.job, limits: { ...message.job.limits, outputBytes: SANDBOX_CAP } } }, callback)
    }
    child.send = raised as ChildProcess['send']
    return child
  }) as typeof childProcess.fork
}

/** This process's handles and requests by kind, counted: a sandbox's child process, sockets and timers show here. */
function resources (): Map<string, number> {
  const counts = new Map<string, number>()
  for (const kind of process.getActiveResourcesInfo()) counts.set(kind, (counts.get(kind) ?? 0) + 1)
  return counts
}

describe('The executor\'s own stdout cap on a real sandbox that streams past it', () => {
  const realFork = childProcess.fork
  // a hung sandbox is killed only after this long: within the test's timeout, only the cap check can kill it
  const executor = new Executor({ maxConcurrent: 1, maxLimits: { memoryBytes: 64 * MiB, deadlineMs: 30_000 }, hangGraceMs: 10 * 60_000 })
  before(async () => {
    childProcess.fork = forkRaisingCapOf('job-over-cap', realFork)
    syncBuiltinESMExports()
    await executor.start()
  })
  after(async () => {
    await executor.stop()
    childProcess.fork = realFork
    syncBuiltinESMExports()
  })

  it('fails the job as a crash, kills and replaces the sandbox, runs the next job, and leaks nothing', { timeout: 30_000 }, async () => {
    const warm = await executor.execute(request('upper', { input: 'warm\n' }))
    assert.equal(warm.status, 'succeeded')
    const before = executor.status()
    const pidBefore = before.sandboxPid
    assert.ok(pidBefore !== undefined)
    const resourcesBefore = resources()

    const result = await executor.execute(request('huge-output', { jobId: 'job-over-cap', limits: { outputBytes: PARENT_CAP } }))
    assert.equal(result.status, 'failed')
    assert.equal(result.errorCode, 'EXECUTOR_CRASHED')
    assert.ok(result.stdout.byteLength <= PARENT_CAP, `no more than the cap returned (${result.stdout.byteLength} bytes)`)
    assert.equal(alive(pidBefore), false, 'the sandbox that sent past the cap is killed')

    const next = await executor.execute(request('upper', { input: 'after the kill\n' }))
    assert.equal(next.status, 'succeeded')
    assert.equal(text(next.stdout), 'AFTER THE KILL\n')
    const now = executor.status()
    assert.equal(now.restarts, before.restarts + 1, 'the sandbox was replaced once')
    assert.notEqual(now.sandboxPid, pidBefore)
    assert.equal(now.running, 0)
    assert.equal(now.queued, 0)
    assert.deepEqual(resources(), resourcesBefore, 'as many handles of each kind as before the job')
  })

  it('keeps the guest under the sandbox\'s own cap when both agree: output_too_large, same sandbox', async () => {
    const pidBefore = executor.status().sandboxPid
    const result = await executor.execute(request('huge-output', { limits: { outputBytes: PARENT_CAP } }))
    assert.equal(result.status, 'output_too_large')
    assert.equal(result.stdout.byteLength, PARENT_CAP)
    assert.equal(executor.status().sandboxPid, pidBefore)
  })
})
