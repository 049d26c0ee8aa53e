import { peerIdFromString } from '@libp2p/peer-id'
import { pause, raceSignal } from '../core/async.ts'
import { PeerUnreachableError } from '../core/errors.ts'
import { describeDialError } from './dial-error.ts'
import { ReachFailedError } from './peer-dialler.ts'
import { relayPeerOf, transportOf, uplinkTransport } from './transport-of.ts'
import type { Logger } from '../log/logger.ts'
import type { PingProbe, PingResult } from '../core/types.ts'
import type { Connections, PeerDialler, Pinger } from './components.ts'
import type { AbortOptions, Connection, PeerId } from '@libp2p/interface'

/** One probe's answer window. */
const PROBE_TIMEOUT_MS = 10_000
/** Between two probes. */
const PROBE_INTERVAL_MS = 1_000

/**
 * QUIC liveness of a node that reserves on relays (a donor): quinn, in native
 * code, sends a PING frame after 1 s without sending anything, and a
 * connection that hears nothing for 2.5 s is closed (the idle timeout is the
 * smaller of both ends', so a relay's 10 s default gives way to it; quinn
 * restarts it when it sends its first keep-alive after hearing the peer). A
 * relay killed outright, or a black-holed path, is thus noticed within
 * 2.5–3.5 s without a JS timer or ping, leaving time to reserve on another
 * relay within 5 s; the donor's watchdog pings no QUIC relay itself. A lost keep-alive is
 * resent by QUIC's loss recovery well within the timeout, so a false alarm
 * takes a path silent for 2.5 s.
 * Cost per QUIC connection: one ~50-byte UDP packet each way per second,
 * handled by quinn's threads; nothing on the JS event loop.
 */
export const DONOR_QUIC_LIVENESS = { keepAliveInterval: 1_000, maxIdleTimeout: 2_500 } as const

/**
 * QUIC liveness of a relay: @chainsafe/libp2p-quic's defaults (keep-alive
 * 5 s, idle timeout 10 s). A relay sends no 1 s keep-alives of its own to
 * thousands of clients: its donors' keep-alives (see DONOR_QUIC_LIVENESS)
 * keep their connections alive, and it only answers them.
 */
export const RELAY_QUIC_LIVENESS = { keepAliveInterval: 5_000, maxIdleTimeout: 10_000 } as const

/**
 * Whether the connection's transport notices a silent peer by itself: QUIC,
 * with the keep-alive and idle timeout of DONOR_QUIC_LIVENESS or
 * RELAY_QUIC_LIVENESS (native, no JS). TCP-based transports (TCP, WebSocket,
 * HTTPS poll) need a muxer ping to notice a black-holed path.
 */
export function transportWatchesLiveness (conn: Pick<Connection, 'remoteAddr'>): boolean {
  return transportOf(conn.remoteAddr) === 'quic'
}

/** @libp2p/ping as this file uses it. */
export interface PingService {
  ping: (peer: PeerId, options?: AbortOptions) => Promise<number>
}

export interface MeshPingerComponents {
  ping: PingService
  dialler: PeerDialler
  connections: Connections
  logger: Logger
}

export class MeshPinger implements Pinger {
  private readonly components: MeshPingerComponents

  constructor (components: MeshPingerComponents) {
    this.components = components
  }

  async rtt (peerId: string, options: AbortOptions = {}): Promise<number> {
    return await this.components.ping.ping(peerIdFromString(peerId), options)
  }

  /**
   * Why a muxer ping: the ping protocol opens a stream per probe (yamux SYN,
   * multistream-select, the 32-byte ping, the close, a peer-store write; each
   * a socket write on both sides), which made it most of an idle donor's CPU
   * when it watched its relays every 1.5 s, and at the relay, with 1,000
   * donors, 667 such streams a second. A yamux ping frame is 12 bytes each
   * way, answered by the remote muxer itself.
   */
  async linkRtt (conn: Connection, options: AbortOptions = {}): Promise<number> {
    const muxer = muxerOf(conn)
    if (muxer != null) return await muxer.ping(options)
    return await this.components.ping.ping(conn.remotePeer, options)
  }

  /**
   * Reaches a peer (PeerId or multiaddr) and measures round trips with the
   * libp2p ping protocol, reporting the path each probe took.
   */
  async ping (target: string, count: number, options: AbortOptions & { relays?: readonly string[] } = {}): Promise<PingResult> {
    const conn = await this.connect(target, options)
    const peerId = conn.remotePeer.toString()
    const probes: PingProbe[] = []
    for (let seq = 1; seq <= count; seq++) {
      options.signal?.throwIfAborted()
      probes.push(await this.probe(seq, conn, options))
      if (seq < count) await pause(PROBE_INTERVAL_MS, options)
    }
    return { target, peerId, probes }
  }

  private async probe (seq: number, conn: Connection, options: AbortOptions): Promise<PingProbe> {
    const peer = conn.remotePeer
    const timeout = AbortSignal.timeout(PROBE_TIMEOUT_MS)
    // the connection the ping goes over, chosen as js-libp2p will choose it when the ping starts: looked up after the
    // answer, it would name a direct connection an upgrade made while a probe travelled through the relay
    const used = connectionPingUses(this.components.connections.open(peer.toString())) ?? conn
    try {
      const rtt = await this.components.ping.ping(peer, { signal: options.signal != null ? AbortSignal.any([options.signal, timeout]) : timeout })
      const t = transportOf(used.remoteAddr)
      return {
        seq,
        ok: true,
        rttMs: rtt,
        path: t === 'circuit' ? 'relay' : 'direct',
        transport: t === 'circuit' ? uplinkTransport(used.remoteAddr) : t,
        relay: relayPeerOf(used.remoteAddr),
        remoteAddr: used.remoteAddr.toString()
      }
    } catch (err) {
      const d = describeDialError(err, { phase: 'protocol', transport: transportOf(conn.remoteAddr), elapsedMs: PROBE_TIMEOUT_MS })
      this.components.logger.warn(`ping ${seq} to ${peer.toString()} failed: ${d.cause}`, { peer: peer.toString(), code: d.code })
      return { seq, ok: false, error: d.cause }
    }
  }

  private async connect (target: string, options: AbortOptions & { relays?: readonly string[] }): Promise<Connection> {
    try {
      return await this.components.dialler.reach(target, { purpose: 'ping', signal: options.signal, relays: options.relays, skipRecentFailures: false })
    } catch (err) {
      if (!(err instanceof ReachFailedError)) throw err
      throw new PeerUnreachableError(err.candidates === 0
        ? `no address known for ${target} and no relay to try: give a multiaddr, or connect to a relay it uses`
        : `could not reach ${target} on any of ${err.candidates} address(es): ${err.attempts.map(a => `${a.addr} (${a.transport}) at ${a.phase}: ${a.cause}`).join('; ')}`, { cause: err.cause })
    }
  }
}

/** A stream muxer that can ping its peer (yamux's ping frames). */
interface PingingMuxer {
  ping: (options?: AbortOptions) => Promise<number>
}

/**
 * The connection's stream muxer when it can ping. js-libp2p's Connection
 * class holds its muxer in `muxer`, outside the Connection interface; a
 * connection without one (QUIC muxes natively) or a muxer without `ping`
 * gives undefined, and the caller uses the ping protocol instead.
 */
export function muxerOf (conn: Connection): PingingMuxer | undefined {
  const muxer: unknown = (conn as Connection & { muxer?: unknown }).muxer
  if (muxer == null || typeof muxer !== 'object') return undefined
  const ping: unknown = (muxer as { ping?: unknown }).ping
  if (typeof ping !== 'function') return undefined
  return {
    // the answer window is ours, not the muxer's: yamux forgets a ping whose
    // signal fired, and a late answer to a forgotten ping is a protocol error
    // that makes it abort the connection (a relay stalled for longer than the
    // window would lose every donor pinging it at that moment, and a donor
    // its relay). So the ping stays pending until answered or the connection
    // closes; later pings wait on the same one
    ping: async (options) => {
      const pong = (ping as () => Promise<number>).call(muxer)
      return await raceSignal(pong, options?.signal)
    }
  }
}

/**
 * The connection a ping to a PeerId travels on: the one js-libp2p picks for a
 * new stream (an open, unlimited connection, direct ones first), else the
 * first open one (a limited relayed circuit).
 */
export function connectionPingUses<C extends Pick<Connection, 'status' | 'direct' | 'limits'>> (open: readonly C[]): C | undefined {
  const live = open.filter(c => c.status === 'open')
  return live.find(c => c.direct && c.limits == null) ?? live.find(c => c.limits == null) ?? live[0]
}
