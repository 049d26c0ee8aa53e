/** `/worldcompute/offer/1.0.0`: broker asks, donor answers accept/refuse; the ID of the earlier implementation, kept. */
export const PROTOCOL_PREFIX = 'worldcompute'
export const PROTOCOL_NAME = 'offer'
export const PROTOCOL_VERSION = '1.0.0'
export const OFFER_PROTOCOL = `/${PROTOCOL_PREFIX}/${PROTOCOL_NAME}/${PROTOCOL_VERSION}`

/** A whole offer round trip, broker side (the earlier implementation used 10 s too). */
export const OFFER_TIMEOUT_MS = 10_000
/** Donor side: reading the request, deciding and answering. */
export const ANSWER_TIMEOUT_MS = 10_000
/** A broker offers one task at a time per donor per job; a few in parallel across jobs. */
export const MAX_INBOUND_STREAMS = 16
export const MAX_OUTBOUND_STREAMS = 16
/** Offer messages are at most 4 KiB (codec limits); one frame each. */
export const MAX_FRAME_BYTES = 8 * 1024
export const MAX_BUFFER_BYTES = 64 * 1024
