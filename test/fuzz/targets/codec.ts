/**
 * The wire decoders, fed directly: every message of capacity, offer,
 * dispatch, the receipt body, nat-info and relay-info. A decoder returns a
 * message or throws its named error; anything it accepts, our encoder
 * accepts too and decodes to the same value (what we take in, we can send on).
 */
import assert from 'node:assert/strict'
import * as dagCbor from '@ipld/dag-cbor'
import fc from 'fast-check'
import {
  decodeCapacity, decodeCapacityResponse, decodeDispatchHeader, decodeDispatchResult, decodeOfferRequest, decodeOfferResponse,
  encodeCapacity, encodeCapacityResponse, encodeDispatchHeader, encodeDispatchResult, encodeOfferRequest, encodeOfferResponse
} from '../../../src/codec/messages.ts'
import { decodeReceiptBody, encodeReceiptBody } from '../../../src/codec/receipt.ts'
import { decodeNatInfo, encodeNatInfo } from '../../../src/protocols/nat-info/nat-info.ts'
import { decodeRelayInfo, encodeRelayInfo } from '../../../src/protocols/relay-info/relay-info.ts'
import {
  capacityArb, decoderInput, dispatchHeaderArb, dispatchResultArb, natInfoArb, offerRequestArb, offerResponseArb, receiptBodyArb, relayInfoArb
} from '../arbitraries.ts'
import { expectNamedError, expectWithin, FuzzFinding } from '../harness.ts'
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
    let again: T
    try {
      again = spec.decode(spec.encode(decoded))
    } catch (err) {
      throw new FuzzFinding(`${what} accepted a message that our own encoder or decoder then refuses: ${(err as Error).message}`, { cause: err })
    }
    assert.deepEqual(again, decoded, `${what}: the re-encoded message decodes to another value`)
  })
  return { name: `codec.${spec.name}`, weight: 10, shrink: true, open: async () => ({ property, close: async () => {} }) }
}

const MALFORMED = ['MALFORMED_MESSAGE'] as const
const VIOLATION = ['PROTOCOL_VIOLATION'] as const

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
  decoderTarget({ name: 'relay-info', decode: decodeRelayInfo, encode: encodeRelayInfo, valid: relayInfoArb, codes: VIOLATION })
]
