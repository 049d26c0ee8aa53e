/**
 * Replication against identities that cost nothing: the broker's placement,
 * ranking and attempt rules against a scripted network where some executors
 * lie. Each executor has an observed address (what `locate` answers), the
 * free slots it claims, and a script for offers and dispatches.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { Broker, type ExecutorInfo, type OfferAnswer, type TaskNetwork, type TaskRunResult, type TaskToRun } from '../../src/broker/broker.ts'
import { JobStore } from '../../src/broker/job-store.ts'
import { jobView } from '../../src/broker/job-view.ts'
import { DEFAULT_JOB_LIMITS } from '../../src/core/job.ts'
import { ReceiptInvalidError } from '../../src/codec/errors.ts'
import { tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'

const dir = tempDir('wc-replicas-')
after(() => { dir.cleanup() })

interface Script {
  /** the address the broker observes it at; undefined: nobody observed it */
  ip: string | undefined
  /** what it announces */
  freeSlots: number
  /** the output it returns (the honest one is 'bafy-honest') */
  output?: string
  /** answers every dispatch with a receipt that does not verify */
  invalidReceipt?: boolean
  /** declines as busy until this time (performance.now()) */
  busyUntil?: number
  /** every dispatch fails as a broken path (a failure that may be honest) */
  pathBreaks?: boolean
  /** how long a run takes, ms @default 5 */
  runMs?: number
}

class ScriptedNetwork implements TaskNetwork {
  readonly scripts = new Map<string, Script>()
  readonly offers: string[] = []
  readonly dispatches: string[] = []

  add (peerId: string, script: Script): this {
    this.scripts.set(peerId, script)
    return this
  }

  executors (): ExecutorInfo[] {
    return [...this.scripts].map(([peerId, s]) => ({ peerId, acceptsJobs: true, freeSlots: s.freeSlots, maxLimits: DEFAULT_JOB_LIMITS }))
  }

  async locate (executor: string): Promise<string | undefined> {
    return this.scripts.get(executor)?.ip
  }

  async offer (executor: string): Promise<OfferAnswer> {
    this.offers.push(executor)
    const s = this.scripts.get(executor)
    if (s?.busyUntil != null && performance.now() < s.busyUntil) return { accept: false, reason: 'busy', code: 'busy', freeSlots: 0 }
    return { accept: true, freeSlots: s?.freeSlots }
  }

  async dispatch (executor: string, task: TaskToRun): Promise<TaskRunResult> {
    this.dispatches.push(executor)
    const s = this.scripts.get(executor) as Script
    await new Promise(resolve => setTimeout(resolve, s.runMs ?? 5))
    if (s.pathBreaks === true) throw Object.assign(new Error('stream reset'), { code: 'DISPATCH_FAILED' })
    if (s.invalidReceipt === true) throw new ReceiptInvalidError(`donor ${executor} answered task ${task.taskId} with a receipt signed by another key`)
    const outputCid = s.output ?? 'bafy-honest'
    return {
      path: 'direct',
      outcome: { status: 'succeeded', exitCode: 0, outputCid, fuelUsed: 7, durationMs: 1, receiptVerified: true, stdoutSize: 0, stderrSize: 0 },
      receipt: new Uint8Array([1]),
      receiptSignature: new Uint8Array([2]),
      stdout: new TextEncoder().encode(outputCid),
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

function submit (broker: Broker, replicas: number, executors?: string[]): string {
  return broker.submit({ module: new Uint8Array([0, 97, 115, 109]), moduleCid: 'bafkrei-m', input: new Uint8Array([1]), inputCid: 'bafkrei-i', replicas, executors }).jobId
}

async function finalOf (broker: Broker, jobId: string, ms = 10_000): Promise<ReturnType<typeof jobView>> {
  return await waitFor(`job ${jobId} to finish`, () => {
    const { job, tasks } = broker.getJob(jobId)
    return job.final != null ? jobView(job, tasks, false) : undefined
  }, ms)
}

async function withBroker<T> (name: string, net: TaskNetwork, init: { unavailableAfterMs?: number, probeIntervalMs?: number, retryAfterMs?: number }, body: (broker: Broker) => Promise<T>): Promise<T> {
  const store = new JobStore(join(dir.path, `${name}.sqlite`))
  const broker = new Broker({ store, network: net, self: 'me', probeIntervalMs: 50, ...init })
  broker.start()
  try {
    return await body(broker)
  } finally {
    await broker.stop()
    store.close()
  }
}

describe('replicas that free identities cannot out-vote', () => {
  it('two identities in one /24 forging the same output never out-vote an honest executor: only one of them gets a replica', async () => {
    const net = new ScriptedNetwork()
      .add('sybil-1', { ip: '198.51.100.7', freeSlots: 65_535, output: 'bafy-forged' })
      .add('sybil-2', { ip: '198.51.100.8', freeSlots: 65_535, output: 'bafy-forged' })
      .add('honest', { ip: '203.0.113.5', freeSlots: 1 })
    const view = await withBroker('sybil-alone', net, { unavailableAfterMs: 400 }, async (broker) => await finalOf(broker, submit(broker, 3)))
    assert.notEqual(view.outputCid, 'bafy-forged')
    assert.equal(view.status, 'no_agreement', view.message)
    assert.match(view.message, /no executor in another network took the rest/)
    const used = view.replicas.map(r => r.executor)
    assert.ok(!(used.includes('sybil-1') && used.includes('sybil-2')), `both sybils served: ${used.join(', ')}`)
    assert.ok(used.includes('honest'))
  })

  it('with honest executors in two more networks, the honest result wins 2/3 over the sybils\' forged one', async () => {
    const net = new ScriptedNetwork()
      .add('sybil-1', { ip: '198.51.100.7', freeSlots: 65_535, output: 'bafy-forged' })
      .add('sybil-2', { ip: '198.51.100.200', freeSlots: 65_535, output: 'bafy-forged' })
      .add('honest-1', { ip: '203.0.113.5', freeSlots: 1 })
      .add('honest-2', { ip: '2001:db8:7::1', freeSlots: 1 })
    const view = await withBroker('sybil-outvoted', net, {}, async (broker) => await finalOf(broker, submit(broker, 3)))
    assert.equal(view.status, 'succeeded')
    assert.equal(view.outputCid, 'bafy-honest')
    assert.match(view.message, /^2\/3 agree/)
    assert.equal(view.replicas.filter(r => r.executor.startsWith('sybil')).length, 1)
  })

  it('executors nobody observed share one network: two of them never hold two replicas of one job', async () => {
    const net = new ScriptedNetwork()
      .add('hidden-1', { ip: undefined, freeSlots: 100, output: 'bafy-forged' })
      .add('hidden-2', { ip: undefined, freeSlots: 100, output: 'bafy-forged' })
      .add('honest', { ip: '127.0.0.1', freeSlots: 1 })
    const view = await withBroker('unobserved', net, { unavailableAfterMs: 400 }, async (broker) => await finalOf(broker, submit(broker, 2)))
    assert.notEqual(view.outputCid, 'bafy-forged')
    assert.equal(view.replicas.filter(r => r.executor.startsWith('hidden')).length, 1)
    assert.ok(view.replicas.some(r => r.executor === 'honest'))
  })

  it('an observed executor is offered a single replica before one nobody observed, whatever slots the latter claims', async () => {
    const net = new ScriptedNetwork()
      .add('hidden', { ip: undefined, freeSlots: 65_535 })
      .add('seen', { ip: '203.0.113.9', freeSlots: 1 })
    const view = await withBroker('observed-first', net, {}, async (broker) => await finalOf(broker, submit(broker, 1)))
    assert.equal(view.status, 'succeeded')
    assert.deepEqual(view.replicas.map(r => r.executor), ['seen'])
  })

  it('loopback executors are each their own network, so single-machine meshes still run replicated jobs', async () => {
    const net = new ScriptedNetwork()
      .add('a', { ip: '127.0.0.1', freeSlots: 1 })
      .add('b', { ip: '127.0.0.1', freeSlots: 1 })
      .add('c', { ip: '::1', freeSlots: 1 })
    const view = await withBroker('loopback', net, {}, async (broker) => await finalOf(broker, submit(broker, 3)))
    assert.equal(view.status, 'succeeded')
    assert.match(view.message, /^3\/3 agree/)
  })

  it('one peer claiming every slot and answering with invalid receipts is excluded after its first, and the job waits for the busy honest donor', async () => {
    const net = new ScriptedNetwork()
      .add('liar', { ip: '198.51.100.7', freeSlots: 65_535, invalidReceipt: true })
      .add('honest', { ip: '203.0.113.5', freeSlots: 0, busyUntil: performance.now() + 1_500 })
    // 300 ms without anyone to wait for would end it: the busy honest donor answers, so the clock does not run
    const view = await withBroker('invalid-receipts', net, { unavailableAfterMs: 300, retryAfterMs: 10 }, async (broker) => await finalOf(broker, submit(broker, 1)))
    assert.equal(view.status, 'succeeded', view.message)
    assert.equal(view.outputCid, 'bafy-honest')
    assert.equal(net.dispatches.filter(e => e === 'liar').length, 1, 'the liar got one attempt only')
    const liar = view.replicas.filter(r => r.executor === 'liar')
    assert.equal(liar.length, 1)
    assert.match(liar[0].failure ?? '', /^RECEIPT_INVALID: /)
    assert.equal(view.replicas.find(r => r.state === 'done')?.executor, 'honest')
  })

  it('a job\'s attempts go to distinct executors before one that failed is tried again', async () => {
    const net = new ScriptedNetwork()
      .add('flaky', { ip: '198.51.100.7', freeSlots: 9, pathBreaks: true })
      .add('steady', { ip: '203.0.113.5', freeSlots: 0, busyUntil: performance.now() + 800 })
    const view = await withBroker('spread', net, { retryAfterMs: 10, unavailableAfterMs: 5_000 }, async (broker) => await finalOf(broker, submit(broker, 1)))
    assert.equal(view.status, 'succeeded')
    assert.equal(net.dispatches.filter(e => e === 'flaky').length, 1, 'the failing executor was not retried while another had not been tried')
  })

  it('a peer that lost a vote is ranked below executors never seen, for later jobs', async () => {
    const net = new ScriptedNetwork()
      .add('liar', { ip: '198.51.100.7', freeSlots: 65_535, output: 'bafy-forged' })
      .add('honest-1', { ip: '203.0.113.5', freeSlots: 1 })
      .add('honest-2', { ip: '192.0.2.5', freeSlots: 1 })
    await withBroker('ranking', net, {}, async (broker) => {
      const first = await finalOf(broker, submit(broker, 3))
      assert.equal(first.outputCid, 'bafy-honest')
      // the liar claims far more slots than anyone, but lost its vote: a newcomer is asked first
      net.add('newcomer', { ip: '2001:db8:9::1', freeSlots: 1 })
      net.offers.length = 0
      const second = await finalOf(broker, submit(broker, 1))
      assert.equal(second.status, 'succeeded')
      assert.notEqual(net.offers[0], 'liar', `offers went to ${net.offers.join(', ')}`)
    })
  })

  it('an executor seen to succeed is ranked above one that only claims more free slots', async () => {
    const net = new ScriptedNetwork().add('known', { ip: '203.0.113.5', freeSlots: 1 })
    await withBroker('ranking-known', net, {}, async (broker) => {
      await finalOf(broker, submit(broker, 1))
      await finalOf(broker, submit(broker, 1))
      net.add('boaster', { ip: '198.51.100.7', freeSlots: 65_535 })
      net.offers.length = 0
      const view = await finalOf(broker, submit(broker, 1))
      assert.equal(view.replicas[0].executor, 'known')
      assert.equal(net.offers[0], 'known')
    })
  })

  it('a job restricted with executors runs only on them, even when they share a network', async () => {
    const ids = [
      '12D3KooWGRUVh8fXbJxSCQ3fjGsuYx5DwcaVzCcbV8VhQj5Dx9Fb',
      '12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK'
    ]
    const net = new ScriptedNetwork().add('other', { ip: '203.0.113.5', freeSlots: 65_535 })
    for (const id of ids) net.add(id, { ip: '10.0.0.2', freeSlots: 1 })
    const view = await withBroker('chosen', net, {}, async (broker) => await finalOf(broker, submit(broker, 2, ids)))
    assert.equal(view.status, 'succeeded')
    assert.deepEqual(view.executors, ids)
    assert.deepEqual(view.replicas.map(r => r.executor).sort(), [...ids].sort())
    assert.ok(!net.offers.includes('other'))
  })

  it('a job naming executors that are not PeerIds, or fewer than its replicas, is rejected at submit', async () => {
    await withBroker('chosen-bad', new ScriptedNetwork(), {}, async (broker) => {
      assert.throws(() => submit(broker, 1, ['nope']), { code: 'JOB_REJECTED' })
      assert.throws(() => submit(broker, 2, ['12D3KooWGRUVh8fXbJxSCQ3fjGsuYx5DwcaVzCcbV8VhQj5Dx9Fb']), { code: 'JOB_REJECTED' })
    })
  })
})
