import assert from 'node:assert/strict'
import { statSync } from 'node:fs'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { JobStore, type JobSpec } from '../../src/broker/job-store.ts'
import { loadTree } from '../../src/broker/job-tree.ts'
import { addressTree } from '../../src/codec/manifest.ts'
import { tempDir } from '../helpers/mesh.ts'

/** The job store's retention: finished jobs beyond the newest N go, with their tasks and the blobs nobody refers to. */

const dir = tempDir('wc-retention-')
after(() => { dir.cleanup() })

function spec (i: number): JobSpec {
  return { jobId: `job-${i}`, moduleCid: 'bafkrei-module', inputCid: `bafkrei-input-${i}`, moduleName: 'm.wasm', args: [], env: [], limits: {}, replicas: 1 }
}

function addJob (store: JobStore, i: number, finished: boolean): void {
  store.createJob(spec(i), new Uint8Array([0, 97, 115, 109]), new Uint8Array(1024).fill(i % 256))
  const task = store.createTask({ taskId: `job-${i}.r0.a1`, jobId: `job-${i}`, replica: 0, attempt: 1, executor: 'peer' })
  if (!finished) return
  store.completeTask(task, {
    outcome: { status: 'succeeded', exitCode: 0, outputCid: 'bafy-out', fuelUsed: 1, durationMs: 1, receiptVerified: true, stdoutSize: 4096, stderrSize: 0 },
    receipt: new Uint8Array(100),
    receiptSignature: new Uint8Array(64),
    stdout: new Uint8Array(4096),
    stderr: new Uint8Array()
  })
  store.finishJob(`job-${i}`, 'completed', { status: 'succeeded', exitCode: 0, outputCid: 'bafy-out', fuelUsed: 1, agreeing: 1, message: 'ok' })
}

describe('job store retention', () => {
  it('keeps the newest finished jobs and every unfinished one, and drops the blobs only pruned jobs used', () => {
    const store = new JobStore(join(dir.path, 'prune.sqlite'))
    for (let i = 0; i < 8; i++) addJob(store, i, true)
    for (let i = 8; i < 10; i++) addJob(store, i, false)
    assert.equal(store.prune(3), 5)
    const left = store.listJobs(100).map(j => j.jobId).sort()
    assert.deepEqual(left, ['job-5', 'job-6', 'job-7', 'job-8', 'job-9'])
    assert.deepEqual(store.tasksOf('job-0'), [])
    assert.equal(store.getBlob('bafkrei-input-0'), undefined)
    assert.ok(store.getBlob('bafkrei-input-5') != null)
    assert.ok(store.getBlob('bafkrei-module') != null, 'the module is still used')
    assert.equal(store.prune(3), 0, 'pruning again changes nothing')
    store.close()
  })

  it('keeps the directory tree of a kept job, and drops the tree only a pruned job used', () => {
    const store = new JobStore(join(dir.path, 'prune-trees.sqlite'))
    const treeOf = (text: string): ReturnType<typeof addressTree> =>
      addressTree([{ guest: '/data', files: [{ path: '/data/a.txt', data: new TextEncoder().encode(text) }] }])
    const old = treeOf('only the old job has this')
    const open = treeOf('the unfinished job has this')
    store.createJob({ ...spec(100), manifestCid: old.manifestCid }, new Uint8Array([0, 97, 115, 109]), new Uint8Array(1), old)
    store.finishJob('job-100', 'completed', { status: 'succeeded', exitCode: 0, outputCid: 'bafy-out', fuelUsed: 1, agreeing: 1, message: 'ok' })
    store.createJob({ ...spec(101), manifestCid: open.manifestCid }, new Uint8Array([0, 97, 115, 109]), new Uint8Array(2), open)
    for (let i = 102; i < 105; i++) addJob(store, i, true)
    assert.equal(store.prune(2), 2, 'job-100 and job-102 go')
    assert.ok(loadTree(store, open.manifestCid) != null, 'the unfinished job can still load its whole tree')
    assert.equal(store.getBlob(old.manifestCid), undefined, 'the pruned job\'s manifest is gone')
    assert.equal(loadTree(store, old.manifestCid), undefined)
    store.close()
  })

  it('keeps the file at the size its retained jobs need while many more jobs pass through', () => {
    const path = join(dir.path, 'size.sqlite')
    const store = new JobStore(path)
    const size = (): number => statSync(path).size + (statSync(`${path}-wal`, { throwIfNoEntry: false })?.size ?? 0)
    let i = 0
    for (; i < 200; i++) {
      addJob(store, i, true)
      if (i % 50 === 49) store.prune(100)
    }
    const after200 = size()
    for (; i < 1000; i++) {
      addJob(store, i, true)
      if (i % 50 === 49) store.prune(100)
    }
    const after1000 = size()
    assert.equal(store.listJobs(10_000).length, 100)
    assert.ok(after1000 < after200 * 1.5, `the file grew from ${after200} to ${after1000} bytes while the jobs it holds stayed at 100`)
    store.close()
  })
})
