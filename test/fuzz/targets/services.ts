/**
 * Fetch, cancel and observed-address over real in-memory streams, from both
 * ends, as protocols.ts does for the other services.
 *
 * Answering side (`handler.*`): the registered handler gets a stream whose
 * other end writes fuzzed bytes and closes. It must never throw, must end
 * the stream within the bound, and must answer a request that decodes with
 * exactly what the service decides for it: for fetch, the bytes asked of a
 * blob granted to the asking peer, and never a byte of one that is not.
 *
 * Asking side (`ask.*`): the service asks a peer whose answers are fuzzed.
 * The call must resolve with what the answer says, or reject with one of the
 * protocol's named errors, well before its own timeouts (the peer closed its
 * stream, so waiting is a hang), and must close or abort every stream it
 * opened. A fetch that resolves returns the blob exactly, and its content
 * store afterwards holds the blob exactly or nothing, with no part file left.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { isIP } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as dagCbor from '@ipld/dag-cbor'
import fc from 'fast-check'
import { varint } from 'multiformats'
import { base58btc } from 'multiformats/bases/base58'
import { decodeCancelRequest, decodeCancelResponse } from '../../../src/codec/cancel.ts'
import { parseCid, rawCidString } from '../../../src/codec/cid.ts'
import { MalformedMessageError } from '../../../src/codec/errors.ts'
import { MAX_PAYLOAD_WIRE_BYTES } from '../../../src/codec/messages.ts'
import { WorldComputeError } from '../../../src/core/errors.ts'
import { ContentStore } from '../../../src/donor/content-store.ts'
import { CancelService } from '../../../src/protocols/cancel/cancel.ts'
import { CANCEL_LIMITS, CANCEL_PROTOCOL } from '../../../src/protocols/cancel/constants.ts'
import { framed } from '../../../src/protocols/exchange.ts'
import { FETCH_LIMITS, FETCH_PROTOCOL } from '../../../src/protocols/fetch/constants.ts'
import { FetchService } from '../../../src/protocols/fetch/fetch.ts'
import { decodeFetchRequest, decodeFetchResponse, encodeFetchResponse, FETCH_REFUSALS } from '../../../src/protocols/fetch/messages.ts'
import { OBSERVED_ADDR_LIMITS, OBSERVED_ADDR_PROTOCOL } from '../../../src/protocols/observed-addr/constants.ts'
import { decodeObservedAddrAnswer, decodeObservedAddrRequest, fetchObservedAddr, ObservedAddrService } from '../../../src/protocols/observed-addr/observed-addr.ts'
import { concat, decoderInput, mutatedBytes, PEERS, rawCidArb, wireId } from '../arbitraries.ts'
import { bugInChain, expectNamedError, expectWithin, FuzzFinding } from '../harness.ts'
import { answerTo, ASK_CODES, broker, donor, EXCHANGE_BUDGET_MS, framedInput, noStreams, SERVICE_TIMEOUT_MS, type Answered } from './protocols.ts'
import { CapturingRegistrar, fakeConnection, frame, pair, payloadFrames, sendAndClose, settledWithin } from './streams.ts'
import type { CancelRequest, CancelResponse } from '../../../src/codec/cancel.ts'
import type { StreamLimits } from '../../../src/protocols/exchange.ts'
import type { OffsetPayloadSource } from '../../../src/protocols/fetch/fetch.ts'
import type { FetchRequest } from '../../../src/protocols/fetch/messages.ts'
import type { FuzzTarget, OpenTarget } from '../harness.ts'
import type { Connection, NewStreamOptions, Stream, StreamHandler, StreamHandlerOptions } from '@libp2p/interface'

const stranger = PEERS[2]

// ---- shared ----------------------------------------------------------------

/**
 * The first frame of `bytes` as the framing of these protocols reads it
 * (framing.ts): a length prefix of at most as many bytes as the largest
 * frame's, a length within the frame limit, all of it there; else undefined.
 */
function firstFrame (bytes: Uint8Array, limits: StreamLimits): Uint8Array | undefined {
  const maxPrefixBytes = varint.encodingLength(limits.maxFrameBytes)
  let length = 0
  for (let i = 0; i < Math.min(bytes.byteLength, maxPrefixBytes); i++) {
    length += (bytes[i] & 0x7f) * 2 ** (7 * i)
    if ((bytes[i] & 0x80) !== 0) continue
    const end = i + 1 + length
    return length <= limits.maxFrameBytes && end <= bytes.byteLength ? bytes.subarray(i + 1, end) : undefined
  }
  return undefined
}

/** The request the handler reads off `input`: its first frame decoded, or undefined when it does not decode. */
function requestIn<T> (input: Uint8Array, limits: StreamLimits, decode: (bytes: Uint8Array) => T): T | undefined {
  const first = firstFrame(input, limits)
  if (first == null) return undefined
  try {
    return decode(first)
  } catch (err) {
    // the handler refuses it too; a decoder that fails other than by its named error is the codec targets' finding
    if (err instanceof WorldComputeError) return undefined
    throw new FuzzFinding(`the decoder threw ${(err as Error).name}: ${(err as Error).message}`, { cause: err })
  }
}

function sameBytes (a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b)
}

/** Bytes that change from each position to the next (for an odd seed): a slice off by one byte does not match. */
function pattern (size: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: size }, (_, i) => (i * seed + (i >> 8)) & 0xff)
}

/** Keeps the handler options too: which protocols are answered on relayed connections is part of the contract. */
class OptionsRegistrar extends CapturingRegistrar {
  readonly options = new Map<string, StreamHandlerOptions | undefined>()

  async handle (protocol: string, handler: StreamHandler, options?: StreamHandlerOptions): Promise<void> {
    this.options.set(protocol, options)
    await super.handle(protocol, handler)
  }
}

// ---- answering side --------------------------------------------------------

/** A request that decodes must get exactly one frame back, on a stream closed cleanly. */
function expectOneFrame (a: Answered, what: string): Uint8Array {
  if (a.answer.byteLength === 0 || !a.clean) {
    throw new FuzzFinding(`${what}: a well-formed request got ${a.answer.byteLength === 0 ? 'no answer' : 'an answer on a stream that was then reset'} (${a.error?.message ?? 'closed'})`)
  }
  if (a.frames?.length !== 1) throw new FuzzFinding(`${what}: the answer is ${a.frames == null ? 'not whole frames' : `${a.frames.length} frames`} (${a.answer.byteLength} bytes), not one message`)
  return a.frames[0]
}

function decodeOrFinding<T> (decode: (bytes: Uint8Array) => T, bytes: Uint8Array, what: string): T {
  try {
    return decode(bytes)
  } catch (err) {
    throw new FuzzFinding(`${what}: the answer does not decode: ${(err as Error).message}`, { cause: err })
  }
}

function expectEqual (got: unknown, expected: unknown, what: string): void {
  if (JSON.stringify(got) !== JSON.stringify(expected)) throw new FuzzFinding(`${what}: got ${JSON.stringify(got)}, expected ${JSON.stringify(expected)}`)
}

function handlerTarget (name: string, weight: number, open: () => Promise<OpenTarget>): FuzzTarget {
  return { name: `handler.${name}`, weight, open }
}

// fetch: the broker serves two blobs granted to the donor (one from memory, one from a file-like source read from an offset) and keeps a third for another peer

const SERVED = pattern(5000, 7)
const SOURCED = pattern(3000, 13)
const NOT_OURS = pattern(4000, 29)
const SERVED_CID = rawCidString(SERVED)
const SOURCED_CID = rawCidString(SOURCED)
const NOT_OURS_CID = rawCidString(NOT_OURS)
/** what the donor may fetch, by canonical CID */
const GRANTED = new Map([[SERVED_CID, SERVED], [SOURCED_CID, SOURCED]])

/** A blob file of the broker's store: read from the start, or from an offset without reading what comes before, in chunks that straddle the frames. */
function fileSource (blob: Uint8Array, chunkBytes: number): OffsetPayloadSource {
  const from = async function * (offset: number): AsyncIterable<Uint8Array> {
    for (let at = offset; at < blob.byteLength; at += chunkBytes) yield blob.subarray(at, Math.min(at + chunkBytes, blob.byteLength))
  }
  return { byteLength: blob.byteLength, chunks: () => from(0), chunksFrom: (offset) => from(offset) }
}

const cidChoice = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(SERVED_CID, SOURCED_CID, NOT_OURS_CID) },
  // the same CIDs in base58btc: the broker keys its grants by the canonical CID
  { weight: 1, arbitrary: fc.constantFrom(SERVED_CID, NOT_OURS_CID).map(c => parseCid(c)?.toString(base58btc) ?? c) },
  { weight: 2, arbitrary: rawCidArb }
)
const offsetChoice = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 6000 }) },
  { weight: 2, arbitrary: fc.constantFrom(0, 1, SOURCED.byteLength, SOURCED.byteLength + 1, NOT_OURS.byteLength, SERVED.byteLength, SERVED.byteLength + 1) },
  { weight: 1, arbitrary: fc.constantFrom(2 ** 32, MAX_PAYLOAD_WIRE_BYTES) }
)
const lengthChoice = fc.option(fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 1, max: 6000 }) },
  { weight: 1, arbitrary: fc.constantFrom(1, 2 ** 32, MAX_PAYLOAD_WIRE_BYTES) }
), { nil: undefined })
const fetchRequestArb: fc.Arbitrary<Record<string, unknown>> = fc.record({ cid: cidChoice, offset: offsetChoice, length: lengthChoice })
  .map(({ length, ...rest }) => length != null ? { ...rest, length } : rest)

const handlerFetch = handlerTarget('fetch', 3, async () => {
  const registrar = new CapturingRegistrar()
  const service = new FetchService({ registrar }, { serve: true, stallTimeoutMs: SERVICE_TIMEOUT_MS })
  await service.start()
  service.grant(donor.id, SERVED_CID, SERVED)
  service.grant(donor.id, SOURCED_CID, fileSource(SOURCED, 700))
  service.grant(stranger.id, NOT_OURS_CID, NOT_OURS)
  const handler = registrar.handler(FETCH_PROTOCOL)
  const what = 'fetch answer'
  const property = fc.asyncProperty(framedInput(fetchRequestArb, 8), async (input) => {
    const a = await answerTo(handler, input, donor.id, what)
    const req = requestIn(input, FETCH_LIMITS, decodeFetchRequest)
    if (req == null) {
      // the handler reads one request; without one it has nothing to serve
      if (a.answer.byteLength > 0) throw new FuzzFinding(`${what}: ${a.answer.byteLength} bytes came back for an input that is no fetch request`)
      return
    }
    const blob = GRANTED.get(parseCid(req.cid)?.toString() ?? req.cid)
    if (blob == null || req.offset > blob.byteLength) {
      // a refusal is one frame: anything after it would be bytes of a blob this peer may not have
      if (blob == null && (a.frames?.length ?? 0) > 1) {
        throw new FuzzFinding(`${what}: ${req.cid}, not granted to ${donor.id}, was served (${a.frames?.length} frames, ${a.answer.byteLength} bytes)`)
      }
      const res = decodeOrFinding(decodeFetchResponse, expectOneFrame(a, what), what)
      const refusal = blob == null ? 'not-granted' : 'bad-offset'
      if (!('refused' in res) || res.refused !== refusal) throw new FuzzFinding(`${what}: ${req.cid} at ${req.offset} got ${JSON.stringify(res)}, not a refusal (${refusal})`)
      return
    }
    expectServed(a, req, blob, what)
  })
  return { property, close: async () => { await service.stop() } }
})

/** `{ size }`, then the bytes asked as payload frames closed by the empty frame, on a stream closed cleanly. */
function expectServed (a: Answered, req: FetchRequest, blob: Uint8Array, what: string): void {
  if (a.answer.byteLength === 0 || !a.clean) throw new FuzzFinding(`${what}: a fetch of a granted blob got ${a.answer.byteLength === 0 ? 'no answer' : 'an answer on a stream that was then reset'} (${a.error?.message ?? 'closed'})`)
  const frames = a.frames
  if (frames == null || frames.length < 2) throw new FuzzFinding(`${what}: the answer is not a response and a payload (${a.answer.byteLength} bytes)`)
  const res = decodeOrFinding(decodeFetchResponse, frames[0], what)
  if (!('size' in res) || res.size !== blob.byteLength) throw new FuzzFinding(`${what}: a granted blob of ${blob.byteLength} bytes got ${JSON.stringify(res)}`)
  const payload = frames.slice(1)
  if (payload[payload.length - 1].byteLength !== 0 || payload.slice(0, -1).some(f => f.byteLength === 0)) throw new FuzzFinding(`${what}: the payload is not closed by one empty frame at its end`)
  const expected = blob.subarray(req.offset, Math.min(blob.byteLength, req.offset + (req.length ?? blob.byteLength)))
  const got = concat(...payload)
  if (!sameBytes(got, expected)) throw new FuzzFinding(`${what}: ${req.cid} from ${req.offset}${req.length != null ? ` for ${req.length}` : ''} served ${got.byteLength} bytes that are not bytes ${req.offset}–${req.offset + expected.byteLength} of the blob`)
}

// cancel: the donor stops what its broker names; the runner's answer is recorded, and a runner that throws is answered as nothing stopped

/** A task ID the runner throws on: the service must answer "unknown" for all, not fail the stream. */
const THROWS = 'job-x/throws'

function runnerAnswer (req: CancelRequest): CancelResponse {
  if (req.taskIds.includes(THROWS)) return { stopped: [], dropped: [], unknown: req.taskIds }
  return { stopped: req.taskIds.filter((_, i) => i % 3 === 0), dropped: req.taskIds.filter((_, i) => i % 3 === 1), unknown: req.taskIds.filter((_, i) => i % 3 === 2) }
}

const taskIdArb = fc.oneof({ weight: 8, arbitrary: wireId }, { weight: 1, arbitrary: fc.constant(THROWS) })
const cancelRequestArb: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ taskIds: fc.array(taskIdArb, { maxLength: 8 }) }) },
  // at and over the cap of 256 IDs
  { weight: 1, arbitrary: fc.record({ taskIds: fc.array(wireId, { minLength: 254, maxLength: 258 }) }) }
)

const handlerCancel = handlerTarget('cancel', 2, async () => {
  const registrar = new CapturingRegistrar()
  const calls: Array<{ req: CancelRequest, peer: string }> = []
  const service = new CancelService({ registrar, connectionManager: noStreams }, {
    cancelTasks: (req, { peer }) => {
      calls.push({ req, peer })
      if (req.taskIds.includes(THROWS)) throw new Error('the runner broke (fuzz)')
      return runnerAnswer(req)
    }
  })
  await service.start()
  const handler = registrar.handler(CANCEL_PROTOCOL)
  const what = 'cancel answer'
  const property = fc.asyncProperty(framedInput(cancelRequestArb, 4), async (input) => {
    calls.length = 0
    const a = await answerTo(handler, input, broker.id, what)
    const req = requestIn(input, CANCEL_LIMITS, decodeCancelRequest)
    if (req == null) {
      expectIgnored(what, calls[0]?.req, a.answer.byteLength)
      return
    }
    expectEqual(calls, [{ req, peer: broker.id }], `${what}: the runner's calls`)
    const res = decodeOrFinding(decodeCancelResponse, expectOneFrame(a, what), what)
    expectEqual(res, runnerAnswer(req), what)
  })
  return { property, close: async () => { await service.stop() } }
})

/** An input that is no request: the service neither acted on it (`acted`: what it did with it, if anything) nor answered. */
function expectIgnored (what: string, acted: unknown, answerBytes: number): void {
  if (acted !== undefined) throw new FuzzFinding(`${what}: acted on an input that is no request, with ${JSON.stringify(acted)}`)
  if (answerBytes > 0) throw new FuzzFinding(`${what}: ${answerBytes} bytes came back for an input that is no request`)
}

// observed-addr: the relay answers with the address it sees a reservation holder at, and only with an IP address

const OBSERVED = new Map<string, string>([[broker.id, '198.51.100.7'], [donor.id, '2001:db8::7'], [stranger.id, 'relay.example']])
const observedRequestArb: fc.Arbitrary<Record<string, unknown>> = fc.record({
  v: fc.constant(1),
  peer: fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...PEERS.map(p => p.id)) }, { weight: 1, arbitrary: fc.string({ maxLength: 140 }) })
})

const handlerObservedAddr = handlerTarget('observed-addr', 1, async () => {
  const registrar = new OptionsRegistrar()
  const looked: string[] = []
  const service = new ObservedAddrService({ registrar }, { lookup: (peer) => { looked.push(peer); return OBSERVED.get(peer) } })
  await service.start()
  // the answer is worth what Noise authenticated: never given over a relayed connection
  if (registrar.options.get(OBSERVED_ADDR_PROTOCOL)?.runOnLimitedConnection !== false) {
    await service.stop()
    throw new FuzzFinding('observed-addr: the handler is registered for relayed (limited) connections too')
  }
  const handler = registrar.handler(OBSERVED_ADDR_PROTOCOL)
  const what = 'observed-addr answer'
  const property = fc.asyncProperty(framedInput(observedRequestArb, 4), async (input) => {
    looked.length = 0
    const a = await answerTo(handler, input, broker.id, what)
    const req = requestIn(input, OBSERVED_ADDR_LIMITS, decodeObservedAddrRequest)
    if (req == null) {
      expectIgnored(what, looked[0], a.answer.byteLength)
      return
    }
    expectEqual(looked, [req.peer], `${what}: the lookups`)
    const res = decodeOrFinding(decodeObservedAddrAnswer, expectOneFrame(a, what), what)
    const ip = OBSERVED.get(req.peer)
    expectEqual(res, ip != null && isIP(ip) !== 0 ? { ip } : {}, what)
  })
  return { property, close: async () => { await service.stop() } }
})

// ---- asking side -----------------------------------------------------------

/**
 * A connection to a fuzzed peer: each stream opened on it gets a fresh pair
 * whose far end `respond` drives (by the stream's index). Its status is
 * 'open', so a fetch may resume on it.
 */
interface FuzzedPeer {
  connection: Connection
  /** how many streams were opened */
  opened: () => number
  /** the options of each stream opened */
  options: Array<NewStreamOptions | undefined>
  /**
   * Waits for the peer's side of every stream: its answer sent and the
   * stream closed or aborted by the asker. Throws what the peer side found,
   * or a finding when a stream is still open after the bound.
   */
  settled: (what: string) => Promise<void>
}

function fuzzedPeer (remote: string, respond: (stream: Stream, index: number) => Promise<void>): FuzzedPeer {
  /** each stream's peer side: undefined once done, or what it found (kept as a value: the ask may fail before anyone awaits it) */
  const sides: Array<Promise<unknown>> = []
  const options: Array<NewStreamOptions | undefined> = []
  const open = async (_protocol: string, opts?: NewStreamOptions): Promise<Stream> => {
    const [outbound, inbound] = await pair()
    options.push(opts)
    const ended = watchEnd(inbound)
    const index = sides.length
    sides.push(respond(inbound, index).then(async () => { await ended }).then(() => undefined, (err: unknown) => err ?? new Error('a peer side failed with nothing')))
    return outbound
  }
  const connection = { ...fakeConnection(remote), status: 'open', newStream: open } as Partial<Connection> as Connection
  return {
    connection,
    opened: () => sides.length,
    options,
    settled: async (what) => {
      const outcomes = await settledWithin(Promise.all(sides), EXCHANGE_BUDGET_MS)
      if (outcomes == null) throw new FuzzFinding(`${what}: a stream it opened was neither closed nor aborted`)
      // what a peer side found (a request it could not read, or one it did not expect)
      const found = outcomes.find(o => o !== undefined)
      if (found !== undefined) throw found
    }
  }
}

/** Resolves when `stream` ends, however it ends. */
function watchEnd (stream: Stream): Promise<void> {
  return new Promise(resolve => { stream.addEventListener('close', () => { resolve() }, { once: true }) })
}

/** A peer that answers every stream with `answer` at once, then closes its side. */
async function askOnce (answer: Uint8Array, what: string, ask: (connection: Connection) => Promise<unknown>, check: (result: unknown) => void, codes: readonly string[] = ASK_CODES): Promise<FuzzedPeer> {
  const peer = fuzzedPeer(donor.id, async (stream) => { await sendAndClose(stream, answer) })
  const started = performance.now()
  let result: { value: unknown } | undefined
  try {
    result = { value: await ask(peer.connection) }
  } catch (err) {
    // a stream the harness could not make would pass as a request failure and test nothing
    if (peer.opened() === 0) throw new FuzzFinding(`${what}: no stream was opened (${(err as Error).message})`, { cause: err })
    expectNamedError(err, codes, what)
  }
  expectWithin(started, EXCHANGE_BUDGET_MS, what)
  await peer.settled(what)
  if (result != null) check(result.value)
  return peer
}

function askTarget (name: string, weight: number, open: () => Promise<OpenTarget>): FuzzTarget {
  return { name: `ask.${name}`, weight, open }
}

// the asked IDs often, so that answers about them (and about them twice) are common, not only strangers
const cancelIds = fc.array(fc.oneof({ weight: 2, arbitrary: fc.constantFrom('job-c/0', 'job-c/1', 'job-c/2') }, { weight: 1, arbitrary: wireId }), { maxLength: 6 })
const cancelResponseArb: fc.Arbitrary<Record<string, unknown>> = fc.record({ stopped: cancelIds, dropped: cancelIds, unknown: cancelIds })

/** What the broker's side keeps of a cancel answer: the IDs it asked about, each in the first list naming it. */
function askedOnly (res: { stopped: string[], dropped: string[], unknown: string[] }, asked: readonly string[]): { stopped: string[], dropped: string[], unknown: string[] } {
  const open = new Set(asked)
  const keep = (ids: string[]): string[] => ids.filter(id => open.delete(id))
  const stopped = keep(res.stopped)
  const dropped = keep(res.dropped)
  return { stopped, dropped, unknown: keep(res.unknown) }
}

const askCancel = askTarget('cancel', 2, async () => {
  const service = new CancelService({ registrar: new CapturingRegistrar(), connectionManager: noStreams }, { timeoutMs: SERVICE_TIMEOUT_MS })
  const request = { taskIds: ['job-c/0', 'job-c/1', 'job-c/2'] }
  const property = fc.asyncProperty(framedInput(cancelResponseArb, 2), async (answer) => {
    await askOnce(answer, 'ask cancel', async (conn) => await service.cancel(conn, request), (got) => {
      // resolved: with what the peer's one frame says, as our decoder reads it, about the tasks asked (each once, first list wins)
      const first = firstFrame(answer, CANCEL_LIMITS)
      expectEqual(got, first != null ? askedOnly(decodeOrFinding(decodeCancelResponse, first, 'ask cancel'), request.taskIds) : undefined, 'ask cancel resolved')
    })
  })
  return { property, close: async () => {} }
})

const observedAnswerArb: fc.Arbitrary<Record<string, unknown>> = fc.record({
  v: fc.constant(1),
  ip: fc.constantFrom('198.51.100.7', '::1', '2001:db8::7', '::ffff:10.0.0.1', 'fe80::1%eth0', '300.1.1.1', '1.2.3', '', 'relay.example')
}, { requiredKeys: ['v'] })

const askObservedAddr = askTarget('observed-addr', 1, async () => {
  const property = fc.asyncProperty(framedInput(observedAnswerArb, 2), async (answer) => {
    const peer = await askOnce(answer, 'ask observed-addr', async (conn) => await fetchObservedAddr(conn, stranger.id, { timeoutMs: SERVICE_TIMEOUT_MS }), (got) => {
      if (got !== undefined && (typeof got !== 'string' || isIP(got) === 0)) throw new FuzzFinding(`ask observed-addr resolved with ${JSON.stringify(got)}, not an IP address`)
      const first = firstFrame(answer, OBSERVED_ADDR_LIMITS)
      expectEqual(got, first != null ? decodeOrFinding(decodeObservedAddrAnswer, first, 'ask observed-addr').ip : undefined, 'ask observed-addr resolved')
    })
    // asked on direct connections only: the relay's answer is worth what Noise authenticated
    if (peer.options.some(o => o?.runOnLimitedConnection !== false)) throw new FuzzFinding('ask observed-addr: opened its stream allowing a relayed (limited) connection')
  })
  return { property, close: async () => {} }
})

// fetch, donor side: ranges of a 3000-byte blob asked of a broker whose answers are fuzzed

const BLOB = pattern(3000, 3)
const BLOB_CID = rawCidString(BLOB)
/** three ranges (1024, 1024, 952), or one range for all of it */
const RANGE_CHOICES = [1024, 4096] as const

/** What the fuzzed broker answers on one stream, given the request it read there. */
type Reply =
  | { kind: 'valid', frameBytes: number }
  /** the payload ends early, properly terminated */
  | { kind: 'short', keep: number, frameBytes: number }
  /** the valid answer cut anywhere: the stream ends mid-frame */
  | { kind: 'cut', at: number, frameBytes: number }
  /** bytes past the range before the terminator */
  | { kind: 'extra', extra: Uint8Array, frameBytes: number }
  /** one byte of the range changed */
  | { kind: 'flip', at: number, bit: number, frameBytes: number }
  /** the right bytes under a wrong size */
  | { kind: 'size', size: number, frameBytes: number }
  /** the bytes of another offset, as many */
  | { kind: 'shifted', by: number, frameBytes: number }
  /** fixed bytes, whatever was asked */
  | { kind: 'bytes', bytes: Uint8Array }

function rangeOf (req: FetchRequest): Uint8Array {
  return BLOB.subarray(req.offset, Math.min(BLOB.byteLength, req.offset + (req.length ?? BLOB.byteLength)))
}

function servedAs (size: number, payload: Uint8Array, frameBytes: number): Uint8Array {
  return concat(frame(dagCbor.encode({ size })), payloadFrames(payload, frameBytes))
}

function replyBytes (reply: Reply, req: FetchRequest): Uint8Array {
  const range = rangeOf(req)
  switch (reply.kind) {
    case 'valid': return servedAs(BLOB.byteLength, range, reply.frameBytes)
    case 'short': return servedAs(BLOB.byteLength, range.subarray(0, reply.keep % Math.max(1, range.byteLength)), reply.frameBytes)
    case 'cut': {
      const whole = servedAs(BLOB.byteLength, range, reply.frameBytes)
      return whole.subarray(0, reply.at % whole.byteLength)
    }
    case 'extra': return servedAs(BLOB.byteLength, concat(range, reply.extra), reply.frameBytes)
    case 'flip': {
      const changed = range.slice()
      if (changed.byteLength > 0) changed[reply.at % changed.byteLength] ^= 1 << reply.bit
      return servedAs(BLOB.byteLength, changed, reply.frameBytes)
    }
    case 'size': return servedAs(reply.size, range, reply.frameBytes)
    case 'shifted': {
      const from = Math.max(0, Math.min(BLOB.byteLength, req.offset + reply.by))
      return servedAs(BLOB.byteLength, BLOB.subarray(from, Math.min(BLOB.byteLength, from + range.byteLength)), reply.frameBytes)
    }
    case 'bytes': return reply.bytes
  }
}

/** Answers that are right for one fixed range only: what the ranges of an unbroken fetch ask, by range size. */
const FIXED_VALID = [
  ...[0, 1024, 2048].map(offset => servedAs(BLOB.byteLength, BLOB.subarray(offset, offset + 1024), 512)),
  servedAs(BLOB.byteLength, BLOB, 1000)
]
const fetchResponseArb: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  fc.record({ size: fc.oneof(fc.constantFrom(BLOB.byteLength, BLOB.byteLength - 1, BLOB.byteLength + 1, 0), fc.nat({ max: 10_000 })) }),
  fc.record({ refused: fc.constantFrom(...FETCH_REFUSALS, 'something-newer'), error: fc.string({ maxLength: 80 }) })
)
const frameBytesArb = fc.integer({ min: 1, max: 1500 })
const fixedReply: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 2, arbitrary: fc.constantFrom(...FIXED_VALID) },
  { weight: 4, arbitrary: mutatedBytes(fc.constantFrom(...FIXED_VALID)) },
  { weight: 2, arbitrary: fc.constantFrom(...FETCH_REFUSALS).map(refused => frame(encodeFetchResponse({ refused, error: 'no task of yours (fuzz)' }))) },
  { weight: 2, arbitrary: fc.tuple(decoderInput(fetchResponseArb, (m) => dagCbor.encode(m)), fc.uint8Array({ maxLength: 1200 }), frameBytesArb).map(([res, payload, n]) => concat(frame(res), payloadFrames(payload, n))) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 512 }) }
)
const replyArb: fc.Arbitrary<Reply> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('valid' as const), frameBytes: frameBytesArb }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('short' as const), keep: fc.nat(), frameBytes: frameBytesArb }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('cut' as const), at: fc.nat(), frameBytes: frameBytesArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('extra' as const), extra: fc.uint8Array({ minLength: 1, maxLength: 64 }), frameBytes: frameBytesArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }), frameBytes: frameBytesArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('size' as const), size: fc.oneof(fc.constantFrom(BLOB.byteLength - 1, BLOB.byteLength + 1, 0), fc.nat({ max: 10_000 })), frameBytes: frameBytesArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('shifted' as const), by: fc.integer({ min: -1100, max: 1100 }).filter(n => n !== 0), frameBytes: frameBytesArb }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('bytes' as const), bytes: fixedReply }) }
)

interface FetchAskInput {
  rangeBytes: typeof RANGE_CHOICES[number]
  /** the answer on the n-th stream the fetch opens */
  replies: Reply[]
  /** past the list: the right answer to whatever is asked, or the list's last again */
  afterList: 'valid' | 'last'
}

const fetchAskInput: fc.Arbitrary<FetchAskInput> = fc.record({
  rangeBytes: fc.constantFrom(...RANGE_CHOICES),
  replies: fc.array(replyArb, { minLength: 1, maxLength: 4 }),
  afterList: fc.constantFrom('valid' as const, 'last' as const)
})

/** Under FETCH_FAILED: what may have broken a fetch from a peer that answers and closes (a stall would be over the bound first). */
const FETCH_CAUSES = ['PROTOCOL_VIOLATION', 'MALFORMED_MESSAGE', 'PAYLOAD_TOO_LARGE', 'CONTENT_CID_MISMATCH', 'STREAM_STALLED'] as const

const askFetch = askTarget('fetch', 3, async () => {
  const root = mkdtempSync(join(tmpdir(), 'wc-fuzz-fetch-'))
  let n = 0
  const what = 'ask fetch'
  const property = fc.asyncProperty(fetchAskInput, async (input) => {
    // a store of its own per input: a blob kept by one input would be served to the next from disk, asking nothing
    const dir = join(root, String(n++))
    try {
      const store = new ContentStore({ dir })
      const service = new FetchService({ registrar: new CapturingRegistrar() }, {
        store, attempts: 2, retryBackoff: { initialMs: 1, maxMs: 2 }, stallTimeoutMs: SERVICE_TIMEOUT_MS, rangeBytes: input.rangeBytes
      })
      const peer = fuzzedPeer(broker.id, async (stream, index) => { await answerRange(stream, input, index, what) })
      const started = performance.now()
      let got: Uint8Array | undefined
      try {
        got = await service.fetch(peer.connection, { cid: BLOB_CID, size: BLOB.byteLength, what: 'input' })
      } catch (err) {
        expectFetchError(err, what)
      }
      expectWithin(started, EXCHANGE_BUDGET_MS, what)
      await peer.settled(what)
      if (got != null && !sameBytes(got, BLOB)) throw new FuzzFinding(`${what}: resolved with ${got.byteLength} bytes that are not the blob`)
      await expectStoreHolds(store, dir, got != null, what)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
  return { property, close: async () => { rmSync(root, { recursive: true, force: true }) } }
})

/** The broker's side of one range: reads the request, answers as the input says, closes. */
async function answerRange (stream: Stream, input: FetchAskInput, index: number, what: string): Promise<void> {
  const reply = input.replies[index] ?? (input.afterList === 'valid' ? { kind: 'valid', frameBytes: 700 } : input.replies[input.replies.length - 1])
  let req: FetchRequest | undefined
  try {
    req = await framed(stream, FETCH_LIMITS).readMessage(decodeFetchRequest, 'fetch request', { signal: AbortSignal.timeout(EXCHANGE_BUDGET_MS) })
  } catch (err) {
    // the fetch gave this stream up before asking (a range ahead, dropped when the one before it broke): a request we cannot read is ours to fix
    if (err instanceof MalformedMessageError) throw new FuzzFinding(`${what}: the donor sent a request our own decoder refuses: ${err.message}`, { cause: err })
    return
  }
  const end = Math.min(BLOB.byteLength, req.offset + input.rangeBytes)
  if (parseCid(req.cid)?.toString() !== BLOB_CID || req.offset >= BLOB.byteLength || req.length !== end - req.offset) {
    throw new FuzzFinding(`${what}: the donor asked for ${JSON.stringify(req)}, not a range of ${input.rangeBytes} bytes (or the last) of the blob`)
  }
  await sendAndClose(stream, replyBytes(reply, req))
}

function expectFetchError (err: unknown, what: string): void {
  expectNamedError(err, ['FETCH_FAILED', 'FETCH_REFUSED'], what)
  // FETCH_FAILED wraps whatever broke the fetch: that must be one of ours too, never a language error
  const bug = bugInChain(err)
  if (bug != null) throw new FuzzFinding(`${what}: ${(err as Error).message}: a ${bug.name} under a named error`, { cause: err })
  if ((err as WorldComputeError).code === 'FETCH_FAILED') expectNamedError((err as Error).cause, FETCH_CAUSES, `${what} (the cause under FETCH_FAILED)`)
}

/** The content store keeps the blob exactly or nothing of it, and no part file. */
async function expectStoreHolds (store: ContentStore, dir: string, resolved: boolean, what: string): Promise<void> {
  const files = readdirSync(dir)
  const kept = store.has(BLOB_CID)
  if (resolved && !kept) throw new FuzzFinding(`${what}: resolved but the content store does not hold the blob`)
  if (kept) {
    const back = await store.read(BLOB_CID)
    if (!sameBytes(back, BLOB)) throw new FuzzFinding(`${what}: the content store holds ${back.byteLength} bytes under the blob's CID that are not the blob`)
  }
  const expected = kept ? [parseCid(BLOB_CID)?.toString()] : []
  if (JSON.stringify(files) !== JSON.stringify(expected)) throw new FuzzFinding(`${what}: the store's directory holds ${JSON.stringify(files)} (expected ${JSON.stringify(expected)}): a part file left behind, or a blob the store does not count`)
}

export const serviceTargets: FuzzTarget[] = [handlerFetch, askFetch, handlerCancel, askCancel, handlerObservedAddr, askObservedAddr]
