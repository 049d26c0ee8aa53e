import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { DEFAULT_JOB_LIMITS } from '../../src/core/job.ts'
import { JobRunner, type JobRunnerComponents } from '../../src/donor/job-runner.ts'
import { Executor, METER_VERSION } from '../../src/executor/index.ts'
import { TaskAbandonedError } from '../../src/protocols/errors.ts'
import type { ExecuteRequest, ExecuteResult } from '../../src/core/job.ts'

const MiB = 1024 * 1024

function runner (opts: { slots?: number, budget?: number, unavailable?: () => string | undefined } = {}): JobRunner {
  return new JobRunner({
    unavailable: opts.unavailable,
    // not started: offers are decided without running anything
    executor: new Executor({ maxConcurrent: opts.slots ?? 2 }),
    maxLimits: { ...DEFAULT_JOB_LIMITS, memoryBytes: 128 * MiB, deadlineMs: 60_000 },
    maxConcurrent: opts.slots ?? 2,
    memoryBudgetBytes: opts.budget,
    addrs: () => ['/ip4/127.0.0.1/tcp/1/p2p/12D3KooWCUxGstisocAwjyRccMAVqDFAksLECFj23zxN7fP231Wj/p2p-circuit/p2p/x'],
    hasModule: (cid) => cid === 'bafkrei-cached',
    hasFiles: (cids) => cids.filter(cid => cid === 'bafkrei-file-cached')
  })
}

function offer (taskId: string, limits: Record<string, number> = {}, moduleCid = 'bafkrei-m'): Parameters<JobRunner['decideOffer']>[0] {
  return { jobId: 'job-1', taskId, moduleCid, moduleSize: 1000, inputSize: 10, limits }
}

describe('donor offer decisions', () => {
  it('says which of the offer\'s directory blobs its content cache holds, accepted or not', () => {
    const files = { fileCids: ['bafkrei-file-new', 'bafkrei-file-cached'], filesSize: 100 }
    assert.deepEqual(runner().decideOffer({ ...offer('t1'), ...files }, { peer: 'b' }).hasFiles, ['bafkrei-file-cached'])
    const declined = runner().decideOffer({ ...offer('t2', { memoryBytes: 256 * MiB }), ...files }, { peer: 'b' })
    assert.equal(declined.accept, false)
    assert.deepEqual(declined.hasFiles, ['bafkrei-file-cached'])
    // an offer without directories gets the answer older brokers know
    assert.equal(runner().decideOffer(offer('t3'), { peer: 'b' }).hasFiles, undefined)
  })

  it('counts the directories against the payload limit', () => {
    const res = runner().decideOffer({ ...offer('t1'), fileCids: [], filesSize: DEFAULT_JOB_LIMITS.payloadBytes }, { peer: 'b' })
    assert.equal(res.accept, false)
    assert.equal(res.code, 'payload-too-large')
  })

  it('declines an offer whose fuel is counted by another cost rule, naming both, and holds no slot for it', () => {
    const r = runner()
    const res = r.decideOffer({ ...offer('t1'), meter: 'meter/0' }, { peer: 'broker' })
    assert.equal(res.accept, false)
    assert.equal(res.code, 'meter')
    assert.ok(res.reason?.includes('meter/0') === true && res.reason.includes(METER_VERSION), res.reason)
    assert.equal(r.capacity().freeSlots, 2)
    // the same rule, or none named (an older broker), is accepted
    assert.equal(r.decideOffer({ ...offer('t2'), meter: METER_VERSION }, { peer: 'broker' }).accept, true)
    assert.equal(r.decideOffer(offer('t3'), { peer: 'broker' }).accept, true)
  })

  it('declines limits above the donor maxima, naming the limit and the maximum', () => {
    const res = runner().decideOffer(offer('t1', { memoryBytes: 256 * MiB }), { peer: 'broker' })
    assert.equal(res.accept, false)
    assert.equal(res.code, 'limits')
    // the words name the limit and the maximum: they are what the broker's log shows the submitter
    assert.match(res.reason ?? '', /memoryBytes .* maximum of 134217728/)
  })

  it('holds a slot for each accepted offer and declines when every slot is promised', () => {
    const r = runner({ slots: 2 })
    assert.equal(r.decideOffer(offer('t1', { memoryBytes: MiB }), { peer: 'b' }).accept, true)
    assert.equal(r.decideOffer(offer('t2', { memoryBytes: MiB }), { peer: 'b' }).accept, true)
    const third = r.decideOffer(offer('t3', { memoryBytes: MiB }), { peer: 'b' })
    assert.equal(third.accept, false)
    assert.equal(third.code, 'busy')
    assert.equal(r.capacity().freeSlots, 0)
    // the same task offered again is not a second claim
    assert.equal(r.decideOffer(offer('t1', { memoryBytes: MiB }), { peer: 'b' }).accept, true)
  })

  it('declines when the memory budget would be exceeded', () => {
    const r = runner({ slots: 4, budget: 100 * MiB })
    assert.equal(r.decideOffer(offer('t1', { memoryBytes: 64 * MiB }), { peer: 'b' }).accept, true)
    const res = r.decideOffer(offer('t2', { memoryBytes: 64 * MiB }), { peer: 'b' })
    assert.equal(res.accept, false)
    assert.equal(res.code, 'memory-budget')
  })

  it('says whether it holds the module, so the broker can skip sending it', () => {
    const r = runner()
    assert.equal(r.decideOffer(offer('t1', {}, 'bafkrei-cached'), { peer: 'b' }).hasModule, true)
    assert.equal(r.decideOffer(offer('t2', {}, 'bafkrei-other'), { peer: 'b' }).hasModule, false)
  })

  it('while its sandbox is down the donor announces it takes no jobs and declines offers, saying why', () => {
    let down: string | undefined = 'SandboxStartError: no "ready" within 15000 ms'
    const r = runner({ unavailable: () => down != null ? `the executor sandbox is not running (${down})` : undefined })
    assert.equal(r.capacity().acceptsJobs, false)
    const no = r.decideOffer(offer('t-down'), { peer: 'p' })
    assert.equal(no.accept, false)
    assert.equal(no.code, 'not-executing')
    assert.match(no.reason ?? '', /executor sandbox is not running \(SandboxStartError/)
    assert.equal(no.freeSlots, 0)
    down = undefined
    assert.equal(r.capacity().acceptsJobs, true)
    assert.equal(r.decideOffer(offer('t-up'), { peer: 'p' }).accept, true)
  })
})

/** An executor stand-in that records what it was asked to run and finishes when told to (or when aborted). */
class GatedExecutor implements Pick<Executor, 'execute'> {
  readonly started: string[] = []
  private readonly waiting = new Map<string, () => void>()

  async execute (req: ExecuteRequest, options: { signal?: AbortSignal } = {}): Promise<ExecuteResult> {
    this.started.push(req.taskId)
    await new Promise<void>((resolve, reject) => {
      this.waiting.set(req.taskId, resolve)
      options.signal?.addEventListener('abort', () => { reject(options.signal?.reason) }, { once: true })
    })
    return { status: 'succeeded', exitCode: 0, stdout: new Uint8Array(0), stderr: new Uint8Array(0), fuelUsed: 1, durationMs: 1 }
  }

  finish (taskId: string): void {
    this.waiting.get(taskId)?.()
  }
}

/** Connection events and state of a mesh, driven by the test. */
class FakeMesh implements JobRunnerComponents {
  private readonly target = new EventTarget()
  private readonly up = new Set<string>()
  readonly events: JobRunnerComponents['events'] = {
    on: (type, listener) => { this.target.addEventListener(type, listener as (evt: Event) => void) },
    off: (type, listener) => { this.target.removeEventListener(type, listener as (evt: Event) => void) }
  }

  readonly connections = {
    isConnected: (peerId: string) => this.up.has(peerId),
    open: () => [],
    bestDirect: () => undefined,
    relayed: () => undefined,
    best: () => undefined,
    list: () => []
  }

  connect (peer: string): void {
    this.up.add(peer)
    this.target.dispatchEvent(new CustomEvent('peer:connect', { detail: { toString: () => peer } }))
  }

  disconnect (peer: string): void {
    this.up.delete(peer)
    this.target.dispatchEvent(new CustomEvent('peer:disconnect', { detail: { toString: () => peer } }))
  }
}

function admissionRunner (opts: { slots?: number, perBroker?: number, holdMs?: number, graceMs?: number, executor?: GatedExecutor, mesh?: FakeMesh } = {}): JobRunner {
  return new JobRunner({
    executor: opts.executor ?? new GatedExecutor(),
    maxLimits: { ...DEFAULT_JOB_LIMITS, memoryBytes: 128 * MiB },
    maxConcurrent: opts.slots ?? 2,
    maxTasksPerBroker: opts.perBroker,
    offerHoldMs: opts.holdMs,
    brokerGraceMs: opts.graceMs,
    addrs: () => [],
    hasModule: () => false
  }, opts.mesh)
}

function request (taskId: string): ExecuteRequest {
  return { jobId: 'job-1', taskId, module: new Uint8Array([0]), moduleCid: 'bafkrei-m', input: new Uint8Array(0), args: [], env: [], limits: { memoryBytes: MiB } }
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

describe('donor admission of dispatches', () => {
  it('refuses a dispatch with no accepted offer, and runs nothing for it', async () => {
    const exec = new GatedExecutor()
    const r = admissionRunner({ executor: exec })
    const a = r.admit({ jobId: 'job-1', taskId: 't1', moduleCid: 'bafkrei-m', limits: {} }, { peer: 'stranger' })
    assert.equal(a.admitted, false)
    assert.equal(a.admitted === false ? a.code : undefined, 'no-offer')
    await assert.rejects(r.runTask(request('t1'), { signal: new AbortController().signal, peer: 'stranger' }), (err: Error & { code?: string }) => err instanceof TaskAbandonedError && err.code === 'TASK_ABANDONED')
    assert.deepEqual(exec.started, [])
    assert.equal(r.capacity().freeSlots, 2)
  })

  it('decides a dispatch that carries its own offer as that offer: admitted while a slot is free, then declined as busy', () => {
    const r = admissionRunner({ slots: 1 })
    const first = r.admit({ jobId: 'job-1', taskId: 't1', moduleCid: 'bafkrei-m', moduleSize: 10, inputSize: 10, limits: { memoryBytes: MiB }, offered: true }, { peer: 'b' })
    assert.equal(first.admitted, true)
    assert.equal(r.capacity().freeSlots, 0, 'the admitted dispatch holds the slot as an accepted offer does')
    const second = r.admit({ jobId: 'job-1', taskId: 't2', moduleCid: 'bafkrei-m', moduleSize: 10, inputSize: 10, limits: { memoryBytes: MiB }, offered: true }, { peer: 'b' })
    assert.equal(second.admitted === false ? second.code : undefined, 'busy')
  })

  it('declines a dispatch carrying its own offer counted by another cost rule with the meter code', () => {
    const r = admissionRunner()
    const a = r.admit({ jobId: 'job-1', taskId: 't1', moduleCid: 'bafkrei-m', moduleSize: 10, inputSize: 10, limits: {}, offered: true, meter: 'meter/0' }, { peer: 'b' })
    assert.equal(a.admitted === false ? a.code : undefined, 'meter')
    assert.equal(r.capacity().freeSlots, 2)
  })

  it('declines a dispatch carrying its own offer over this donor\'s payload limit with the payload-too-large code', () => {
    const r = admissionRunner()
    const a = r.admit({ jobId: 'job-1', taskId: 't1', moduleCid: 'bafkrei-m', moduleSize: DEFAULT_JOB_LIMITS.payloadBytes, inputSize: 1, limits: {}, offered: true }, { peer: 'b' })
    assert.equal(a.admitted === false ? a.code : undefined, 'payload-too-large')
    assert.equal(r.capacity().freeSlots, 2)
  })

  it('admits only the broker whose offer it accepted, for that task', () => {
    const r = admissionRunner()
    assert.equal(r.decideOffer(offer('t1', { memoryBytes: MiB }), { peer: 'broker-a' }).accept, true)
    assert.equal(r.admit({ jobId: 'job-1', taskId: 't1', moduleCid: 'bafkrei-m', limits: {} }, { peer: 'broker-b' }).admitted, false)
    assert.equal(r.admit({ jobId: 'job-1', taskId: 't2', moduleCid: 'bafkrei-m', limits: {} }, { peer: 'broker-a' }).admitted, false)
    assert.equal(r.admit({ jobId: 'job-1', taskId: 't1', moduleCid: 'bafkrei-m', limits: {} }, { peer: 'broker-a' }).admitted, true)
  })

  it('lets an accepted offer lapse after the hold time, freeing its slot', async () => {
    const r = admissionRunner({ slots: 1, holdMs: 40 })
    assert.equal(r.decideOffer(offer('t1', { memoryBytes: MiB }), { peer: 'b' }).accept, true)
    assert.equal(r.capacity().freeSlots, 0)
    await sleep(80)
    assert.equal(r.capacity().freeSlots, 1)
    assert.equal(r.admit({ jobId: 'job-1', taskId: 't1', moduleCid: 'bafkrei-m', limits: {} }, { peer: 'b' }).admitted, false)
  })

  it('keeps the hold of a dispatch whose stream broke before the run, so the re-send through another path is admitted', () => {
    const r = admissionRunner({ slots: 1 })
    r.decideOffer(offer('t1', { memoryBytes: MiB }), { peer: 'b' })
    const first = r.admit({ jobId: 'job-1', taskId: 't1', moduleCid: 'bafkrei-m', limits: {} }, { peer: 'b' })
    assert.equal(first.admitted, true)
    if (first.admitted) first.release()
    assert.equal(r.admit({ jobId: 'job-1', taskId: 't1', moduleCid: 'bafkrei-m', limits: {} }, { peer: 'b' }).admitted, true)
    assert.equal(r.capacity().freeSlots, 0, 'still one slot, held for that task')
  })

  it('bounds the tasks one broker holds, and keeps the other slots for other brokers', () => {
    const r = admissionRunner({ slots: 3, perBroker: 1 })
    assert.equal(r.decideOffer(offer('t1', { memoryBytes: MiB }), { peer: 'greedy' }).accept, true)
    const second = r.decideOffer(offer('t2', { memoryBytes: MiB }), { peer: 'greedy' })
    assert.equal(second.accept, false)
    assert.equal(second.code, 'busy')
    assert.equal(second.freeSlots, 0)
    assert.equal(r.decideOffer(offer('t3', { memoryBytes: MiB }), { peer: 'honest' }).accept, true)
  })

  it('releases the offers of a broker that disconnects at once', () => {
    const mesh = new FakeMesh()
    const r = admissionRunner({ slots: 2, mesh })
    r.start()
    mesh.connect('b')
    r.decideOffer(offer('t1', { memoryBytes: MiB }), { peer: 'b' })
    r.decideOffer(offer('t2', { memoryBytes: MiB }), { peer: 'b' })
    assert.equal(r.capacity().freeSlots, 0)
    mesh.disconnect('b')
    assert.equal(r.capacity().freeSlots, 2)
    assert.equal(r.admit({ jobId: 'job-1', taskId: 't1', moduleCid: 'bafkrei-m', limits: {} }, { peer: 'b' }).admitted, false)
    r.stop()
  })

  it('abandons the tasks of a broker gone past the grace period, and keeps those of one back within it', async () => {
    const mesh = new FakeMesh()
    const exec = new GatedExecutor()
    const r = admissionRunner({ slots: 2, graceMs: 60, executor: exec, mesh })
    r.start()
    mesh.connect('gone')
    mesh.connect('back')
    const runs = ['gone', 'back'].map(peer => {
      r.decideOffer(offer(`t-${peer}`, { memoryBytes: MiB }), { peer })
      assert.equal(r.admit({ jobId: 'job-1', taskId: `t-${peer}`, moduleCid: 'bafkrei-m', limits: {} }, { peer }).admitted, true)
      return r.runTask(request(`t-${peer}`), { signal: new AbortController().signal, peer })
    })
    assert.equal(r.capacity().freeSlots, 0)
    mesh.disconnect('gone')
    mesh.disconnect('back')
    await sleep(20)
    mesh.connect('back')
    await assert.rejects(runs[0], (err: Error & { code?: string }) => err.code === 'TASK_ABANDONED')
    assert.equal(r.capacity().freeSlots, 1, 'the departed broker\'s slot is free again')
    exec.finish('t-back')
    assert.equal((await runs[1]).status, 'succeeded')
    assert.equal(r.capacity().freeSlots, 2)
    r.stop()
  })
})
