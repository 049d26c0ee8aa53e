import { describeDialError, initialPhase, phaseForProgress, type DialErrorDescription } from './dial-error.ts'
import { familyOf, peerIdOf, transportOf } from './transport-of.ts'
import { diagnoseWebSocketFailure, wsTargetOf } from './ws-diagnose.ts'
import { createLogger, type Logger } from '../log/logger.ts'
import type { DialTelemetry } from './telemetry.ts'
import type { DialAttempt, DialPhase, DialPurpose, Transport } from '../core/types.ts'
import type { Connection } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** libp2p's progress callback as the recorder and its callers see it. */
export type ProgressHandler = (evt: { type: string }) => void

/**
 * Sent through a dial's progress handler just before a transport dial starts.
 * libp2p's dial queue wraps `onProgress` (it fans events out to every caller
 * joined to one dial), so the handler cannot be recognised by identity; instead
 * our handler answers this event by filling in `context`.
 */
const CLAIM_EVENT = 'worldcompute:claim-dial'
interface ClaimEvent { type: typeof CLAIM_EVENT, context?: DialContext }

interface TransportDialOptions {
  signal?: AbortSignal
  onProgress?: ProgressHandler
  [key: string]: unknown
}

interface TransportManagerLike {
  dial: (ma: Multiaddr, options?: TransportDialOptions) => Promise<Connection>
}

/** One transport dial being recorded. */
interface AttemptTrack {
  target: string
  transport: Transport
  /** the furthest phase reached, from progress events */
  phase: DialPhase
  started: number
  purpose: DialPurpose
  context?: DialContext
  /** the proxy the dial goes through, once the tunnel opens */
  proxy?: string
}

/** What our own dials attach to the progress handler they pass to libp2p. */
export interface DialContext {
  purpose: DialPurpose
  /** set once libp2p handed one of the addresses to a transport */
  reachedTransport: boolean
  /**
   * called with each record written for this dial, after the telemetry got it;
   * a WebSocket failure is recorded a little later, once a probe found its cause
   */
  onRecord?: (attempt: DialAttempt) => void
}

/**
 * Records every outbound transport dial the node makes — ours and the ones
 * libp2p makes by itself (reconnects, AutoNAT, relayed dials) — once each,
 * with the phase it reached. It wraps the transport manager's `dial`, which
 * libp2p calls once per address, so a multi-address dial that ends in a bare
 * `AggregateError` or `TimeoutError` still leaves one record per address.
 *
 * Our own dials are recognised through their progress handler (libp2p
 * forwards `onProgress` but drops custom options), which carries the purpose.
 */
export class DialRecorder {
  private readonly telemetry: DialTelemetry
  private readonly log: Logger
  private installed = false

  constructor (telemetry: DialTelemetry, log: Logger = createLogger('net.dial')) {
    this.telemetry = telemetry
    this.log = log
  }

  /** A progress handler that marks a dial as ours, with its purpose. */
  track (purpose: DialPurpose, onEvent: ProgressHandler, onRecord?: (attempt: DialAttempt) => void): { onProgress: ProgressHandler, context: DialContext } {
    const context: DialContext = { purpose, reachedTransport: false, onRecord }
    const onProgress: ProgressHandler = (evt) => {
      if (evt.type === CLAIM_EVENT) {
        (evt as ClaimEvent).context = context
        return
      }
      onEvent(evt)
    }
    return { onProgress, context }
  }

  install (transportManager: TransportManagerLike): void {
    if (this.installed) return
    this.installed = true
    const original = transportManager.dial.bind(transportManager)
    transportManager.dial = async (ma: Multiaddr, options: TransportDialOptions = {}): Promise<Connection> => await this.recordedDial(original, ma, options)
  }

  /** One transport dial, recorded once with the phase it reached: success, failure or cancellation. */
  private async recordedDial (original: TransportManagerLike['dial'], ma: Multiaddr, options: TransportDialOptions): Promise<Connection> {
    const claim: ClaimEvent = { type: CLAIM_EVENT }
    options.onProgress?.(claim)
    const context = claim.context
    if (context != null) context.reachedTransport = true
    const text = ma.toString()
    const transport = transportOf(text)
    const attempt: AttemptTrack = { target: text, transport, phase: initialPhase(text, transport), started: Date.now(), purpose: context?.purpose ?? 'internal', context }
    // DNS was resolved before the transport was chosen
    if (attempt.phase === 'dns') attempt.phase = transport === 'quic' ? 'tls' : 'tcp-connect'
    const outer = options.onProgress
    const onProgress: ProgressHandler = (evt) => {
      attempt.phase = phaseForProgress(evt.type, transport, attempt.phase)
      // set when the transport dials through a proxy (proxy-transports.ts): every cause then names it
      if (evt.type === 'proxy:open-tunnel') attempt.proxy = ((evt as { detail?: { proxy?: string } }).detail?.proxy) ?? 'a proxy'
      outer?.(evt)
    }
    try {
      const conn = await settleOnAbort(original(ma, { ...options, onProgress }), options.signal, text, this.log)
      this.emit(attempt, {
        peerId: conn.remotePeer.toString(),
        phase: 'protocol',
        outcome: 'success',
        cause: `connected${conn.limits != null ? ' (limited relayed connection)' : ''}`,
        code: 'OK'
      })
      return conn
    } catch (err) {
      this.recordFailure(attempt, err, options.signal)
      throw err
    }
  }

  private recordFailure (attempt: AttemptTrack, err: unknown, signal: AbortSignal | undefined): void {
    const aborted = signal?.aborted === true
    // a per-address or overall budget ends with a TimeoutError reason; anything else aborting is a cancellation
    const timedOut = aborted && (signal?.reason as { name?: string } | undefined)?.name === 'TimeoutError'
    const d = describeDialError(err, { phase: attempt.phase, transport: attempt.transport, elapsedMs: Date.now() - attempt.started, timedOut, cancelled: aborted && !timedOut })
    const record = (desc: DialErrorDescription): void => {
      this.emit(attempt, { peerId: peerIdOf(attempt.target), phase: desc.phase, outcome: aborted && !timedOut ? 'cancelled' : 'failure', cause: desc.cause, code: desc.code })
    }
    // a direct probe says nothing about a dial that went through a proxy
    const ws = d.code === 'WEBSOCKET_ERROR' && attempt.proxy == null ? wsTargetOf(attempt.target) : undefined
    if (ws == null) {
      record(d)
      return
    }
    // the ErrorEvent said nothing: probe the same address to find out
    // what failed, without holding up libp2p's next attempt
    void diagnoseWebSocketFailure(ws).then(
      found => { record(found != null ? { ...found, cause: `${found.cause} [WebSocket gave no reason; found by a probe]` } : d) },
      (probeErr: Error) => { record({ ...d, cause: `${d.cause}; probe failed: ${probeErr.message}` }) }
    )
  }

  private emit (attempt: AttemptTrack, outcome: Pick<DialAttempt, 'peerId' | 'phase' | 'outcome' | 'cause' | 'code'>): void {
    const { proxy } = attempt
    const record: DialAttempt = {
      ts: new Date(attempt.started).toISOString(),
      target: attempt.target,
      peerId: outcome.peerId,
      transport: attempt.transport,
      phase: outcome.phase,
      outcome: outcome.outcome,
      cause: proxy != null && !outcome.cause.includes(proxy) ? `${outcome.cause} (through proxy ${proxy})` : outcome.cause,
      code: outcome.code,
      duration_ms: Date.now() - attempt.started,
      purpose: attempt.purpose,
      ...familyField(attempt.target)
    }
    this.telemetry.record(record)
    try {
      attempt.context?.onRecord?.(record)
    } catch (err) {
      this.log.error(`dial record listener threw: ${(err as Error).stack ?? String(err)}`)
    }
  }

  /** Records a failure that happened before any transport was tried (DNS, no address, dial to self). */
  recordEarlyFailure (target: string, purpose: DialPurpose, err: unknown, phase: DialPhase, started: number, cancelled: boolean, timedOut: boolean): void {
    const transport = transportOf(target)
    const d = describeDialError(err, { phase, transport, elapsedMs: Date.now() - started, cancelled, timedOut })
    this.telemetry.record({
      ts: new Date(started).toISOString(),
      target,
      peerId: peerIdOf(target),
      transport,
      phase: d.phase,
      outcome: cancelled ? 'cancelled' : 'failure',
      cause: d.cause,
      code: d.code,
      duration_ms: Date.now() - started,
      purpose,
      ...familyField(target)
    })
  }
}

/**
 * Ends a transport dial when its signal fires, even if the transport does not
 * listen to it. @chainsafe/libp2p-quic 2.x ignores the dial signal (its
 * handshake runs to its own 5 s timeout), so without
 * this an abandoned or cancelled QUIC attempt would stay "running" and be
 * recorded seconds late. A connection that still opens after nobody waits for
 * it has already been registered by the upgrader ('connection:open'): close it,
 * so an abandoned attempt never leaves a stray connection behind.
 */
async function settleOnAbort (attempt: Promise<Connection>, signal: AbortSignal | undefined, target: string, log: Logger): Promise<Connection> {
  if (signal == null) return await attempt
  return await new Promise<Connection>((resolve, reject) => {
    let abandoned = false
    const onAbort = (): void => {
      abandoned = true
      reject(signal.reason)
    }
    if (signal.aborted) {
      onAbort()
    } else {
      signal.addEventListener('abort', onAbort, { once: true })
    }
    attempt.then(
      (conn) => {
        signal.removeEventListener('abort', onAbort)
        if (!abandoned) {
          resolve(conn)
          return
        }
        log.debug(`closing a connection to ${target} that opened after its dial was abandoned`)
        conn.close().catch((err: Error) => { conn.abort(err) })
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort)
        if (!abandoned) {
          reject(err)
          return
        }
        // already recorded as abandoned at the moment the signal fired; the transport's own late verdict is only detail
        log.trace(`abandoned dial to ${target} ended later: ${(err as Error)?.message ?? String(err)}`)
      }
    )
  })
}

/** `{ family }` for an address by IP, nothing for one by name (the JSON then has no `family` key). */
function familyField (target: string): Pick<DialAttempt, 'family'> {
  const family = familyOf(target)
  return family != null ? { family } : {}
}
