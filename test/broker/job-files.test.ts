/**
 * A job's directories in the broker: stored with the job, handed to every
 * task, and the agreed output files kept and served; replicas whose files
 * differ do not agree (their outputCids, which cover the files, differ).
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { Broker, JobRejectedError, type ExecutorInfo, type OfferAnswer, type TaskNetwork, type TaskRunResult, type TaskToRun } from '../../src/broker/broker.ts'
import { JobStore } from '../../src/broker/job-store.ts'
import { JobFilesUnavailableError, jobFilesView, jobView } from '../../src/broker/job-view.ts'
import { rawCidString } from '../../src/codec/cid.ts'
import { outputCid } from '../../src/codec/receipt.ts'
import { DEFAULT_JOB_LIMITS } from '../../src/core/job.ts'
import { tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'
import type { OutputFiles } from '../../src/codec/manifest.ts'
import type { JobDir } from '../../src/core/job.ts'

const dir = tempDir('wc-broker-files-')
after(() => { dir.cleanup() })
const enc = new TextEncoder()

/** Executors that each "write" /out/result.txt with their own contents; `tasks` records what the broker handed them. */
class FileWritingNetwork implements TaskNetwork {
  readonly tasks: TaskToRun[] = []
  private readonly results: Map<string, string>
  constructor (results: Map<string, string>) {
    this.results = results
  }

  executors (): ExecutorInfo[] {
    return [...this.results.keys()].map(peerId => ({ peerId, acceptsJobs: true, freeSlots: 1, maxLimits: DEFAULT_JOB_LIMITS }))
  }

  async locate (executor: string): Promise<string | undefined> {
    return `10.0.${[...this.results.keys()].indexOf(executor)}.1`
  }

  async offer (): Promise<OfferAnswer> {
    return { accept: true, freeSlots: 1 }
  }

  async dispatch (executor: string, task: TaskToRun): Promise<TaskRunResult> {
    this.tasks.push(task)
    const files: OutputFiles = { files: [{ path: '/out/result.txt', data: enc.encode(this.results.get(executor) ?? '') }], removed: ['/data/in.txt'] }
    const stdout = enc.encode('done\n')
    const stderr = new Uint8Array()
    return {
      path: 'direct',
      outcome: { status: 'succeeded', exitCode: 0, outputCid: outputCid(stdout, stderr, files), fuelUsed: 7, durationMs: 1, receiptVerified: true, stdoutSize: stdout.length, stderrSize: 0 },
      receipt: new Uint8Array([1]),
      receiptSignature: new Uint8Array([2]),
      stdout,
      stderr,
      files
    }
  }

  async waitForExecutors (ms: number, signal: AbortSignal): Promise<void> {
    await new Promise<void>(resolve => {
      const t = setTimeout(resolve, Math.min(ms, 50))
      signal.addEventListener('abort', () => { clearTimeout(t); resolve() }, { once: true })
    })
  }
}

const TREE: JobDir[] = [{ guest: '/data', files: [{ path: '/data/in.txt', data: enc.encode('input file') }] }, { guest: '/out', files: [] }]

async function withBroker<T> (name: string, net: TaskNetwork, body: (broker: Broker) => Promise<T>): Promise<T> {
  const store = new JobStore(join(dir.path, `${name}.sqlite`))
  const broker = new Broker({ store, network: net, self: 'me', probeIntervalMs: 50, unavailableAfterMs: 2000 })
  broker.start()
  try {
    return await body(broker)
  } finally {
    await broker.stop()
    store.close()
  }
}

function submit (broker: Broker, replicas: number, dirs: JobDir[] = TREE): string {
  return broker.submit({ module: new Uint8Array([0, 97, 115, 109]), moduleCid: rawCidString(new Uint8Array([0, 97, 115, 109])), input: new Uint8Array(), inputCid: rawCidString(new Uint8Array()), replicas, dirs }).jobId
}

async function finalOf (broker: Broker, jobId: string): Promise<{ view: ReturnType<typeof jobView>, files: () => ReturnType<typeof jobFilesView> }> {
  return await waitFor(`job ${jobId} to finish`, () => {
    const { job, tasks } = broker.getJob(jobId)
    return job.final != null ? { view: jobView(job, tasks, true), files: () => jobFilesView(job, tasks) } : undefined
  }, 10_000)
}

describe('job directories in the broker', () => {
  it('hands every task the stored tree and keeps the agreed output files for the API', async () => {
    const net = new FileWritingNetwork(new Map([['exec-a', 'RESULT'], ['exec-b', 'RESULT']]))
    await withBroker('agreed', net, async (broker) => {
      const { view, files } = await finalOf(broker, submit(broker, 2))
      assert.equal(view.status, 'succeeded', view.message)
      assert.equal(net.tasks.length, 2)
      assert.ok(net.tasks.every(t => t.tree?.manifestCid === view.manifestCid && t.tree?.blobs.size === 1))
      assert.deepEqual(view.files, [{ path: '/out/result.txt', size: 6, cid: rawCidString(enc.encode('RESULT')) }])
      assert.deepEqual(view.removedFiles, ['/data/in.txt'])
      const served = files()
      assert.deepEqual(served.files.map(f => [f.path, Buffer.from(f.data, 'base64').toString()]), [['/out/result.txt', 'RESULT']])
      assert.deepEqual(served.removed, ['/data/in.txt'])
    })
  })

  it('does not agree when two replicas wrote different files, though their stdout is the same', async () => {
    const net = new FileWritingNetwork(new Map([['exec-a', 'RESULT'], ['exec-b', 'FORGED']]))
    await withBroker('disagree', net, async (broker) => {
      const { view, files } = await finalOf(broker, submit(broker, 2))
      assert.equal(view.status, 'no_agreement', view.message)
      assert.equal(new Set(view.replicas.map(r => r.outputCid)).size, 2)
      assert.equal(view.files, undefined)
      assert.throws(files, (err: unknown) => err instanceof JobFilesUnavailableError && err.code === 'JOB_FILES_UNAVAILABLE')
    })
  })

  it('rejects a tree with a file outside its preopen, naming it', async () => {
    const net = new FileWritingNetwork(new Map())
    await withBroker('bad-tree', net, async (broker) => {
      const bad: JobDir[] = [{ guest: '/data', files: [{ path: '/etc/passwd', data: enc.encode('x') }] }]
      assert.throws(() => submit(broker, 1, bad), (err: unknown) => err instanceof JobRejectedError && err.code === 'JOB_REJECTED' && err.message.includes('dirs[0].files[0].path'))
    })
  })
})
