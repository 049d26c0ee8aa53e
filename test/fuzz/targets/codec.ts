/**
 * The wire decoders, fed directly: every message of capacity (the table's
 * entries too), offer, dispatch (its blob headers too), the receipt body,
 * fetch, cancel, the directory manifest and the output files document,
 * nat-info, relay-info and observed-addr. A decoder returns a message or
 * throws its named error; anything it accepts, our encoder accepts too and
 * decodes to the same value (what we take in, we can send on).
 */
import assert from 'node:assert/strict'
import * as dagCbor from '@ipld/dag-cbor'
import fc from 'fast-check'
import { decodeCancelRequest, decodeCancelResponse, encodeCancelRequest, encodeCancelResponse } from '../../../src/codec/cancel.ts'
import { decodeManifest, decodeOutputFiles, encodeManifest, encodeOutputFiles } from '../../../src/codec/manifest.ts'
import {
  decodeBlobHeader, decodeCapacity, decodeCapacityResponse, decodeCapacityTableEntry, decodeDispatchHeader, decodeDispatchResult, decodeOfferRequest,
  decodeOfferResponse, encodeBlobHeader, encodeCapacity, encodeCapacityResponse, encodeCapacityTableEntry, encodeDispatchHeader, encodeDispatchResult,
  encodeOfferRequest, encodeOfferResponse
} from '../../../src/codec/messages.ts'
import { decodeReceiptBody, encodeReceiptBody } from '../../../src/codec/receipt.ts'
import { decodeFetchRequest, decodeFetchResponse, encodeFetchRequest, encodeFetchResponse } from '../../../src/protocols/fetch/messages.ts'
import { decodeNatInfo, encodeNatInfo } from '../../../src/protocols/nat-info/nat-info.ts'
import {
  decodeObservedAddrAnswer, decodeObservedAddrRequest, encodeObservedAddrAnswer, encodeObservedAddrRequest
} from '../../../src/protocols/observed-addr/observed-addr.ts'
import { decodeRelayInfo, encodeRelayInfo } from '../../../src/protocols/relay-info/relay-info.ts'
import {
  blobHeaderArb, cancelRequestArb, cancelResponseArb, capacityArb, capacityTableEntryArb, decoderInput, dispatchHeaderArb, dispatchResultArb,
  fetchRequestArb, fetchResponseArb, manifestArb, natInfoArb, observedAddrAnswerArb, observedAddrRequestArb, offerRequestArb, offerResponseArb,
  outputFilesArb, receiptBodyArb, relayInfoArb
} from '../arbitraries.ts'
import { expectNamedError, expectWithin, FuzzFinding } from '../harness.ts'
import type { OutputFiles } from '../../../src/codec/manifest.ts'
import type { FuzzTarget } from '../harness.ts'

/** One input of a few KiB: far below this unless the decoder goes superlinear. */
const DECODE_BUDGET_MS = 500

interface DecoderSpec<T> {
  name: string
  decode: (bytes: Uint8Array) => T
  /** our encoder of the same message */
  encode: (message: T) => Uint8Array
  valid: fc.Arbitrary<Record<string, unknown>>
  /** the codes its errors may carry */
  codes: readonly string[]
  /** more that must hold of what it accepts, given the bytes it came from */
  check?: (decoded: T, bytes: Uint8Array) => void
  /** how we read our own encoding back, when not under the peer's bounds @default decode */
  decodeOurs?: (bytes: Uint8Array) => T
}

function decoderTarget<T> (spec: DecoderSpec<T>): FuzzTarget {
  const what = `decode ${spec.name}`
  const property = fc.property(decoderInput(spec.valid, (m) => dagCbor.encode(m)), (bytes) => {
    const started = performance.now()
    let decoded: T
    try {
      decoded = spec.decode(bytes)
    } catch (err) {
      expectNamedError(err, spec.codes, what)
      expectWithin(started, DECODE_BUDGET_MS, what)
      return
    }
    expectWithin(started, DECODE_BUDGET_MS, what)
    spec.check?.(decoded, bytes)
    let again: T
    try {
      again = (spec.decodeOurs ?? spec.decode)(spec.encode(decoded))
    } catch (err) {
      throw new FuzzFinding(`${what} accepted a message that our own encoder or decoder then refuses: ${(err as Error).message}`, { cause: err })
    }
    assert.deepEqual(again, decoded, `${what}: the re-encoded message decodes to another value`)
  })
  return { name: `codec.${spec.name}`, weight: 10, shrink: true, open: async () => ({ property, close: async () => {} }) }
}

const MALFORMED = ['MALFORMED_MESSAGE'] as const
const VIOLATION = ['PROTOCOL_VIOLATION'] as const

/**
 * The bound the output files document is decoded under: a broker's output
 * limit, of the order of a job's real `--max-output`. Small enough that the
 * valid messages near it (below) are cheap to build.
 */
const OUTPUT_FILES_BOUND = 1024 * 1024

/**
 * Output files whose one file's bytes sit right at the bound: a few hundred
 * bytes under it (accepted unless the framing tips it over), at it, or over.
 */
const outputFilesNearBound = fc.tuple(fc.integer({ min: OUTPUT_FILES_BOUND - 256, max: OUTPUT_FILES_BOUND + 16 }), fc.constantFrom('/out/a', '/b'))
  .map(([n, path]) => ({ files: [{ path, data: new Uint8Array(n).fill(0x61) }], removed: [] }))

/** What decodeOutputFiles accepts fits its bound: the document, and so every file and all of them together. */
function withinOutputBound (decoded: OutputFiles, bytes: Uint8Array): void {
  const total = decoded.files.reduce((s, f) => s + f.data.byteLength, 0)
  if (bytes.byteLength > OUTPUT_FILES_BOUND || total > OUTPUT_FILES_BOUND) {
    throw new FuzzFinding(`decode output-files accepted ${bytes.byteLength} bytes holding ${total} bytes of files, over its ${OUTPUT_FILES_BOUND}-byte bound`)
  }
}

export const codecTargets: FuzzTarget[] = [
  decoderTarget({ name: 'capacity', decode: decodeCapacity, encode: encodeCapacity, valid: capacityArb, codes: MALFORMED }),
  decoderTarget({
    name: 'capacity-response',
    decode: decodeCapacityResponse,
    encode: encodeCapacityResponse,
    valid: fc.oneof(capacityArb.map(capacity => ({ capacity })), fc.constant({ capacity: null })),
    codes: MALFORMED
  }),
  decoderTarget({ name: 'offer-request', decode: decodeOfferRequest, encode: encodeOfferRequest, valid: offerRequestArb, codes: MALFORMED }),
  decoderTarget({ name: 'offer-response', decode: decodeOfferResponse, encode: encodeOfferResponse, valid: offerResponseArb, codes: MALFORMED }),
  decoderTarget({ name: 'dispatch-header', decode: decodeDispatchHeader, encode: encodeDispatchHeader, valid: dispatchHeaderArb, codes: MALFORMED }),
  decoderTarget({ name: 'dispatch-result', decode: decodeDispatchResult, encode: encodeDispatchResult, valid: dispatchResultArb, codes: MALFORMED }),
  decoderTarget({ name: 'receipt-body', decode: decodeReceiptBody, encode: encodeReceiptBody, valid: receiptBodyArb, codes: MALFORMED }),
  decoderTarget({ name: 'nat-info', decode: decodeNatInfo, encode: encodeNatInfo, valid: natInfoArb, codes: VIOLATION }),
  decoderTarget({ name: 'relay-info', decode: decodeRelayInfo, encode: encodeRelayInfo, valid: relayInfoArb, codes: VIOLATION }),
  decoderTarget({ name: 'fetch-request', decode: decodeFetchRequest, encode: encodeFetchRequest, valid: fetchRequestArb, codes: MALFORMED }),
  decoderTarget({ name: 'fetch-response', decode: decodeFetchResponse, encode: encodeFetchResponse, valid: fetchResponseArb, codes: MALFORMED }),
  decoderTarget({ name: 'cancel-request', decode: decodeCancelRequest, encode: encodeCancelRequest, valid: cancelRequestArb, codes: MALFORMED }),
  decoderTarget({ name: 'cancel-response', decode: decodeCancelResponse, encode: encodeCancelResponse, valid: cancelResponseArb, codes: MALFORMED }),
  decoderTarget({ name: 'manifest', decode: decodeManifest, encode: encodeManifest, valid: manifestArb, codes: MALFORMED }),
  decoderTarget({
    name: 'output-files',
    decode: (bytes) => decodeOutputFiles(bytes, OUTPUT_FILES_BOUND),
    encode: encodeOutputFiles,
    // the broker stores what it accepted re-encoded and reads that back unbounded (broker/job-tree.ts): our
    // encoding may be a few bytes longer than the peer's (it always writes `removed`), so near the bound it
    // would not fit under it again; the bound on the files themselves is withinOutputBound's to check
    decodeOurs: (bytes) => decodeOutputFiles(bytes, Number.MAX_SAFE_INTEGER),
    valid: fc.oneof({ weight: 19, arbitrary: outputFilesArb }, { weight: 1, arbitrary: outputFilesNearBound }),
    codes: MALFORMED,
    check: withinOutputBound
  }),
  decoderTarget({ name: 'blob-header', decode: decodeBlobHeader, encode: encodeBlobHeader, valid: blobHeaderArb, codes: MALFORMED }),
  decoderTarget({
    name: 'capacity-table-entry', decode: decodeCapacityTableEntry, encode: encodeCapacityTableEntry, valid: capacityTableEntryArb, codes: MALFORMED
  }),
  decoderTarget({
    name: 'observed-addr-request', decode: decodeObservedAddrRequest, encode: encodeObservedAddrRequest, valid: observedAddrRequestArb, codes: VIOLATION
  }),
  decoderTarget({
    name: 'observed-addr-answer', decode: decodeObservedAddrAnswer, encode: encodeObservedAddrAnswer, valid: observedAddrAnswerArb, codes: VIOLATION
  })
]
