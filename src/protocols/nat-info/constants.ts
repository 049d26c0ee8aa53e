import type { StreamLimits } from '../exchange.ts'

/** `/worldcompute/nat-info/1.0.0`: a peer tells another its NAT type, so both can tell whether WebRTC can punch through. */
export const NAT_INFO_PROTOCOL = '/worldcompute/nat-info/1.0.0'

/** The whole request, asking side: open a stream (over the relay), read the one answer. */
export const NAT_INFO_TIMEOUT_MS = 5_000
/** Answering side. */
export const ANSWER_TIMEOUT_MS = 5_000
/** One answer: three short words, a flag, a public IP and at most eight short LAN addresses (nat-info.ts MAX_ADDR_CHARS). */
export const NAT_INFO_LIMITS: StreamLimits = { maxFrameBytes: 1024, maxBufferBytes: 4 * 1024, maxInboundStreams: 8, maxOutboundStreams: 8 }
