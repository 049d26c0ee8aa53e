/** `/worldcompute/nat-info/1.0.0`: a peer tells another its NAT type, so both can tell whether WebRTC can punch through. */
export const NAT_INFO_PROTOCOL = '/worldcompute/nat-info/1.0.0'

/** The whole request, asking side: open a stream (over the relay), read the one answer. */
export const NAT_INFO_TIMEOUT_MS = 5_000
/** Answering side. */
export const ANSWER_TIMEOUT_MS = 5_000
/** One answer: three short words and a flag. */
export const MAX_FRAME_BYTES = 1024
export const MAX_BUFFER_BYTES = 4 * 1024
export const MAX_INBOUND_STREAMS = 8
export const MAX_OUTBOUND_STREAMS = 8
