/**
 * The fetch protocol's two messages, dag-cbor, checked field by field like
 * those of codec/messages.ts.
 */
import { MAX_PAYLOAD_WIRE_BYTES } from '../../codec/messages.ts'
import { MalformedMessageError } from '../../codec/errors.ts'
import { decodeBounded, encodePlain, FieldReader } from '../../codec/validate.ts'
import { MAX_FETCH_MESSAGE_BYTES } from './constants.ts'

/** Donor → broker: the blob, from `offset` on (0: all of it; more: the next range, or resuming a fetch cut short). */
export interface FetchRequest {
  /** CIDv1 raw sha2-256 */
  cid: string
  offset: number
  /** at most this many bytes from `offset`; absent: to the end */
  length?: number
}

/** Why a broker sends nothing: no task of ours names the CID, or its bytes are gone. */
export const FETCH_REFUSALS = ['not-granted', 'unavailable', 'bad-offset'] as const
export type FetchRefusal = typeof FETCH_REFUSALS[number]

/** Broker → donor: the blob's whole size, its bytes from the offset following as a payload; or a refusal and nothing after. */
export type FetchResponse = { size: number } | { refused: FetchRefusal, error: string }

const SIZE_RANGE = { min: 0, max: MAX_PAYLOAD_WIRE_BYTES }

function readRequest (r: FieldReader): FetchRequest {
  const length = r.optionalInteger('length', { min: 1, max: MAX_PAYLOAD_WIRE_BYTES })
  return { cid: r.cid('cid', 'raw'), offset: r.integer('offset', SIZE_RANGE), ...(length != null ? { length } : {}) }
}

function readResponse (r: FieldReader): FetchResponse {
  if (r.has('refused')) {
    return { refused: r.oneOf('refused', FETCH_REFUSALS), error: r.string('error', { maxLength: 512 }) }
  }
  return { size: r.integer('size', SIZE_RANGE) }
}

function encodeChecked<T> (what: string, wire: Record<string, unknown>, read: (r: FieldReader) => T): Uint8Array {
  read(new FieldReader(what, wire))
  const bytes = encodePlain(wire)
  if (bytes.byteLength > MAX_FETCH_MESSAGE_BYTES) throw new MalformedMessageError(what, '(message)', `is ${bytes.byteLength} bytes, over the ${MAX_FETCH_MESSAGE_BYTES}-byte limit`)
  return bytes
}

export function encodeFetchRequest (req: FetchRequest): Uint8Array {
  return encodeChecked('fetch request', { cid: req.cid, offset: req.offset, length: req.length }, readRequest)
}

export function decodeFetchRequest (bytes: Uint8Array): FetchRequest {
  return readRequest(new FieldReader('fetch request', decodeBounded('fetch request', bytes, MAX_FETCH_MESSAGE_BYTES)))
}

export function encodeFetchResponse (res: FetchResponse): Uint8Array {
  const wire = 'refused' in res ? { refused: res.refused, error: res.error.slice(0, 512) } : { size: res.size }
  return encodeChecked('fetch response', wire, readResponse)
}

export function decodeFetchResponse (bytes: Uint8Array): FetchResponse {
  return readResponse(new FieldReader('fetch response', decodeBounded('fetch response', bytes, MAX_FETCH_MESSAGE_BYTES)))
}
