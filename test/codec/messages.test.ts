import assert from 'node:assert/strict'
import { before, describe, it } from 'node:test'
import * as dagCbor from '@ipld/dag-cbor'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { base58btc } from 'multiformats/bases/base58'
import { dagCborCid, rawCid, rawCidString } from '../../src/codec/cid.ts'
import { MalformedMessageError } from '../../src/codec/errors.ts'
import {
  decodeBlobHeader, encodeBlobHeader, MAX_OFFER_FILE_CIDS,
  decodeCapacity, decodeCapacityResponse, decodeDispatchHeader, decodeDispatchResult, decodeOfferRequest, decodeOfferResponse,
  encodeCapacity, encodeCapacityResponse, encodeDispatchHeader, encodeDispatchResult, encodeOfferRequest, encodeOfferResponse,
  MAX_BLOB_BYTES, MAX_MESSAGE_BYTES, MAX_PAYLOAD_WIRE_BYTES
} from '../../src/codec/messages.ts'
import { outputCid } from '../../src/codec/receipt.ts'
import { DEFAULT_JOB_LIMITS } from '../../src/core/job.ts'
import type { Capacity, DispatchHeader, DispatchResultHeader, OfferRequest, OfferResponse } from '../../src/codec/messages.ts'

const enc = new TextEncoder()
const moduleCid = rawCidString(enc.encode('module'))
const inputCid = rawCidString(enc.encode('input'))
let peerId: string
let capacity: Capacity

const offerRequest: OfferRequest = { jobId: 'job-1', taskId: 'job-1/0', moduleCid, moduleSize: 1024, inputSize: 5, limits: { deadlineMs: 5000, fuel: 1_000_000 } }
const offerResponse: OfferResponse = { accept: false, reason: 'busy: all 1 slot(s) in use', code: 'busy', hasModule: true, freeSlots: 0 }
const header: DispatchHeader = {
  jobId: 'job-1', taskId: 'job-1/0', moduleCid, inputCid, args: ['--x', 'é'], env: ['A=1', 'EMPTY='], limits: { deadlineMs: 1000 }, moduleSize: 6, inputSize: 5, sendsModule: true
}
const result: DispatchResultHeader = {
  status: 'failed',
  exitCode: 3,
  error: 'exit 3',
  outputCid: outputCid(enc.encode('o'), enc.encode('e')),
  fuelUsed: 2 ** 50,
  durationMs: 12,
  stdoutSize: 1,
  stderrSize: 1,
  receipt: { body: enc.encode('body'), signature: new Uint8Array(64).fill(7) }
}

/** Decodes `bytes`, expecting a MalformedMessageError on `field`. */
function rejects (decode: (b: Uint8Array) => unknown, bytes: Uint8Array, field: string, text?: RegExp): void {
  assert.throws(() => decode(bytes), (err: unknown) => {
    assert.ok(err instanceof MalformedMessageError, `expected MalformedMessageError, got ${String(err)}`)
    assert.equal(err.code, 'MALFORMED_MESSAGE')
    assert.equal(err.field, field, err.message)
    if (text != null) assert.match(err.message, text)
    return true
  })
}

/** The encoded message as a plain map, with `change` applied, re-encoded without our encoder's checks. */
function mutate (bytes: Uint8Array, change: (m: Record<string, any>) => void): Uint8Array {
  const m = dagCbor.decode(bytes) as Record<string, any>
  change(m)
  return dagCbor.encode(m)
}

describe('messages', () => {
  before(async () => {
    peerId = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    capacity = {
      peerId,
      acceptsJobs: true,
      slots: 4,
      freeSlots: 3,
      maxLimits: { ...DEFAULT_JOB_LIMITS },
      addrs: ['/ip4/127.0.0.1/tcp/4001', `/ip4/127.0.0.1/tcp/4002/p2p/${peerId}/p2p-circuit`],
      ts: 1_700_000_000_000
    }
  })

  describe('round trips', () => {
    it('carries a capacity announcement unchanged', () => {
      assert.deepEqual(decodeCapacity(encodeCapacity(capacity)), capacity)
    })

    it('carries a capacity response, with or without a capacity', () => {
      assert.deepEqual(decodeCapacityResponse(encodeCapacityResponse({ capacity })), { capacity })
      assert.deepEqual(decodeCapacityResponse(encodeCapacityResponse({ capacity: null })), { capacity: null })
    })

    it('carries offer requests and responses unchanged', () => {
      assert.deepEqual(decodeOfferRequest(encodeOfferRequest(offerRequest)), offerRequest)
      assert.deepEqual(decodeOfferResponse(encodeOfferResponse(offerResponse)), offerResponse)
      const accept: OfferResponse = { accept: true, hasModule: false, freeSlots: 2 }
      assert.deepEqual(decodeOfferResponse(encodeOfferResponse(accept)), accept)
    })

    it('carries dispatch headers and results unchanged', () => {
      assert.deepEqual(decodeDispatchHeader(encodeDispatchHeader(header)), header)
      assert.deepEqual(decodeDispatchResult(encodeDispatchResult(result)), result)
      const ok: DispatchResultHeader = { ...result, status: 'succeeded', exitCode: 0, moduleMissing: false }
      delete ok.error
      assert.deepEqual(decodeDispatchResult(encodeDispatchResult(ok)), ok)
    })

    it('keeps CIDs as strings on the wire, exactly as sent', () => {
      const b58 = rawCid(enc.encode('module')).toString(base58btc)
      const decoded = decodeDispatchHeader(encodeDispatchHeader({ ...header, moduleCid: b58 }))
      assert.equal(decoded.moduleCid, b58)
      const wire = dagCbor.decode(encodeDispatchHeader(header)) as Record<string, unknown>
      assert.equal(typeof wire.moduleCid, 'string')
    })

    it('ignores fields it does not know, for peers a minor version ahead', () => {
      const bytes = mutate(encodeOfferRequest(offerRequest), m => { m.priority = 7 })
      assert.deepEqual(decodeOfferRequest(bytes), offerRequest)
    })

    it('decodes an offer refusal without a decline code (an older peer) and reads a code it does not know as other', () => {
      const old = mutate(encodeOfferResponse(offerResponse), m => { delete m.code })
      assert.equal(decodeOfferResponse(old).code, undefined)
      assert.equal(decodeOfferResponse(old).reason, offerResponse.reason)
      const newer = mutate(encodeOfferResponse(offerResponse), m => { m.code = 'quota-exceeded' })
      assert.equal(decodeOfferResponse(newer).code, 'other')
    })

    it('carries the crash code of a dispatch result, and drops one it does not know', () => {
      const crashed: DispatchResultHeader = { ...result, exitCode: undefined, error: 'executor crashed: the sandbox process was killed by SIGKILL', errorCode: 'EXECUTOR_CRASHED' }
      delete crashed.exitCode
      assert.deepEqual(decodeDispatchResult(encodeDispatchResult(crashed)), crashed)
      const newer = mutate(encodeDispatchResult(crashed), m => { m.errorCode = 'EXECUTOR_ON_FIRE' })
      assert.equal(decodeDispatchResult(newer).errorCode, undefined)
    })
  })

  describe('malformed input', () => {
    it('rejects bytes that are not dag-cbor', () => {
      rejects(decodeDispatchHeader, new Uint8Array([0xff, 0x00, 0x13, 0x37]), '(message)', /not valid dag-cbor/)
      rejects(decodeDispatchHeader, new Uint8Array(0), '(message)', /empty/)
      rejects(decodeDispatchHeader, dagCbor.encode(['a', 'list']), '(message)', /must be a map/)
    })

    it('rejects a message over its size limit before decoding it', () => {
      rejects(decodeOfferRequest, new Uint8Array(MAX_MESSAGE_BYTES.offerRequest + 1), '(message)', new RegExp(`over the ${MAX_MESSAGE_BYTES.offerRequest}-byte limit`))
      rejects(decodeCapacity, new Uint8Array(MAX_MESSAGE_BYTES.capacity + 1), '(message)', /over the/)
    })

    it('refuses to encode a header whose args exceed the message limit', () => {
      const args = Array.from({ length: 64 }, () => 'x'.repeat(4096))
      assert.throws(() => decodeDispatchHeader(dagCbor.encode({ ...dagCbor.decode(encodeDispatchHeader(header)) as object, args })), /message is \d+ bytes, over the 131072-byte limit/)
      assert.throws(() => encodeDispatchHeader({ ...header, args }), /malformed dispatch header: message is \d+ bytes, over the 131072-byte limit/)
      assert.throws(() => encodeDispatchHeader({ ...header, args: ['x'.repeat(5000)] }), /field "args\[0\]" must be at most 4096 characters/)
    })

    const headerCases: Array<[string, (m: Record<string, any>) => void, string, RegExp?]> = [
      ['a missing taskId', m => { delete m.taskId }, 'taskId', /is missing/],
      ['a numeric taskId', m => { m.taskId = 42 }, 'taskId', /must be a string, got the integer 42/],
      ['an empty jobId', m => { m.jobId = '' }, 'jobId', /must not be empty/],
      ['a taskId with spaces', m => { m.taskId = 'a b' }, 'taskId', /printable ASCII/],
      ['an overlong taskId', m => { m.taskId = 'x'.repeat(129) }, 'taskId', /at most 128/],
      ['a moduleCid that is not a CID', m => { m.moduleCid = 'hello' }, 'moduleCid', /must be a CID string/],
      ['a moduleCid with the dag-cbor codec', m => { m.moduleCid = dagCborCid(enc.encode('x')).toString() }, 'moduleCid', /CIDv1 raw sha2-256/],
      ['an inputCid sent as a CID object', m => { m.inputCid = rawCid(enc.encode('input')) }, 'inputCid', /a CID object/],
      ['args that are not a list', m => { m.args = 'a b' }, 'args', /must be a list/],
      ['an arg that is not a string', m => { m.args = ['ok', 3] }, 'args[1]', /must be a string/],
      ['too many args', m => { m.args = Array.from({ length: 1025 }, () => 'a') }, 'args', /at most 1024 entries/],
      ['an env entry without =', m => { m.env = ['A=1', 'NOPE'] }, 'env[1]', /K=V/],
      ['an env entry with an empty name', m => { m.env = ['=1'] }, 'env[0]', /K=V/],
      ['a negative deadline', m => { m.limits = { deadlineMs: -5 } }, 'limits.deadlineMs', /between 1 and/],
      ['a fractional fuel', m => { m.limits = { fuel: 1.5 } }, 'limits.fuel', /must be an integer, got the number 1.5/],
      ['limits that are not a map', m => { m.limits = [1] }, 'limits', /must be a map/],
      ['a missing limits', m => { delete m.limits }, 'limits', /is missing/],
      ['a module larger than the 4 GiB wire bound', m => { m.moduleSize = MAX_PAYLOAD_WIRE_BYTES + 1 }, 'moduleSize', new RegExp(`between 0 and ${MAX_PAYLOAD_WIRE_BYTES}`)],
      ['a negative input size', m => { m.inputSize = -1 }, 'inputSize', /between 0 and/],
      ['sendsModule as a number', m => { m.sendsModule = 1 }, 'sendsModule', /must be a boolean/]
    ]
    for (const [what, change, field, text] of headerCases) {
      it(`rejects a dispatch header with ${what}, naming ${field}`, () => {
        rejects(decodeDispatchHeader, mutate(encodeDispatchHeader(header), change), field, text)
      })
    }

    const resultCases: Array<[string, (m: Record<string, any>) => void, string, RegExp?]> = [
      ['an unknown status', m => { m.status = 'done' }, 'status', /must be one of succeeded/],
      ['a raw outputCid', m => { m.outputCid = rawCidString(enc.encode('o')) }, 'outputCid', /dag-cbor/],
      ['a fuelUsed above 2^53', m => { m.fuelUsed = 2n ** 60n }, 'fuelUsed', /must be an integer, got the integer 1152921504606846976/],
      ['a stdout larger than 64 MiB', m => { m.stdoutSize = MAX_BLOB_BYTES + 1 }, 'stdoutSize'],
      ['a receipt without a signature', m => { delete m.receipt.signature }, 'receipt.signature', /is missing/],
      ['a receipt body that is a string', m => { m.receipt.body = 'abc' }, 'receipt.body', /must be bytes/],
      ['an oversized signature', m => { m.receipt.signature = new Uint8Array(513) }, 'receipt.signature', /at most 512 bytes/],
      ['an error that is a number', m => { m.error = 5 }, 'error', /must be a string/],
      ['an exit code that is text', m => { m.exitCode = '0' }, 'exitCode', /must be an integer/],
      ['a moduleMissing that is text', m => { m.moduleMissing = 'yes' }, 'moduleMissing', /boolean/],
      ['an error code that is a number', m => { m.errorCode = 1 }, 'errorCode', /must be a string/]
    ]
    for (const [what, change, field, text] of resultCases) {
      it(`rejects a dispatch result with ${what}, naming ${field}`, () => {
        rejects(decodeDispatchResult, mutate(encodeDispatchResult(result), change), field, text)
      })
    }

    const offerCases: Array<[string, (m: Record<string, any>) => void, string]> = [
      ['a missing moduleCid', m => { delete m.moduleCid }, 'moduleCid'],
      ['a string moduleSize', m => { m.moduleSize = '10' }, 'moduleSize'],
      ['an unknown limit with a bad known one', m => { m.limits = { other: 1, memoryBytes: -1 } }, 'limits.memoryBytes']
    ]
    for (const [what, change, field] of offerCases) {
      it(`rejects an offer request with ${what}, naming ${field}`, () => {
        rejects(decodeOfferRequest, mutate(encodeOfferRequest(offerRequest), change), field)
      })
    }

    it('rejects an offer response with a missing accept or a reason that is not text', () => {
      rejects(decodeOfferResponse, mutate(encodeOfferResponse(offerResponse), m => { delete m.accept }), 'accept')
      rejects(decodeOfferResponse, mutate(encodeOfferResponse(offerResponse), m => { m.reason = ['x'] }), 'reason')
      rejects(decodeOfferResponse, mutate(encodeOfferResponse(offerResponse), m => { m.reason = 'x'.repeat(1025) }), 'reason')
      rejects(decodeOfferResponse, mutate(encodeOfferResponse(offerResponse), m => { m.code = true }), 'code')
    })

    it('rejects capacities with a bad PeerId, more free slots than slots, an address that is not a multiaddr, or partial maxLimits', () => {
      rejects(decodeCapacity, mutate(encodeCapacity(capacity), m => { m.peerId = 'peer' }), 'peerId', /must be a PeerId/)
      rejects(decodeCapacity, mutate(encodeCapacity(capacity), m => { m.freeSlots = 5 }), 'freeSlots', /must not exceed slots \(4\)/)
      rejects(decodeCapacity, mutate(encodeCapacity(capacity), m => { m.addrs = ['127.0.0.1:4001'] }), 'addrs[0]', /multiaddr/)
      rejects(decodeCapacity, mutate(encodeCapacity(capacity), m => { delete m.maxLimits.fuel }), 'maxLimits.fuel', /is missing/)
      rejects(decodeCapacity, mutate(encodeCapacity(capacity), m => { m.addrs = Array.from({ length: 65 }, () => '/ip4/1.2.3.4') }), 'addrs', /at most 64/)
      rejects(decodeCapacityResponse, dagCbor.encode({}), 'capacity', /is missing/)
      rejects(decodeCapacityResponse, mutate(encodeCapacityResponse({ capacity }), m => { m.capacity.acceptsJobs = 'yes' }), 'capacity.acceptsJobs', /boolean/)
    })

    it('rejects duplicate map keys and non-minimal integers (dag-cbor strictness)', () => {
      // { "a": 1, "a": 2 } by hand
      const dup = new Uint8Array([0xa2, 0x61, 0x61, 0x01, 0x61, 0x61, 0x02])
      rejects(decodeOfferResponse, dup, '(message)', /not valid dag-cbor/)
    })
  })
})

describe('the cost rule in offers and dispatch headers', () => {
  it('carries the meter an offer names, and none from older peers', () => {
    const req = { ...offerRequest, meter: 'meter/4' }
    assert.deepEqual(decodeOfferRequest(encodeOfferRequest(req)), req)
    assert.equal('meter' in decodeOfferRequest(encodeOfferRequest(offerRequest)), false)
  })

  it('refuses a meter name longer than a name', () => {
    assert.throws(() => encodeOfferRequest({ ...offerRequest, meter: 'm'.repeat(33) }), (err: unknown) => err instanceof MalformedMessageError && err.field === 'meter')
  })

  it('carries the meter of a dispatch that brings its own offer', () => {
    const h = { ...header, offered: true, meter: 'meter/4' }
    assert.deepEqual(decodeDispatchHeader(encodeDispatchHeader(h)), h)
  })

  it('reads the meter decline code', () => {
    assert.equal(decodeOfferResponse(encodeOfferResponse({ ...offerResponse, accept: false, code: 'meter' })).code, 'meter')
  })
})

describe('directory fields of offer and dispatch messages', () => {
  const blob = rawCidString(enc.encode('file'))
  const manifestCid = dagCborCid(enc.encode('manifest')).toString()

  it('carries the blob CIDs an offer names and the ones the donor holds', () => {
    const req = { ...offerRequest, fileCids: [blob], filesSize: 4 }
    assert.deepEqual(decodeOfferRequest(encodeOfferRequest(req)), req)
    const res = { ...offerResponse, hasFiles: [blob] }
    assert.deepEqual(decodeOfferResponse(encodeOfferResponse(res)), res)
  })

  it('decodes offers of older peers without the fields', () => {
    assert.equal(decodeOfferRequest(encodeOfferRequest(offerRequest)).fileCids, undefined)
    assert.equal(decodeOfferResponse(encodeOfferResponse(offerResponse)).hasFiles, undefined)
  })

  it('fits an offer naming the most blobs it may', () => {
    const many = Array.from({ length: MAX_OFFER_FILE_CIDS }, (_, i) => rawCidString(enc.encode(`f${i}`)))
    assert.equal(decodeOfferRequest(encodeOfferRequest({ ...offerRequest, fileCids: many })).fileCids?.length, MAX_OFFER_FILE_CIDS)
    assert.throws(() => encodeOfferRequest({ ...offerRequest, fileCids: [...many, blob] }), (err: unknown) => err instanceof MalformedMessageError && err.field === 'fileCids')
  })

  it('refuses a file CID that is not CIDv1 raw, naming its index', () => {
    const bytes = dagCbor.encode({ ...offerRequest, limits: {}, fileCids: [blob, manifestCid] })
    assert.throws(() => decodeOfferRequest(bytes), (err: unknown) => err instanceof MalformedMessageError && err.field === 'fileCids[1]')
  })

  it('carries a dispatch header\'s manifest fields together or not at all', () => {
    const h = { ...header, manifestCid, manifestSize: 100, blobCount: 2 }
    assert.deepEqual(decodeDispatchHeader(encodeDispatchHeader(h)), h)
    assert.throws(() => encodeDispatchHeader({ ...header, manifestSize: 100 }), (err: unknown) => err instanceof MalformedMessageError && err.field === 'manifestCid')
    assert.throws(() => encodeDispatchHeader({ ...header, manifestCid }), (err: unknown) => err instanceof MalformedMessageError && err.field === 'manifestSize')
  })

  it('round-trips blob headers and a result\'s files fields', () => {
    assert.deepEqual(decodeBlobHeader(encodeBlobHeader({ cid: blob, size: 4 })), { cid: blob, size: 4 })
    // a directory file may be as big as a module: a donor's --max-payload decides, the wire only bounds it
    assert.deepEqual(decodeBlobHeader(encodeBlobHeader({ cid: blob, size: MAX_BLOB_BYTES + 1 })).size, MAX_BLOB_BYTES + 1)
    assert.throws(() => encodeBlobHeader({ cid: blob, size: MAX_PAYLOAD_WIRE_BYTES + 1 }), (err: unknown) => err instanceof MalformedMessageError && err.field === 'size')
    const r = { ...result, filesSize: 12, filesMissing: true }
    assert.deepEqual(decodeDispatchResult(encodeDispatchResult(r)), r)
  })
})
