import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { Broker, type ExecutorInfo, type OfferAnswer, type TaskNetwork, type TaskRunResult, type TaskToRun } from '../../src/broker/broker.ts'
import { JobStore } from '../../src/broker/job-store.ts'
import { jobView } from '../../src/broker/job-view.ts'
import { DEFAULT_JOB_LIMITS } from '../../src/core/job.ts'
import { ExecutorCrashedError } from '../../src/protocols/errors.ts'
import { OfferDeclinedError } from '../../src/broker/attempts.ts'
import type { DeclineCode } from '../../src/codec/messages.ts'
import { tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'

/**
 * The broker's scheduling rules against an in-process network of executors
 * whose behaviour each test sets. The real protocols and executor are covered
 * by the end-to-end tests; here we need exact control over who answers what.
 */

const dir = tempDir('wc-broker-')
after(() => { dir.cleanup() })

type Behaviour = (task: TaskToRun, calls: number) => Promise<Partial<TaskRunResult['outcome']> & { throws?: string, crashes?: string }>

class TestNetwork implements TaskNetwork {
  readonly behaviours = new Map<string, Behaviour>()
  readonly dispatched: Array<{ executor: string, taskId: string }> = []
  private readonly results = new Map<string, Promise<TaskRunResult>>()

  add (peerId: string, behaviour: Behaviour): void {
    this.behaviours.set(peerId, behaviour)
  }

  executors (): ExecutorInfo[] {
    return [...this.behaviours.keys()].map(peerId => ({ peerId, acceptsJobs: true, freeSlots: 1, maxLimits: DEFAULT_JOB_LIMITS }))
  }

  async offer (): Promise<{ accept: boolean }> {
    return { accept: true }
  }

  /** every executor on loopback unless a test places it elsewhere: each its own network */
  readonly ips = new Map<string, string>()

  async locate (executor: string): Promise<string | undefined> {
    return this.ips.get(executor) ?? '127.0.0.1'
  }

  async dispatch (executor: string, task: TaskToRun): Promise<TaskRunResult> {
    // idempotent per task ID, like the real dispatch protocol
    const known = this.results.get(task.taskId)
    if (known != null) return await known
    const behaviour = this.behaviours.get(executor)
    if (behaviour == null) throw Object.assign(new Error(`no route to ${executor}`), { code: 'DIAL_FAILED' })
    this.dispatched.push({ executor, taskId: task.taskId })
    const calls = this.dispatched.filter(d => d.executor === executor).length
    const run = (async () => {
      const o = await behaviour(task, calls)
      if (o.throws != null) throw Object.assign(new Error(o.throws), { code: 'DISPATCH_FAILED' })
      if (o.crashes != null) throw new ExecutorCrashedError(executor, task.taskId, o.crashes)
      const stdout = new TextEncoder().encode(`out:${o.outputCid ?? 'same'}`)
      return {
        path: 'relayed' as const,
        outcome: {
          status: o.status ?? 'succeeded',
          exitCode: o.exitCode ?? 0,
          error: o.error,
          outputCid: o.outputCid ?? 'bafy-same',
          fuelUsed: o.fuelUsed ?? 42,
          durationMs: 1,
          receiptVerified: true,
          stdoutSize: stdout.length,
          stderrSize: 0
        },
        receipt: new Uint8Array([1]),
        receiptSignature: new Uint8Array([2]),
        stdout,
        stderr: new Uint8Array()
      }
    })()
    this.results.set(task.taskId, run)
    run.catch(() => { this.results.delete(task.taskId) })
    return await run
  }

  async waitForExecutors (ms: number, signal: AbortSignal): Promise<void> {
    await new Promise<void>(resolve => {
      const t = setTimeout(resolve, Math.min(ms, 50))
      signal.addEventListener('abort', () => { clearTimeout(t); resolve() }, { once: true })
    })
  }
}

function submitTo (broker: Broker, replicas = 1): string {
  return broker.submit({
    module: new Uint8Array([0, 97, 115, 109]),
    moduleCid: 'bafkrei-module',
    input: new TextEncoder().encode('7'),
    inputCid: 'bafkrei-input',
    replicas
  }).jobId
}

async function finalOf (broker: Broker, jobId: string): Promise<ReturnType<typeof jobView>> {
  return await waitFor(`job ${jobId} to finish`, () => {
    const { job, tasks } = broker.getJob(jobId)
    return job.final != null ? jobView(job, tasks, true) : undefined
  }, 10_000)
}

const ok: Behaviour = async () => ({})

describe('broker scheduling', () => {
  it('runs three replicas on three distinct executors and accepts the agreed result', async () => {
    const store = new JobStore(join(dir.path, 'agree.sqlite'))
    const net = new TestNetwork()
    for (const p of ['A', 'B', 'C', 'D']) net.add(p, ok)
    const broker = new Broker({ store, network: net, self: 'me' })
    broker.start()
    const view = await finalOf(broker, submitTo(broker, 3))
    assert.equal(view.status, 'succeeded')
    assert.equal(view.exitCode, 0)
    assert.equal(view.stdout, 'out:same')
    assert.match(view.message, /^3\/3 agree, receipts verified/)
    assert.equal(new Set(view.replicas.map(r => r.executor)).size, 3)
    await broker.stop()
    store.close()
  })

  it('tells its job listeners what changed: running, each task placed and ended, and the final answer, stored with the result that decided it', async () => {
    const store = new JobStore(join(dir.path, 'events.sqlite'))
    const net = new TestNetwork()
    net.add('A', ok)
    const broker = new Broker({ store, network: net, self: 'me' })
    const seen: Array<{ change: string, final: boolean }> = []
    const off = broker.onJobEvent((jobId, change) => { seen.push({ change, final: store.getJob(jobId)?.final != null }) })
    broker.start()
    try {
      assert.equal((await finalOf(broker, submitTo(broker))).status, 'succeeded')
      assert.deepEqual(seen.map(e => e.change), ['phase', 'task', 'task', 'final'])
      // one transaction stores the deciding result and the answer: the task's end finds both
      assert.deepEqual(seen.map(e => e.final), [false, false, true, true], 'the answer is stored with the result that decided it, never before')
    } finally {
      off()
      await broker.stop()
      store.close()
    }
  })

  it('tells each final answer once, stored with its deciding result or on its own', async () => {
    const store = new JobStore(join(dir.path, 'told-once.sqlite'))
    const net = new TestNetwork()
    net.add('A', ok)
    net.add('B', ok)
    net.add('C', ok)
    const told: string[] = []
    const broker = new Broker({ store, network: net, self: 'me', maxAttemptsPerReplica: 1, onJobFinished: (final) => { told.push(final.status) } })
    broker.start()
    try {
      // one replica, three replicas: the last result decides, stored with the answer
      assert.equal((await finalOf(broker, submitTo(broker, 1))).status, 'succeeded')
      assert.equal((await finalOf(broker, submitTo(broker, 3))).status, 'succeeded')
      // an attempt that fails with none left: the answer is written by itself
      for (const p of ['A', 'B', 'C']) net.add(p, async () => ({ throws: 'stream reset by the relay' }))
      assert.equal((await finalOf(broker, submitTo(broker, 1))).status, 'unavailable')
      await new Promise(resolve => setTimeout(resolve, 100))
      assert.deepEqual(told, ['succeeded', 'succeeded', 'unavailable'])
    } finally {
      await broker.stop()
      store.close()
    }
  })

  it('gives every job its own ID of 16 hex digits, across more jobs than one draw of random bytes covers', async () => {
    const store = new JobStore(join(dir.path, 'ids.sqlite'))
    const broker = new Broker({ store, network: new TestNetwork(), self: 'me' })
    try {
      const ids = Array.from({ length: 200 }, () => submitTo(broker))
      for (const id of ids) assert.match(id, /^job-[0-9a-f]{16}$/)
      assert.equal(new Set(ids).size, ids.length)
    } finally {
      await broker.stop()
      store.close()
    }
  })

  it('never reads a module just submitted back from the store, and sends every task the same bytes', async () => {
    const store = new JobStore(join(dir.path, 'payload-cache.sqlite'))
    const reads: string[] = []
    const getBlob = store.getBlob.bind(store)
    store.getBlob = (cid: string) => { reads.push(cid); return getBlob(cid) }
    const net = new TestNetwork()
    const sent: number[][] = []
    net.add('A', async (task) => { sent.push([...task.module as Uint8Array]); return {} })
    const broker = new Broker({ store, network: net, self: 'me' })
    broker.start()
    for (let i = 0; i < 3; i++) assert.equal((await finalOf(broker, submitTo(broker))).status, 'succeeded')
    assert.deepEqual(reads, [], 'a job just accepted starts from the bytes it was submitted with')
    assert.deepEqual(sent, [[0, 97, 115, 109], [0, 97, 115, 109], [0, 97, 115, 109]])
    await broker.stop()
    store.close()
  })

  it('accepts a 2-of-3 majority and reports no agreement when all three differ', async () => {
    const store = new JobStore(join(dir.path, 'majority.sqlite'))
    const net = new TestNetwork()
    net.add('A', ok)
    net.add('B', ok)
    net.add('C', async () => ({ outputCid: 'bafy-liar' }))
    const broker = new Broker({ store, network: net, self: 'me' })
    broker.start()
    const two = await finalOf(broker, submitTo(broker, 3))
    assert.equal(two.status, 'succeeded')
    assert.match(two.message, /^2\/3 agree/)
    await broker.stop()

    const net2 = new TestNetwork()
    net2.add('A', async () => ({ outputCid: 'bafy-a' }))
    net2.add('B', async () => ({ outputCid: 'bafy-b' }))
    net2.add('C', async () => ({ outputCid: 'bafy-c' }))
    const broker2 = new Broker({ store, network: net2, self: 'me' })
    broker2.start()
    const none = await finalOf(broker2, submitTo(broker2, 3))
    assert.equal(none.status, 'no_agreement')
    assert.match(none.message, /A said succeeded/)
    assert.match(none.message, /C said succeeded/)
    await broker2.stop()
    store.close()
  })

  it('retries a task whose dispatch fails, or whose executor crashed, on another executor', async () => {
    const store = new JobStore(join(dir.path, 'retry.sqlite'))
    const net = new TestNetwork()
    net.add('A', async () => ({ throws: 'stream reset by the relay' }))
    net.add('B', async () => ({ crashes: 'executor crashed: sandbox process exited (SIGKILL)' }))
    const broker = new Broker({ store, network: net, self: 'me' })
    broker.start()
    const jobId = submitTo(broker, 1)
    // only failing executors: the job keeps trying; then a good one appears
    await waitFor('two failed attempts', () => broker.getJob(jobId).tasks.filter(t => t.state === 'failed').length >= 2 ? true : undefined)
    net.add('C', ok)
    const view = await finalOf(broker, jobId)
    assert.equal(view.status, 'succeeded')
    const failed = view.replicas.filter(r => r.state === 'failed')
    assert.ok(failed.some(r => r.executor === 'A' && r.failure?.startsWith('DISPATCH_FAILED: ') === true))
    assert.ok(failed.some(r => r.executor === 'B' && r.failure?.startsWith('EXECUTOR_CRASHED: ') === true))
    assert.equal(view.replicas.find(r => r.state === 'done')?.executor, 'C')
    await broker.stop()
    store.close()
  })

  it('a job keeps its own outcome: a program that exits 3 is a result, not a retry', async () => {
    const store = new JobStore(join(dir.path, 'exit.sqlite'))
    const net = new TestNetwork()
    net.add('A', async () => ({ status: 'failed', exitCode: 3 }))
    const broker = new Broker({ store, network: net, self: 'me' })
    broker.start()
    const view = await finalOf(broker, submitTo(broker, 1))
    assert.equal(view.replicas.length, 1, 'not retried')
    assert.equal(view.status, 'failed')
    assert.equal(view.exitCode, 3)
    await broker.stop()
    store.close()
  })

  it('a broker restarted mid-job resumes it with the same task IDs and finishes it once', async () => {
    const path = join(dir.path, 'restart.sqlite')
    let release: () => void = () => {}
    const gate = new Promise<void>(resolve => { release = resolve })
    const net = new TestNetwork()
    let runs = 0
    net.add('A', async () => { runs++; await gate; return {} })
    const store1 = new JobStore(path)
    const broker1 = new Broker({ store: store1, network: net, self: 'me' })
    broker1.start()
    const jobId = submitTo(broker1, 1)
    await waitFor('the task to be running on A', () => broker1.getJob(jobId).tasks.some(t => t.executor === 'A') ? true : undefined)
    await broker1.stop() // the "daemon" dies with the task in flight
    store1.close()

    const store2 = new JobStore(path)
    const broker2 = new Broker({ store: store2, network: net, self: 'me' })
    broker2.start()
    release()
    const view = await finalOf(broker2, jobId)
    assert.equal(view.status, 'succeeded')
    assert.equal(view.replicas.length, 1, 'the same task, not a second one')
    assert.equal(runs, 1, 'the executor ran it once')
    assert.deepEqual(net.dispatched.map(d => d.taskId), [`${jobId}.r0.a1`])
    await broker2.stop()
    store2.close()
  })

  it('a job with no executor at all ends as unavailable after its wait, with the reason', async () => {
    const store = new JobStore(join(dir.path, 'none.sqlite'))
    const broker = new Broker({ store, network: new TestNetwork(), self: 'me', unavailableAfterMs: 300 })
    broker.start()
    const view = await finalOf(broker, submitTo(broker, 1))
    assert.equal(view.status, 'unavailable')
    assert.match(view.message, /no executor accepted the job/)
    await broker.stop()
    store.close()
  })

  it('queues jobs for free slots instead of offering every waiting job to every executor', async () => {
    const store = new JobStore(join(dir.path, 'queue.sqlite'))
    const net = new SlottedNetwork({ A: 1, B: 1 }, 20)
    const broker = new Broker({ store, network: net, self: 'me', probeIntervalMs: 200 })
    broker.start()
    const ids = Array.from({ length: 24 }, () => submitTo(broker, 1))
    for (const id of ids) assert.equal((await finalOf(broker, id)).status, 'succeeded')
    assert.equal(net.accepted, 24)
    // a freed slot wakes the first job in line only; without the ledger every
    // waiting job offered to both executors at every wake-up (hundreds of declines)
    assert.ok(net.declined <= 24, `declined offers: ${net.declined} for 24 jobs`)
    // one per expected free slot, plus the probing first-in-line job's one offer to an executor it expects busy
    assert.ok(net.maxConcurrentOffers <= 3, `offers in flight at once: ${net.maxConcurrentOffers}`)
    // first come, first served: the first four jobs submitted start before the last four
    const started = ids.map(id => net.startedAt.get(id) ?? Infinity)
    assert.ok(Math.max(...started.slice(0, 4)) <= Math.min(...started.slice(-4)), 'jobs start in submission order')
    await broker.stop()
    store.close()
  })

  it('a task whose offer rides its dispatch and is declined as busy leaves no task behind, costs no attempt, and runs once a slot frees', async () => {
    const store = new JobStore(join(dir.path, 'deferred.sqlite'))
    const net = new DeferringNetwork({ A: 1, B: 1 }, 10)
    net.othersHold = 6 // another broker's tasks take the slots the ledger expects free, six times
    const broker = new Broker({ store, network: net, self: 'me', probeIntervalMs: 100, maxAttemptsPerReplica: 1 })
    broker.start()
    const ids = Array.from({ length: 8 }, () => submitTo(broker, 1))
    for (const id of ids) assert.equal((await finalOf(broker, id)).status, 'succeeded')
    assert.equal(net.declinedForOthers, 6)
    // a probe offer is answered `deferred` whatever the executor holds, so on a slow machine one may land while our
    // own 10 ms task still runs there: that dispatch is declined too, and costs no attempt either (one attempt per
    // replica here, and every job succeeded with a single task)
    for (const id of ids) {
      const { tasks } = broker.getJob(id)
      assert.deepEqual(tasks.map(t => t.state), ['done'], `job ${id}: a declined dispatch is no task`)
    }
    await broker.stop()
    store.close()
  })

  it('a slot freed where the broker expects none (another broker\'s task ended) is found by the probe', async () => {
    const store = new JobStore(join(dir.path, 'probe.sqlite'))
    const net = new SlottedNetwork({ A: 1 }, 5)
    net.announceZero = true // its announcements always say busy, as if stale
    const broker = new Broker({ store, network: net, self: 'me', probeIntervalMs: 100 })
    broker.start()
    const view = await finalOf(broker, submitTo(broker, 1))
    assert.equal(view.status, 'succeeded')
    await broker.stop()
    store.close()
  })

  it('time queued behind busy executors does not make a job unavailable', async () => {
    const store = new JobStore(join(dir.path, 'patient.sqlite'))
    const net = new SlottedNetwork({ A: 1 }, 60)
    // 12 jobs × 60 ms on one slot is well over the 300 ms without an executor that makes a job unavailable
    const broker = new Broker({ store, network: net, self: 'me', unavailableAfterMs: 300, probeIntervalMs: 100 })
    broker.start()
    const ids = Array.from({ length: 12 }, () => submitTo(broker, 1))
    for (const id of ids) assert.equal((await finalOf(broker, id)).status, 'succeeded')
    await broker.stop()
    store.close()
  })

  it('an executor that cannot be reached is not offered every job: the pause is shared by all jobs', async () => {
    const store = new JobStore(join(dir.path, 'unreachable.sqlite'))
    const net = new SlottedNetwork({ A: 1, X: 4 }, 20)
    net.unreachable.add('X') // it announces 4 free slots, but every offer to it fails
    const broker = new Broker({ store, network: net, self: 'me', probeIntervalMs: 100 })
    broker.start()
    const ids = Array.from({ length: 10 }, () => submitTo(broker, 1))
    for (const id of ids) assert.equal((await finalOf(broker, id)).status, 'succeeded')
    assert.equal(net.accepted, 10)
    // at most one offer per slot it announced goes out before the first failure
    // comes back; after that, none for the pause. Without the shared pause
    // every job tried X first (its 4 announced slots beat A's 1): 10+ failed offers
    assert.ok((net.offersTo.get('X') ?? 0) <= 4, `offers to the unreachable executor: ${net.offersTo.get('X') ?? 0}`)
    await broker.stop()
    store.close()
  })

  for (const [why, code] of [['for its limits', 'limits'], ['without a decline code (an older executor)', undefined]] as const) {
    it(`an executor that refuses a job ${why} is not asked again for that job`, async () => {
      const store = new JobStore(join(dir.path, `refused-${code ?? 'none'}.sqlite`))
      const net = new SlottedNetwork({ A: 1, B: 1 }, 20)
      net.refuses.set('A', code) // e.g. the job asks for more memory than A allows
      const broker = new Broker({ store, network: net, self: 'me', probeIntervalMs: 50 })
      broker.start()
      const view = await finalOf(broker, submitTo(broker, 1))
      assert.equal(view.status, 'succeeded')
      assert.equal(view.replicas[0].executor, 'B')
      assert.equal(net.offersTo.get('A'), 1)
      await broker.stop()
      store.close()
    })
  }

  it('an executor that declines for its memory budget, with slots free, is asked again once a task ends there', async () => {
    const store = new JobStore(join(dir.path, 'memory-budget.sqlite'))
    const net = new SlottedNetwork({ A: 2 }, 40)
    net.memoryFor = 1 // two slots, but memory for one task at a time
    const broker = new Broker({ store, network: net, self: 'me', probeIntervalMs: 50, unavailableAfterMs: 5_000 })
    broker.start()
    const ids = [submitTo(broker, 1), submitTo(broker, 1)]
    for (const id of ids) assert.equal((await finalOf(broker, id)).status, 'succeeded')
    assert.ok((net.declinedFor.get('memory-budget') ?? 0) >= 1, 'the second job was declined for memory at least once')
    await broker.stop()
    store.close()
  })
})

/** Executors with real slot accounting: an offer is accepted only while a slot is free, like the donor's JobRunner. */
class SlottedNetwork implements TaskNetwork {
  readonly free = new Map<string, number>()
  readonly slots: Record<string, number>
  readonly startedAt = new Map<string, number>()
  accepted = 0
  declined = 0
  maxConcurrentOffers = 0
  announceZero = false
  readonly unreachable = new Set<string>()
  /** executors that refuse every job, with the decline code they give (none: an older executor) */
  readonly refuses = new Map<string, DeclineCode | undefined>()
  /** tasks an executor has memory for at once, whatever its free slots */
  memoryFor = Number.POSITIVE_INFINITY
  readonly declinedFor = new Map<DeclineCode, number>()
  readonly offersTo = new Map<string, number>()
  private offersInFlight = 0
  private readonly runMs: number

  constructor (slots: Record<string, number>, runMs: number) {
    this.slots = slots
    this.runMs = runMs
    for (const [p, n] of Object.entries(slots)) this.free.set(p, n)
  }

  executors (): ExecutorInfo[] {
    return Object.keys(this.slots).map(peerId => ({ peerId, acceptsJobs: true, freeSlots: this.announceZero ? 0 : this.free.get(peerId) ?? 0, slots: this.slots[peerId], updatedAt: 0, maxLimits: DEFAULT_JOB_LIMITS }))
  }

  async locate (executor: string): Promise<string | undefined> {
    if (this.unreachable.has(executor)) throw Object.assign(new Error(`cannot reach executor ${executor}: it announced no address`), { code: 'PEER_UNREACHABLE' })
    return '127.0.0.1'
  }

  async offer (executor: string): Promise<OfferAnswer> {
    this.offersTo.set(executor, (this.offersTo.get(executor) ?? 0) + 1)
    if (this.unreachable.has(executor)) throw Object.assign(new Error(`cannot reach executor ${executor}: it announced no address`), { code: 'PEER_UNREACHABLE' })
    if (this.refuses.has(executor)) return { accept: false, reason: 'memoryBytes 512 MiB is above this donor\'s maximum of 256 MiB', code: this.refuses.get(executor), freeSlots: this.free.get(executor) ?? 0 }
    this.offersInFlight++
    this.maxConcurrentOffers = Math.max(this.maxConcurrentOffers, this.offersInFlight)
    await new Promise(resolve => setTimeout(resolve, 1))
    this.offersInFlight--
    const free = this.free.get(executor) ?? 0
    if (free < 1) {
      this.declined++
      return { accept: false, reason: 'busy', code: 'busy', freeSlots: 0 }
    }
    if (this.slots[executor] - free >= this.memoryFor) {
      this.declinedFor.set('memory-budget', (this.declinedFor.get('memory-budget') ?? 0) + 1)
      return { accept: false, reason: 'busy: memory budget', code: 'memory-budget', freeSlots: free }
    }
    this.free.set(executor, free - 1)
    this.accepted++
    return { accept: true, freeSlots: free - 1 }
  }

  async dispatch (executor: string, task: TaskToRun): Promise<TaskRunResult> {
    this.startedAt.set(task.jobId, performance.now())
    await new Promise(resolve => setTimeout(resolve, this.runMs))
    this.free.set(executor, (this.free.get(executor) ?? 0) + 1)
    return {
      path: 'direct',
      outcome: { status: 'succeeded', exitCode: 0, outputCid: 'bafy-same', fuelUsed: 1, durationMs: this.runMs, receiptVerified: true, stdoutSize: 0, stderrSize: 0 },
      receipt: new Uint8Array([1]),
      receiptSignature: new Uint8Array([2]),
      stdout: new Uint8Array(),
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

/** Executors whose offers ride the dispatch: `offer` answers deferred, and `dispatch` declines as busy while another broker holds the slot. */
class DeferringNetwork extends SlottedNetwork {
  othersHold = 0
  /** dispatches declined because another broker held the slot (others are declined when a probe guessed a slot free while our own task held it) */
  declinedForOthers = 0

  async offer (executor: string): Promise<OfferAnswer> {
    this.offersTo.set(executor, (this.offersTo.get(executor) ?? 0) + 1)
    return { accept: true, deferred: true }
  }

  async dispatch (executor: string, task: TaskToRun): Promise<TaskRunResult> {
    if (this.othersHold > 0 || (this.free.get(executor) ?? 0) < 1) {
      if (this.othersHold > 0) {
        this.othersHold--
        this.declinedForOthers++
      }
      throw new OfferDeclinedError(executor, { code: 'busy', reason: 'busy: all 1 slot(s) in use', freeSlots: 0 })
    }
    this.free.set(executor, (this.free.get(executor) ?? 0) - 1)
    return await super.dispatch(executor, task)
  }
}
