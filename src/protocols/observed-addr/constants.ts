import type { StreamLimits } from '../exchange.ts'

/** `/worldcompute/observed-addr/1.0.0`: a broker asks a relay which address it sees a reservation holder at. */
export const OBSERVED_ADDR_PROTOCOL = '/worldcompute/observed-addr/1.0.0'

/** The whole request, broker side: open, ask, read the one answer. */
export const OBSERVED_ADDR_TIMEOUT_MS = 5_000
/** Relay side: reading the question and answering it. */
export const ANSWER_TIMEOUT_MS = 5_000
/** A PeerId in text is at most ~100 characters; an IPv6 address at most 45. */
export const MAX_PEER_ID_CHARS = 128
/** One frame each way, a PeerId or an IP address; a broker asks about a few executors at once per relay. */
export const OBSERVED_ADDR_LIMITS: StreamLimits = { maxFrameBytes: 512, maxBufferBytes: 4 * 1024, maxInboundStreams: 16, maxOutboundStreams: 16 }
