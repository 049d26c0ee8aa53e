import type { StreamLimits } from '../exchange.ts'

/** `/worldcompute/capacity/1.0.0`: request/response, a stream opened and answered with the donor's capacity. */
export const CAPACITY_PROTOCOL = '/worldcompute/capacity/1.0.0'

/** The gossipsub topic announcements go to; versioned with the protocol so a 2.0 schema gets its own topic. */
export const CAPACITY_TOPIC = '/worldcompute/capacity/1.0.0'

/**
 * `/worldcompute/capacity-table/1.0.0`: a peer that hears announcements (a
 * relay) answers with every live executor it heard of, so a broker that
 * starts listening learns the mesh at once instead of after an announce
 * interval. Answer: one frame per executor (`CapacityTableEntry`), then an
 * empty frame.
 */
export const CAPACITY_TABLE_PROTOCOL = '/worldcompute/capacity-table/1.0.0'

/**
 * How often a donor re-announces an unchanged capacity. Every change is
 * announced at once (notifyChanged), and a broker that starts listening
 * pulls the table of its relays (CAPACITY_TABLE_PROTOCOL), so this refresh
 * only keeps listeners' entries from expiring: a signed message per donor to
 * every subscriber, and a wake-up of the donor, per interval.
 */
export const ANNOUNCE_INTERVAL_MS = 30_000
/** A peer's capacity is forgotten after this many announce intervals without news. */
export const EXPIRY_INTERVALS = 3
/**
 * Announcements after notifyChanged() are at least this far apart; changes in
 * between are coalesced into one. A broker learns a slot it took or freed
 * from its own offers and dispatches, and asks executors it expects busy
 * every second while jobs wait, so a change reaching it later costs no
 * placement; every announcement costs a signature, and a verification at
 * every peer on the topic.
 */
export const CHANGE_MIN_INTERVAL_MS = 2_000
/**
 * How long after a peer joins the topic the announcement for it goes out:
 * its subscription can arrive before gossipsub's own stream to it is open,
 * and a message published then never reaches it.
 */
export const JOIN_ANNOUNCE_DELAY_MS = 500
/** With on-demand listening: how long a node keeps hearing announcements after its broker last asked for executors. */
export const LISTEN_IDLE_MS = 600_000
/** One query: open the stream and read the answer. */
export const QUERY_TIMEOUT_MS = 5_000
/** Writing an answer to a querying peer. */
export const ANSWER_TIMEOUT_MS = 5_000
/** Entries one table answer carries at most (the most recently heard). */
export const MAX_TABLE_ENTRIES = 2_000
/** Reading a whole table answer. */
export const TABLE_TIMEOUT_MS = 10_000
/** One table answer: a frame per executor, each at most a capacity; a few table queries at once per connection. */
export const CAPACITY_TABLE_LIMITS: StreamLimits = { maxFrameBytes: 32 * 1024, maxBufferBytes: 256 * 1024, maxInboundStreams: 2, maxOutboundStreams: 2 }
/** Bound on the table of known peers; the least recently heard-from is dropped first. */
export const MAX_TRACKED_PEERS = 10_000
/** The capacity response is at most 16 KiB (codec limit), one frame; nothing else should arrive, so a small read buffer is plenty; a query is one small exchange, so more than a few at once from one connection is a misbehaving peer. */
export const CAPACITY_LIMITS: StreamLimits = { maxFrameBytes: 32 * 1024, maxBufferBytes: 64 * 1024, maxInboundStreams: 4, maxOutboundStreams: 4 }
