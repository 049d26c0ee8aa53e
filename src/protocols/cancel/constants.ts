import type { StreamLimits } from '../exchange.ts'

/** `/worldcompute/cancel/1.0.0`: a broker asks a donor to stop tasks it dispatched there; the donor says what it did with each. */
export const CANCEL_PROTOCOL = '/worldcompute/cancel/1.0.0'

/**
 * The whole round trip, broker side. A stream of its own rather than a word on
 * the dispatch stream: the dispatch stream may be mid-way through sending the
 * payload, or gone with the relay that carried it, and a new stream opens on
 * any connection (relayed ones included) in a few round trips.
 */
export const CANCEL_TIMEOUT_MS = 5_000
/** Donor side: reading the request, stopping the runs and answering. */
export const CANCEL_ANSWER_TIMEOUT_MS = 5_000
/** One small frame each way; a broker cancels one job at a time per donor, a few jobs at once. */
export const CANCEL_LIMITS: StreamLimits = { maxFrameBytes: 80 * 1024, maxBufferBytes: 256 * 1024, maxInboundStreams: 16, maxOutboundStreams: 16 }
