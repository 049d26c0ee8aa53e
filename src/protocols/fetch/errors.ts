/**
 * Errors of the fetch protocol and of the donor's content store it fills;
 * each with a stable code. The store's classes live here so the dispatch
 * service (this layer) can decide on them by class.
 */
import { errorWithCode, WorldComputeError } from '../../core/errors.ts'

/** The broker has no task of ours that names this CID (never dispatched to us, or finished since): it serves nothing else. */
export class FetchRefusedError extends errorWithCode('FETCH_REFUSED') {}

/** A fetch that failed after its attempts: the peer, the connection's address and transport, and the cause. */
export class FetchFailedError extends WorldComputeError {
  readonly peer: string
  readonly addr: string
  readonly phase = 'fetch'
  constructor (cid: string, peer: string, addr: string, transport: string, options: { cause: unknown }) {
    super(`fetch of ${cid} from ${peer} over ${addr} (${transport}) failed: ${(options.cause as Error)?.message ?? String(options.cause)}`, 'FETCH_FAILED', options)
    this.peer = peer
    this.addr = addr
  }
}

/** The disk under the content store is full (ENOSPC, EDQUOT): nothing of the blob is kept, the task is refused with `disk-full`. */
export class ContentStoreFullError extends errorWithCode('CONTENT_STORE_FULL') {}

/** A blob larger than the whole content store (`--content-cache`): it cannot be kept, the task is refused with `payload-too-large`. */
export class ContentTooLargeError extends errorWithCode('CONTENT_TOO_LARGE') {}

/** The bytes fetched do not hash to the CID asked for, or are not its announced size: nothing is kept. */
export class ContentCidMismatchError extends errorWithCode('CONTENT_CID_MISMATCH') {}
