import type { StreamLimits } from '../exchange.ts'

/** `/worldcompute/offer/1.0.0`: broker asks, donor answers accept/refuse. */
export const OFFER_PROTOCOL = '/worldcompute/offer/1.0.0'

/** A whole offer round trip, broker side: long enough for a relayed stream to a loaded donor, short enough not to hold a job's turn. */
export const OFFER_TIMEOUT_MS = 10_000
/** Donor side: reading the request, deciding and answering. */
export const ANSWER_TIMEOUT_MS = 10_000
/** Offer messages are one frame each, at most 4 KiB plus the directory blob CIDs they list (codec limits); a broker offers one task at a time per donor per job, a few in parallel across jobs. */
export const OFFER_LIMITS: StreamLimits = { maxFrameBytes: 128 * 1024, maxBufferBytes: 256 * 1024, maxInboundStreams: 16, maxOutboundStreams: 16 }
