import { pause } from '../core/async.ts'
import { errorWithCode } from '../core/errors.ts'
import { shortPeerId } from '../core/format.ts'
import { transportOf } from '../net/transport-of.ts'
import { transportWatchesLiveness } from '../net/pinger.ts'
import type { Connections, Pinger } from '../net/components.ts'
import type { Logger } from '../log/logger.ts'
import type { AbortOptions, Connection } from '@libp2p/interface'

/** A relay client left a liveness ping unanswered: its connection is closed, which frees its reservation after the grace. */
export class ClientUnresponsiveError extends errorWithCode('RELAY_CLIENT_UNRESPONSIVE') {}

/** What the check reads from a connection and does to it. */
export type LivenessConnection = Pick<Connection, 'status' | 'remotePeer' | 'remoteAddr' | 'abort'>

/**
 * Whether a connection is this check's to watch: not a QUIC one, which its
 * idle timeout (RELAY_QUIC_LIVENESS: 10 s, the client's keep-alives reset
 * it) closes natively when the client falls silent. A QUIC connection has no
 * muxer ping, so a check would be a ping on a new stream, and the ping
 * protocol picks the peer's connection itself: it may not be the one
 * checked, and a stream ended by a connection closing elsewhere would have
 * closed this one.
 */
function watched (conn: LivenessConnection): boolean {
  return !transportWatchesLiveness(conn)
}

/** The node's open connections and its muxer pinger ({@link Connections}, {@link Pinger}), narrowed. */
export interface RelayLivenessComponents<C extends LivenessConnection = Connection> {
  /** read once at start; afterwards the connection events keep the set */
  connections: { open: () => C[] }
  events: {
    on: (type: 'connection:open' | 'connection:close', listener: (evt: CustomEvent<C>) => void) => void
    off: (type: 'connection:open' | 'connection:close', listener: (evt: CustomEvent<C>) => void) => void
  }
  pinger: { linkRtt: (conn: C, options?: AbortOptions) => Promise<number> }
  logger: Logger
}

export interface RelayLivenessInit {
  /** how often each connection is checked @default 60000 */
  intervalMs?: number
  /** the answer window of one check @default 10000 */
  timeoutMs?: number
  /** how often a slice of the connections is checked @default 1000 */
  tickMs?: number
}

/**
 * Closes the connections of relay clients that stopped answering, so the
 * reservations of donors that vanished without a FIN (power cut, NAT mapping
 * gone) are freed. Each TCP, WebSocket or HTTPS-poll connection (QUIC closes
 * a silent one itself: see `watched`) is checked once per `intervalMs` with one
 * muxer ping frame (Pinger.linkRtt: 12 bytes each way, answered by the
 * client's muxer, no stream), and the checks are spread evenly: every
 * `tickMs` the next intervalMs/tickMs-th of the connections, round robin.
 *
 * Why not js-libp2p's connection monitor: it pings every connection in the
 * same tick on a new ping stream (yamux SYN, multistream-select, a
 * peer-store write): at 1,000 clients a burst of 1,000 streams every
 * interval, which stalled the relay until the pings timed out together and
 * it dropped its clients at once (bench/relay-scale.ts, bench/memory.ts).
 *
 * Cost: a timer every tickMs whose work is the slice, i.e. per peer one
 * ping frame each way per intervalMs (at 10,000 clients and 60 s, 167
 * frames a second), plus one answer-window timer per slice, and nothing per
 * peer in between.
 */
export class RelayLiveness<C extends LivenessConnection = Connection> {
  private readonly components: RelayLivenessComponents<C>
  private readonly intervalMs: number
  private readonly timeoutMs: number
  private readonly tickMs: number
  private controller?: AbortController
  /**
   * the open connections, kept by the connection events: listing them from
   * the node each tick (getConnections) costs O(N) or worse per call
   */
  private readonly live = new Set<C>()
  /** this round's connections, a snapshot of `live` taken when the last round ended */
  private round: C[] = []
  private cursor = 0
  /** ticks since this round began; a round lasts intervalMs/tickMs ticks however few connections it holds */
  private tickInRound = Number.POSITIVE_INFINITY
  private readonly onOpen = (evt: CustomEvent<C>): void => { if (watched(evt.detail)) this.live.add(evt.detail) }
  private readonly onClose = (evt: CustomEvent<C>): void => { this.live.delete(evt.detail) }

  constructor (components: RelayLivenessComponents<C>, init: RelayLivenessInit = {}) {
    this.components = components
    this.intervalMs = init.intervalMs ?? 60_000
    this.timeoutMs = init.timeoutMs ?? 10_000
    this.tickMs = init.tickMs ?? 1_000
  }

  start (): void {
    if (this.controller != null) return
    const controller = new AbortController()
    this.controller = controller
    for (const c of this.components.connections.open()) if (watched(c)) this.live.add(c)
    this.components.events.on('connection:open', this.onOpen)
    this.components.events.on('connection:close', this.onClose)
    void this.run(controller.signal)
  }

  stop (): void {
    this.controller?.abort()
    this.controller = undefined
    this.components.events.off('connection:open', this.onOpen)
    this.components.events.off('connection:close', this.onClose)
    this.live.clear()
    this.round = []
    this.cursor = 0
    this.tickInRound = Number.POSITIVE_INFINITY
  }

  private async run (signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      if (await pause(this.tickMs, { signal })) return
      const slice = this.nextSlice()
      if (slice.length > 0) void this.checkSlice(slice, signal)
    }
  }

  /**
   * The slice's checks under one shared answer window: one timer per tick,
   * cleared once every answer is in, rather than a timer per check (which,
   * as AbortSignal.timeout, would also fire after the answer and build a
   * TimeoutError with its stack trace for each peer).
   */
  private async checkSlice (slice: readonly C[], signal: AbortSignal): Promise<void> {
    const window = new AbortController()
    const timer = setTimeout(() => { window.abort(new DOMException(`no answer within ${this.timeoutMs} ms`, 'TimeoutError')) }, this.timeoutMs)
    const pingSignal = AbortSignal.any([signal, window.signal])
    try {
      await Promise.all(slice.map(async conn => await this.check(conn, signal, pingSignal)))
    } finally {
      clearTimeout(timer)
    }
  }

  /**
   * The next share of the open connections, so that each one comes round
   * once per interval: a round is intervalMs/tickMs ticks long even when it
   * holds fewer connections than ticks (then most ticks check none), so a
   * relay with 10 clients pings each once a minute, not once a tick.
   */
  nextSlice (): C[] {
    const ticksPerRound = Math.max(1, Math.ceil(this.intervalMs / this.tickMs))
    if (this.tickInRound >= ticksPerRound) {
      this.round = [...this.live]
      this.cursor = 0
      this.tickInRound = 0
    }
    this.tickInRound++
    const share = Math.ceil(this.round.length / ticksPerRound)
    const slice = this.round.slice(this.cursor, this.cursor + share)
    this.cursor += share
    return slice
  }

  /**
   * One check; resolves whether the peer answered (false also when stopping).
   * Only silence until the answer window ends is unresponsiveness: a ping
   * that fails sooner (the muxer or the stream refused or ended it) came
   * from a peer that is there, and its connection stays; the failure is
   * logged. `pingSignal`: the answer window shared by a slice, `signal`
   * included @default its own window of timeoutMs
   */
  async check (conn: C, signal: AbortSignal, pingSignal?: AbortSignal): Promise<boolean> {
    if (conn.status !== 'open') return false
    const window = pingSignal ?? AbortSignal.any([signal, AbortSignal.timeout(this.timeoutMs)])
    try {
      await this.components.pinger.linkRtt(conn, { signal: window })
      return true
    } catch (cause) {
      if (signal.aborted || conn.status !== 'open') return false
      const peer = conn.remotePeer.toString()
      const addr = conn.remoteAddr.toString()
      const fields = { peer, addr, transport: transportOf(conn.remoteAddr), phase: 'liveness' }
      const why = String((cause as Error)?.message ?? cause)
      if (!window.aborted) {
        this.components.logger.info(`liveness ping to ${shortPeerId(peer)} at ${addr} failed before its answer window ended (${why}): the peer is there, keeping the connection`, fields)
        return true
      }
      const err = new ClientUnresponsiveError(`no answer to a liveness ping within ${this.timeoutMs} ms`, { cause })
      this.components.logger.info(`closing the connection of ${shortPeerId(peer)} at ${addr}: ${err.message} (${why})`, { ...fields, code: err.code })
      conn.abort(err)
      return false
    }
  }
}
