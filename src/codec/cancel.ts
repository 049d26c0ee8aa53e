/**
 * The wire messages of /worldcompute/cancel/1.0.0, checked like every other
 * message (messages.ts): the decoder checks size and every field, the encoder
 * runs the same checks on what we are about to send.
 */
import { MalformedMessageError } from './errors.ts'
import { MAX_ID_LENGTH } from './messages.ts'
import { decodeBounded, encodePlain, FieldReader } from './validate.ts'

/** Tasks one cancel names: a job has at most 16 replicas of at most a few attempts each. */
export const MAX_CANCEL_TASKS = 256
/** Size bound of a cancel request or response: every task ID at its longest, with room. */
export const MAX_CANCEL_MESSAGE_BYTES = 64 * 1024

const ID_ITEMS = { maxItems: MAX_CANCEL_TASKS, maxItemLength: MAX_ID_LENGTH, minItemLength: 1, itemPattern: /^[\x21-\x7e]+$/, itemHint: 'printable ASCII without spaces' }

/** Broker → donor: stop these tasks of mine. */
export interface CancelRequest {
  taskIds: string[]
}

/**
 * Donor → broker, each requested task in exactly one list: `stopped` (it was
 * running: the run is abandoned and its slot free), `dropped` (offered or
 * arriving, not started: its hold is gone, a dispatch for it is refused), or
 * `unknown` (nothing of this broker's by that ID here: never offered, already
 * finished, or another broker's).
 */
export interface CancelResponse {
  stopped: string[]
  dropped: string[]
  unknown: string[]
}

function readCancelRequest (r: FieldReader): CancelRequest {
  return { taskIds: r.stringArray('taskIds', ID_ITEMS) }
}

function readCancelResponse (r: FieldReader): CancelResponse {
  return { stopped: r.stringArray('stopped', ID_ITEMS), dropped: r.stringArray('dropped', ID_ITEMS), unknown: r.stringArray('unknown', ID_ITEMS) }
}

function encodeChecked<T> (messageType: string, wire: Record<string, unknown>, read: (r: FieldReader) => T): Uint8Array {
  read(new FieldReader(messageType, wire))
  const bytes = encodePlain(wire)
  if (bytes.byteLength > MAX_CANCEL_MESSAGE_BYTES) throw new MalformedMessageError(messageType, '(message)', `is ${bytes.byteLength} bytes, over the ${MAX_CANCEL_MESSAGE_BYTES}-byte limit`)
  return bytes
}

export function encodeCancelRequest (req: CancelRequest): Uint8Array {
  return encodeChecked('cancel request', { taskIds: req.taskIds }, readCancelRequest)
}

export function decodeCancelRequest (bytes: Uint8Array): CancelRequest {
  return readCancelRequest(new FieldReader('cancel request', decodeBounded('cancel request', bytes, MAX_CANCEL_MESSAGE_BYTES)))
}

export function encodeCancelResponse (res: CancelResponse): Uint8Array {
  return encodeChecked('cancel response', { stopped: res.stopped, dropped: res.dropped, unknown: res.unknown }, readCancelResponse)
}

export function decodeCancelResponse (bytes: Uint8Array): CancelResponse {
  return readCancelResponse(new FieldReader('cancel response', decodeBounded('cancel response', bytes, MAX_CANCEL_MESSAGE_BYTES)))
}
