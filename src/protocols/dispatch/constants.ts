import { MAX_BLOB_BYTES, MAX_PAYLOAD_WIRE_BYTES } from '../../codec/messages.ts'
import type { StreamLimits } from '../exchange.ts'

/** `/worldcompute/dispatch/1.0.0`: a task's bytes out, its output and signed receipt back, streamed as dag-cbor and payload frames. */
export const DISPATCH_PROTOCOL = '/worldcompute/dispatch/1.0.0'
/**
 * `/worldcompute/dispatch/1.1.0`: the same messages, but the stream outlives
 * its task: after an answer the donor waits for the next task's header, and
 * the broker keeps the stream for its next task to that donor (no stream
 * opened, no protocol negotiated per task). The broker's half-close at a
 * header boundary ends it.
 */
export const DISPATCH_SESSION_PROTOCOL = '/worldcompute/dispatch/1.1.0'
/** Broker: an idle session stream is closed after this long without a task (before the donor gives up on it). */
export const IDLE_STREAM_MS = 10_000
/** Broker: idle session streams kept per connection; more are closed as their tasks end. */
export const MAX_IDLE_STREAMS = 16
/** Donor: how long a session stream waits for its broker's next task before it is closed. */
export const SESSION_IDLE_MS = 60_000

/** Payload frames: 256 KiB keeps a frame well under yamux's 16 MiB window and relays' buffers. */
export const MAX_FRAME_BYTES = 256 * 1024
/**
 * What the muxer may hand us before we read it. We read as fast as frames
 * arrive; only a peer sending when it should wait (during execution) fills it.
 */
export const MAX_BUFFER_BYTES = 4 * 1024 * 1024
/** Largest module, input and directory file, each, by default (a donor's `--max-payload` moves it). */
export const MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
/** What no `maxPayloadBytes` can exceed: the wire's bound. */
export const PAYLOAD_CEILING_BYTES = MAX_PAYLOAD_WIRE_BYTES
/** Largest stdout and largest stderr a broker accepts, each. */
export const MAX_OUTPUT_BYTES = MAX_BLOB_BYTES
/** Donor's module cache, by total bytes, least recently used evicted first. */
export const MODULE_CACHE_BYTES = 256 * 1024 * 1024
/** Donor's memory of recent tasks (for idempotent retries): by count ... */
export const REMEMBER_TASKS = 1024
/** ... and by the output bytes they hold. */
export const REMEMBER_BYTES = 256 * 1024 * 1024
/** Broker: opening the stream and negotiating the protocol. */
export const OPEN_STREAM_TIMEOUT_MS = 10_000
/** Both sides: a transfer (send or receive) that makes no progress for this long is given up. */
export const STALL_TIMEOUT_MS = 30_000
/**
 * Broker: the execute phase may last the job's deadline plus this. Larger
 * than the donor's own margin, so an honest donor always answers
 * (`deadline_exceeded`) before the broker gives up.
 */
export const EXECUTE_MARGIN_MS = 30_000
/** Donor: how long past the job's deadline it waits for `runTask` before answering `deadline_exceeded`. */
export const DONOR_EXECUTE_MARGIN_MS = 15_000
export const DISPATCH_LIMITS: StreamLimits = {
  maxFrameBytes: MAX_FRAME_BYTES,
  maxBufferBytes: MAX_BUFFER_BYTES,
  // dispatches in flight on one connection; the donor's slots are the real limit: only a dispatch against an accepted offer is read past its header
  maxInboundStreams: 16,
  maxOutboundStreams: 64
}
/** Donor's cache of directory files (job submit --dir), by total bytes, least recently used evicted first. */
export const CONTENT_CACHE_BYTES = 256 * 1024 * 1024
