import type { StreamLimits } from '../exchange.ts'

/** `/worldcompute/relay-info/1.0.0`: a donor asks a relay for facts it can only trust over Noise (its TLS certificates). */
export const RELAY_INFO_PROTOCOL = '/worldcompute/relay-info/1.0.0'

/** The whole request, donor side: open, read the one answer. */
export const RELAY_INFO_TIMEOUT_MS = 5_000
/** Relay side: answering one request. */
export const ANSWER_TIMEOUT_MS = 5_000
/** certificates a relay may list (its current one, plus one being rotated in) */
export const MAX_CERTIFICATES = 4
/** One answer frame: a few certificates' fingerprints and names. */
export const RELAY_INFO_LIMITS: StreamLimits = { maxFrameBytes: 8 * 1024, maxBufferBytes: 16 * 1024, maxInboundStreams: 8, maxOutboundStreams: 4 }
