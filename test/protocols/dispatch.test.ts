import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import * as dagCbor from '@ipld/dag-cbor'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { rawCidString } from '../../src/codec/cid.ts'
import { ReceiptInvalidError } from '../../src/codec/errors.ts'
import { decodeDispatchHeader, encodeDispatchResult } from '../../src/codec/messages.ts'
import { decodeReceiptBody, outputCid, signReceipt, verifyReceipt } from '../../src/codec/receipt.ts'
import { DISPATCH_PROTOCOL, dispatch } from '../../src/protocols/dispatch/index.ts'
import { DispatchFailedError, DispatchTimeoutError, ExecutorCrashedError, ModuleNotCachedError } from '../../src/protocols/errors.ts'
import { FramedStream } from '../../src/protocols/framing.ts'
import { offer } from '../../src/protocols/offer/index.ts'
import { admitAll, bytesOf, createTestNode, fakeExecutor, MODULE, MODULE_CID, task, text, upper, perTestNodesAndLogs } from './helpers.ts'
import { waitFor } from '../helpers/wait.ts'
import type { DispatchProgressEvent, DispatchService } from '../../src/protocols/dispatch/index.ts'
import type { OfferService } from '../../src/protocols/offer/index.ts'
import type { Libp2p } from 'libp2p'
import type { PrivateKey, Stream } from '@libp2p/interface'
import type { ExecuteResult, ReceiptBody } from '../../src/core/job.ts'
import { shortPeerId } from '../../src/core/format.ts'

type Node = Libp2p<Record<string, any>>

describe('dispatch protocol', () => {
  const { nodes, logs } = perTestNodesAndLogs<Node>()

  /** A donor running `runTask` (and answering offers from its module cache) and a broker, connected over TCP. */
  async function pair (runTask = fakeExecutor().runTask, brokerInit: Parameters<typeof dispatch>[0] = {}): Promise<{ donor: Node, broker: Node, donorDispatch: DispatchService, brokerDispatch: DispatchService }> {
    let donorDispatch: DispatchService | undefined
    const donor = await createTestNode({
      services: {
        dispatch: dispatch({ runTask, admit: admitAll }),
        offer: offer({ decideOffer: (req) => ({ accept: true, hasModule: donorDispatch?.hasModule(req.moduleCid) ?? false, freeSlots: 1 }) })
      }
    })
    donorDispatch = donor.services.dispatch as DispatchService
    const broker = await createTestNode({ services: { dispatch: dispatch(brokerInit), offer: offer() } })
    nodes.push(donor, broker)
    await broker.dial(donor.getMultiaddrs()[0])
    return { donor, broker, donorDispatch, brokerDispatch: broker.services.dispatch as DispatchService }
  }

  it('runs a task over a direct TCP connection and returns a verified receipt', async () => {
    const exec = fakeExecutor()
    const { donor, broker, brokerDispatch } = await pair(exec.runTask)
    const conn = broker.getConnections(donor.peerId)[0]
    const input = bytesOf('hello, world compute')

    const result = await brokerDispatch.dispatch(conn, task('job-a/0', input))

    assert.equal(result.status, 'succeeded')
    assert.equal(result.exitCode, 0)
    assert.equal(text(result.stdout), 'HELLO, WORLD COMPUTE\nargs=--shout')
    assert.equal(text(result.stderr), `module ${text(MODULE)}`)
    assert.equal(result.fuelUsed, input.byteLength)
    assert.equal(result.executor, donor.peerId.toString())
    assert.equal(result.receiptVerified, true)
    assert.equal(result.outputCid, outputCid(result.stdout, result.stderr))
    const body = decodeReceiptBody(result.receipt.body)
    assert.deepEqual(body, {
      taskId: 'job-a/0', moduleCid: MODULE_CID, inputCid: rawCidString(input), outputCid: result.outputCid, status: 'succeeded', exitCode: 0, fuelUsed: input.byteLength, executor: donor.peerId.toString()
    })
    // anyone holding the receipt can check it again later
    await verifyReceipt(result.receipt, { executor: donor.peerId.toString(), taskId: 'job-a/0', moduleCid: MODULE_CID, inputCid: rawCidString(input) })
    assert.equal(exec.calls.length, 1)
    assert.deepEqual(exec.calls[0].args, ['--shout'])
    assert.deepEqual(exec.calls[0].env, ['LANG=C'])
    assert.deepEqual(new Uint8Array(exec.calls[0].module), MODULE)
  })

  it('dispatches by PeerId over the connection libp2p already has', async () => {
    const { donor, brokerDispatch } = await pair()
    const result = await brokerDispatch.dispatch(donor.peerId, task('job-b/0', bytesOf('by peer id')))
    assert.equal(text(result.stdout), 'BY PEER ID\nargs=--shout')
    assert.equal(result.receiptVerified, true)
  })

  it('runs a task with a 1 MiB input and a 1 MiB output through a circuit relay', async () => {
    const exec = fakeExecutor()
    const relay = await createTestNode({ relayServer: true })
    const donor = await createTestNode({ listen: ['/p2p-circuit'], services: { dispatch: dispatch({ runTask: exec.runTask, admit: admitAll }) } })
    const broker = await createTestNode({ listen: [], services: { dispatch: dispatch() } })
    nodes.push(relay, donor, broker)

    await donor.dial(relay.getMultiaddrs()[0])
    const circuit = await waitFor('a circuit address on the donor', () => donor.getMultiaddrs().find(ma => ma.toString().includes('/p2p-circuit')))
    const conn = await broker.dial(multiaddr(circuit.toString()))
    assert.ok(conn.remoteAddr.toString().includes('/p2p-circuit'), `expected a relayed connection, got ${conn.remoteAddr.toString()}`)
    assert.ok(conn.limits != null, 'a relayed connection is limited')

    const input = new Uint8Array(1024 * 1024)
    for (let i = 0; i < input.byteLength; i++) input[i] = 0x61 + (i % 26)
    const events: DispatchProgressEvent[] = []
    const result = await (broker.services.dispatch as DispatchService).dispatch(conn, task('job-relay/0', input), { onProgress: (e) => { events.push(e) } })

    assert.equal(result.status, 'succeeded')
    assert.equal(result.receiptVerified, true)
    assert.equal(result.stdout.byteLength, input.byteLength + '\nargs=--shout'.length)
    assert.deepEqual(result.stdout.subarray(0, input.byteLength), upper(input))
    assert.equal(result.executor, donor.peerId.toString())
    assert.ok(events.some(e => e.type === 'dispatch:stream-opened' && e.detail.limited))
    assert.ok(events.some(e => e.type === 'dispatch:received' && e.detail.bytes === e.detail.total))
    assert.equal(exec.calls.length, 1)
  })

  it('carries a 64 MiB module, a 64 MiB input and a 64 MiB output', async () => {
    const { donor, brokerDispatch } = await pair()
    const module = new Uint8Array(64 * 1024 * 1024).fill(7)
    // the fake executor appends a short args line: keep stdout within the 64 MiB limit
    const input = new Uint8Array(64 * 1024 * 1024 - 64).fill(0x61)
    const result = await brokerDispatch.dispatch(donor.peerId, task('job-huge/0', input, { module, moduleCid: rawCidString(module) }))
    assert.equal(result.status, 'succeeded')
    assert.equal(result.stdout.byteLength, input.byteLength + '\nargs=--shout'.length)
    assert.equal(result.stdout[0], 0x41)
    assert.equal(result.receiptVerified, true)
  })

  it('runs a retried taskId once, whether the retry overlaps the first run or follows it', async () => {
    let release = (): void => {}
    const gate = new Promise<void>(resolve => { release = resolve })
    const exec = fakeExecutor({ gate })
    const { donor, brokerDispatch } = await pair(exec.runTask)
    const t = task('job-retry/0', bytesOf('same task twice'))

    const first = brokerDispatch.dispatch(donor.peerId, t)
    await waitFor('the first run to start', () => exec.calls.length === 1)
    let retrySent = false
    const retry = brokerDispatch.dispatch(donor.peerId, t, { onProgress: (e) => { if (e.type === 'dispatch:executing') retrySent = true } })
    await waitFor('the retry to be sent', () => retrySent)
    release()
    const [a, b] = await Promise.all([first, retry])
    const c = await brokerDispatch.dispatch(donor.peerId, t)

    assert.equal(exec.calls.length, 1, 'runTask ran once')
    for (const r of [b, c]) {
      assert.equal(r.outputCid, a.outputCid)
      assert.deepEqual(r.receipt.body, a.receipt.body)
      assert.deepEqual(r.receipt.signature, a.receipt.signature)
      assert.deepEqual(r.stdout, a.stdout)
    }
  })

  it('refuses a taskId reused for a different input', async () => {
    const exec = fakeExecutor()
    const { donor, brokerDispatch } = await pair(exec.runTask)
    await brokerDispatch.dispatch(donor.peerId, task('job-reuse/0', bytesOf('one')))
    const second = await brokerDispatch.dispatch(donor.peerId, task('job-reuse/0', bytesOf('two')))
    assert.equal(second.status, 'rejected')
    assert.match(second.error ?? '', /already used for a different task/)
    assert.equal(exec.calls.length, 1)
  })

  it('answers invalid_module when the module bytes do not match moduleCid, without running anything', async () => {
    const exec = fakeExecutor()
    const { donor, brokerDispatch } = await pair(exec.runTask)
    const result = await brokerDispatch.dispatch(donor.peerId, task('job-bad/0', bytesOf('x'), { module: bytesOf('(module "tampered")') }))
    assert.equal(result.status, 'invalid_module')
    assert.match(result.error ?? '', /module bytes do not match moduleCid/)
    assert.equal(result.receiptVerified, true, 'the refusal is signed too')
    assert.equal(decodeReceiptBody(result.receipt.body).status, 'invalid_module')
    assert.equal(exec.calls.length, 0)
    assert.equal((donor.services.dispatch as DispatchService).hasModule(MODULE_CID), false, 'unverified bytes are not cached')
  })

  it('answers rejected when the input bytes do not match inputCid', async () => {
    const exec = fakeExecutor()
    const { donor, brokerDispatch } = await pair(exec.runTask)
    const result = await brokerDispatch.dispatch(donor.peerId, task('job-in/0', bytesOf('real input'), { inputCid: rawCidString(bytesOf('claimed input')) }))
    assert.equal(result.status, 'rejected')
    assert.match(result.error ?? '', /input bytes do not match inputCid/)
    assert.equal(exec.calls.length, 0)
  })

  it('offers hasModule after a first dispatch, and the second dispatch sends no module bytes', async () => {
    const exec = fakeExecutor()
    const { donor, broker, brokerDispatch } = await pair(exec.runTask)
    const offers = broker.services.offer as OfferService
    const req = { jobId: 'job-m', taskId: 'job-m/0', moduleCid: MODULE_CID, moduleSize: MODULE.byteLength, inputSize: 3, limits: {} }

    assert.equal((await offers.offer(donor.peerId, req)).hasModule, false)
    await brokerDispatch.dispatch(donor.peerId, task('job-m/0', bytesOf('abc')))
    const answer = await offers.offer(donor.peerId, { ...req, taskId: 'job-m/1' })
    assert.equal(answer.accept, true)
    assert.equal(answer.hasModule, true)

    const sent: number[] = []
    const input = bytesOf('def')
    const result = await brokerDispatch.dispatch(donor.peerId, task('job-m/1', input, { module: null }), {
      onProgress: (e) => { if (e.type === 'dispatch:sent') sent.push(e.detail.total) }
    })
    assert.equal(result.status, 'succeeded')
    assert.equal(text(result.stdout), 'DEF\nargs=--shout')
    assert.deepEqual(sent, [input.byteLength], 'only the input was sent')
    assert.deepEqual(new Uint8Array(exec.calls[1].module), MODULE, 'the donor ran its cached module')
  })

  it('throws ModuleNotCachedError when the donor does not have the module', async () => {
    const exec = fakeExecutor()
    const { donor, brokerDispatch } = await pair(exec.runTask)
    await assert.rejects(brokerDispatch.dispatch(donor.peerId, task('job-nc/0', bytesOf('x'), { module: null })), (err: unknown) => {
      assert.ok(err instanceof ModuleNotCachedError)
      assert.equal(err.code, 'MODULE_NOT_CACHED')
      return true
    })
    assert.equal(exec.calls.length, 0)
  })

  it('throws ExecutorCrashedError, with the donor\'s account, when the executor crashed under the task', async () => {
    const crashing = async (): Promise<ExecuteResult> => ({
      status: 'failed', error: 'executor crashed: the sandbox process was killed by SIGKILL', errorCode: 'EXECUTOR_CRASHED', stdout: new Uint8Array(), stderr: new Uint8Array(), fuelUsed: 0, durationMs: 3
    })
    const { donor, brokerDispatch } = await pair(crashing)
    await assert.rejects(brokerDispatch.dispatch(donor.peerId, task('job-crash/0', bytesOf('x'))), (err: unknown) => {
      assert.ok(err instanceof ExecutorCrashedError, String(err))
      assert.equal(err.code, 'EXECUTOR_CRASHED')
      assert.equal(err.peer, donor.peerId.toString())
      assert.equal(err.taskId, 'job-crash/0')
      assert.match(err.message, /killed by SIGKILL/)
      return true
    })
  })

  it('drops a dispatch stream of garbage with one log line and keeps serving', async () => {
    const { donor, broker, brokerDispatch } = await pair()
    const stream = await broker.dialProtocol(donor.peerId, DISPATCH_PROTOCOL)
    // a 5-byte frame that is not dag-cbor
    stream.send(new Uint8Array([0x05, 0xff, 0xfe, 0x00, 0x13, 0x37]))
    await stream.close()

    const line = await waitFor('the donor to log the bad stream', () => logs.lines.find(l => l.includes('code=MALFORMED_MESSAGE')))
    assert.match(line, /WARN/)
    assert.match(line, new RegExp(`peer=${shortPeerId(broker.peerId.toString())}`))
    assert.match(line, /protocol=\/worldcompute\/dispatch\/1\.0\.0/)
    await waitFor('the stream to be reset', () => stream.status !== 'open')

    const result = await brokerDispatch.dispatch(donor.peerId, task('job-after/0', bytesOf('still here')))
    assert.equal(text(result.stdout), 'STILL HERE\nargs=--shout')
  })

  it('names the missing field of a malformed header in the log', async () => {
    const { donor, broker, brokerDispatch } = await pair()
    const stream = await broker.dialProtocol(donor.peerId, DISPATCH_PROTOCOL)
    const framed = new FramedStream(stream, { maxFrameBytes: 256 * 1024, maxBufferBytes: 1024 * 1024 })
    const header = { jobId: 'job-x', moduleCid: MODULE_CID, inputCid: MODULE_CID, args: [], env: [], limits: {}, moduleSize: 0, inputSize: 0, sendsModule: false }
    await framed.writeFrame(dagCbor.encode(header), {})
    await stream.close()

    const line = await waitFor('the donor to log the bad header', () => logs.lines.find(l => l.includes('code=MALFORMED_MESSAGE')))
    assert.match(line, /field=taskId/)
    const result = await brokerDispatch.dispatch(donor.peerId, task('job-after/1', bytesOf('ok')))
    assert.equal(result.status, 'succeeded')
  })

  it('cuts off a peer that sends more input than it announced', async () => {
    const { donor, broker, brokerDispatch } = await pair()
    const stream = await broker.dialProtocol(donor.peerId, DISPATCH_PROTOCOL)
    const framed = new FramedStream(stream, { maxFrameBytes: 256 * 1024, maxBufferBytes: 1024 * 1024 })
    const announced = 10 * 1024 * 1024
    const header = { jobId: 'job-big', taskId: 'job-big/0', moduleCid: MODULE_CID, inputCid: MODULE_CID, args: [], env: [], limits: {}, moduleSize: 0, inputSize: announced, sendsModule: false }
    await framed.writeFrame(dagCbor.encode(header), {})
    const sending = framed.writePayload(new Uint8Array(2 * announced), {}).then(() => 'sent everything', (err: Error) => `stopped: ${err.name}`)

    const line = await waitFor('the donor to cut the stream off', () => logs.lines.find(l => l.includes('code=PAYLOAD_TOO_LARGE')))
    assert.match(line, /task=job-big\/0/)
    assert.match(await sending, /^stopped: /, 'the sender is cut off before it sends 20 MiB')

    const result = await brokerDispatch.dispatch(donor.peerId, task('job-after/2', bytesOf('fine')))
    assert.equal(result.status, 'succeeded')
  })

  it('times out the execute phase at the deadline plus its margin', async () => {
    // a runTask that only ends when the donor stops
    const hang = async (_req: unknown, options: { signal: AbortSignal }): Promise<never> => await new Promise((_resolve, reject) => {
      options.signal.addEventListener('abort', () => { reject(options.signal.reason) }, { once: true })
    })
    const { donor, brokerDispatch } = await pair(hang, { executeMarginMs: 200 })
    const t = { ...task('job-slow/0', bytesOf('zzz')), limits: { deadlineMs: 100 } }
    await assert.rejects(brokerDispatch.dispatch(donor.peerId, t), (err: unknown) => {
      assert.ok(err instanceof DispatchTimeoutError, String(err))
      assert.equal(err.phase, 'execute')
      assert.equal(err.code, 'DISPATCH_TIMEOUT')
      assert.match(err.message, /no progress at execute within 0\.3 s/)
      return true
    })
  })

  /**
   * A donor that reads the task properly and answers with stdout "X", but
   * lets `lie` change the receipt it signs, the key it signs with, or the header.
   */
  async function liar (lie: { body?: (b: ReceiptBody) => ReceiptBody, signer?: PrivateKey, fuelInHeader?: number }): Promise<{ liarNode: Node, broker: Node }> {
    const key = await generateKeyPair('Ed25519')
    const liarNode = await createTestNode({ privateKey: key })
    const broker = await createTestNode({ services: { dispatch: dispatch() } })
    nodes.push(liarNode, broker)
    await liarNode.handle(DISPATCH_PROTOCOL, async (stream: Stream) => {
      const framed = new FramedStream(stream, { maxFrameBytes: 256 * 1024, maxBufferBytes: 4 * 1024 * 1024 })
      const header = decodeDispatchHeader(await framed.readFrame('header', {}))
      if (header.sendsModule) await framed.readPayload(header.moduleSize, 'module', {})
      await framed.readPayload(header.inputSize, 'input', {})
      const stdout = bytesOf('X')
      const stderr = new Uint8Array(0)
      const honest: ReceiptBody = {
        taskId: header.taskId, moduleCid: header.moduleCid, inputCid: header.inputCid, outputCid: outputCid(stdout, stderr), status: 'succeeded', exitCode: 0, fuelUsed: 1, executor: liarNode.peerId.toString()
      }
      const receipt = await signReceipt(lie.signer ?? key, lie.body?.(honest) ?? honest)
      await framed.writeFrame(encodeDispatchResult({
        status: 'succeeded', exitCode: 0, outputCid: honest.outputCid, fuelUsed: lie.fuelInHeader ?? 1, durationMs: 1, stdoutSize: 1, stderrSize: 0, receipt
      }), {})
      await framed.writePayload(stdout, {})
      await framed.writePayload(stderr, {})
      await stream.close()
    }, { runOnLimitedConnection: true })
    await broker.dial(liarNode.getMultiaddrs()[0])
    return { liarNode, broker }
  }

  const lies: Array<[string, () => Promise<Parameters<typeof liar>[0]>, RegExp]> = [
    ['a receipt for other output than the bytes sent', async () => ({ body: (b) => ({ ...b, outputCid: outputCid(bytesOf('Y'), new Uint8Array(0)) }) }), /output received hashes to/],
    ['a receipt signed by another key', async () => ({ signer: await generateKeyPair('Ed25519') }), /signature does not verify/],
    ['a receipt for another task', async () => ({ body: (b) => ({ ...b, taskId: 'job-other/9' }) }), /taskId is job-other\/9, expected job-lie\/0/],
    ['a header that differs from its receipt', async () => ({ fuelInHeader: 0 }), /fuelUsed 0, but its signed receipt says 1/]
  ]
  for (const [what, makeLie, text] of lies) {
    it(`rejects an answer with ${what}`, async () => {
      const { liarNode, broker } = await liar(await makeLie())
      await assert.rejects((broker.services.dispatch as DispatchService).dispatch(liarNode.peerId, task('job-lie/0', bytesOf('abc'))), (err: unknown) => {
        assert.ok(err instanceof ReceiptInvalidError, String(err))
        assert.equal(err.code, 'RECEIPT_INVALID')
        assert.match(err.message, text)
        return true
      })
    })
  }

  it('fails at open-stream when the peer does not run the dispatch protocol', async () => {
    const { broker } = await pair()
    const other = await createTestNode({ services: { dispatch: dispatch() } })
    nodes.push(other)
    await broker.dial(other.getMultiaddrs()[0])
    await assert.rejects((broker.services.dispatch as DispatchService).dispatch(other.peerId, task('job-none/0', bytesOf('x'))), (err: unknown) => {
      assert.ok(err instanceof DispatchFailedError, String(err))
      assert.equal(err.phase, 'open-stream')
      assert.match(err.message, new RegExp(`dispatch to ${other.peerId.toString()} failed during open-stream`))
      return true
    })
  })
})
