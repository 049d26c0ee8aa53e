import type { JobLimits } from './job.ts'

/**
 * Plain data shared by every layer: no I/O, no libp2p imports. The API, the
 * CLI and the daemon all speak these shapes, so a field renamed here is a
 * breaking change for tools that drive `worldcompute … --json`.
 */

/** The transports a connection or dial attempt can use, as shown in `status` and telemetry. */
export const TRANSPORTS = ['tcp', 'quic', 'ws', 'wss', 'webrtc', 'circuit', 'unknown'] as const
export type Transport = typeof TRANSPORTS[number]

/**
 * How far a dial got. Ordered: a failure "at noise" means DNS, TCP and any
 * WebSocket upgrade already succeeded, which is what tells a protocol-inspecting
 * firewall ("SYN allowed, upgrade blocked") apart from a port block.
 */
export const DIAL_PHASES = ['dns', 'tcp-connect', 'tls', 'ws-upgrade', 'noise', 'muxer', 'protocol', 'reservation'] as const
export type DialPhase = typeof DIAL_PHASES[number]

export type DialOutcome = 'success' | 'failure' | 'cancelled'

/** Why a dial was made; `internal` is a dial libp2p made by itself (reconnect, AutoNAT, gossip). */
export type DialPurpose = 'bootstrap' | 'reservation' | 'ping' | 'dispatch' | 'internal'

/** One outbound dial attempt, recorded once when it ends (success or not). */
export interface DialAttempt {
  /** ISO 8601 UTC time the attempt started */
  ts: string
  /** the multiaddr dialled, including `/p2p/<peer>` when known */
  target: string
  /** PeerId of the target when the address names one */
  peerId?: string
  transport: Transport
  /** the last phase the attempt reached (for a success: the last one it completed) */
  phase: DialPhase
  outcome: DialOutcome
  /** the cause in words, for a failure or a cancellation; for a success, what was reached */
  cause: string
  /** stable machine-readable cause, e.g. `ECONNREFUSED`, `TIMEOUT`, `TLS_UNTRUSTED` */
  code: string
  duration_ms: number
  purpose: DialPurpose
}

export type Reachability = 'public' | 'private' | 'unknown'

export interface RelayReservationStatus {
  peerId: string
  circuitAddr: string
  transport: Transport
  /** when the reservation was granted, ISO 8601 UTC */
  since: string
  /** why the dial ladder reached the relay over this transport, in words */
  reason?: string
}

export interface ConnectionStatus {
  peerId: string
  remoteAddr: string
  transport: Transport
  direct: boolean
}

/** `worldcompute status --json`: fields fixed by the foundation issue, more may be added. */
export interface DaemonStatus {
  peerId: string
  reachability: Reachability
  /** why reachability has its value, in words */
  reachabilityReason: string
  listenAddrs: string[]
  relays: RelayReservationStatus[]
  connections: ConnectionStatus[]
  bootstrap: BootstrapStatus[]
  startedAt: string
  version: string
  /** the donor's executor; absent from daemons that predate the job pipeline */
  executor?: ExecutorStatusView
}

export interface ExecutorStatusView {
  accepting: boolean
  /** why not accepting */
  reason?: string
  state?: string
  maxConcurrent?: number
  running?: number
  queued?: number
  /** sandbox processes restarted after a crash or hang */
  restarts?: number
  sandboxPid?: number
  maxLimits?: JobLimits
}

/** What the donor knows about each configured bootstrap relay. */
export interface BootstrapStatus {
  addr: string
  peerId?: string
  state: 'connecting' | 'connected' | 'reserved' | 'backing-off'
  /** consecutive failed rounds since the last success */
  failures: number
  /** when the next attempt starts, when backing off */
  nextAttemptAt?: string
  lastError?: string
  /** which rung of the dial ladder reached this relay and why; present while connected */
  path?: RelayPath
}

/** The path the dial ladder chose to a relay, and why. */
export interface RelayPath {
  transport: Transport
  /** the address that connected */
  addr: string
  /**
   * why this rung, in words: "first to connect (tcp: stalled at noise after
   * 2.5 s)", "remembered from the last run on this network", …
   */
  reason: string
  /** the rung went first because it won last time on this network */
  remembered: boolean
  /** when the connection was made, ISO 8601 UTC */
  at: string
}

export interface PingProbe {
  seq: number
  ok: boolean
  rttMs?: number
  /** `direct` or `relay` */
  path?: 'direct' | 'relay'
  transport?: Transport
  /** the relay's PeerId when the path is through a relay */
  relay?: string
  remoteAddr?: string
  error?: string
}

export interface PingResult {
  target: string
  peerId?: string
  probes: PingProbe[]
}
