/** `/worldcompute/relay-info/1.0.0`: a donor asks a relay for facts it can only trust over Noise (its TLS certificates). */
export const RELAY_INFO_PROTOCOL = '/worldcompute/relay-info/1.0.0'

/** The whole request, donor side: open, read the one answer. */
export const RELAY_INFO_TIMEOUT_MS = 5_000
/** Relay side: answering one request. */
export const ANSWER_TIMEOUT_MS = 5_000
/** One answer frame: a few certificates' fingerprints and names. */
export const MAX_FRAME_BYTES = 8 * 1024
export const MAX_BUFFER_BYTES = 16 * 1024
/** certificates a relay may list (its current one, plus one being rotated in) */
export const MAX_CERTIFICATES = 4
export const MAX_INBOUND_STREAMS = 8
export const MAX_OUTBOUND_STREAMS = 4
