/**
 * Inputs for the fuzz targets: structured values shaped like dag-cbor (what a
 * decoder meets once the bytes parse), valid messages with some fields
 * deleted or replaced, and byte-level mutations of valid encodings (what
 * meets the parser itself). Everything is drawn from fast-check's random
 * source, so a seed and a path replay any input.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import fc from 'fast-check'
import { CID } from 'multiformats/cid'
import { dagCborCidString, rawCid, rawCidString } from '../../src/codec/cid.ts'
import { EXEC_STATUSES } from '../../src/core/job.ts'
import { comparePaths } from '../../src/core/tree.ts'
import { NAT_MAPPINGS } from '../../src/core/types.ts'
import { FETCH_REFUSALS } from '../../src/protocols/fetch/messages.ts'
import type { PrivateKey } from '@libp2p/interface'

// ---- identities: fixed seeds, so a replayed input names the same peers -----

export interface FuzzPeer { key: PrivateKey, id: string }

async function peerFromSeed (n: number): Promise<FuzzPeer> {
  const key = await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(n))
  return { key, id: peerIdFromPrivateKey(key).toString() }
}

export const PEERS: FuzzPeer[] = await Promise.all([1, 2, 3].map(peerFromSeed))

// ---- dag-cbor shaped values ------------------------------------------------

/** Every field name the decoders read, and names that are traps for naive code. */
const FIELD_NAMES = [
  'v', 'tls', 'fingerprint256', 'subject', 'issuer', 'mapping', 'filtering', 'udp', 'webrtc', 'capacity', 'peerId', 'acceptsJobs', 'slots',
  'freeSlots', 'maxLimits', 'addrs', 'ts', 'jobId', 'taskId', 'moduleCid', 'inputCid', 'outputCid', 'moduleSize', 'inputSize', 'limits',
  'deadlineMs', 'memoryBytes', 'outputBytes', 'payloadBytes', 'fuel', 'maxCallDepth', 'accept', 'reason', 'code', 'hasModule', 'args', 'env',
  'sendsModule', 'moduleName', 'status', 'exitCode', 'error', 'errorCode', 'fuelUsed', 'durationMs', 'stdoutSize', 'stderrSize', 'receipt',
  'body', 'signature', 'moduleMissing', 'executor', 'module', 'input', 'replicas', 'target', 'count', 'id', 'full', 'limit',
  'cid', 'offset', 'size', 'refused', 'taskIds', 'stopped', 'dropped', 'unknown', 'dirs', 'guest', 'files', 'path', 'emptyDirs', 'data',
  'removed', 'ageMs', 'peer', 'ip',
  'toString', 'valueOf', 'constructor', '__proto__', 'hasOwnProperty', 'length', 'then', 'asCID', '/'
]

export const fieldName = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...FIELD_NAMES) }, { weight: 1, arbitrary: fc.string({ maxLength: 12 }) })

/** Numbers at the edges of every range the decoders check. */
const edgeNumber = fc.constantFrom(
  0, -1, 1, 2 ** 31 - 1, -(2 ** 31), 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, -(2 ** 53 - 1), 65_535, 65_536, 64 * 1024 * 1024, 64 * 1024 * 1024 + 1,
  7 * 24 * 3600 * 1000, 7 * 24 * 3600 * 1000 + 1, 0.5, -0, 1e308
)

const someCid = fc.uint8Array({ maxLength: 8 }).map(b => rawCid(b))

/** Strings at the edges of what the decoders check: guest paths, a CID string, IP addresses. */
const edgeString = fc.constantFrom(
  '', '/', '/a', '/a/', '//a', '/a//b', '/a/./b', '/a/../b', '/..', '/.', 'a/b', '/a\0b', `/${'a'.repeat(4096)}`,
  'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku', '127.0.0.1', '::1', '::ffff:10.0.0.1', 'fe80::1%eth0', '256.0.0.1', '1.2.3'
)

const scalar: fc.Arbitrary<unknown> = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  edgeNumber,
  fc.bigInt({ min: -(2n ** 64n), max: 2n ** 64n - 1n }),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.string({ maxLength: 24 }),
  fc.string({ unit: 'binary', maxLength: 24 }),
  edgeString,
  fc.uint8Array({ maxLength: 48 }),
  someCid
)

/** Any dag-cbor value: null, booleans, integers (big ones too), floats, strings, bytes, CIDs, lists, maps. */
export const cborValue: fc.Arbitrary<unknown> = fc.letrec<{ value: unknown }>(tie => ({
  value: fc.oneof(
    { depthSize: 'small', maxDepth: 4 },
    { weight: 4, arbitrary: scalar },
    { weight: 1, arbitrary: fc.array(tie('value'), { maxLength: 5 }) },
    { weight: 1, arbitrary: fc.dictionary(fieldName, tie('value'), { maxKeys: 5, noNullPrototype: true }) }
  )
})).value

// ---- structured mutation of a valid message --------------------------------

const DELETE = Symbol('delete')

/** A copy of the value at another path of the same message (its index among the paths): a path or an ID given twice, say. */
class Copy {
  readonly from: number
  constructor (from: number) { this.from = from }
}

interface Edit { at: number, value: unknown }

const edit: fc.Arbitrary<Edit> = fc.record({
  at: fc.nat(),
  value: fc.oneof(
    { weight: 1, arbitrary: fc.constant(DELETE) },
    { weight: 1, arbitrary: fc.nat().map(from => new Copy(from)) },
    { weight: 4, arbitrary: cborValue }
  )
})

/** Paths to every value inside maps and lists, the root excluded. */
function paths (value: unknown, prefix: Array<string | number> = []): Array<Array<string | number>> {
  if (value == null || typeof value !== 'object' || value instanceof Uint8Array || CID.asCID(value) != null) return []
  const entries: Array<[string | number, unknown]> = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value)
  return entries.flatMap(([k, v]) => [[...prefix, k], ...paths(v, [...prefix, k])])
}

function clone (value: unknown): unknown {
  if (Array.isArray(value)) return value.map(clone)
  if (value != null && typeof value === 'object' && !(value instanceof Uint8Array) && CID.asCID(value) == null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, clone(v)]))
  }
  return value
}

function valueAt (root: unknown, path: Array<string | number>): unknown {
  let v: any = root
  for (const k of path) v = v[k]
  return v
}

function applyEdit (root: Record<string, unknown>, e: Edit): void {
  const all = paths(root)
  if (all.length === 0) return
  const path = all[e.at % all.length]
  let parent: any = root
  for (const k of path.slice(0, -1)) parent = parent[k]
  const last = path[path.length - 1]
  // a copy: fast-check hands the same value to later runs (shrinking), so it must never be edited in place
  if (e.value instanceof Copy) parent[last] = clone(valueAt(root, all[e.value.from % all.length]))
  else if (e.value !== DELETE) parent[last] = clone(e.value)
  else if (Array.isArray(parent)) parent.splice(last as number, 1)
  else delete parent[last]
}

/** A valid message with one to three values deleted, replaced or overwritten by a copy of another anywhere in it, and perhaps an unknown field. */
export function mutatedMessage (valid: fc.Arbitrary<Record<string, unknown>>): fc.Arbitrary<unknown> {
  return fc.tuple(valid, fc.array(edit, { minLength: 1, maxLength: 3 }), fc.option(fc.tuple(fieldName, cborValue), { nil: undefined }))
    .map(([message, edits, extra]) => {
      const root = clone(message) as Record<string, unknown>
      for (const e of edits) applyEdit(root, e)
      if (extra != null) Object.defineProperty(root, extra[0], { value: extra[1], enumerable: true, configurable: true, writable: true })
      return root
    })
}

/** dag-cbor bytes of a value the encoder accepts; values it refuses come out as random bytes instead. */
export function encodeOrGarbage (value: unknown, fallback: Uint8Array): Uint8Array {
  try {
    return dagCbor.encode(value)
  } catch {
    // the value itself is not dag-cbor (e.g. a lone surrogate in a string): the fallback bytes are still an input
    return fallback
  }
}

// ---- byte-level mutation ---------------------------------------------------

/** Bytes that mean something to a CBOR parser: major types, lengths, indefinite markers, break. */
const INTERESTING_BYTES = [0x00, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1f, 0x3b, 0x40, 0x5f, 0x60, 0x7f, 0x80, 0x9f, 0xa0, 0xbf, 0xd8, 0xd9, 0xf4, 0xf5, 0xf6, 0xf7, 0xfb, 0xff]

export type ByteMutation =
  | { op: 'flip', at: number, bit: number }
  | { op: 'set', at: number, byte: number }
  | { op: 'insert', at: number, bytes: Uint8Array }
  | { op: 'delete', at: number, length: number }
  | { op: 'truncate', at: number }
  | { op: 'duplicate', at: number, length: number }

const anyByte = fc.oneof(fc.constantFrom(...INTERESTING_BYTES), fc.integer({ min: 0, max: 255 }))

export const byteMutation: fc.Arbitrary<ByteMutation> = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ op: fc.constant('set' as const), at: fc.nat(), byte: anyByte }),
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), bytes: fc.array(anyByte, { minLength: 1, maxLength: 9 }).map(a => Uint8Array.from(a)) }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 16 }) }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('duplicate' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 64 }) })
)

function applyMutation (bytes: Uint8Array, m: ByteMutation): Uint8Array {
  const n = bytes.byteLength
  const at = n === 0 ? 0 : m.at % (n + (m.op === 'insert' ? 1 : 0))
  switch (m.op) {
    case 'flip': { if (n === 0) return bytes; const out = bytes.slice(); out[at] ^= 1 << m.bit; return out }
    case 'set': { if (n === 0) return bytes; const out = bytes.slice(); out[at] = m.byte; return out }
    case 'insert': return concat(bytes.subarray(0, at), m.bytes, bytes.subarray(at))
    case 'delete': return concat(bytes.subarray(0, at), bytes.subarray(at + m.length))
    case 'truncate': return bytes.slice(0, at)
    case 'duplicate': return concat(bytes.subarray(0, at + m.length), bytes.subarray(at))
  }
}

export function concat (...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.byteLength, 0))
  let offset = 0
  for (const p of parts) {
    out.set(p, offset)
    offset += p.byteLength
  }
  return out
}

/** A valid encoding with one to four byte-level mutations. */
export function mutatedBytes (valid: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  return fc.tuple(valid, fc.array(byteMutation, { minLength: 1, maxLength: 4 }))
    .map(([bytes, ms]) => ms.reduce(applyMutation, bytes))
}

/**
 * What a decoder of `valid` messages should be fed: mostly structured
 * mutations and byte mutations of valid messages, some valid messages as
 * they are, some random bytes and random dag-cbor.
 */
export function decoderInput (valid: fc.Arbitrary<Record<string, unknown>>, encode: (m: Record<string, unknown>) => Uint8Array): fc.Arbitrary<Uint8Array> {
  const validBytes = valid.map(encode)
  return fc.oneof(
    { weight: 4, arbitrary: fc.tuple(mutatedMessage(valid), fc.uint8Array({ maxLength: 32 })).map(([v, fb]) => encodeOrGarbage(v, fb)) },
    { weight: 4, arbitrary: mutatedBytes(validBytes) },
    { weight: 1, arbitrary: validBytes },
    { weight: 1, arbitrary: fc.tuple(cborValue, fc.uint8Array({ maxLength: 32 })).map(([v, fb]) => encodeOrGarbage(v, fb)) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 256 }) }
  )
}

// ---- valid messages --------------------------------------------------------

const idChars = fc.string({ unit: fc.integer({ min: 0x21, max: 0x7e }).map(c => String.fromCharCode(c)), minLength: 1, maxLength: 40 })
export const wireId = idChars
export const rawCidArb = fc.uint8Array({ maxLength: 32 }).map(rawCidString)
export const dagCborCidArb = fc.uint8Array({ maxLength: 32 }).map(dagCborCidString)
export const peerIdArb = fc.constantFrom(...PEERS.map(p => p.id))
const size = fc.integer({ min: 0, max: 64 * 1024 * 1024 })

const limitFields = {
  deadlineMs: fc.integer({ min: 1, max: 7 * 24 * 3600 * 1000 }),
  memoryBytes: fc.nat(),
  outputBytes: fc.nat(),
  payloadBytes: fc.nat(),
  fuel: fc.nat(),
  maxCallDepth: fc.nat()
}
export const partialLimits = fc.record(limitFields, { requiredKeys: [] })
const fullLimits = fc.record(limitFields)

export const capacityArb = fc.tuple(fc.integer({ min: 0, max: 65_535 }), fc.nat()).chain(([slots, f]) => fc.record({
  peerId: peerIdArb,
  acceptsJobs: fc.boolean(),
  slots: fc.constant(slots),
  freeSlots: fc.constant(slots === 0 ? 0 : f % (slots + 1)),
  maxLimits: fullLimits,
  addrs: fc.array(fc.constantFrom('/ip4/127.0.0.1/tcp/4001', '/ip6/::1/udp/4001/quic-v1', '/dns4/relay.example/tcp/443/wss/p2p/x/p2p-circuit'), { maxLength: 4 }),
  ts: fc.nat()
}))

export const offerRequestArb = fc.record({ jobId: wireId, taskId: wireId, moduleCid: rawCidArb, moduleSize: size, inputSize: size, limits: partialLimits })

export const offerResponseArb = fc.record({
  accept: fc.boolean(),
  hasModule: fc.boolean(),
  freeSlots: fc.integer({ min: 0, max: 65_535 }),
  reason: fc.string({ maxLength: 64 }),
  code: fc.constantFrom('busy', 'memory-budget', 'limits', 'payload-too-large', 'not-executing', 'internal-error', 'something-newer')
}, { requiredKeys: ['accept', 'hasModule', 'freeSlots'] })

export const dispatchHeaderArb = fc.record({
  jobId: wireId,
  taskId: wireId,
  moduleCid: rawCidArb,
  inputCid: rawCidArb,
  args: fc.array(fc.string({ maxLength: 16 }), { maxLength: 4 }),
  env: fc.array(fc.tuple(fc.string({ minLength: 1, maxLength: 8 }).filter(k => !k.includes('=')), fc.string({ maxLength: 8 })).map(([k, v]) => `${k}=${v}`), { maxLength: 3 }),
  limits: partialLimits,
  moduleSize: size,
  inputSize: size,
  sendsModule: fc.boolean(),
  moduleName: fc.string({ minLength: 1, maxLength: 16 })
}, { requiredKeys: ['jobId', 'taskId', 'moduleCid', 'inputCid', 'args', 'env', 'limits', 'moduleSize', 'inputSize', 'sendsModule'] })

const statusArb = fc.constantFrom(...EXEC_STATUSES)

export const receiptBodyArb = fc.record({
  taskId: wireId,
  moduleCid: rawCidArb,
  inputCid: rawCidArb,
  outputCid: dagCborCidArb,
  status: statusArb,
  exitCode: fc.option(fc.integer({ min: -(2 ** 31), max: 2 ** 32 - 1 }), { nil: null }),
  fuelUsed: fc.nat(),
  executor: peerIdArb
})

export const dispatchResultArb = fc.record({
  status: statusArb,
  outputCid: dagCborCidArb,
  fuelUsed: fc.nat(),
  durationMs: fc.nat(),
  stdoutSize: size,
  stderrSize: size,
  receipt: fc.record({ body: receiptBodyArb.map(b => dagCbor.encode(b)), signature: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
  exitCode: fc.integer({ min: -(2 ** 31), max: 2 ** 32 - 1 }),
  error: fc.string({ maxLength: 64 }),
  errorCode: fc.constantFrom('EXECUTOR_CRASHED', 'SOMETHING_NEWER'),
  moduleMissing: fc.boolean()
}, { requiredKeys: ['status', 'outputCid', 'fuelUsed', 'durationMs', 'stdoutSize', 'stderrSize', 'receipt'] })

const fingerprint = fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 32, maxLength: 32 })
  .map(a => a.map(b => b.toString(16).toUpperCase().padStart(2, '0')).join(':'))

export const relayInfoArb = fc.record({
  v: fc.constant(1),
  tls: fc.array(fc.record({ fingerprint256: fingerprint, subject: fc.string({ maxLength: 32 }), issuer: fc.string({ maxLength: 32 }) }), { maxLength: 4 })
})

export const natInfoArb = fc.record({
  v: fc.constant(1),
  mapping: fc.constantFrom(...NAT_MAPPINGS, 'newer'),
  filtering: fc.constantFrom('endpoint-independent', 'address-dependent', 'address-and-port-dependent', 'unknown', 'newer'),
  udp: fc.constantFrom('yes', 'no', 'unknown', 'newer'),
  webrtc: fc.boolean()
})

export const capacityTableEntryArb = fc.record({ capacity: capacityArb, ageMs: fc.oneof(fc.nat({ max: 600_000 }), fc.maxSafeNat()) })

/** Any size the wire allows for a module, an input or a directory file: up to 4 GiB. */
const payloadSize = fc.oneof(size, fc.integer({ min: 0, max: 4 * 1024 * 1024 * 1024 }))

export const blobHeaderArb = fc.record({ cid: rawCidArb, size: payloadSize })

/** A donor asking for a blob from an offset, and perhaps only a range of it. */
export const fetchRequestArb = fc.record({ cid: rawCidArb, offset: payloadSize, length: fc.integer({ min: 1, max: 4 * 1024 * 1024 * 1024 }) }, { requiredKeys: ['cid', 'offset'] })

export const fetchResponseArb: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  fc.record({ size: payloadSize }),
  fc.record({ refused: fc.constantFrom(...FETCH_REFUSALS), error: fc.oneof(fc.string({ minLength: 1, maxLength: 64 }), fc.string({ unit: 'grapheme', minLength: 1, maxLength: 16 })) })
)

const taskIds = fc.array(wireId, { maxLength: 6 })
export const cancelRequestArb = fc.record({ taskIds })
export const cancelResponseArb = fc.record({ stopped: taskIds, dropped: taskIds, unknown: taskIds })

/** One segment of a guest path: never "." or "..", and with characters of several UTF-8 lengths. */
const pathSegment = fc.string({ unit: fc.constantFrom('a', 'b', 'x', '.', '-', '_', ' ', 'é', '日', '😀'), minLength: 1, maxLength: 8 })
  .filter(s => s !== '.' && s !== '..')
const relativePath = fc.array(pathSegment, { minLength: 1, maxLength: 3 }).map(segments => segments.join('/'))
/** A normalised absolute guest path. */
export const guestPathArb = relativePath.map(p => `/${p}`)

/** An entry of one preopen: a file (with its CID and size) or, without `file`, an empty directory. */
const treeEntry = fc.record({
  rel: relativePath,
  file: fc.option(fc.record({ cid: rawCidArb, size: fc.oneof(size, fc.maxSafeNat()) }), { nil: undefined, freq: 4 })
})

/**
 * A directory tree manifest as addressTree sends it: preopens of distinct
 * one-segment guest paths (so no entry of one can name another's), each with
 * distinct files and empty directories under it, sorted by path;
 * `emptyDirs` is sometimes absent, as the decoder allows.
 */
export const manifestArb: fc.Arbitrary<Record<string, unknown>> = fc.uniqueArray(
  fc.tuple(pathSegment, fc.uniqueArray(treeEntry, { maxLength: 6, selector: e => e.rel }), fc.boolean()),
  { maxLength: 4, selector: ([guest]) => guest }
).map(dirs => ({
  dirs: dirs.map(([segment, entries, listEmpty]) => {
    const guest = `/${segment}`
    const files = entries.flatMap(e => e.file != null ? [{ path: `${guest}/${e.rel}`, cid: e.file.cid, size: e.file.size }] : []).sort((a, b) => comparePaths(a.path, b.path))
    const emptyDirs = entries.flatMap(e => e.file == null ? [`${guest}/${e.rel}`] : []).sort(comparePaths)
    return { guest, files, ...(emptyDirs.length > 0 || listEmpty ? { emptyDirs } : {}) }
  }).sort((a, b) => comparePaths(a.guest, b.guest))
}))

/** The files a job created or changed (distinct paths) and the ones it removed; `removed` is sometimes absent. */
export const outputFilesArb: fc.Arbitrary<Record<string, unknown>> = fc.record({
  files: fc.uniqueArray(fc.record({ path: guestPathArb, data: fc.uint8Array({ maxLength: 64 }) }), { maxLength: 5, selector: f => f.path }),
  removed: fc.array(guestPathArb, { maxLength: 4 })
}, { requiredKeys: ['files'] })

export const observedAddrRequestArb = fc.record({
  v: fc.constant(1),
  peer: fc.oneof({ weight: 3, arbitrary: peerIdArb }, { weight: 1, arbitrary: fc.string({ minLength: 1, maxLength: 128 }) })
})

export const observedAddrAnswerArb = fc.record({ v: fc.constant(1), ip: fc.oneof(fc.ipV4(), fc.ipV6()) }, { requiredKeys: ['v'] })
