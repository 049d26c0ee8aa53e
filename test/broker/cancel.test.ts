import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { Broker, CANCELLED_TASK, type CancelAnswer, type ExecutorInfo, type OfferAnswer, type TaskNetwork, type TaskRunResult, type TaskToRun } from '../../src/broker/broker.ts'
import { JobStore } from '../../src/broker/job-store.ts'
import { DEFAULT_JOB_LIMITS } from '../../src/core/job.ts'
import { tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'

/**
 * `Broker.cancel` against executors that run each task until it is aborted
 * (or, for `quick`, answer at once): what the store says after, who was
 * told to stop what, and what a second cancel or a restart does.
 */

const dir = tempDir('wc-broker-cancel-')
after(() => { dir.cleanup() })

class HangingNetwork implements TaskNetwork {
  readonly cancels: Array<{ executor: string, taskIds: string[] }> = []
  readonly running = new Set<string>()
  readonly peers: string[]
  readonly quick: boolean
  constructor (peers: string[], quick = false) {
    this.peers = peers
    this.quick = quick
  }

  executors (): ExecutorInfo[] {
    return this.peers.map(peerId => ({ peerId, acceptsJobs: true, freeSlots: 1, maxLimits: DEFAULT_JOB_LIMITS }))
  }

  async offer (): Promise<OfferAnswer> {
    return { accept: true }
  }

  async locate (executor: string): Promise<string> {
    return `10.0.${this.peers.indexOf(executor)}.1`
  }

  async dispatch (executor: string, task: TaskToRun, options: { signal: AbortSignal }): Promise<TaskRunResult> {
    if (this.quick) return result()
    this.running.add(task.taskId)
    try {
      return await new Promise<never>((resolve, reject) => {
        options.signal.addEventListener('abort', () => { reject(options.signal.reason) }, { once: true })
      })
    } finally {
      this.running.delete(task.taskId)
    }
  }

  async cancel (executor: string, taskIds: string[]): Promise<CancelAnswer> {
    this.cancels.push({ executor, taskIds })
    return { stopped: taskIds, dropped: [], unknown: [] }
  }

  async waitForExecutors (ms: number, signal: AbortSignal): Promise<void> {
    await new Promise<void>(resolve => {
      const t = setTimeout(resolve, Math.min(ms, 50))
      signal.addEventListener('abort', () => { clearTimeout(t); resolve() }, { once: true })
    })
  }
}

function result (): TaskRunResult {
  return {
    path: 'direct',
    outcome: { status: 'succeeded', exitCode: 0, outputCid: 'bafy-out', fuelUsed: 1, durationMs: 1, receiptVerified: true, stdoutSize: 0, stderrSize: 0 },
    receipt: new Uint8Array([1]),
    receiptSignature: new Uint8Array([2]),
    stdout: new Uint8Array(),
    stderr: new Uint8Array()
  }
}

function submitTo (broker: Broker, replicas: number): string {
  return broker.submit({ module: new Uint8Array([0, 97, 115, 109]), moduleCid: 'bafkrei-module', input: new Uint8Array(), inputCid: 'bafkrei-input', replicas }).jobId
}

describe('broker cancel', () => {
  it('a running job ends cancelled, every executor holding a replica is told to stop it, and a restart does not resume it', async () => {
    const path = join(dir.path, 'running.sqlite')
    const store = new JobStore(path)
    const net = new HangingNetwork(['A', 'B', 'C'])
    const broker = new Broker({ store, network: net, self: 'me' })
    broker.start()
    const jobId = submitTo(broker, 3)
    await waitFor('three replicas running', () => net.running.size === 3 ? true : undefined, 5_000)

    const done = await broker.cancel(jobId)
    assert.deepEqual({ outcome: done.outcome, stopped: done.stopped, unreached: done.unreached }, { outcome: 'cancelled', stopped: 3, unreached: [] })
    assert.deepEqual(net.cancels.map(c => c.executor).sort(), ['A', 'B', 'C'])
    assert.deepEqual(net.cancels.flatMap(c => c.taskIds).sort(), broker.getJob(jobId).tasks.map(t => t.taskId).sort())
    assert.equal(net.running.size, 0, 'the broker stopped waiting for the dispatches')
    const { job, tasks } = broker.getJob(jobId)
    assert.equal(job.final?.status, 'cancelled')
    assert.ok(tasks.every(t => t.state === 'failed' && t.failure === CANCELLED_TASK))

    assert.equal((await broker.cancel(jobId)).outcome, 'already-cancelled')
    assert.equal(net.cancels.length, 3, 'a second cancel tells nobody anything')
    await broker.stop()
    store.close()

    const reopened = new JobStore(path)
    assert.deepEqual(reopened.unfinishedJobs(), [])
    assert.equal(reopened.getJob(jobId)?.final?.status, 'cancelled')
    reopened.close()
  })

  it('a job that already finished keeps its answer and nobody is told to stop anything', async () => {
    const store = new JobStore(join(dir.path, 'finished.sqlite'))
    const net = new HangingNetwork(['A'], true)
    const broker = new Broker({ store, network: net, self: 'me' })
    broker.start()
    const jobId = submitTo(broker, 1)
    await waitFor('the job to finish', () => broker.getJob(jobId).job.final != null ? true : undefined, 5_000)
    const done = await broker.cancel(jobId)
    assert.equal(done.outcome, 'already-finished')
    assert.equal(broker.getJob(jobId).job.final?.status, 'succeeded')
    assert.equal(net.cancels.length, 0)
    await broker.stop()
    store.close()
  })

  it('a queued job with no executor is cancelled without telling anyone', async () => {
    const store = new JobStore(join(dir.path, 'queued.sqlite'))
    const net = new HangingNetwork([])
    const broker = new Broker({ store, network: net, self: 'me' })
    broker.start()
    const jobId = submitTo(broker, 1)
    const done = await broker.cancel(jobId)
    assert.equal(done.outcome, 'cancelled')
    assert.equal(broker.getJob(jobId).job.final?.status, 'cancelled')
    assert.equal(net.cancels.length, 0)
    await assert.rejects(broker.cancel('job-none'), (err: Error & { code?: string }) => err.code === 'JOB_NOT_FOUND')
    await broker.stop()
    store.close()
  })
})
