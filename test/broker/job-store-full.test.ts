/**
 * A full disk on the submitting node is that node's fault: the broker never
 * counts it against an executor, says so in one ERROR line naming the store,
 * holds the job, and finishes it once the store takes writes again.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import type { DatabaseSync } from 'node:sqlite'
import { after, describe, it } from 'node:test'
import { Broker, type ExecutorInfo, type OfferAnswer, type TaskNetwork, type TaskRunResult, type TaskToRun } from '../../src/broker/broker.ts'
import { JobStore, JobStoreFullError } from '../../src/broker/job-store.ts'
import { DEFAULT_JOB_LIMITS } from '../../src/core/job.ts'
import { tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'
import { recordingLogger, type LogLine } from '../helpers/recording-logger.ts'

const dir = tempDir('wc-store-full-')
after(() => { dir.cleanup() })

const FAST_RETRY = { initialMs: 20, maxMs: 100 }

/** One executor that accepts every offer and answers each dispatch with `stdoutBytes` of output. */
class OneExecutor implements TaskNetwork {
  readonly dispatched: string[] = []
  private readonly stdoutBytes: number
  constructor (stdoutBytes: number) {
    this.stdoutBytes = stdoutBytes
  }

  executors (): ExecutorInfo[] {
    return [{ peerId: 'A', acceptsJobs: true, freeSlots: 1, maxLimits: DEFAULT_JOB_LIMITS }]
  }

  async offer (): Promise<OfferAnswer> {
    return { accept: true }
  }

  /** a loopback executor: its own network, as in a single-machine mesh */
  async locate (): Promise<string | undefined> {
    return '127.0.0.1'
  }

  async dispatch (_executor: string, task: TaskToRun): Promise<TaskRunResult> {
    this.dispatched.push(task.taskId)
    return {
      path: 'direct',
      outcome: { status: 'succeeded', exitCode: 0, outputCid: 'bafy-out', fuelUsed: 7, durationMs: 1, receiptVerified: true, stdoutSize: this.stdoutBytes, stderrSize: 0 },
      receipt: new Uint8Array([1]),
      receiptSignature: new Uint8Array([2]),
      stdout: randomBytes(this.stdoutBytes),
      stderr: new Uint8Array()
    }
  }

  async waitForExecutors (ms: number, signal: AbortSignal): Promise<void> {
    await new Promise<void>(resolve => {
      const t = setTimeout(resolve, Math.min(ms, 50))
      signal.addEventListener('abort', () => { clearTimeout(t); resolve() }, { once: true })
    })
  }
}

/** A store on a "disk" with room for jobs and tasks but not for a large result, and the handle that makes room. */
function smallDisk (name: string): { store: JobStore, makeRoom: () => void } {
  let db: DatabaseSync | undefined
  const store = new JobStore(join(dir.path, name), { onOpen: (opened) => { db = opened } })
  const open = db as DatabaseSync
  const { page_count: used } = open.prepare('PRAGMA page_count').get() as { page_count: number }
  open.exec(`PRAGMA max_page_count = ${used + 8}`)
  return { store, makeRoom: () => { open.exec('PRAGMA max_page_count = 1073741823') } }
}

/** A store whose task inserts fail as on a full disk until `makeRoom` is called. */
class TaskInsertsFail extends JobStore {
  full = true
  attempts = 0
  override createTask (...args: Parameters<JobStore['createTask']>): ReturnType<JobStore['createTask']> {
    this.attempts++
    if (this.full) throw new JobStoreFullError(this.path, { cause: new Error('database or disk is full') })
    return super.createTask(...args)
  }
}

function submit (broker: Broker, module = new Uint8Array([0, 97, 115, 109])): string {
  return broker.submit({ module, moduleCid: `bafk-${module.length}`, input: new Uint8Array([7]), inputCid: 'bafk-input' }).jobId
}

function storeErrors (lines: LogLine[]): LogLine[] {
  return lines.filter(l => l.level === 'error' && l.fields?.code === 'STORE_FULL')
}

describe('a full disk on the submitting node', () => {
  it('holds a result it cannot record instead of failing the task on its executor, and records it once there is room', async () => {
    const { store, makeRoom } = smallDisk('result.sqlite')
    const net = new OneExecutor(256 * 1024)
    const lines: LogLine[] = []
    const broker = new Broker({ store, network: net, self: 'me', storeRetry: FAST_RETRY, logger: recordingLogger(lines) })
    broker.start()
    try {
      const jobId = submit(broker)
      await waitFor('an ERROR line about the full store', () => storeErrors(lines)[0], 5_000)
      const [line] = storeErrors(lines)
      assert.equal(line.fields?.path, store.path)
      assert.equal(line.fields?.job, jobId)
      // a few retries later: still one dispatch, nothing failed, nobody blamed
      await new Promise(resolve => setTimeout(resolve, 300))
      assert.deepEqual(net.dispatched, [`${jobId}.r0.a1`])
      assert.equal(storeErrors(lines).length, 1, 'one ERROR line per write that fails, not one per retry')
      assert.equal(lines.filter(l => l.level === 'warn').length, 0, lines.map(l => l.msg).join('\n'))
      assert.equal(broker.getJob(jobId).tasks[0].state, 'offered')
      makeRoom()
      const final = await waitFor('the job to finish', () => broker.getJob(jobId).job.final ?? undefined, 5_000)
      assert.equal(final.status, 'succeeded')
      assert.equal(final.agreeing, 1)
      assert.deepEqual(net.dispatched, [`${jobId}.r0.a1`])
    } finally {
      await broker.stop()
      store.close()
    }
  })

  it('refuses a submit it cannot store with JobStoreFullError and an ERROR line, and takes the next one once there is room', async () => {
    const { store, makeRoom } = smallDisk('submit.sqlite')
    const lines: LogLine[] = []
    const broker = new Broker({ store, network: new OneExecutor(16), self: 'me', storeRetry: FAST_RETRY, logger: recordingLogger(lines) })
    broker.start()
    try {
      const big = new Uint8Array(randomBytes(200 * 1024))
      for (let i = 0; i < 2; i++) assert.throws(() => submit(broker, big), JobStoreFullError)
      assert.equal(storeErrors(lines).length, 2)
      makeRoom()
      const jobId = submit(broker, big)
      const final = await waitFor('the job to finish', () => broker.getJob(jobId).job.final ?? undefined, 5_000)
      assert.equal(final.status, 'succeeded')
    } finally {
      await broker.stop()
      store.close()
    }
  })

  it('pauses a job whose task it cannot record, without ending it, and runs it once the store takes writes', async () => {
    const store = new TaskInsertsFail(join(dir.path, 'task.sqlite'))
    const net = new OneExecutor(16)
    const lines: LogLine[] = []
    const broker = new Broker({ store, network: net, self: 'me', storeRetry: FAST_RETRY, logger: recordingLogger(lines) })
    broker.start()
    try {
      const jobId = submit(broker)
      await waitFor('two attempts to record the task', () => store.attempts >= 2 || undefined, 5_000)
      assert.equal(broker.getJob(jobId).job.final, null)
      assert.deepEqual(net.dispatched, [])
      assert.ok(storeErrors(lines).length >= 1)
      assert.ok(!lines.some(l => l.msg.includes('internal error')), 'a full disk is not reported as a bug')
      store.full = false
      const final = await waitFor('the job to finish', () => broker.getJob(jobId).job.final ?? undefined, 5_000)
      assert.equal(final.status, 'succeeded')
    } finally {
      await broker.stop()
      store.close()
    }
  })
})
