import { Waker } from '../core/async.ts'
import { overallVia } from '../net/dns-resolver.ts'
import type { AddrResolution, BootstrapStatus, KnownRelayView, RelayPath } from '../core/types.ts'
import type { RelaySource } from '../net/relay-directory.ts'
import type { RelayTlsCheck } from './relay-tls-check.ts'
import type { Connection } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/**
 * Where one relay's reservation loop stands:
 *
 *     standby ─begin→ connecting ─connection→ connected ─reserve→ reserved
 *     reserved ─lost→ connecting
 *     connecting | connected ─round failed→ backing-off ─wait over→ connecting   (bootstrap relay)
 *     connecting | connected ─round failed→ retired, the loop ends ─begin→ …     (learned relay)
 *
 * `standby` is a relay with no loop: a learned one not needed now, or any
 * relay before `start` and after `stop`.
 */
export type RelayPhase<Conn = Connection> =
  | { name: 'standby' }
  | { name: 'connecting' }
  | { name: 'connected', conn: Conn }
  | { name: 'reserved', conn: Conn }
  | { name: 'backing-off', until: number }
  | { name: 'retired', until: number }

export interface RelayEntryInit {
  peerId: string
  addrs: Multiaddr[]
  source: RelaySource
  lastHeard: number
}

/**
 * One relay the donor knows (bootstrap or learned): the phase of its
 * reservation loop, what the last rounds found, and the views `status`
 * serves, computed from them on each read. `Conn` is the relay connection
 * the loop works on; the entry only carries it from phase to phase.
 */
export class RelayEntry<Conn = Connection> {
  readonly peerId: string
  addrs: Multiaddr[]
  source: RelaySource
  lastHeard: number
  phase: RelayPhase<Conn> = { name: 'standby' }
  /** consecutive failed rounds since the last reservation granted */
  failures = 0
  lastError?: string
  /** how the connection in use was made: the dialler's path, or what is known of a connection opened elsewhere */
  path?: RelayPath
  /** the connection the dialler made, to tell its path from one opened some other way */
  connectionId?: string
  /** when the relay granted the reservation held now */
  grantedAt?: Date
  /** how the configured addresses were last resolved */
  resolution?: AddrResolution[]
  /** the TLS interception check of the connection `tlsConnectionId` (`checking` while it runs) */
  tls?: RelayTlsCheck
  tlsConnectionId?: string
  /** the last finished TLS check on any connection to this relay */
  tlsVerdict?: RelayTlsCheck
  /** addresses left out of the dial because their TLS is intercepted (--refuse-intercepted), until when */
  readonly refused = new Map<string, { until: number, reason: string }>()
  /** smoothed round trip of the watchdog's pings on the current connection, ms */
  rttMs?: number
  /** learned relays: failed loops in a row (each one retires the relay for longer) */
  learnedFailures = 0
  /** wakes the loop out of a watchdog interval or a back-off: the relay connection closed */
  readonly waker = new Waker()
  /** the running reservation loop, if any */
  loop?: Promise<void>

  constructor (init: RelayEntryInit) {
    this.peerId = init.peerId
    this.addrs = init.addrs
    this.source = init.source
    this.lastHeard = init.lastHeard
  }

  /** A loop starts on this relay: what earlier loops found is forgotten. */
  begin (): void {
    this.failures = 0
    this.lastError = undefined
    this.path = undefined
    this.resolution = undefined
    this.tlsVerdict = undefined
    this.phase = { name: 'connecting' }
  }

  /** No usable connection: the next dial starts from nothing. */
  dialling (): void {
    this.path = undefined
    this.grantedAt = undefined
  }

  connected (conn: Conn, path: RelayPath): void {
    this.path = path
    this.phase = { name: 'connected', conn }
  }

  /** The relay holds a reservation for us on `conn`; `grantedAt` when this round made it. */
  reserved (conn: Conn, grantedAt?: Date): void {
    if (grantedAt != null) {
      this.grantedAt = grantedAt
      this.failures = 0
      this.lastError = undefined
      this.learnedFailures = 0
    }
    this.phase = { name: 'reserved', conn }
  }

  lost (cause: string): void {
    this.grantedAt = undefined
    this.lastError = cause
    this.phase = { name: 'connecting' }
  }

  /** A round failed (bootstrap relay): the next starts at `until`. */
  backingOff (cause: string, until: number): void {
    this.failures++
    this.lastError = cause
    this.phase = { name: 'backing-off', until }
  }

  /** A round failed (learned relay): its loop ends, and it is not tried again before `until`. */
  retired (cause: string, until: number): void {
    this.learnedFailures++
    this.lastError = cause
    this.grantedAt = undefined
    this.phase = { name: 'retired', until }
  }

  /** The back-off is over, or cut short by a closed connection. */
  retry (): void {
    this.phase = { name: 'connecting' }
  }

  /** The loop ended (a stop); a retired relay keeps its retry time. */
  parked (): void {
    if (this.phase.name !== 'retired') this.phase = { name: 'standby' }
  }

  /**
   * On its way to the first reservation of its loop: nothing lost and no
   * round failed yet. A bootstrap relay dialled at start is as good as held
   * for the coverage check; one redialling after a loss may be dead.
   */
  get firstRound (): boolean {
    return this.coming && this.lastError == null && this.grantedAt == null
  }

  /** Whether this relay is on its way to a reservation (its loop dials or reserves now). */
  get coming (): boolean {
    return this.phase.name === 'connecting' || this.phase.name === 'connected'
  }

  /** The `state` of `status`' bootstrap entries and running learned relays. */
  get state (): BootstrapStatus['state'] {
    switch (this.phase.name) {
      case 'connected': return 'connected'
      case 'reserved': return 'reserved'
      case 'backing-off': case 'retired': return 'backing-off'
      default: return 'connecting'
    }
  }

  /** What `status` shows for a bootstrap relay. */
  bootstrapView (): BootstrapStatus {
    const phase = this.phase
    const tls = this.tlsVerdict
    return {
      addr: this.addrs[0].toString(),
      peerId: this.peerId,
      state: this.state,
      failures: this.failures,
      ...(phase.name === 'backing-off' || phase.name === 'retired' ? { nextAttemptAt: new Date(phase.until).toISOString() } : {}),
      ...(this.lastError != null ? { lastError: this.lastError } : {}),
      ...(this.path != null ? { path: this.path } : {}),
      ...(this.resolution != null ? { resolution: this.resolution, resolvedVia: overallVia(this.resolution.filter(r => r.via !== 'failed')) } : {}),
      ...(tls != null ? { tlsIntercepted: tls.intercepted, ...(tls.interceptor != null ? { tlsInterceptor: tls.interceptor } : {}), tlsCheck: tls.reason } : {})
    }
  }

  /** What `status` shows for a learned relay: its loop's state, or whether it waits to be needed or to be tried again. */
  knownView (now: number): KnownRelayView {
    const phase = this.phase
    const idle = this.loop == null || phase.name === 'standby' || phase.name === 'retired'
    const coolingUntil = phase.name === 'retired' && phase.until > now ? phase.until : undefined
    const state: KnownRelayView['state'] = !idle ? this.state : coolingUntil != null ? 'cooling-down' : 'standby'
    return {
      peerId: this.peerId,
      source: this.source,
      addrs: this.addrs.map(String),
      state,
      ...(state === 'cooling-down' && coolingUntil != null ? { retryAt: new Date(coolingUntil).toISOString() } : {}),
      ...(this.lastError != null ? { lastError: this.lastError } : {})
    }
  }

  /** Whether a new loop may start on this learned relay now. */
  idleAt (now: number): boolean {
    return this.loop == null && !(this.phase.name === 'retired' && this.phase.until > now)
  }
}
