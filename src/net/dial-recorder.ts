import { describeDialError, initialPhase, phaseForProgress, type DialErrorDescription } from './dial-error.ts'
import { peerIdOf, transportOf } from './transport-of.ts'
import { diagnoseWebSocketFailure, wsTargetOf } from './ws-diagnose.ts'
import type { DialTelemetry } from './telemetry.ts'
import type { DialPhase, DialPurpose } from '../core/types.ts'
import type { Connection } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

type ProgressHandler = (evt: { type: string }) => void

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

/** What our own dials attach to the progress handler they pass to libp2p. */
export interface DialContext {
  purpose: DialPurpose
  /** set once libp2p handed one of the addresses to a transport */
  reachedTransport: boolean
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
  private installed = false

  constructor (telemetry: DialTelemetry) {
    this.telemetry = telemetry
  }

  /** A progress handler that marks a dial as ours, with its purpose. */
  track (purpose: DialPurpose, onEvent: ProgressHandler): { onProgress: ProgressHandler, context: DialContext } {
    const context: DialContext = { purpose, reachedTransport: false }
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
    transportManager.dial = async (ma: Multiaddr, options: TransportDialOptions = {}): Promise<Connection> => {
      const claim: ClaimEvent = { type: CLAIM_EVENT }
      options.onProgress?.(claim)
      const context = claim.context
      if (context != null) context.reachedTransport = true
      const text = ma.toString()
      const transport = transportOf(text)
      let phase: DialPhase = initialPhase(text, transport)
      // DNS was resolved before the transport was chosen
      if (phase === 'dns') phase = transport === 'quic' ? 'tls' : 'tcp-connect'
      const started = Date.now()
      const outer = options.onProgress
      const onProgress: ProgressHandler = (evt) => {
        phase = phaseForProgress(evt.type, transport, phase)
        outer?.(evt)
      }
      const purpose = context?.purpose ?? 'internal'
      try {
        const conn = await original(ma, { ...options, onProgress })
        this.telemetry.record({
          ts: new Date(started).toISOString(),
          target: text,
          peerId: conn.remotePeer.toString(),
          transport,
          phase: 'protocol',
          outcome: 'success',
          cause: `connected${conn.limits != null ? ' (limited relayed connection)' : ''}`,
          code: 'OK',
          duration_ms: Date.now() - started,
          purpose
        })
        return conn
      } catch (err) {
        const signal = options.signal
        const aborted = signal?.aborted === true
        // a per-address or overall budget ends with a TimeoutError reason; anything else aborting is a cancellation
        const timedOut = aborted && (signal?.reason as { name?: string } | undefined)?.name === 'TimeoutError'
        const d = describeDialError(err, { phase, transport, elapsedMs: Date.now() - started, timedOut, cancelled: aborted && !timedOut })
        const record = (desc: DialErrorDescription): void => {
          this.telemetry.record({
            ts: new Date(started).toISOString(),
            target: text,
            peerId: peerIdOf(text),
            transport,
            phase: desc.phase,
            outcome: aborted && !timedOut ? 'cancelled' : 'failure',
            cause: desc.cause,
            code: desc.code,
            duration_ms: Date.now() - started,
            purpose
          })
        }
        const ws = d.code === 'WEBSOCKET_ERROR' ? wsTargetOf(text) : undefined
        if (ws == null) {
          record(d)
        } else {
          // the ErrorEvent said nothing: probe the same address to find out
          // what failed, without holding up libp2p's next attempt
          void diagnoseWebSocketFailure(ws).then(
            found => { record(found != null ? { ...found, cause: `${found.cause} [WebSocket gave no reason; found by a probe]` } : d) },
            (probeErr: Error) => { record({ ...d, cause: `${d.cause}; probe failed: ${probeErr.message}` }) }
          )
        }
        throw err
      }
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
      purpose
    })
  }
}
