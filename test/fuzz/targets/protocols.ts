/**
 * The protocol services over real in-memory streams, from both ends.
 *
 * Answering side (`handler.*`): a service's registered handler gets a stream
 * whose other end writes fuzzed bytes and closes. The handler must never
 * throw, must finish within the bound, and must either answer with a message
 * our decoder reads or end the stream; given a well-formed request it must
 * answer.
 *
 * Asking side (`ask.*`): the service asks a peer whose answer is fuzzed. The
 * call must resolve, or reject with one of the protocol's named errors, well
 * before its own timeout: the peer closed its stream, so waiting is a hang.
 */
import * as dagCbor from '@ipld/dag-cbor'
import fc from 'fast-check'
import { rawCidString } from '../../../src/codec/cid.ts'
import {
  decodeCapacity, decodeCapacityResponse, decodeDispatchHeader, decodeDispatchResult, decodeOfferRequest, decodeOfferResponse, encodeDispatchHeader, encodeDispatchResult
} from '../../../src/codec/messages.ts'
import { outputCid, signReceipt } from '../../../src/codec/receipt.ts'
import { CapacityService } from '../../../src/protocols/capacity/capacity.ts'
import { CAPACITY_PROTOCOL, CAPACITY_TOPIC } from '../../../src/protocols/capacity/constants.ts'
import { DISPATCH_PROTOCOL } from '../../../src/protocols/dispatch/constants.ts'
import { DispatchService } from '../../../src/protocols/dispatch/dispatch.ts'
import { decodeNatInfo, fetchNatInfo, NatInfoService } from '../../../src/protocols/nat-info/nat-info.ts'
import { NAT_INFO_PROTOCOL } from '../../../src/protocols/nat-info/constants.ts'
import { OFFER_PROTOCOL } from '../../../src/protocols/offer/constants.ts'
import { OfferService } from '../../../src/protocols/offer/offer.ts'
import { decodeRelayInfo, fetchRelayInfo, RelayInfoService } from '../../../src/protocols/relay-info/relay-info.ts'
import { RELAY_INFO_PROTOCOL } from '../../../src/protocols/relay-info/constants.ts'
import {
  capacityArb, concat, decoderInput, dispatchHeaderArb, dispatchResultArb, mutatedBytes, natInfoArb, offerRequestArb, offerResponseArb, PEERS,
  relayInfoArb
} from '../arbitraries.ts'
import { expectNamedError, expectWithin, FuzzFinding } from '../harness.ts'
import { CapturingRegistrar, fakeConnection, frame, pair, payloadFrames, sendAndClose, settledWithin, watch } from './streams.ts'
import type { Capacity } from '../../../src/codec/messages.ts'
import type { ExecuteRequest, ExecuteResult } from '../../../src/core/job.ts'
import type { CapacityPubSub, CapacityPubSubEvents, PubSubMessage } from '../../../src/protocols/capacity/capacity.ts'
import type { FuzzTarget, OpenTarget } from '../harness.ts'
import type { Stream, StreamHandler } from '@libp2p/interface'

/** One exchange on in-memory streams: milliseconds; the bound leaves room for a loaded machine. */
export const EXCHANGE_BUDGET_MS = 3_000
/** Timeouts of the services under test: longer than the bound, so a wait that only a timeout ends is a finding. */
export const SERVICE_TIMEOUT_MS = 5_000

export const broker = PEERS[0]
export const noStreams = { openStream: async (): Promise<Stream> => { throw new Error('not used') } }
export const donor = PEERS[1]

export const ASK_CODES = ['PROTOCOL_REQUEST_FAILED', 'PROTOCOL_VIOLATION', 'MALFORMED_MESSAGE', 'PAYLOAD_TOO_LARGE'] as const
const DISPATCH_CODES = ['DISPATCH_FAILED', 'PROTOCOL_VIOLATION', 'MALFORMED_MESSAGE', 'PAYLOAD_TOO_LARGE', 'RECEIPT_INVALID', 'MODULE_NOT_CACHED', 'EXECUTOR_CRASHED'] as const

/**
 * Bytes as a peer would send them: one frame of a (mutated) message,
 * mutations of the framed message, or raw garbage; `validWeight` (against
 * 4, 3 and 1 for those) adds well-formed frames as they are, where the
 * checks of what is answered need many.
 */
export function framedInput (valid: fc.Arbitrary<Record<string, unknown>>, validWeight = 0): fc.Arbitrary<Uint8Array> {
  const framedValid = valid.map(m => frame(dagCbor.encode(m)))
  return fc.oneof(
    ...(validWeight > 0 ? [{ weight: validWeight, arbitrary: framedValid }] : []),
    { weight: 4, arbitrary: decoderInput(valid, (m) => dagCbor.encode(m)).map(frame) },
    { weight: 3, arbitrary: mutatedBytes(framedValid) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 512 }) }
  )
}

// ---- answering side --------------------------------------------------------

interface HandlerCase {
  name: string
  protocol: string
  input: fc.Arbitrary<Uint8Array>
  /** starts the service on the registrar; returns how to stop it */
  start: (registrar: CapturingRegistrar) => Promise<() => Promise<void>>
  /** checks a non-empty answer (throws a FuzzFinding when it is not what the protocol sends) */
  checkAnswer: (answer: Uint8Array, input: Uint8Array) => void
  /** whether this input must be answered (a well-formed request) */
  mustAnswer: (input: Uint8Array) => boolean
}

/** Splits `bytes` into length-prefixed frames; undefined when they are not exactly that. */
export function splitFrames (bytes: Uint8Array): Uint8Array[] | undefined {
  const frames: Uint8Array[] = []
  let at = 0
  while (at < bytes.byteLength) {
    let length = 0
    let shift = 0
    let b: number
    do {
      if (at >= bytes.byteLength || shift > 49) return undefined
      b = bytes[at++]
      // arithmetic, not bit shifts: a shift past 31 bits turns a length negative
      length += (b & 0x7f) * 2 ** shift
      shift += 7
    } while ((b & 0x80) !== 0)
    if (at + length > bytes.byteLength) return undefined
    frames.push(bytes.subarray(at, at + length))
    at += length
  }
  return frames
}

function decodesAs (decode: (bytes: Uint8Array) => unknown, bytes: Uint8Array): boolean {
  try {
    decode(bytes)
    return true
  } catch {
    // not a well-formed message: the handler may refuse it
    return false
  }
}

/** The first frame of `answer` decoded by `decode`, or a finding naming what came back. */
function expectFirstFrame (answer: Uint8Array, decode: (bytes: Uint8Array) => unknown, what: string): void {
  const frames = splitFrames(answer)
  const first = frames?.[0]
  if (first == null) throw new FuzzFinding(`${what}: the answer is not length-prefixed frames (${answer.byteLength} bytes)`)
  try {
    decode(first)
  } catch (err) {
    throw new FuzzFinding(`${what}: the answer does not decode: ${(err as Error).message}`, { cause: err })
  }
}

/** What a handler sent back on a stream whose other end wrote the input and closed, and how that stream ended. */
export interface Answered {
  answer: Uint8Array
  /** the answer's frames; undefined when it is not whole frames */
  frames: Uint8Array[] | undefined
  clean: boolean
  error?: Error
}

/**
 * Runs `handler` on a stream from `asker` whose other end writes `input` and
 * closes: the handler must not throw, and must end its stream within the
 * bound. What came back and how the stream ended.
 */
export async function answerTo (handler: StreamHandler, input: Uint8Array, asker: string, what: string): Promise<Answered> {
  const [outbound, inbound] = await pair()
  const far = watch(outbound)
  const started = performance.now()
  const handled = Promise.resolve(handler(inbound, fakeConnection(asker)))
  await sendAndClose(outbound, input)
  try {
    await handled
  } catch (err) {
    throw new FuzzFinding(`${what}: the handler threw ${(err as Error).name}: ${(err as Error).message}`, { cause: err })
  }
  const end = await settledWithin(far.ended, EXCHANGE_BUDGET_MS)
  expectWithin(started, EXCHANGE_BUDGET_MS, what)
  if (end == null) throw new FuzzFinding(`${what}: the handler returned but left its stream open`)
  const answer = far.received()
  return { answer, frames: splitFrames(answer), ...end }
}

async function runHandler (handler: StreamHandler, input: Uint8Array, c: HandlerCase): Promise<void> {
  const { answer, clean, error } = await answerTo(handler, input, broker.id, c.name)
  if (answer.byteLength > 0) c.checkAnswer(answer, input)
  if (c.mustAnswer(input) && (answer.byteLength === 0 || !clean)) {
    throw new FuzzFinding(`${c.name}: a well-formed request got ${answer.byteLength === 0 ? 'no answer' : 'an answer on a stream that was then reset'} (${error?.message ?? 'closed'})`)
  }
}

function handlerTarget (c: HandlerCase, weight: number): FuzzTarget {
  return {
    name: `handler.${c.name}`,
    weight,
    open: async (): Promise<OpenTarget> => {
      const registrar = new CapturingRegistrar()
      const stop = await c.start(registrar)
      const handler = registrar.handler(c.protocol)
      const property = fc.asyncProperty(c.input, async (input) => { await runHandler(handler, input, c) })
      return { property, close: stop }
    }
  }
}

/** The donor's executor: echoes its input on stdout at once (the executor has fuzz targets of its own). */
async function echoTask (req: ExecuteRequest): Promise<ExecuteResult> {
  return { status: 'succeeded', exitCode: 0, stdout: req.input, stderr: new Uint8Array(0), fuelUsed: req.input.byteLength, durationMs: 0 }
}

/** A whole well-formed dispatch from a broker: header, module (when sent), input, in frames of a random size. */
const dispatchSession = fc.record({
  header: dispatchHeaderArb,
  module: fc.uint8Array({ maxLength: 600 }),
  input: fc.uint8Array({ maxLength: 600 }),
  frameBytes: fc.integer({ min: 1, max: 300 })
}).map(({ header, module, input, frameBytes }) => {
  const h = { ...header, moduleCid: rawCidString(module), inputCid: rawCidString(input), moduleSize: header.sendsModule ? module.byteLength : 0, inputSize: input.byteLength }
  const parts = [frame(encodeDispatchHeader(h as Parameters<typeof encodeDispatchHeader>[0]))]
  if (h.sendsModule) parts.push(payloadFrames(module, frameBytes))
  parts.push(payloadFrames(input, frameBytes))
  return concat(...parts)
})

/** Whether `input` is exactly a well-formed dispatch (header, then the payloads it announces). */
function isWellFormedDispatch (input: Uint8Array): boolean {
  const frames = splitFrames(input)
  if (frames == null || frames.length === 0) return false
  const header = frames[0]
  try {
    const h = decodeDispatchHeader(header)
    const payloads = frames.slice(1)
    const ends = payloads.flatMap((f, i) => f.byteLength === 0 ? [i] : [])
    const expected = h.sendsModule ? [h.moduleSize, h.inputSize] : [h.inputSize]
    if (ends.length !== expected.length || ends[ends.length - 1] !== payloads.length - 1) return false
    let from = 0
    return expected.every((size, i) => {
      const total = payloads.slice(from, ends[i]).reduce((s, f) => s + f.byteLength, 0)
      from = ends[i] + 1
      return total === size
    })
  } catch {
    // the header does not decode: not well-formed
    return false
  }
}

const handlerCases: Array<[HandlerCase, number]> = [
  [{
    name: 'offer',
    protocol: OFFER_PROTOCOL,
    input: framedInput(offerRequestArb),
    start: async (registrar) => {
      const service = new OfferService({ registrar, connectionManager: noStreams }, {
        decideOffer: () => ({ accept: true, hasModule: false, freeSlots: 1 })
      })
      await service.start()
      return async () => { await service.stop() }
    },
    checkAnswer: (answer) => { expectFirstFrame(answer, decodeOfferResponse, 'offer answer') },
    mustAnswer: (input) => {
      const frames = splitFrames(input)
      return frames?.length === 1 && decodesAs(decodeOfferRequest, frames[0])
    }
  }, 3],
  [{
    name: 'dispatch',
    protocol: DISPATCH_PROTOCOL,
    input: fc.oneof(
      { weight: 2, arbitrary: dispatchSession },
      { weight: 4, arbitrary: mutatedBytes(dispatchSession) },
      { weight: 2, arbitrary: framedInput(dispatchHeaderArb) },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 1024 }) }
    ),
    start: async (registrar) => {
      const service = new DispatchService({
        peerId: peerIdOf(donor.id), privateKey: donor.key, registrar, connectionManager: noStreams
      }, { runTask: echoTask, stallTimeoutMs: SERVICE_TIMEOUT_MS })
      await service.start()
      return async () => { await service.stop() }
    },
    checkAnswer: (answer) => { expectFirstFrame(answer, decodeDispatchResult, 'dispatch answer') },
    mustAnswer: isWellFormedDispatch
  }, 3],
  ...singleAnswerCases()
]

function singleAnswerCases (): Array<[HandlerCase, number]> {
  const garbage = fc.uint8Array({ maxLength: 256 })
  const always = (): boolean => true
  return [
    [{
      name: 'capacity',
      protocol: CAPACITY_PROTOCOL,
      input: garbage,
      start: async (registrar) => {
        const capacity = { acceptsJobs: true, slots: 2, freeSlots: 1, maxLimits: { deadlineMs: 1000, memoryBytes: 1, outputBytes: 1, payloadBytes: 1, fuel: 1, maxCallDepth: 1 }, addrs: [] }
        const service = new CapacityService({ peerId: peerIdOf(donor.id), registrar, connectionManager: noStreams }, { getCapacity: () => capacity, queryOnConnect: false })
        await service.start()
        return async () => { await service.stop() }
      },
      checkAnswer: (answer) => { expectFirstFrame(answer, decodeCapacityResponse, 'capacity answer') },
      mustAnswer: always
    }, 1],
    [{
      name: 'nat-info',
      protocol: NAT_INFO_PROTOCOL,
      input: garbage,
      start: async (registrar) => {
        const service = new NatInfoService({ registrar }, { getInfo: () => ({ mapping: 'endpoint-independent', filtering: 'unknown', udp: 'yes', webrtc: true }) })
        await service.start()
        return async () => { await service.stop() }
      },
      checkAnswer: (answer) => { expectFirstFrame(answer, decodeNatInfo, 'NAT info answer') },
      mustAnswer: always
    }, 1],
    [{
      name: 'relay-info',
      protocol: RELAY_INFO_PROTOCOL,
      input: garbage,
      start: async (registrar) => {
        const service = new RelayInfoService({ registrar }, { getInfo: () => ({ tls: [] }) })
        await service.start()
        return async () => { await service.stop() }
      },
      checkAnswer: (answer) => { expectFirstFrame(answer, decodeRelayInfo, 'relay info answer') },
      mustAnswer: always
    }, 1]
  ]
}

// ---- asking side -----------------------------------------------------------

interface AskCase {
  name: string
  /** what the fuzzed peer answers */
  answer: fc.Arbitrary<Uint8Array>
  codes: readonly string[]
  /** asks over `connection`; resolves with anything */
  ask: (connection: ReturnType<typeof fakeConnection>) => Promise<unknown>
  close?: () => Promise<void>
}

async function runAsk (c: AskCase, answer: Uint8Array): Promise<void> {
  let peerSide: Promise<void> | undefined
  const connection = fakeConnection(donor.id, async () => {
    const [outbound, inbound] = await pair()
    peerSide = sendAndClose(inbound, answer)
    return outbound
  })
  const started = performance.now()
  try {
    await c.ask(connection)
  } catch (err) {
    // a stream the harness could not make would pass as a request failure and test nothing
    if (peerSide == null) throw new FuzzFinding(`ask ${c.name}: no stream was opened (${(err as Error).message})`, { cause: err })
    expectNamedError(err, c.codes, `ask ${c.name}`)
  }
  expectWithin(started, EXCHANGE_BUDGET_MS, `ask ${c.name}`)
  await peerSide
}

function askTarget (open: () => Promise<AskCase>, name: string, weight: number): FuzzTarget {
  return {
    name: `ask.${name}`,
    weight,
    open: async (): Promise<OpenTarget> => {
      const c = await open()
      return { property: fc.asyncProperty(c.answer, async (answer) => { await runAsk(c, answer) }), close: c.close ?? (async () => {}) }
    }
  }
}

function peerIdOf (id: string): ReturnType<typeof fakeConnection>['remotePeer'] {
  return fakeConnection(id).remotePeer
}

/** A donor's answer to one fixed task, signed with the donor's key: the base the dispatch answers mutate. */
async function signedDispatchAnswer (task: { taskId: string, moduleCid: string, inputCid: string }): Promise<fc.Arbitrary<Uint8Array>> {
  const stdout = new TextEncoder().encode('HELLO')
  const stderr = new Uint8Array(0)
  const receipt = await signReceipt(donor.key, {
    ...task, outputCid: outputCid(stdout, stderr), status: 'succeeded', exitCode: 0, fuelUsed: 5, executor: donor.id
  })
  const header = encodeDispatchResult({ status: 'succeeded', exitCode: 0, outputCid: outputCid(stdout, stderr), fuelUsed: 5, durationMs: 1, stdoutSize: 5, stderrSize: 0, receipt })
  const valid = concat(frame(header), payloadFrames(stdout, 2), payloadFrames(stderr, 2))
  return fc.oneof(
    { weight: 1, arbitrary: fc.constant(valid) },
    { weight: 4, arbitrary: mutatedBytes(fc.constant(valid)) },
    { weight: 3, arbitrary: framedInput(dispatchResultArb) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 512 }) }
  )
}

const askTargets: FuzzTarget[] = [
  askTarget(async () => {
    const service = new OfferService({ registrar: new CapturingRegistrar(), connectionManager: noStreams }, { timeoutMs: SERVICE_TIMEOUT_MS })
    const request = { jobId: 'job-f', taskId: 'job-f/0', moduleCid: rawCidString(new Uint8Array(1)), moduleSize: 1, inputSize: 0, limits: {} }
    return { name: 'offer', answer: framedInput(offerResponseArb), codes: ASK_CODES, ask: async (conn) => await service.offer(conn, request) }
  }, 'offer', 3),
  askTarget(async () => {
    const service = new DispatchService({ peerId: peerIdOf(broker.id), privateKey: broker.key, registrar: new CapturingRegistrar(), connectionManager: noStreams }, {
      openStreamTimeoutMs: SERVICE_TIMEOUT_MS, stallTimeoutMs: SERVICE_TIMEOUT_MS, executeMarginMs: SERVICE_TIMEOUT_MS
    })
    const module = new Uint8Array([0, 97, 115, 109])
    const input = new TextEncoder().encode('hello')
    const task = { jobId: 'job-f', taskId: 'job-f/0', module, moduleCid: rawCidString(module), input, inputCid: rawCidString(input), args: [], env: [], limits: { deadlineMs: 1 } }
    const answer = await signedDispatchAnswer(task)
    return { name: 'dispatch', answer, codes: DISPATCH_CODES, ask: async (conn) => await service.dispatch(conn, task) }
  }, 'dispatch', 3),
  askTarget(async () => {
    const service = new CapacityService({ peerId: peerIdOf(broker.id), registrar: new CapturingRegistrar(), connectionManager: noStreams }, { queryTimeoutMs: SERVICE_TIMEOUT_MS, queryOnConnect: false })
    await service.start()
    const valid = fc.oneof(capacityArb.map(capacity => ({ capacity: { ...capacity, peerId: donor.id } })), fc.constant({ capacity: null }))
    return {
      name: 'capacity', answer: framedInput(valid), codes: ASK_CODES, ask: async (conn) => await service.query(conn), close: async () => { await service.stop() }
    }
  }, 'capacity', 2),
  askTarget(async () => ({
    name: 'nat-info', answer: framedInput(natInfoArb), codes: ASK_CODES, ask: async (conn) => await fetchNatInfo(conn, { timeoutMs: SERVICE_TIMEOUT_MS })
  }), 'nat-info', 1),
  askTarget(async () => ({
    name: 'relay-info', answer: framedInput(relayInfoArb), codes: ASK_CODES, ask: async (conn) => await fetchRelayInfo(conn, { timeoutMs: SERVICE_TIMEOUT_MS })
  }), 'relay-info', 1)
]

// ---- gossip ----------------------------------------------------------------

/** The part of gossipsub the capacity service uses, with a way to deliver a message to it. */
class FakePubSub implements CapacityPubSub {
  private listener: ((evt: CustomEvent<PubSubMessage>) => void) | undefined
  subscribe (): void {}
  unsubscribe (): void {}
  async publish (): Promise<unknown> { return undefined }
  addEventListener <K extends keyof CapacityPubSubEvents>(type: K, listener: (evt: CapacityPubSubEvents[K]) => void): void {
    if (type === 'message') this.listener = listener as (evt: CustomEvent<PubSubMessage>) => void
  }

  removeEventListener (): void { this.listener = undefined }
  deliver (msg: PubSubMessage): void { this.listener?.(new CustomEvent('message', { detail: msg })) }
}

/**
 * Capacity announcements as gossip delivers them, signed by one of the
 * fixed peers: the service must never throw, and must keep for that peer
 * either nothing or exactly what the message decodes to.
 */
const gossipTarget: FuzzTarget = {
  name: 'gossip.capacity',
  weight: 4,
  open: async (): Promise<OpenTarget> => {
    const pubsub = new FakePubSub()
    const service = new CapacityService({ peerId: peerIdOf(broker.id), registrar: new CapturingRegistrar(), connectionManager: noStreams, pubsub }, { queryOnConnect: false })
    await service.start()
    service.afterStart()
    const from = donor.id
    // mostly about the sender, sometimes about another peer (refused: gossip is relayed, the signer must be the donor)
    const valid = fc.tuple(capacityArb, fc.constantFrom(from, from, broker.id)).map(([c, peerId]) => ({ ...c, peerId }))
    const property = fc.property(decoderInput(valid, (m) => dagCbor.encode(m)), (data) => {
      const before = service.capacityOf(from)
      const started = performance.now()
      pubsub.deliver({ type: 'signed', from: peerIdOf(from), topic: CAPACITY_TOPIC, data })
      expectWithin(started, EXCHANGE_BUDGET_MS, 'capacity gossip')
      let decoded: Capacity | undefined
      try {
        decoded = decodeCapacity(data)
      } catch {
        // refused: the table must not have changed
      }
      const kept = service.capacityOf(from)
      const expected = decoded != null && decoded.peerId === from ? decoded : before
      if (JSON.stringify(kept) !== JSON.stringify(expected)) throw new FuzzFinding('capacity gossip: the table holds something other than the last valid announcement')
    })
    return { property, close: async () => { service.beforeStop(); await service.stop() } }
  }
}

export const protocolTargets: FuzzTarget[] = [
  ...handlerCases.map(([c, weight]) => handlerTarget(c, weight)),
  ...askTargets,
  gossipTarget
]
