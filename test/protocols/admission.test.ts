import assert from 'node:assert/strict'
import { afterEach, beforeEach, describe, it } from 'node:test'
import * as dagCbor from '@ipld/dag-cbor'
import { peerIdFromString } from '@libp2p/peer-id'
import { decodeDispatchHeader, decodeDispatchResult, encodeDispatchHeader, encodeDispatchResult } from '../../src/codec/messages.ts'
import { outputCid } from '../../src/codec/receipt.ts'
import { DEFAULT_JOB_LIMITS } from '../../src/core/job.ts'
import { JobRunner, type JobRunnerComponents } from '../../src/donor/job-runner.ts'
import { dispatch, type DispatchService } from '../../src/protocols/dispatch/index.ts'
import { DispatchRefusedError } from '../../src/protocols/errors.ts'
import { offer, type OfferService } from '../../src/protocols/offer/index.ts'
import { localRoots } from '../../src/protocols/sanitise.ts'
import { bytesOf, captureLogs, createTestNode, fakeExecutor, MODULE, MODULE_CID, stopAll, task } from './helpers.ts'
import { waitFor } from '../helpers/wait.ts'
import type { ExecuteRequest, ExecuteResult } from '../../src/core/job.ts'
import type { Libp2p } from 'libp2p'
import { shortPeerId } from '../../src/core/format.ts'

type Node = Libp2p<Record<string, any>>

/** The runner's view of a test node's connections: libp2p's own events, and whether a peer has a connection. */
function meshOf (node: Node): JobRunnerComponents {
  return {
    events: {
      on: (type, listener) => { node.addEventListener(type, listener as (evt: Event) => void) },
      off: (type, listener) => { node.removeEventListener(type, listener as (evt: Event) => void) }
    },
    connections: {
      isConnected: (peerId) => node.getConnections(peerIdFromString(peerId)).length > 0,
      open: () => [],
      bestDirect: () => undefined,
      relayed: () => undefined,
      best: () => undefined,
      list: () => []
    }
  }
}

const offerOf = (t: ReturnType<typeof task>): Parameters<OfferService['offer']>[1] => ({
  jobId: t.jobId, taskId: t.taskId, moduleCid: t.moduleCid, moduleSize: t.module?.byteLength ?? 0, inputSize: t.input.byteLength, limits: t.limits
})

describe('a donor runs only what it agreed to', () => {
  let nodes: Node[] = []
  let runner: JobRunner | undefined
  let logs: ReturnType<typeof captureLogs>

  beforeEach(() => { logs = captureLogs() })
  afterEach(async () => {
    runner?.stop()
    await stopAll(nodes)
    nodes = []
    logs.restore()
  })

  /** A donor whose offer and dispatch services answer through a real JobRunner (fake executor), and `brokers` nodes connected to it. */
  async function donorWith (brokers: number, opts: { slots?: number, runTask?: (req: ExecuteRequest, o: { signal: AbortSignal }) => Promise<ExecuteResult> } = {}): Promise<{ donor: Node, brokers: Node[], runner: JobRunner, calls: ExecuteRequest[] }> {
    const exec = fakeExecutor()
    const runTask = opts.runTask ?? exec.runTask
    let r: JobRunner | undefined
    const donor = await createTestNode({
      services: {
        offer: offer({ decideOffer: (req, ctx) => (r as JobRunner).decideOffer(req, ctx) }),
        dispatch: dispatch({ admit: (req, ctx) => (r as JobRunner).admit(req, ctx), runTask: async (req, o) => await (r as JobRunner).runTask(req, o) })
      }
    })
    r = new JobRunner({
      executor: { execute: async (req, o) => await runTask(req, { signal: o?.signal ?? new AbortController().signal }) },
      maxLimits: { ...DEFAULT_JOB_LIMITS },
      maxConcurrent: opts.slots ?? 2,
      addrs: () => [],
      hasModule: (cid) => (donor.services.dispatch as DispatchService).hasModule(cid)
    }, meshOf(donor))
    r.start()
    runner = r
    nodes.push(donor)
    const list: Node[] = []
    for (let i = 0; i < brokers; i++) {
      const b = await createTestNode({ services: { dispatch: dispatch(), offer: offer() } })
      nodes.push(b)
      await b.dial(donor.getMultiaddrs()[0])
      list.push(b)
    }
    return { donor, brokers: list, runner: r, calls: exec.calls }
  }

  const dispatcher = (node: Node): DispatchService => node.services.dispatch as DispatchService
  const offerer = (node: Node): OfferService => node.services.offer as OfferService
  const refusalLines = (peer: string): string[] => logs.lines.filter(l => l.includes('code=no-offer') && l.includes(`peer=${shortPeerId(peer)}`))

  it('refuses a dispatch that no accepted offer covers, with the no-offer code, and runs nothing', async () => {
    const { donor, brokers: [stranger], calls } = await donorWith(1)
    await assert.rejects(dispatcher(stranger).dispatch(donor.peerId, task('job-x/0', bytesOf('run me'))), (err: unknown) => {
      assert.ok(err instanceof DispatchRefusedError, String(err))
      assert.equal(err.code, 'DISPATCH_REFUSED')
      assert.equal(err.refusal, 'no-offer')
      return true
    })
    assert.equal(calls.length, 0)
    assert.equal(refusalLines(stranger.peerId.toString()).length, 1, 'one log line naming the peer and the cause')
  })

  it('runs a dispatch after its offer was accepted, and refuses the same task from another broker', async () => {
    const { donor, brokers: [honest, other], calls } = await donorWith(2)
    const t = task('job-ok/0', bytesOf('offered first'))
    assert.equal((await offerer(honest).offer(donor.peerId, offerOf(t))).accept, true)
    await assert.rejects(dispatcher(other).dispatch(donor.peerId, t), DispatchRefusedError)
    const result = await dispatcher(honest).dispatch(donor.peerId, t)
    assert.equal(result.status, 'succeeded')
    assert.equal(calls.length, 1)
    // the same broker sending the same task again (its path broke) gets the first run's answer, with no new offer
    const again = await dispatcher(honest).dispatch(donor.peerId, t)
    assert.deepEqual(again.receipt.signature, result.receipt.signature)
    assert.equal(calls.length, 1)
  })

  it('a flood of dispatches without offers runs nothing, holds no slot, logs one line, and honest offers are taken during and after it', async () => {
    const { donor, brokers: [attacker, honest], runner: r, calls } = await donorWith(2, { slots: 2 })
    const heapBefore = process.memoryUsage().heapUsed
    let refused = 0
    const flood = (async () => {
      for (let batch = 0; batch < 8; batch++) {
        const round = Array.from({ length: 8 }, async (_, i) => {
          const t = task(`job-flood/${batch * 8 + i}`, new Uint8Array(64 * 1024).fill(0x61))
          await dispatcher(attacker).dispatch(donor.peerId, t).catch((err: unknown) => { if (err instanceof DispatchRefusedError) refused++ })
        })
        await Promise.all(round)
      }
    })()
    const during = task('job-honest/0', bytesOf('during the flood'))
    assert.equal((await offerer(honest).offer(donor.peerId, offerOf(during))).accept, true)
    assert.equal((await dispatcher(honest).dispatch(donor.peerId, during)).status, 'succeeded')
    await flood
    assert.equal(refused, 64)
    assert.deepEqual(calls.map(c => c.taskId), ['job-honest/0'])
    assert.equal(r.capacity().freeSlots, 2, 'no slot is held after the flood')
    assert.equal(refusalLines(attacker.peerId.toString()).length, 1, 'one line for the whole flood')
    // 64 refused dispatches of 64 KiB each leave nothing behind worth a megabyte per dispatch
    assert.ok(process.memoryUsage().heapUsed - heapBefore < 64 * 1024 * 1024, 'the heap did not grow with the flood')
    const after = task('job-honest/1', bytesOf('after the flood'))
    assert.equal((await offerer(honest).offer(donor.peerId, offerOf(after))).accept, true)
    assert.equal((await dispatcher(honest).dispatch(donor.peerId, after)).status, 'succeeded')
  })

  it('runs a dispatch that carries its own offer when a slot is free, and declines one with the busy code when none is, running nothing for it', async () => {
    const { donor, brokers: [broker], runner: r, calls } = await donorWith(1, { slots: 1 })
    const first = await dispatcher(broker).dispatch(donor.peerId, { ...task('job-a/0', bytesOf('unasked')), offered: true })
    assert.equal(first.status, 'succeeded')
    assert.equal(first.receiptVerified, true)
    // the one slot held by an offer: the next unasked dispatch is declined as an offer would be
    assert.equal((await offerer(broker).offer(donor.peerId, offerOf(task('job-b/0', bytesOf('held'))))).accept, true)
    await assert.rejects(dispatcher(broker).dispatch(donor.peerId, { ...task('job-c/0', bytesOf('no room')), offered: true }), (err: unknown) => {
      assert.ok(err instanceof DispatchRefusedError, String(err))
      assert.equal(err.refusal, 'busy')
      return true
    })
    assert.deepEqual(calls.map(c => c.taskId), ['job-a/0'])
    assert.equal(r.capacity().freeSlots, 0, 'the declined dispatch took no slot; the offer still holds its own')
    assert.equal(refusalLines(broker.peerId.toString()).length, 0, 'a decline is not logged as a dispatch without an offer')
  })

  it('frees the slots a broker was offered as soon as it disconnects', async () => {
    const { donor, brokers: [broker], runner: r } = await donorWith(1, { slots: 1 })
    assert.equal((await offerer(broker).offer(donor.peerId, offerOf(task('job-d/0', bytesOf('x'))))).accept, true)
    assert.equal(r.capacity().freeSlots, 0)
    await broker.hangUp(donor.peerId)
    await waitFor('the offered slot to be free again', () => r.capacity().freeSlots === 1)
  })

  it('sends the submitter the status and a cause, not the donor\'s paths or stack frames', async () => {
    const { install, home } = localRoots()
    const leaky = async (): Promise<ExecuteResult> => {
      const err = new Error(`ENOENT: no such file or directory, open '${install}src/executor/worker.ts'`)
      return { status: 'failed', error: `executor error: ${err.message} (cache ${home}/.cache/wc)\n${err.stack ?? ''}`, stdout: new Uint8Array(0), stderr: new Uint8Array(0), fuelUsed: 0, durationMs: 1 }
    }
    const { donor, brokers: [broker] } = await donorWith(1, { runTask: leaky })
    const t = task('job-leak/0', bytesOf('x'), { module: MODULE, moduleCid: MODULE_CID })
    await offerer(broker).offer(donor.peerId, offerOf(t))
    const result = await dispatcher(broker).dispatch(donor.peerId, t)
    assert.equal(result.status, 'failed')
    const error = result.error ?? ''
    assert.match(error, /^executor error: ENOENT: no such file or directory, open '<install>\/src\/executor\/worker\.ts' \(cache ~\/\.cache\/wc\)/)
    assert.ok(!error.includes(install.replace(/\/$/, '')), error)
    assert.ok(!error.includes(home), error)
    assert.doesNotMatch(error, /\bat .*:\d+:\d+/, 'no stack frame')
  })
})

describe('the refusal on the wire', () => {
  it('round-trips the refused code, and reads a code it does not know as other', () => {
    const base = {
      status: 'rejected' as const,
      outputCid: outputCid(new Uint8Array(0), new Uint8Array(0)),
      fuelUsed: 0,
      durationMs: 0,
      stdoutSize: 0,
      stderrSize: 0,
      receipt: { body: new Uint8Array([1]), signature: new Uint8Array([2]) }
    }
    assert.equal(decodeDispatchResult(encodeDispatchResult({ ...base, refused: 'no-offer' })).refused, 'no-offer')
    assert.equal(decodeDispatchResult(encodeDispatchResult(base)).refused, undefined)
    const fromNewer = dagCbor.decode<Record<string, unknown>>(encodeDispatchResult({ ...base, refused: 'no-offer' }))
    fromNewer.refused = 'a-reason-from-a-newer-donor'
    assert.equal(decodeDispatchResult(dagCbor.encode(fromNewer)).refused, 'other')
  })

  it('round-trips a header that carries its own offer, and leaves the flag out of one that does not', () => {
    const t = task('job-h/0', bytesOf('x'))
    const header = { jobId: t.jobId, taskId: t.taskId, moduleCid: t.moduleCid, inputCid: t.inputCid, args: [], env: [], limits: {}, moduleSize: 0, inputSize: 1, sendsModule: false }
    assert.equal(decodeDispatchHeader(encodeDispatchHeader({ ...header, offered: true })).offered, true)
    assert.equal('offered' in decodeDispatchHeader(encodeDispatchHeader(header)), false)
  })
})
