import { initialPhase, phaseForProgress } from './dial-error.ts'
import { transportOf } from './transport-of.ts'
import { follow, raceSignal } from '../core/async.ts'
import type { DialPhase } from '../core/types.ts'
import type { AddressDialOptions, TransportDialOptions } from './components.ts'
import type { DialRecorder } from './dial-recorder.ts'
import type { NodeCore } from './node-core.ts'
import type { AbortOptions, Connection } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

export interface AddressDiallerInit {
  /** @default 5000 */
  dialAttemptTimeoutMs: number
}

/**
 * Dials of one address, each recorded once by the transport-level recorder:
 * one address per call because js-libp2p's multi-address dial throws away
 * which address failed how.
 */
export class AddressDialler {
  private readonly core: NodeCore
  private readonly recorder: DialRecorder
  private readonly dialAttemptTimeoutMs: number

  constructor (core: NodeCore, recorder: DialRecorder, init: AddressDiallerInit) {
    this.core = core
    this.recorder = recorder
    this.dialAttemptTimeoutMs = init.dialAttemptTimeoutMs
  }

  /** One address through libp2p's dial queue, which hands back an open connection to the peer when there is one. */
  async dial (target: Multiaddr, options: AddressDialOptions): Promise<Connection> {
    const text = target.toString()
    const transport = transportOf(target)
    let phase: DialPhase = initialPhase(text, transport)
    const started = Date.now()
    const timeout = AbortSignal.timeout(options.timeoutMs ?? this.dialAttemptTimeoutMs)
    const signal = options.signal != null ? AbortSignal.any([options.signal, timeout]) : timeout
    let reused = false
    // the transport-level recorder writes the attempt record; this only tags it with our purpose
    const { onProgress, context } = this.recorder.track(options.purpose, (evt) => {
      if (evt.type === 'dial-queue:already-connected') reused = true
      phase = phaseForProgress(evt.type, transport, phase)
    })
    try {
      const conn = await this.core.libp2p.dial(target, { signal, onProgress })
      if (reused) {
        // nothing was dialled: libp2p handed back an open connection to that peer
        this.core.log.debug(`dial skipped: already connected to ${conn.remotePeer.toString()} via ${conn.remoteAddr.toString()}`)
      }
      return conn
    } catch (err) {
      if (!context.reachedTransport) {
        const cancelled = options.signal?.aborted === true
        this.recorder.recordEarlyFailure(text, options.purpose, err, phase, started, cancelled, timeout.aborted && !cancelled)
      }
      throw err
    }
  }

  /**
   * Dials one address with the transport manager itself, outside libp2p's dial
   * queue, for parallel and upgrade attempts. The queue joins concurrent
   * dials to the same peer into one job ("joining existing dial target",
   * libp2p 3.3 connection-manager/dial-queue.js), which would turn parallel
   * attempts back into one sequential dial and lose which address did what,
   * and hands back an open (relayed) connection instead of dialling.
   * `transportManager.dial` is what the queue calls per address; the upgrader
   * announces the new connection ('connection:open') so the connection manager
   * tracks it as usual, and the recorder wrapped around it records the attempt
   * exactly once. Skipped on this path: the queue's connection gater checks
   * (we configure no gater) and its join/reuse logic (callers look for an open
   * connection first). An address no transport dials by itself (`/dnsaddr`,
   * which only the queue resolves) goes through {@link dial}.
   */
  async dialTransport (target: Multiaddr, options: TransportDialOptions): Promise<Connection> {
    options.signal?.throwIfAborted()
    const tm = this.core.internals.transportManager
    if (tm.dialTransportForMultiaddr(target) == null) {
      return await this.dial(target, { purpose: options.purpose, signal: options.signal })
    }
    // the ladder always gives a signal; anyone else still gets a bounded attempt
    const signal = options.signal ?? AbortSignal.timeout(this.dialAttemptTimeoutMs)
    const { onProgress } = this.recorder.track(options.purpose, (evt) => { options.onProgress?.(evt) }, options.onRecord)
    // The dial signal must stop mattering once the dial is over: @libp2p/tcp
    // hands it to net.connect(), which destroys the socket whenever it fires,
    // for the socket's whole life, so a per-attempt timeout would kill the
    // connection that won a few seconds later. The dial queue avoids this by
    // clearing its own combined signal after each dial; we do the same.
    const dialController = new AbortController()
    const unfollow = follow(signal, dialController)
    let conn: Connection
    const dialing = tm.dial(target, { signal: dialController.signal, onProgress })
    try {
      // bounded by the signal even where a transport's dial does not listen to
      // it at every step (WebRTC's negotiation waits on its peer): the attempt
      // fails on time, reported as such, and a connection that comes later is closed
      conn = await raceSignal(dialing, signal)
    } catch (err) {
      if (signal.aborted) this.closeLate(dialing, target)
      throw err
    } finally {
      unfollow()
    }
    // what the dial queue does after a success: keep the address that worked in
    // the address book (for libp2p's reconnects); not awaited so the winner is not held up
    this.core.libp2p.peerStore.merge(conn.remotePeer, { multiaddrs: [conn.remoteAddr] }).catch((err: Error) => {
      this.core.log.debug(`could not store ${conn.remoteAddr.toString()} for ${conn.remotePeer.toString()}: ${err.message}`)
    })
    return conn
  }

  /** A dial given up on by its signal that still connects: nobody wants that connection, so it is closed. */
  private closeLate (dialing: Promise<Connection>, target: Multiaddr): void {
    dialing.then(async (late) => {
      this.core.log.debug(`a dial to ${target.toString()} connected after it was given up; closing it`)
      await late.close()
    }).catch((err: Error) => {
      // the dial failed after all (the usual end of an aborted dial) or the late connection would not close
      this.core.log.debug(`a dial to ${target.toString()} given up on ended: ${err.message}`)
    })
  }

  /** js-libp2p's own multi-address dial: each address is still recorded by the recorder. */
  async dialAll (targets: Multiaddr[], options: AbortOptions = {}): Promise<Connection> {
    return await this.core.libp2p.dial(targets, options)
  }
}
