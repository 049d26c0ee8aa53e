/**
 * The wire messages of /worldcompute/{capacity,offer,dispatch}/1.0.0, as
 * dag-cbor maps: compact, binary-safe (module and output bytes travel as
 * they are) and with one canonical encoding for what gets hashed and signed.
 *
 * Every decoder checks the byte size before parsing and then every field it
 * reads (type, presence, length, range), and throws MalformedMessageError
 * naming the field. Every encoder runs the same checks on what we are about to
 * send, so a bug on our side fails here with the field's name rather than as a
 * confusing rejection on the peer.
 *
 * CIDs travel as strings (see cid.ts). Decoders accept non-canonical dag-cbor,
 * so whoever signs or hashes a message signs or hashes the bytes it received,
 * never a re-encoding.
 */
import { parsePeerIdText } from './peer-id.ts'
import { EXEC_ERROR_CODES, EXEC_STATUSES } from '../core/job.ts'
import { MalformedMessageError } from './errors.ts'
import { MAX_MANIFEST_BYTES, MAX_TREE_ENTRIES } from './manifest.ts'
import { decodeBounded, encodePlain, FieldReader, MAX_CID_LENGTH } from './validate.ts'
import type { ExecErrorCode, ExecStatus, JobLimits, ReceiptBody, SignedReceipt } from '../core/job.ts'

// ---- wire limits -----------------------------------------------------------

/** Largest stdout, stderr or output files document a message may announce: 64 MiB each. */
export const MAX_BLOB_BYTES = 64 * 1024 * 1024
/**
 * Largest module, input or directory file a message may announce: 4 GiB.
 * The wire's bound only: a donor accepts what its `--max-payload` allows
 * (64 MiB by default), streamed in frames.
 */
export const MAX_PAYLOAD_WIRE_BYTES = 4 * 1024 * 1024 * 1024
/** jobId, taskId: printable ASCII without spaces, so they are safe in logs and file names. */
export const MAX_ID_LENGTH = 128
const ID_PATTERN = /^[\x21-\x7e]+$/
const ID_HINT = 'printable ASCII without spaces'
/** A PeerId string: an Ed25519 one is 52 characters (base58btc) or 62 (CIDv1 base32). */
export const MAX_PEER_ID_LENGTH = 128
export const MAX_ARGS = 1024
export const MAX_ENV = 1024
export const MAX_ARG_LENGTH = 4096
export const MAX_ADDRS = 64
export const MAX_ADDR_LENGTH = 1024
export const MAX_ERROR_LENGTH = 4096
export const MAX_REASON_LENGTH = 1024
export const MAX_SLOTS = 65_535
/** Ed25519 signatures are 64 bytes; 512 leaves room for RSA-4096 and secp256k1 DER. */
export const MAX_SIGNATURE_BYTES = 512
export const MAX_RECEIPT_BODY_BYTES = 2048
/** a week: no job deadline is longer */
export const MAX_DEADLINE_MS = 7 * 24 * 3600 * 1000
/** WASI `proc_exit` takes a u32; signed values are accepted for toolchains that print them so */
const EXIT_CODE_RANGE = { min: -(2 ** 31), max: 2 ** 32 - 1 }
const COUNT_RANGE = { min: 0, max: Number.MAX_SAFE_INTEGER }
const BLOB_RANGE = { min: 0, max: MAX_BLOB_BYTES }
const PAYLOAD_RANGE = { min: 0, max: MAX_PAYLOAD_WIRE_BYTES }

/**
 * Directory blobs an offer names, so the donor can say which it holds (the
 * largest files first); a tree with more blobs sends the rest unasked.
 */
export const MAX_OFFER_FILE_CIDS = 1024
/**
 * Directory files one dispatch names for the donor to fetch (`pullFiles`);
 * a tree with more big files pushes the rest. The list stays well under the
 * dispatch header's size bound.
 */
export const MAX_PULL_FILES = 1024
/** Room for MAX_OFFER_FILE_CIDS CID strings (at most MAX_CID_LENGTH each) in an offer or its answer. */
const FILE_CIDS_BYTES = MAX_OFFER_FILE_CIDS * (MAX_CID_LENGTH + 2)

/** Byte limit of each encoded message, checked before the decoder runs. */
export const MAX_MESSAGE_BYTES = Object.freeze({
  capacity: 16 * 1024,
  capacityResponse: 16 * 1024 + 64,
  capacityTableEntry: 16 * 1024 + 64,
  offerRequest: 4 * 1024 + FILE_CIDS_BYTES,
  offerResponse: 2 * 1024 + FILE_CIDS_BYTES,
  blobHeader: 256,
  // args and env can be long; 128 KiB bounds them all together
  dispatchHeader: 128 * 1024,
  // a 4096-character error is up to 16 KiB of UTF-8, plus the receipt
  dispatchResult: 32 * 1024
})

// ---- shapes ----------------------------------------------------------------

/** A donor's capacity, announced on gossip and answered on request. */
export interface Capacity {
  /** the donor's PeerId */
  peerId: string
  acceptsJobs: boolean
  /** tasks it can run at once */
  slots: number
  freeSlots: number
  /** the largest limits it accepts; a task asking for more is `rejected` */
  maxLimits: JobLimits
  /** its dialable multiaddrs, circuit addresses included */
  addrs: string[]
  /** when the donor produced this, ms since the epoch (its clock: informative only) */
  ts: number
}

/** The answer on /worldcompute/capacity/1.0.0; `null` from a node that runs no jobs. */
export interface CapacityResponse {
  capacity: Capacity | null
}

/**
 * One frame of the answer on /worldcompute/capacity-table/1.0.0: a donor's
 * capacity as the answering peer last heard it on gossip, and how long ago.
 */
export interface CapacityTableEntry {
  capacity: Capacity
  /** ms since the answering peer heard it (its clock, a duration: no clock agreement needed) */
  ageMs: number
}

/** Broker → donor: would you run this task? */
export interface OfferRequest {
  jobId: string
  taskId: string
  moduleCid: string
  moduleSize: number
  inputSize: number
  limits: Partial<JobLimits>
  /** the job's directory blobs (CIDv1 raw), largest first, at most MAX_OFFER_FILE_CIDS; absent without `--dir` and from older peers */
  fileCids?: string[]
  /** the bytes of all the job's distinct directory blobs; absent without `--dir` */
  filesSize?: number
  /**
   * The cost rule fuel must be counted by (the executor's METER_VERSION, e.g.
   * `meter/5`): replicas compare fuel, so a donor counting by another rule
   * declines (`meter`) rather than disagree with the others and be blamed.
   * Absent from older peers: not checked.
   */
  meter?: string
}

/**
 * Why a donor declined an offer, for the broker to act on (`reason` says it
 * in words, for logs). `busy` (no free slot) and `memory-budget` (running
 * tasks hold the memory) pass when a task ends; `limits` (above the donor's
 * maxima), `payload-too-large`, `not-executing` (its executor is down, or
 * the node runs no jobs) and `internal-error` (its decision failed) hold for
 * now. `other`: a code this version does not know, from a newer peer. An
 * answer from an older peer has no code at all.
 */
/** `paused`: its owner paused it, or its run hours or a busy machine hold its jobs (it declines with no free slot, so brokers ask again later) */
/** `meter`: the donor counts fuel by another cost rule than the offer's `meter` (a different release): it holds until one of them is updated */
/** `disk-full`: the donor's disk has no room for a module or input it must fetch (its content store) */
export const DECLINE_CODES = ['busy', 'memory-budget', 'limits', 'payload-too-large', 'not-executing', 'internal-error', 'paused', 'meter', 'disk-full', 'other'] as const
export type DeclineCode = typeof DECLINE_CODES[number]

/** Donor → broker. `hasModule` lets the broker skip sending the module bytes. */
export interface OfferResponse {
  accept: boolean
  /** why it declined, in words */
  reason?: string
  /** why it declined, as a code; absent on acceptance and in answers of older peers */
  code?: DeclineCode
  hasModule: boolean
  freeSlots: number
  /** which of the offer's `fileCids` the donor holds: the broker does not send those; absent from older peers (send them all) */
  hasFiles?: string[]
  /**
   * The donor fetches a big module or input by CID (`/worldcompute/fetch/1.0.0`)
   * when its dispatch says `pullModule` / `pullInput`; absent from older
   * peers (push everything on the dispatch stream)
   */
  fetches?: boolean
}

/** Broker → donor, first frame of a dispatch; module (when `sendsModule`) and input bytes follow. */
export interface DispatchHeader {
  jobId: string
  taskId: string
  /** CIDv1 raw sha2-256 of the module */
  moduleCid: string
  /** CIDv1 raw sha2-256 of the input */
  inputCid: string
  args: string[]
  env: string[]
  limits: Partial<JobLimits>
  moduleSize: number
  inputSize: number
  /** false when the donor said it has the module cached: no module bytes follow */
  sendsModule: boolean
  /** argv[0] of the program; absent from older peers (the donor then uses "main.wasm") */
  moduleName?: string
  /**
   * True when no offer stream came before this dispatch: the donor decides
   * the header as an offer (refusing with its decline code) instead of
   * looking for an accepted one. Absent: an accepted offer is required.
   */
  offered?: boolean
  /** the cost rule fuel must be counted by, checked with `offered` as an offer's `meter` is; absent from older peers */
  meter?: string
  /**
   * CIDv1 dag-cbor of the job's tree manifest (codec/manifest.ts), for a job
   * with `--dir`: the manifest (`manifestSize` bytes) follows the input, then
   * `blobCount` blobs, each a BlobHeader frame and its bytes. Absent: no
   * filesystem, as from older peers.
   */
  manifestCid?: string
  manifestSize?: number
  blobCount?: number
  /**
   * The module (`moduleSize` bytes) is not on the stream: the donor fetches
   * it by `moduleCid` from this broker (`/worldcompute/fetch/1.0.0`), unless
   * its content store holds it. `sendsModule` is false. Absent: pushed or held.
   */
  pullModule?: boolean
  /** The input (`inputSize` bytes) is not on the stream: the donor fetches it by `inputCid`, as `pullModule`. */
  pullInput?: boolean
  /**
   * Directory files of the manifest that are not among the `blobCount` blobs
   * on the stream: the donor fetches each by CID (its size is the manifest's),
   * as `pullModule`. Only with `manifestCid`; absent: every file the donor
   * lacks is pushed, as from older peers.
   */
  pullFiles?: string[]
}

/** Before each directory blob of a dispatch: which blob, and its size. */
export interface BlobHeader {
  /** CIDv1 raw sha2-256 of the bytes that follow */
  cid: string
  size: number
}

/** Donor → broker, first frame of the answer; stdout and stderr bytes follow. */
export interface DispatchResultHeader {
  status: ExecStatus
  exitCode?: number
  error?: string
  /**
   * Set when the result is not the job's own outcome (the executor crashed
   * under it). Not part of the receipt; absent from older peers, and a code
   * this version does not know is dropped.
   */
  errorCode?: ExecErrorCode
  /** CIDv1 dag-cbor sha2-256 of `encodeOutput(stdout, stderr, files)` */
  outputCid: string
  fuelUsed: number
  durationMs: number
  stdoutSize: number
  stderrSize: number
  receipt: SignedReceipt
  /**
   * Set with status `rejected` when the header said `sendsModule: false` and
   * the donor no longer has the module: the broker should send it again.
   */
  moduleMissing?: boolean
  /**
   * Set with status `rejected` when the donor did not admit the task (see
   * REFUSAL_CODES): nothing ran, so it is not an outcome of the job; offer
   * the task again. Not part of the receipt; absent from older peers.
   */
  refused?: RefusalCode
  /**
   * For a task with a manifest: the size of the output files document
   * (codec/manifest.ts `encodeOutputFiles`) that follows stdout and stderr.
   * Absent: no files document follows.
   */
  filesSize?: number
  /**
   * Set with status `rejected` when the donor lacks directory blobs the
   * broker did not send (its cache evicted them since the offer): send them all.
   */
  filesMissing?: boolean
}

/**
 * Why a donor refused a dispatch without running it. `no-offer`: the donor
 * holds no accepted offer from this broker for this task (never offered,
 * the hold expired, or released when the broker went away). A dispatch that
 * carries its own offer (`offered`) is refused with the decline code an
 * offer would have had (DECLINE_CODES). `other`: a code this
 * version does not know, from a newer peer.
 */
export const REFUSAL_CODES = ['no-offer', ...DECLINE_CODES] as const
export type RefusalCode = typeof REFUSAL_CODES[number]

// ---- shared field groups ---------------------------------------------------

const LIMIT_FIELDS = ['deadlineMs', 'memoryBytes', 'outputBytes', 'payloadBytes', 'fuel', 'maxCallDepth'] as const

function readLimits (r: FieldReader, key: string, partial: boolean): Partial<JobLimits> {
  const m = r.map(key)
  const out: Partial<JobLimits> = {}
  for (const field of LIMIT_FIELDS) {
    const range = field === 'deadlineMs' ? { min: 1, max: MAX_DEADLINE_MS } : COUNT_RANGE
    const value = partial ? m.optionalInteger(field, range) : m.integer(field, range)
    if (value !== undefined) out[field] = value
  }
  return out
}

function limitsToWire (limits: Partial<JobLimits>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const field of LIMIT_FIELDS) {
    const v = limits[field]
    if (v !== undefined) out[field] = v
  }
  return out
}

function readId (r: FieldReader, key: string): string {
  return r.string(key, { maxLength: MAX_ID_LENGTH, pattern: ID_PATTERN, patternHint: ID_HINT })
}

function readPeerId (r: FieldReader, key: string): string {
  const v = r.string(key, { maxLength: MAX_PEER_ID_LENGTH })
  try {
    parsePeerIdText(v)
  } catch (err) {
    throw new MalformedMessageError(r.messageType, r.fieldPath(key), `must be a PeerId, got ${JSON.stringify(v)}`, { cause: err })
  }
  return v
}

function readSignedReceipt (r: FieldReader, key: string): SignedReceipt {
  const m = r.map(key)
  return {
    body: m.bytes('body', { minBytes: 1, maxBytes: MAX_RECEIPT_BODY_BYTES }),
    signature: m.bytes('signature', { minBytes: 1, maxBytes: MAX_SIGNATURE_BYTES })
  }
}

/**
 * Encodes one of our own messages after running the decoder's checks on it,
 * size included, so a message the peer would reject fails here, named.
 */
function encodeChecked<T> (messageType: string, wire: Record<string, unknown>, read: (r: FieldReader) => T, maxBytes: number): Uint8Array {
  read(new FieldReader(messageType, wire))
  const bytes = encodePlain(wire)
  if (bytes.byteLength > maxBytes) {
    throw new MalformedMessageError(messageType, '(message)', `is ${bytes.byteLength} bytes, over the ${maxBytes}-byte limit`)
  }
  return bytes
}

// ---- capacity --------------------------------------------------------------

function readCapacity (r: FieldReader): Capacity {
  const slots = r.integer('slots', { min: 0, max: MAX_SLOTS })
  const freeSlots = r.integer('freeSlots', { min: 0, max: MAX_SLOTS })
  if (freeSlots > slots) r.fail('freeSlots', `must not exceed slots (${slots}), got ${freeSlots}`)
  return {
    peerId: readPeerId(r, 'peerId'),
    acceptsJobs: r.boolean('acceptsJobs'),
    slots,
    freeSlots,
    maxLimits: readLimits(r, 'maxLimits', false) as JobLimits,
    // kept as strings, not parsed: a newer donor may list a transport this
    // build cannot parse, and that must not make its whole announcement invalid
    addrs: r.stringArray('addrs', { maxItems: MAX_ADDRS, maxItemLength: MAX_ADDR_LENGTH, minItemLength: 1, itemPattern: /^\//, itemHint: 'a multiaddr starting with "/"' }),
    ts: r.integer('ts', COUNT_RANGE)
  }
}

function capacityToWire (c: Capacity): Record<string, unknown> {
  return {
    peerId: c.peerId,
    acceptsJobs: c.acceptsJobs,
    slots: c.slots,
    freeSlots: c.freeSlots,
    maxLimits: limitsToWire(c.maxLimits),
    addrs: c.addrs,
    ts: c.ts
  }
}

/** The gossip announcement on CAPACITY_TOPIC. */
export function encodeCapacity (c: Capacity): Uint8Array {
  const wire = capacityToWire(c)
  return encodeChecked('capacity', wire, readCapacity, MAX_MESSAGE_BYTES.capacity)
}

export function decodeCapacity (bytes: Uint8Array): Capacity {
  return readCapacity(new FieldReader('capacity', decodeBounded('capacity', bytes, MAX_MESSAGE_BYTES.capacity)))
}

function readCapacityResponse (r: FieldReader): CapacityResponse {
  if (!Object.hasOwn(r.value, 'capacity')) r.fail('capacity', 'is missing (send null from a node that runs no jobs)')
  if (r.value.capacity === null) return { capacity: null }
  return { capacity: readCapacity(r.map('capacity')) }
}

export function encodeCapacityResponse (res: CapacityResponse): Uint8Array {
  const wire = { capacity: res.capacity == null ? null : capacityToWire(res.capacity) }
  return encodeChecked('capacity response', wire, readCapacityResponse, MAX_MESSAGE_BYTES.capacityResponse)
}

export function decodeCapacityResponse (bytes: Uint8Array): CapacityResponse {
  return readCapacityResponse(new FieldReader('capacity response', decodeBounded('capacity response', bytes, MAX_MESSAGE_BYTES.capacityResponse)))
}

function readCapacityTableEntry (r: FieldReader): CapacityTableEntry {
  return { capacity: readCapacity(r.map('capacity')), ageMs: r.integer('ageMs', COUNT_RANGE) }
}

export function encodeCapacityTableEntry (entry: CapacityTableEntry): Uint8Array {
  const wire = { capacity: capacityToWire(entry.capacity), ageMs: entry.ageMs }
  return encodeChecked('capacity table entry', wire, readCapacityTableEntry, MAX_MESSAGE_BYTES.capacityTableEntry)
}

export function decodeCapacityTableEntry (bytes: Uint8Array): CapacityTableEntry {
  return readCapacityTableEntry(new FieldReader('capacity table entry', decodeBounded('capacity table entry', bytes, MAX_MESSAGE_BYTES.capacityTableEntry)))
}

// ---- offer -----------------------------------------------------------------

function readOfferRequest (r: FieldReader): OfferRequest {
  return {
    jobId: readId(r, 'jobId'),
    taskId: readId(r, 'taskId'),
    moduleCid: r.cid('moduleCid', 'raw'),
    moduleSize: r.integer('moduleSize', PAYLOAD_RANGE),
    inputSize: r.integer('inputSize', PAYLOAD_RANGE),
    limits: readLimits(r, 'limits', true),
    ...readFileCids(r, 'fileCids'),
    ...(r.has('filesSize') ? { filesSize: r.integer('filesSize', COUNT_RANGE) } : {}),
    ...readMeter(r)
  }
}

/** The longest cost-rule name read (`meter/5` is 7): a name, not a payload. */
const MAX_METER_LENGTH = 32

/** An optional `meter` (a cost rule's name) as `{ meter }` or `{}`. */
function readMeter (r: FieldReader): { meter?: string } {
  const meter = r.optionalString('meter', { maxLength: MAX_METER_LENGTH })
  return meter != null ? { meter } : {}
}

/** An optional list of CIDv1 raw strings, at most MAX_OFFER_FILE_CIDS, as `{ [key]: list }` or `{}`. */
function readFileCids (r: FieldReader, key: string): Record<string, string[]> {
  if (!r.has(key) || r.value[key] === null) return {}
  return { [key]: r.cidArray(key, 'raw', MAX_OFFER_FILE_CIDS) }
}

export function encodeOfferRequest (req: OfferRequest): Uint8Array {
  const wire = { ...pick(req, ['jobId', 'taskId', 'moduleCid', 'moduleSize', 'inputSize', 'fileCids', 'filesSize', 'meter']), limits: limitsToWire(req.limits ?? {}) }
  return encodeChecked('offer request', wire, readOfferRequest, MAX_MESSAGE_BYTES.offerRequest)
}

export function decodeOfferRequest (bytes: Uint8Array): OfferRequest {
  return readOfferRequest(new FieldReader('offer request', decodeBounded('offer request', bytes, MAX_MESSAGE_BYTES.offerRequest)))
}

function readOfferResponse (r: FieldReader): OfferResponse {
  const out: OfferResponse = {
    accept: r.boolean('accept'),
    hasModule: r.boolean('hasModule'),
    freeSlots: r.integer('freeSlots', { min: 0, max: MAX_SLOTS })
  }
  const reason = r.optionalString('reason', { maxLength: MAX_REASON_LENGTH })
  if (reason !== undefined) out.reason = reason
  const code = r.optionalOneOf('code', DECLINE_CODES, 'other')
  if (code !== undefined) out.code = code
  Object.assign(out, readFileCids(r, 'hasFiles'))
  if (r.has('fetches')) out.fetches = r.boolean('fetches')
  return out
}

export function encodeOfferResponse (res: OfferResponse): Uint8Array {
  const wire = pick(res, ['accept', 'reason', 'code', 'hasModule', 'freeSlots', 'hasFiles', 'fetches'])
  return encodeChecked('offer response', wire, readOfferResponse, MAX_MESSAGE_BYTES.offerResponse)
}

export function decodeOfferResponse (bytes: Uint8Array): OfferResponse {
  return readOfferResponse(new FieldReader('offer response', decodeBounded('offer response', bytes, MAX_MESSAGE_BYTES.offerResponse)))
}

// ---- dispatch --------------------------------------------------------------

function readDispatchHeader (r: FieldReader): DispatchHeader {
  const moduleName = r.optionalString('moduleName', { maxLength: MAX_ARG_LENGTH })
  return {
    ...(moduleName != null ? { moduleName } : {}),
    jobId: readId(r, 'jobId'),
    taskId: readId(r, 'taskId'),
    moduleCid: r.cid('moduleCid', 'raw'),
    inputCid: r.cid('inputCid', 'raw'),
    args: r.stringArray('args', { maxItems: MAX_ARGS, maxItemLength: MAX_ARG_LENGTH }),
    env: r.stringArray('env', { maxItems: MAX_ENV, maxItemLength: MAX_ARG_LENGTH, minItemLength: 2, itemPattern: /^[^=]+=/s, itemHint: 'K=V with a non-empty K' }),
    limits: readLimits(r, 'limits', true),
    moduleSize: r.integer('moduleSize', PAYLOAD_RANGE),
    inputSize: r.integer('inputSize', PAYLOAD_RANGE),
    sendsModule: r.boolean('sendsModule'),
    ...(r.has('offered') ? { offered: r.boolean('offered') } : {}),
    ...readMeter(r),
    ...(r.has('pullModule') ? { pullModule: r.boolean('pullModule') } : {}),
    ...(r.has('pullInput') ? { pullInput: r.boolean('pullInput') } : {}),
    ...readTreeFields(r)
  }
}

/** The header's manifest fields: all three or none, and `pullFiles` only with them. */
function readTreeFields (r: FieldReader): Pick<DispatchHeader, 'manifestCid' | 'manifestSize' | 'blobCount' | 'pullFiles'> {
  if (!r.has('manifestCid')) {
    if (r.has('manifestSize') || r.has('blobCount') || r.has('pullFiles')) r.fail('manifestCid', 'is missing (manifestSize, blobCount and pullFiles come with it)')
    return {}
  }
  return {
    manifestCid: r.cid('manifestCid', 'dag-cbor'),
    manifestSize: r.integer('manifestSize', { min: 1, max: MAX_MANIFEST_BYTES }),
    blobCount: r.integer('blobCount', { min: 0, max: MAX_TREE_ENTRIES }),
    ...(r.has('pullFiles') ? { pullFiles: r.cidArray('pullFiles', 'raw', MAX_PULL_FILES) } : {})
  }
}

function readBlobHeader (r: FieldReader): BlobHeader {
  return { cid: r.cid('cid', 'raw'), size: r.integer('size', PAYLOAD_RANGE) }
}

export function encodeBlobHeader (h: BlobHeader): Uint8Array {
  return encodeChecked('blob header', { cid: h.cid, size: h.size }, readBlobHeader, MAX_MESSAGE_BYTES.blobHeader)
}

export function decodeBlobHeader (bytes: Uint8Array): BlobHeader {
  return readBlobHeader(new FieldReader('blob header', decodeBounded('blob header', bytes, MAX_MESSAGE_BYTES.blobHeader)))
}

export function encodeDispatchHeader (h: DispatchHeader): Uint8Array {
  const wire = {
    ...pick(h, ['jobId', 'taskId', 'moduleCid', 'inputCid', 'args', 'env', 'moduleSize', 'inputSize', 'sendsModule', 'moduleName', 'offered', 'meter', 'manifestCid', 'manifestSize', 'blobCount', 'pullModule', 'pullInput', 'pullFiles']),
    limits: limitsToWire(h.limits ?? {})
  }
  return encodeChecked('dispatch header', wire, readDispatchHeader, MAX_MESSAGE_BYTES.dispatchHeader)
}

export function decodeDispatchHeader (bytes: Uint8Array): DispatchHeader {
  return readDispatchHeader(new FieldReader('dispatch header', decodeBounded('dispatch header', bytes, MAX_MESSAGE_BYTES.dispatchHeader)))
}

function readDispatchResult (r: FieldReader): DispatchResultHeader {
  const out: DispatchResultHeader = {
    status: r.oneOf('status', EXEC_STATUSES),
    outputCid: r.cid('outputCid', 'dag-cbor'),
    fuelUsed: r.integer('fuelUsed', COUNT_RANGE),
    durationMs: r.integer('durationMs', COUNT_RANGE),
    stdoutSize: r.integer('stdoutSize', BLOB_RANGE),
    stderrSize: r.integer('stderrSize', BLOB_RANGE),
    receipt: readSignedReceipt(r, 'receipt')
  }
  const exitCode = r.optionalInteger('exitCode', EXIT_CODE_RANGE)
  if (exitCode !== undefined) out.exitCode = exitCode
  const error = r.optionalString('error', { maxLength: MAX_ERROR_LENGTH })
  if (error !== undefined) out.error = error
  const errorCode = r.optionalOneOf('errorCode', EXEC_ERROR_CODES, undefined)
  if (errorCode !== undefined) out.errorCode = errorCode
  if (r.has('moduleMissing')) out.moduleMissing = r.boolean('moduleMissing')
  const refused = r.optionalOneOf('refused', REFUSAL_CODES, 'other')
  if (refused !== undefined) out.refused = refused
  const filesSize = r.optionalInteger('filesSize', BLOB_RANGE)
  if (filesSize !== undefined) out.filesSize = filesSize
  if (r.has('filesMissing')) out.filesMissing = r.boolean('filesMissing')
  return out
}

export function encodeDispatchResult (h: DispatchResultHeader): Uint8Array {
  const wire = {
    ...pick(h, ['status', 'exitCode', 'error', 'errorCode', 'outputCid', 'fuelUsed', 'durationMs', 'stdoutSize', 'stderrSize', 'moduleMissing', 'refused', 'filesSize', 'filesMissing']),
    receipt: { body: h.receipt.body, signature: h.receipt.signature }
  }
  return encodeChecked('dispatch result', wire, readDispatchResult, MAX_MESSAGE_BYTES.dispatchResult)
}

export function decodeDispatchResult (bytes: Uint8Array): DispatchResultHeader {
  return readDispatchResult(new FieldReader('dispatch result', decodeBounded('dispatch result', bytes, MAX_MESSAGE_BYTES.dispatchResult)))
}

// ---- helpers shared with receipt.ts ----------------------------------------

/** The receipt body's fields, read strictly (used by receipt.ts). */
export function readReceiptFields (r: FieldReader): ReceiptBody {
  return {
    taskId: readId(r, 'taskId'),
    moduleCid: r.cid('moduleCid', 'raw'),
    inputCid: r.cid('inputCid', 'raw'),
    outputCid: r.cid('outputCid', 'dag-cbor'),
    status: r.oneOf('status', EXEC_STATUSES),
    exitCode: r.nullableInteger('exitCode', EXIT_CODE_RANGE),
    fuelUsed: r.integer('fuelUsed', COUNT_RANGE),
    executor: readPeerId(r, 'executor')
  }
}

function pick<T extends object, K extends keyof T> (obj: T, keys: K[]): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const k of keys) {
    if (obj[k] !== undefined) out[k as string] = obj[k]
  }
  return out
}
