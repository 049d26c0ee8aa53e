import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { describe, it } from 'node:test'
import { DEFAULT_JOB_LIMITS, type ExecuteRequest, type ExecuteResult } from '../../src/core/job.ts'
import type { DonatedTask } from '../../src/core/types.ts'
import { DonatedStore, DonatedStoreError } from '../../src/donor/donated-store.ts'
import { JobRunner, type JobRunnerInit } from '../../src/donor/job-runner.ts'

function task (n: number): DonatedTask {
  return { at: new Date(1_700_000_000_000 + n * 1000).toISOString(), startedAt: new Date(1_700_000_000_000).toISOString(), broker: 'broker', jobId: `job-${n}`, taskId: `job-${n}.r0.a1`, status: 'succeeded', cpuTimeMs: n + 0.5, fuelUsed: n * 10, durationMs: n }
}

function withDir (fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'wc-donated-'))
  try { fn(dir) } finally { rmSync(dir, { recursive: true, force: true }) }
}

describe('the history of donated tasks', () => {
  it('lists tasks the newest first, with their CPU time and fuel, across a reopen', () => {
    withDir((dir) => {
      const path = join(dir, 'donated.sqlite')
      const store = new DonatedStore(path)
      store.add(task(1))
      store.add({ ...task(2), cpuTimeMs: undefined, status: 'abandoned' })
      store.close()
      const again = new DonatedStore(path)
      assert.deepEqual(again.list(10), [{ ...task(2), cpuTimeMs: undefined, status: 'abandoned' }, task(1)].map(({ cpuTimeMs, ...t }) => cpuTimeMs != null ? { ...t, cpuTimeMs } : t))
      again.close()
    })
  })

  it('keeps only the newest maxEntries, pruned on insert', () => {
    withDir((dir) => {
      const store = new DonatedStore(join(dir, 'donated.sqlite'), { maxEntries: 3 })
      for (let n = 1; n <= 7; n++) store.add(task(n))
      assert.deepEqual(store.list(100).map(t => t.jobId), ['job-7', 'job-6', 'job-5'])
      store.close()
    })
  })

  it('a task whose prune fails is not recorded either: one transaction, a DonatedStoreError, the store still usable', () => {
    withDir((dir) => {
      const path = join(dir, 'donated.sqlite')
      const store = new DonatedStore(path, { maxEntries: 2 })
      store.add(task(1))
      store.add(task(2))
      // a second connection makes every delete fail: the insert before it must not stay
      const other = new DatabaseSync(path)
      other.exec("CREATE TRIGGER no_delete BEFORE DELETE ON donated BEGIN SELECT RAISE(ABORT, 'deletes refused'); END")
      assert.throws(() => { store.add(task(3)) }, (err: unknown) => err instanceof DonatedStoreError && err.message.includes('job-3.r0.a1') && err.message.includes('deletes refused'))
      assert.deepEqual(store.list(100).map(t => t.jobId), ['job-2', 'job-1'])
      other.exec('DROP TRIGGER no_delete')
      other.close()
      store.add(task(4))
      assert.deepEqual(store.list(100).map(t => t.jobId), ['job-4', 'job-2'])
      store.close()
    })
  })

  it('a file that is no database is a DonatedStoreError naming it', () => {
    withDir((dir) => {
      const path = join(dir, 'donated.sqlite')
      writeFileSync(path, 'not a database, not at all, and longer than a header would be'.repeat(20))
      assert.throws(() => new DonatedStore(path), (err: unknown) => err instanceof DonatedStoreError && err.code === 'DONATED_STORE_UNAVAILABLE' && err.message.includes(path))
    })
  })
})

const REQ: ExecuteRequest = { jobId: 'job-1', taskId: 'job-1.r0.a1', module: new Uint8Array(0), moduleCid: 'bafkrei-m', input: new Uint8Array(0), args: [], env: [], limits: {} }
const RESULT: ExecuteResult = { status: 'succeeded', exitCode: 0, stdout: new Uint8Array(0), stderr: new Uint8Array(0), fuelUsed: 42, durationMs: 12, cpuTimeMs: 9.5 }

function runner (init: Partial<JobRunnerInit>): JobRunner {
  return new JobRunner({
    executor: { execute: async () => RESULT },
    maxLimits: DEFAULT_JOB_LIMITS,
    maxConcurrent: 2,
    addrs: () => [],
    hasModule: () => false,
    ...init
  })
}

describe('the job runner under the donor controls', () => {
  it('declines offers with the code "paused" and no free slot while the controls hold tasks', () => {
    let paused: string | undefined = 'paused by its owner'
    const r = runner({ paused: () => paused })
    const offer = { jobId: 'job-1', taskId: 'job-1.r0.a1', moduleCid: 'bafkrei-m', moduleSize: 10, inputSize: 0, limits: {} }
    const no = r.decideOffer(offer, { peer: 'broker' })
    assert.equal(no.accept, false)
    assert.equal(no.code, 'paused')
    assert.equal(no.freeSlots, 0)
    assert.equal(r.capacity().freeSlots, 0)
    assert.equal(r.capacity().acceptsJobs, true, 'a paused donor stays in brokers\' lines')
    paused = undefined
    assert.equal(r.decideOffer(offer, { peer: 'broker' }).accept, true)
  })

  it('records every task that ran, with its broker, status, CPU time and fuel, once its result is handed back', async () => {
    const recorded: DonatedTask[] = []
    let resolve = (): void => {}
    const wasRecorded = new Promise<void>(res => { resolve = res })
    const r = runner({ onTaskEnded: (t) => { recorded.push(t); resolve() } })
    r.decideOffer({ jobId: 'job-1', taskId: REQ.taskId, moduleCid: 'bafkrei-m', moduleSize: 10, inputSize: 0, limits: {} }, { peer: 'broker-a' })
    await r.runTask(REQ, { signal: new AbortController().signal, peer: 'broker-a' })
    assert.equal(recorded.length, 0, 'the answer goes out before the history is written')
    await wasRecorded
    assert.equal(recorded.length, 1)
    assert.deepEqual({ ...recorded[0], at: '', startedAt: '' }, { at: '', startedAt: '', broker: 'broker-a', jobId: 'job-1', taskId: REQ.taskId, status: 'succeeded', cpuTimeMs: 9.5, fuelUsed: 42, durationMs: 12 })
  })

  it('records a task that ended just before the runner stops, before the history closes', async () => {
    const recorded: DonatedTask[] = []
    const r = runner({ onTaskEnded: (t) => { recorded.push(t) } })
    r.decideOffer({ jobId: 'job-1', taskId: REQ.taskId, moduleCid: 'bafkrei-m', moduleSize: 10, inputSize: 0, limits: {} }, { peer: 'broker-a' })
    await r.runTask(REQ, { signal: new AbortController().signal, peer: 'broker-a' })
    r.stop()
    assert.equal(recorded.length, 1, 'stop did the waiting bookkeeping at once')
    await new Promise(resolve => setTimeout(resolve, 5))
    assert.equal(recorded.length, 1, 'and not a second time')
  })

  it('a history that cannot write does not fail the task', async () => {
    let resolve = (): void => {}
    const tried = new Promise<void>(res => { resolve = res })
    const changes: string[] = []
    const r = runner({ onTaskEnded: () => { resolve(); throw new DonatedStoreError('disk full') }, onChange: () => { changes.push('announced') } })
    r.decideOffer({ jobId: 'job-1', taskId: REQ.taskId, moduleCid: 'bafkrei-m', moduleSize: 10, inputSize: 0, limits: {} }, { peer: 'b' })
    assert.equal((await r.runTask(REQ, { signal: new AbortController().signal, peer: 'b' })).status, 'succeeded')
    await tried
    await new Promise(resolve => setImmediate(resolve))
    assert.equal(changes.length, 3, 'held, running, then freed: the freed slot is announced after the failed write')
  })
})
