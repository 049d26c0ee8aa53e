/**
 * The job store's faults: a damaged or unusable database file, and a full
 * disk (simulated with SQLite's max_page_count), each a named error with a
 * code; the store takes writes again once there is room.
 */
import assert from 'node:assert/strict'
import { chmodSync, existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { after, describe, it } from 'node:test'
import { JobStore, JobStoreCorruptError, JobStoreError, JobStoreFullError, JobStoreUnavailableError, type JobSpec, type TaskResult } from '../../src/broker/job-store.ts'
import { tempDir } from '../helpers/mesh.ts'

const dir = tempDir('wc-job-store-')
after(() => { dir.cleanup() })

function spec (jobId: string): JobSpec {
  return { jobId, moduleCid: `m-${jobId}`, inputCid: `i-${jobId}`, moduleName: 'main.wasm', args: [], env: [], limits: {}, replicas: 1 }
}

/** A store whose database may grow by `pages` pages beyond what its schema takes, and the handle that lifts the cap. */
function cappedStore (name: string, pages: number): { store: JobStore, lift: () => void } {
  let db: DatabaseSync | undefined
  const store = new JobStore(join(dir.path, name), { onOpen: (opened) => { db = opened } })
  const open = db as DatabaseSync
  const { page_count: used } = open.prepare('PRAGMA page_count').get() as { page_count: number }
  open.exec(`PRAGMA max_page_count = ${used + pages}`)
  return { store, lift: () => { open.exec('PRAGMA max_page_count = 1073741823') } }
}

/** A succeeded task's result with `stdout`. */
function resultOf (stdout: Uint8Array): TaskResult {
  return {
    path: 'direct',
    outcome: { status: 'succeeded', exitCode: 0, outputCid: 'bafy', fuelUsed: 1, durationMs: 1, receiptVerified: true, stdoutSize: stdout.byteLength, stderrSize: 0 },
    receipt: new Uint8Array([1]),
    receiptSignature: new Uint8Array([2]),
    stdout,
    stderr: new Uint8Array()
  }
}

function mode (path: string): number {
  return statSync(path).mode & 0o777
}

describe('the job store', () => {
  it('refuses a file of garbage bytes with JobStoreCorruptError naming the file', () => {
    const path = join(dir.path, 'garbage.sqlite')
    writeFileSync(path, randomBytes(8192))
    assert.throws(() => new JobStore(path), (err: unknown) => {
      assert.ok(err instanceof JobStoreCorruptError, `expected JobStoreCorruptError, got ${String(err)}`)
      assert.equal(err.code, 'STORE_CORRUPT')
      assert.equal(err.path, path)
      assert.ok(err.message.includes(path))
      return true
    })
  })

  it('refuses a directory in place of its file with JobStoreUnavailableError', () => {
    const path = join(dir.path, 'a-directory.sqlite')
    mkdirSync(path)
    assert.throws(() => new JobStore(path), (err: unknown) => {
      assert.ok(err instanceof JobStoreUnavailableError, `expected JobStoreUnavailableError, got ${String(err)}`)
      assert.equal(err.code, 'STORE_UNAVAILABLE')
      assert.equal(err.path, path)
      return true
    })
  })

  it('creates its database and the -wal file readable by their owner only, and no shared -shm file', () => {
    const path = join(dir.path, 'private.sqlite')
    const store = new JobStore(path)
    try {
      store.createJob(spec('job-private'), new Uint8Array([1]), new Uint8Array([2]))
      for (const file of [path, `${path}-wal`]) assert.equal(mode(file), 0o600, file)
      // exclusive locking: the WAL index lives in the daemon's memory
      assert.equal(existsSync(`${path}-shm`), false)
    } finally {
      store.close()
    }
  })

  it('holds its database exclusively while open, and lets the next store open it once closed', () => {
    const path = join(dir.path, 'exclusive.sqlite')
    const store = new JobStore(path)
    store.createJob(spec('job-held'), new Uint8Array([1]), new Uint8Array([2]))
    const other = new DatabaseSync(path, { timeout: 0 })
    try {
      assert.throws(() => other.prepare('SELECT count(*) AS n FROM jobs').get(), /locked/)
    } finally {
      other.close()
      store.close()
    }
    const next = new JobStore(path)
    try {
      assert.equal(next.getJob('job-held')?.phase, 'queued')
    } finally {
      next.close()
    }
  })

  it('narrows a database file left readable by others to 0600', () => {
    const path = join(dir.path, 'wide.sqlite')
    new JobStore(path).close()
    chmodSync(path, 0o644)
    new JobStore(path).close()
    assert.equal(mode(path), 0o600)
  })

  it('reports a full disk as JobStoreFullError, is left with no transaction open, and takes the same job once there is room', () => {
    const { store, lift } = cappedStore('full.sqlite', 2)
    try {
      const big = randomBytes(64 * 1024)
      for (let attempt = 0; attempt < 2; attempt++) {
        assert.throws(() => store.createJob(spec('job-big'), big, new Uint8Array([1])), (err: unknown) => {
          assert.ok(err instanceof JobStoreFullError, `expected JobStoreFullError, got ${String(err)}`)
          assert.ok(err instanceof JobStoreError)
          assert.equal(err.code, 'STORE_FULL')
          return true
        })
      }
      assert.equal(store.getJob('job-big'), undefined)
      lift()
      const job = store.createJob(spec('job-big'), big, new Uint8Array([1]))
      assert.equal(job.phase, 'queued')
      assert.deepEqual(store.getBlob('m-job-big'), new Uint8Array(big))
    } finally {
      store.close()
    }
  })

  it('returns from createJob and createTask the rows a read returns, for a job with and without its optional fields', () => {
    const store = new JobStore(join(dir.path, 'rows.sqlite'))
    try {
      const plain = store.createJob(spec('job-plain'), new Uint8Array([1]), new Uint8Array([2]))
      assert.deepEqual(plain, store.getJob('job-plain'))
      const chosen = store.createJob({ ...spec('job-chosen'), args: ['a', 'b c'], env: ['K=v'], limits: { fuel: 5, deadlineMs: 100 }, replicas: 3, executors: ['peer-a', 'peer-b', 'peer-c'] }, new Uint8Array([3]), new Uint8Array([4]))
      assert.deepEqual(chosen, store.getJob('job-chosen'))
      const task = store.createTask({ taskId: 'job-chosen.r1.a2', jobId: 'job-chosen', replica: 1, attempt: 2, executor: 'peer-b' })
      assert.deepEqual(task, store.getTask('job-chosen.r1.a2'))
      assert.deepEqual(store.tasksOf('job-chosen'), [task])
    } finally {
      store.close()
    }
  })

  it('drops the phase index a store from an older version has, and still finds its unfinished jobs', () => {
    const path = join(dir.path, 'old-index.sqlite')
    const first = new JobStore(path)
    first.createJob(spec('job-open'), new Uint8Array([1]), new Uint8Array([2]))
    first.createJob(spec('job-done'), new Uint8Array([1]), new Uint8Array([3]))
    first.finishJob('job-done', 'completed', { status: 'succeeded', agreeing: 1, message: 'ok' })
    first.close()
    const raw = new DatabaseSync(path)
    raw.exec('CREATE INDEX jobs_phase ON jobs(phase)')
    raw.close()
    let db: DatabaseSync | undefined
    const store = new JobStore(path, { onOpen: (opened) => { db = opened } })
    try {
      const indexes = (db as DatabaseSync).prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'jobs'").all().map(r => r.name)
      assert.ok(!indexes.includes('jobs_phase'), indexes.join(', '))
      assert.deepEqual(store.unfinishedJobs().map(j => j.jobId), ['job-open'])
    } finally {
      store.close()
    }
  })

  it('moves a job from queued to running with its first task, in the same transaction, and never back', () => {
    const store = new JobStore(join(dir.path, 'start.sqlite'))
    try {
      store.createJob(spec('job-s'), new Uint8Array([1]), new Uint8Array([2]))
      store.createTask({ taskId: 'job-s.r0.a1', jobId: 'job-s', replica: 0, attempt: 1, executor: 'peer-a' }, { startJob: true })
      assert.equal(store.getJob('job-s')?.phase, 'running')
      store.finishJob('job-s', 'completed', { status: 'succeeded', agreeing: 1, message: 'ok' })
      store.createTask({ taskId: 'job-s.r0.a2', jobId: 'job-s', replica: 0, attempt: 2, executor: 'peer-b' }, { startJob: true })
      assert.equal(store.getJob('job-s')?.phase, 'completed', 'only a queued job starts')
      store.createJob(spec('job-q'), new Uint8Array([1]), new Uint8Array([3]))
      store.createTask({ taskId: 'job-q.r0.a1', jobId: 'job-q', replica: 0, attempt: 1, executor: 'peer-a' })
      assert.equal(store.getJob('job-q')?.phase, 'queued')
    } finally {
      store.close()
    }
  })

  it('returns from completeTask and failTask the rows a read returns', () => {
    const store = new JobStore(join(dir.path, 'result-rows.sqlite'))
    try {
      store.createJob(spec('job-rr'), new Uint8Array([1]), new Uint8Array([2]))
      const first = store.createTask({ taskId: 'job-rr.r0.a1', jobId: 'job-rr', replica: 0, attempt: 1, executor: 'peer-a' })
      assert.deepEqual(store.failTask(first, 'DIAL_FAILED: refused'), store.getTask(first.taskId))
      const second = store.createTask({ taskId: 'job-rr.r0.a2', jobId: 'job-rr', replica: 0, attempt: 2, executor: 'peer-b' })
      const { task, finished } = store.completeTask(second, resultOf(new Uint8Array([104, 105])))
      assert.equal(finished, false)
      assert.deepEqual(task, store.getTask(second.taskId))
      assert.equal(store.getJob('job-rr')?.final, null)
    } finally {
      store.close()
    }
  })

  it('stores a deciding result and the final answer together, unless the job has its answer already', () => {
    const store = new JobStore(join(dir.path, 'result-final.sqlite'))
    try {
      const final = { status: 'succeeded' as const, exitCode: 0, outputCid: 'bafy', fuelUsed: 1, agreeing: 1, message: '1/1 agree' }
      store.createJob(spec('job-f'), new Uint8Array([1]), new Uint8Array([2]))
      const task = store.createTask({ taskId: 'job-f.r0.a1', jobId: 'job-f', replica: 0, attempt: 1, executor: 'peer-a' }, { startJob: true })
      assert.equal(store.completeTask(task, resultOf(new Uint8Array([1])), { phase: 'completed', final }).finished, true)
      const job = store.getJob('job-f')
      assert.deepEqual({ phase: job?.phase, final: job?.final, finished: job?.finishedAt != null }, { phase: 'completed', final, finished: true })
      assert.equal(store.getTask(task.taskId)?.state, 'done')
      // a cancel recorded first keeps its answer; the result is still stored
      store.createJob(spec('job-c'), new Uint8Array([1]), new Uint8Array([3]))
      const late = store.createTask({ taskId: 'job-c.r0.a1', jobId: 'job-c', replica: 0, attempt: 1, executor: 'peer-a' })
      assert.equal(store.finishIfOpen('job-c', { status: 'cancelled', agreeing: 0, message: 'cancelled' }), true)
      assert.equal(store.completeTask(late, resultOf(new Uint8Array([1])), { phase: 'completed', final }).finished, false)
      assert.equal(store.getJob('job-c')?.final?.status, 'cancelled')
      assert.equal(store.getTask(late.taskId)?.state, 'done')
    } finally {
      store.close()
    }
  })

  it('stores neither the result nor the final answer when the disk is full, and both once there is room', () => {
    const { store, lift } = cappedStore('full-final.sqlite', 8)
    try {
      const final = { status: 'succeeded' as const, exitCode: 0, outputCid: 'bafy', fuelUsed: 1, agreeing: 1, message: '1/1 agree' }
      store.createJob(spec('job-ff'), new Uint8Array([1]), new Uint8Array([2]))
      const task = store.createTask({ taskId: 'job-ff.r0.a1', jobId: 'job-ff', replica: 0, attempt: 1, executor: 'peer-a' })
      const result = resultOf(randomBytes(65536))
      assert.throws(() => store.completeTask(task, result, { phase: 'completed', final }), JobStoreFullError)
      assert.equal(store.getTask(task.taskId)?.state, 'offered')
      assert.equal(store.getJob('job-ff')?.final, null)
      lift()
      assert.equal(store.completeTask(task, result, { phase: 'completed', final }).finished, true)
      assert.equal(store.getJob('job-ff')?.final?.status, 'succeeded')
    } finally {
      store.close()
    }
  })

  it('commits the results recorded in one turn of the event loop together, and tells each caller its row once stored', async () => {
    const store = new JobStore(join(dir.path, 'group.sqlite'))
    try {
      const final = { status: 'succeeded' as const, exitCode: 0, outputCid: 'bafy', fuelUsed: 1, agreeing: 1, message: '1/1 agree' }
      const tasks = ['job-g1', 'job-g2', 'job-g3'].map((jobId) => {
        store.createJob(spec(jobId), new Uint8Array([1]), new Uint8Array([2]))
        return store.createTask({ taskId: `${jobId}.r0.a1`, jobId, replica: 0, attempt: 1, executor: 'peer-a' }, { startJob: true })
      })
      const pending = tasks.map(async (t, i) => await store.completeTaskInGroup(t, resultOf(new Uint8Array([i])), i === 0 ? { phase: 'completed', final } : undefined))
      // nothing is written before the turn's I/O is done
      assert.deepEqual(tasks.map(t => store.getTask(t.taskId)?.state), ['offered', 'offered', 'offered'])
      const written = await Promise.all(pending)
      assert.deepEqual(written.map(w => w.finished), [true, false, false])
      written.forEach((w, i) => { assert.deepEqual(w.task, store.getTask(tasks[i].taskId)) })
      assert.equal(store.getJob('job-g1')?.final?.status, 'succeeded')
      assert.equal(store.getJob('job-g2')?.final, null)
    } finally {
      store.close()
    }
  })

  it('stores none of a group whose commit fails, rejects every result in it with the store error, and stores them when tried again', async () => {
    const { store, lift } = cappedStore('group-full.sqlite', 8)
    try {
      const tasks = ['job-h1', 'job-h2'].map((jobId) => {
        store.createJob(spec(jobId), new Uint8Array([1]), new Uint8Array([2]))
        return store.createTask({ taskId: `${jobId}.r0.a1`, jobId, replica: 0, attempt: 1, executor: 'peer-a' })
      })
      // the second result does not fit: the first, which would, is not stored either
      const results = [resultOf(new Uint8Array([1])), resultOf(randomBytes(65536))]
      const outcomes = await Promise.allSettled(tasks.map(async (t, i) => await store.completeTaskInGroup(t, results[i])))
      for (const o of outcomes) assert.ok(o.status === 'rejected' && o.reason instanceof JobStoreFullError, `expected JobStoreFullError, got ${JSON.stringify(o)}`)
      assert.deepEqual(tasks.map(t => store.getTask(t.taskId)?.state), ['offered', 'offered'])
      lift()
      await Promise.all(tasks.map(async (t, i) => await store.completeTaskInGroup(t, results[i])))
      assert.deepEqual(tasks.map(t => store.getTask(t.taskId)?.state), ['done', 'done'])
    } finally {
      store.close()
    }
  })

  it('commits a group still waiting when it is closed', async () => {
    const path = join(dir.path, 'group-close.sqlite')
    const store = new JobStore(path)
    store.createJob(spec('job-k'), new Uint8Array([1]), new Uint8Array([2]))
    const task = store.createTask({ taskId: 'job-k.r0.a1', jobId: 'job-k', replica: 0, attempt: 1, executor: 'peer-a' })
    const pending = store.completeTaskInGroup(task, resultOf(new Uint8Array([7])))
    store.close()
    assert.equal((await pending).task.state, 'done')
    const reopened = new JobStore(path)
    try {
      assert.deepEqual(reopened.getTask(task.taskId)?.stdout, new Uint8Array([7]))
    } finally {
      reopened.close()
    }
  })

  it('fails a result too large for the disk with JobStoreFullError and records it once there is room', () => {
    const { store, lift } = cappedStore('full-result.sqlite', 8)
    try {
      store.createJob(spec('job-r'), new Uint8Array([1]), new Uint8Array([2]))
      const task = store.createTask({ taskId: 'job-r.r0.a1', jobId: 'job-r', replica: 0, attempt: 1, executor: 'peer-a' })
      const result = {
        path: 'direct' as const,
        outcome: { status: 'succeeded' as const, outputCid: 'bafy', fuelUsed: 1, durationMs: 1, receiptVerified: true, stdoutSize: 65536, stderrSize: 0 },
        receipt: new Uint8Array([1]),
        receiptSignature: new Uint8Array([2]),
        stdout: randomBytes(65536),
        stderr: new Uint8Array()
      }
      assert.throws(() => { store.completeTask(task, result) }, JobStoreFullError)
      assert.equal(store.getTask('job-r.r0.a1')?.state, 'offered')
      lift()
      store.completeTask(task, result)
      assert.equal(store.getTask('job-r.r0.a1')?.state, 'done')
    } finally {
      store.close()
    }
  })
})
