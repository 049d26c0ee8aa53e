import { WorldComputeError } from '../core/errors.ts'

/**
 * Bytes from a peer that are not the message they claim to be: not dag-cbor,
 * over the size limit, or a field of the wrong type, length or range.
 * `messageType` and `field` say exactly which, so a log line can name them.
 */
export class MalformedMessageError extends WorldComputeError {
  readonly messageType: string
  /** dotted path of the offending field, or `(message)` when the whole message is unusable */
  readonly field: string
  constructor (messageType: string, field: string, problem: string, options?: { cause?: unknown }) {
    super(`malformed ${messageType}: ${field === '(message)' ? 'message' : `field "${field}"`} ${problem}`, 'MALFORMED_MESSAGE', options)
    this.messageType = messageType
    this.field = field
  }
}

/**
 * A receipt that does not prove what it should: bad signature, a signer other
 * than the executor we dispatched to, or a field (task, module, input, output)
 * that differs from what we sent or received. The result must not be trusted.
 */
export class ReceiptInvalidError extends WorldComputeError {
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, 'RECEIPT_INVALID', options)
  }
}
