import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { JobRunner } from '../../src/donor/job-runner.ts'
import { cancelTasks } from '../../src/donor/cancel.ts'
import { DEFAULT_JOB_LIMITS, type ExecuteRequest, type ExecuteResult } from '../../src/core/job.ts'
import { TaskAbandonedError } from '../../src/protocols/errors.ts'
import type { Executor } from '../../src/executor/index.ts'

/**
 * The donor's side of `/worldcompute/cancel/1.0.0`: what a cancel does to a
 * running task, an offered one, and one it does not know, and that only the
 * broker holding a task can cancel it.
 */

const MiB = 1024 * 1024

/** An executor stand-in whose runs end only when aborted; records the aborts. */
class EndlessExecutor implements Pick<Executor, 'execute'> {
  readonly aborted: string[] = []

  async execute (req: ExecuteRequest, options: { signal?: AbortSignal } = {}): Promise<ExecuteResult> {
    return await new Promise<never>((resolve, reject) => {
      options.signal?.addEventListener('abort', () => {
        this.aborted.push(req.taskId)
        reject(options.signal?.reason)
      }, { once: true })
    })
  }
}

function runnerWith (executor: EndlessExecutor, changes: { n: number }): JobRunner {
  return new JobRunner({
    executor,
    maxLimits: { ...DEFAULT_JOB_LIMITS, memoryBytes: 128 * MiB },
    maxConcurrent: 2,
    addrs: () => [],
    hasModule: () => false,
    onChange: () => { changes.n++ }
  })
}

function offerAndAdmit (r: JobRunner, peer: string, taskId: string): void {
  assert.equal(r.decideOffer({ jobId: 'job-1', taskId, moduleCid: 'bafkrei-m', moduleSize: 1, inputSize: 0, limits: { memoryBytes: MiB } }, { peer }).accept, true)
  assert.equal(r.admit({ jobId: 'job-1', taskId, moduleCid: 'bafkrei-m', limits: {} }, { peer }).admitted, true)
}

function request (taskId: string): ExecuteRequest {
  return { jobId: 'job-1', taskId, module: new Uint8Array([0]), moduleCid: 'bafkrei-m', input: new Uint8Array(0), args: [], env: [], limits: { memoryBytes: MiB } }
}

describe('donor cancel', () => {
  it('stops a running task of the broker that dispatched it, frees its slot at once, and says so', async () => {
    const exec = new EndlessExecutor()
    const changes = { n: 0 }
    const r = runnerWith(exec, changes)
    offerAndAdmit(r, 'broker-a', 't1')
    const run = r.runTask(request('t1'), { signal: new AbortController().signal, peer: 'broker-a' })
    assert.equal(r.capacity().freeSlots, 1)
    const before = changes.n
    const res = cancelTasks(r, { taskIds: ['t1'] }, { peer: 'broker-a' })
    assert.deepEqual(res, { stopped: ['t1'], dropped: [], unknown: [] })
    assert.equal(r.capacity().freeSlots, 2, 'the slot is free before the executor has even answered')
    assert.ok(changes.n > before, 'capacity is announced again')
    await assert.rejects(run, (err: Error) => err instanceof TaskAbandonedError && /cancelled/.test(err.message))
    assert.deepEqual(exec.aborted, ['t1'])
    // a second cancel of the same task changes nothing
    assert.deepEqual(cancelTasks(r, { taskIds: ['t1'] }, { peer: 'broker-a' }), { stopped: [], dropped: [], unknown: ['t1'] })
  })

  it('refuses a cancel from any peer but the broker that holds the task: the task keeps running', async () => {
    const exec = new EndlessExecutor()
    const r = runnerWith(exec, { n: 0 })
    offerAndAdmit(r, 'broker-a', 't1')
    const run = r.runTask(request('t1'), { signal: new AbortController().signal, peer: 'broker-a' })
    assert.deepEqual(cancelTasks(r, { taskIds: ['t1'] }, { peer: 'broker-b' }), { stopped: [], dropped: [], unknown: ['t1'] })
    assert.deepEqual(exec.aborted, [])
    assert.equal(r.capacity().freeSlots, 1)
    cancelTasks(r, { taskIds: ['t1'] }, { peer: 'broker-a' })
    await assert.rejects(run, TaskAbandonedError)
  })

  it('drops a task offered but not started, so a dispatch arriving for it later is refused', async () => {
    const exec = new EndlessExecutor()
    const r = runnerWith(exec, { n: 0 })
    assert.equal(r.decideOffer({ jobId: 'job-1', taskId: 't2', moduleCid: 'bafkrei-m', moduleSize: 1, inputSize: 0, limits: { memoryBytes: MiB } }, { peer: 'broker-a' }).accept, true)
    assert.equal(r.capacity().freeSlots, 1)
    assert.deepEqual(cancelTasks(r, { taskIds: ['t2', 'never-seen'] }, { peer: 'broker-a' }), { stopped: [], dropped: ['t2'], unknown: ['never-seen'] })
    assert.equal(r.capacity().freeSlots, 2)
    const late = r.admit({ jobId: 'job-1', taskId: 't2', moduleCid: 'bafkrei-m', limits: {} }, { peer: 'broker-a' })
    assert.equal(late.admitted, false)
    await assert.rejects(r.runTask(request('t2'), { signal: new AbortController().signal, peer: 'broker-a' }), TaskAbandonedError)
    assert.deepEqual(exec.aborted, [])
  })
})
