import type { BackoffPolicy } from '../../core/async.ts'
import type { StreamLimits } from '../exchange.ts'

/** `/worldcompute/fetch/1.0.0`: a donor asks its broker for one blob by CID (and an offset to resume at); the bytes come back in frames. */
export const FETCH_PROTOCOL = '/worldcompute/fetch/1.0.0'

/**
 * A module or input over this size is not pushed on the dispatch stream:
 * the dispatch names it by CID and size and the donor fetches what its
 * content store lacks. The same 8 MiB over which the CLI uploads a file as a
 * blob: below it a payload is cheap to send again, above it a copy on the
 * donor's disk saves the transfer.
 */
export const PULL_THRESHOLD_BYTES = 8 * 1024 * 1024
/** Payload frames, as on the dispatch stream: well under yamux's window and relays' buffers. */
export const FETCH_FRAME_BYTES = 256 * 1024
/** Donor: a fetch that makes no progress for this long is given up (resumed, while attempts last). */
export const FETCH_STALL_TIMEOUT_MS = 30_000
/** Donor: one fetch is tried this many times in all, each resuming where the last stopped. */
export const FETCH_ATTEMPTS = 3
/**
 * Donor: the wait between two attempts, doubling, with jitter: a broker that
 * dropped many donors' fetches at once (a restart, a full uplink) is not asked
 * again by all of them in the same instant.
 */
export const FETCH_RETRY_BACKOFF: BackoffPolicy = { initialMs: 500, maxMs: 4_000, jitter: 0.2 }
/** Donor's content store of big modules and inputs, on disk, by total bytes (`--content-cache`). */
export const CONTENT_STORE_BYTES = 2 * 1024 * 1024 * 1024
/** Largest fetch request and response header. */
export const MAX_FETCH_MESSAGE_BYTES = 1024

/**
 * Donor: a blob is asked for in ranges of this size, each on a stream of its
 * own, with one range asked ahead of the one being written. The muxer does
 * not wait for a slow reader, so this bounds what can pile up in memory while
 * the disk is slow (two ranges; the stream's read buffer is larger). The
 * range ahead is asked once the current one's answer came, and its own answer
 * is two round trips away (the stream's protocol negotiation, then the
 * request): the transfer waits between ranges unless a range lasts that long,
 * so a range must hold two round trips' worth of bytes. 16 MiB does for a
 * 100 ms path at 80 MiB/s; bench/upload.ts over a 50 ms path, 64 MiB: 0.40×
 * a plain stream with 8 MiB ranges, 0.66× with 16 MiB.
 */
export const FETCH_RANGE_BYTES = 16 * 1024 * 1024
/** Donor: fetched frames are written to disk in batches of this size, one write at a time. */
export const WRITE_BATCH_BYTES = 4 * 1024 * 1024

export const FETCH_LIMITS: StreamLimits = {
  maxFrameBytes: FETCH_FRAME_BYTES,
  // the muxer does not wait for a reader: room for what arrives while one batch is written to disk
  maxBufferBytes: 32 * 1024 * 1024,
  // a task pulls its module and its input, one at a time; a donor runs a few tasks of one broker at once
  maxInboundStreams: 32,
  maxOutboundStreams: 32
}
