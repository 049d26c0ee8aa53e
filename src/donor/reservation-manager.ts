import { createLogger, type Logger } from '../log/logger.ts'
import { backoffDelay, Waker, type BackoffPolicy } from '../core/async.ts'
import { DialLadder, DialLadderError, RungMemory, familyOf, type LadderResult } from '../net/dial-ladder.ts'
import { MeshResolver } from '../net/dns-resolver.ts'
import { peerIdOf, transportOf, uplinkTransport } from '../net/transport-of.ts'
import { transportWatchesLiveness } from '../net/pinger.ts'
import { checkRelayTls, type RelayTlsCheck } from './relay-tls-check.ts'
import { pathUsesTls } from '../net/tls-intercept.ts'
import { RelayEntry } from './relay-entry.ts'
import type { AddrResolution, BootstrapStatus, KnownRelayView, RelayPath, RelayReservationStatus } from '../core/types.ts'
import { multiaddr } from '@multiformats/multiaddr'
import type { KnownRelay } from '../net/relay-directory.ts'
import type { MeshComponents } from '../net/components.ts'
import type { AbortOptions, Connection } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** What the reservation manager needs of the node. */
export type ReservationManagerComponents = Pick<MeshComponents, 'connections' | 'events' | 'dialler' | 'reservations' | 'pinger' | 'proxies' | 'telemetry'>

export interface ReservationManagerInit {
  bootstrap: readonly Multiaddr[]
  /** first retry delay after a failed round @default 500 */
  initialBackoffMs?: number
  /** longest delay between rounds; retries never stop @default 30000 */
  maxBackoffMs?: number
  /**
   * the longest the watchdog goes without checking, locally and without
   * writing anything, that each relay's connection and reservation are still
   * there; it checks at once when the connection closes or our circuit
   * addresses change, so this is a safety net @default 30000
   */
  watchdogIntervalMs?: number
  /**
   * how often the watchdog pings a relay over TCP, WebSocket or HTTPS (a muxer
   * ping frame): the only way to notice a black-holed path or a host gone
   * without a FIN, within this plus the ping timeout. A relay process that
   * dies closes its sockets (the kernel sends FIN/RST) and is noticed at once
   * without a ping; QUIC relays are never pinged (DONOR_QUIC_LIVENESS)
   * @default 15000
   */
  pingIntervalMs?: number
  /**
   * a relay that does not answer a ping within this is treated as lost; the
   * wait grows to 4× the relay's recent ping round trip when that is longer
   * (a loaded machine or a slow path), up to 10 s @default 2000
   */
  pingTimeoutMs?: number
  /**
   * the data directory's state folder, where the dial ladder remembers the rung
   * that reached each relay from this network; without it the memory lasts
   * only as long as the process
   */
  stateDir?: string
  /**
   * resolves `/dns4`, `/dns6`, `/dnsaddr` bootstrap addresses (OS resolver,
   * then DNS-over-HTTPS) so the ladder dials IP addresses
   * @default a MeshResolver with the built-in DoH endpoints
   */
  resolver?: MeshResolver
  /**
   * reservations the donor wants at once: with fewer, it reserves on a relay
   * learned from the mesh (gossip, identify) too, so losing one relay never
   * leaves it undialable @default 2
   */
  targetReservations?: number
  /** most relays reserved at once counting learned ones; bootstrap relays are always reserved @default 3 */
  maxReservations?: number
  /**
   * while fewer than `targetReservations` are held, a lost relay is retried at
   * least this often (plus ±20% jitter), so a restarted relay is reserved
   * again within seconds; only donors short of reservations retry this
   * often, so a dead relay is not hammered by the whole mesh @default 2000
   */
  underTargetMaxBackoffMs?: number
  /** a learned relay that failed is tried again after this, doubling per failure up to 5 min @default 5000 */
  learnedRetryMs?: number
  /**
   * after this many failed rounds in a row on one relay it counts as down, not
   * blipping: its retries are spaced up to `downMaxBackoffMs` even while short
   * of reservations, and its failures are logged as one line per
   * `failureSummaryMs` with the count @default 5
   */
  quietAfterFailures?: number
  /** the retry ceiling for a relay that is down (see `quietAfterFailures`); a restarted relay is still reserved within this @default 10000 */
  downMaxBackoffMs?: number
  /** how often a relay that is down gets a line saying how many rounds failed @default 60000 */
  failureSummaryMs?: number
  /**
   * drop a `wss` relay path whose TLS a middlebox re-signs (a TLS-inspecting
   * proxy), instead of only reporting it; the address is not dialled again
   * for `refusedPathMs` @default false
   */
  refuseIntercepted?: boolean
  /**
   * how a relay is reached over its usable addresses; a benchmark injects
   * another strategy here to compare it with the ladder
   * @default the dial ladder (staggered parallel attempts, the winning rung remembered in `stateDir`)
   */
  relayDialler?: RelayDialler
  /** how long a refused (intercepted) address is left out of the dial ladder @default 600000 */
  refusedPathMs?: number
  /**
   * called after a failed round while no reservation is held: every relay
   * dial fails so far, and the donor asks whether a captive portal is in the way
   */
  onUnreachable?: () => void
  logger?: Logger
}

export type KnownRelayStatus = KnownRelayView

/** One attempt to connect to a relay over all its usable addresses: the connection and how it was made. */
export interface RelayDialler {
  dial: (peerId: string, addrs: readonly Multiaddr[], options: AbortOptions) => Promise<LadderResult>
  /** the path out changed (a portal let us out): what slow answers taught about each peer no longer holds */
  networkChanged?: () => void
}

/** The watchdog's local check without an event, by default (ReservationManagerInit.watchdogIntervalMs). */
export const DEFAULT_WATCHDOG_INTERVAL_MS = 30_000

/** How often the watchdog pings a relay over a TCP-based transport by default (ReservationManagerInit.pingIntervalMs). */
export const DEFAULT_PING_INTERVAL_MS = 15_000

/** The coverage check's safety net: it runs at least this often, though every change it acts on wakes it. */
const COVERAGE_RECHECK_MS = 30_000

/** The longest a learned relay that keeps failing is left alone before it is tried again. */
const MAX_LEARNED_RETRY_MS = 300_000

/** The watchdog's ping timeout never exceeds this, however slow the recent pings were. */
const MAX_PING_TIMEOUT_MS = 10_000

/** The watchdog's ping timeout for a relay: the configured one, or 4× its recent round trip when longer, at most 10 s. */
export function watchdogPingTimeout (configuredMs: number, rttMs?: number): number {
  return Math.round(Math.min(MAX_PING_TIMEOUT_MS, Math.max(configuredMs, 4 * (rttMs ?? 0))))
}

/**
 * Keeps the donor reserved on every bootstrap relay, for ever:
 * dial all its addresses with the dial ladder (staggered parallel attempts,
 * each recorded by telemetry, the rung that won remembered for this network)
 * → reserve as soon as connected
 * (not gated on AutoNAT, which never says "private" without connections) →
 * watch → on loss, redial and re-reserve with capped exponential backoff.
 * js-libp2p does not re-reserve a restarted static relay (issue 3601); this does.
 * Each relay's loop is the small state machine of `RelayPhase` (relay-entry.ts);
 * `status` is computed from it on read.
 */
export class ReservationManager {
  private readonly mesh: ReservationManagerComponents
  private readonly relays: RelayEntry[]
  private readonly log: Logger
  private readonly initialBackoffMs: number
  private readonly maxBackoffMs: number
  private readonly watchdogIntervalMs: number
  private readonly pingIntervalMs: number
  private readonly pingTimeoutMs: number
  private readonly dialler: RelayDialler
  private readonly resolver: MeshResolver
  private readonly target: number
  private readonly cap: number
  private readonly underTargetMaxBackoffMs: number
  private readonly quietAfterFailures: number
  private readonly downMaxBackoffMs: number
  private readonly failureSummaryMs: number
  /** per relay that is down: when the current summary window opened and the failed rounds in it */
  private readonly failureSummaries = new Map<string, { since: number, count: number }>()
  private readonly learnedRetry: BackoffPolicy
  private readonly refuseIntercepted: boolean
  private readonly refusedPathMs: number
  private readonly onUnreachable?: () => void
  /** ids of connections this manager closed itself (refused paths) */
  private readonly closedOnPurpose = new Set<string>()
  private controller?: AbortController
  private coverage?: Promise<void>
  /** wakes the coverage check: a relay was lost or learned, or a loop ended; latched, so a wake-up during a check is kept for the next wait */
  private readonly coverageWaker = new Waker({ latch: true })
  private readonly onConnectionClose = (evt: CustomEvent<{ id?: string, remotePeer: { toString: () => string }, remoteAddr: { toString: () => string } }>): void => {
    const peer = evt.detail.remotePeer.toString()
    const relay = this.relays.find(r => r.peerId === peer)
    if (relay?.loop == null) return
    // a connection we closed ourselves (refused for intercepted TLS) is not a loss; its WARN line was the refusal
    const onPurpose = evt.detail.id != null && this.closedOnPurpose.delete(evt.detail.id)
    if (!this.mesh.connections.isConnected(peer) && !onPurpose) {
      const addr = evt.detail.remoteAddr.toString()
      this.log.warn(`lost connection to relay ${peer} (${relay.source}) at ${addr} over ${uplinkTransport(addr)}; reconnecting`, { peer, addr, transport: uplinkTransport(addr) })
    }
    relay.waker.wake()
  }

  constructor (mesh: ReservationManagerComponents, init: ReservationManagerInit) {
    this.mesh = mesh
    this.log = init.logger ?? createLogger('donor.reservation')
    this.initialBackoffMs = init.initialBackoffMs ?? 500
    this.maxBackoffMs = init.maxBackoffMs ?? 30_000
    // the local check runs when an event says something changed (the
    // connection closed, our circuit addresses changed); this timer is only
    // its safety net. Cost per relay: one wake-up and two map reads per 30 s
    this.watchdogIntervalMs = init.watchdogIntervalMs ?? DEFAULT_WATCHDOG_INTERVAL_MS
    // Why pings are rare: a relay killed outright closes its TCP sockets
    // (the kernel sends FIN, or RST with data unread), so the loss is an
    // event within milliseconds (test/donor/relay-killed.test.ts), and QUIC
    // notices a silent peer natively within 3.5 s. Only a path that goes
    // silent while both ends stay up (black hole, host power cut) needs a
    // ping: noticed within 15 s + the ping timeout, while the donor stays
    // dispatchable through its other reservation. Cost per TCP/WS relay: one
    // muxer ping frame (12 bytes, encrypted) each way per 15 s, on the donor
    // and on the relay (a tenth of a ping every 1.5 s).
    this.pingIntervalMs = init.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS
    this.pingTimeoutMs = init.pingTimeoutMs ?? 2_000
    this.dialler = init.relayDialler ?? this.ladder(mesh, init.stateDir)
    this.resolver = init.resolver ?? new MeshResolver({ logger: createLogger('net.dns') })
    const groups = new Map<string, Multiaddr[]>()
    for (const ma of init.bootstrap) {
      const peer = peerIdOf(ma)
      if (peer == null) continue
      groups.set(peer, [...(groups.get(peer) ?? []), ma])
    }
    const now = Date.now()
    this.relays = [...groups.entries()].map(([peerId, addrs]) => new RelayEntry({ peerId, addrs, source: 'bootstrap', lastHeard: now }))
    this.target = Math.max(1, init.targetReservations ?? 2)
    this.cap = Math.max(this.target, init.maxReservations ?? 3)
    this.underTargetMaxBackoffMs = init.underTargetMaxBackoffMs ?? 2_000
    this.quietAfterFailures = init.quietAfterFailures ?? 5
    this.downMaxBackoffMs = init.downMaxBackoffMs ?? 10_000
    this.failureSummaryMs = init.failureSummaryMs ?? 60_000
    this.learnedRetry = { initialMs: init.learnedRetryMs ?? 5_000, maxMs: MAX_LEARNED_RETRY_MS }
    this.refuseIntercepted = init.refuseIntercepted ?? false
    this.refusedPathMs = init.refusedPathMs ?? 600_000
    this.onUnreachable = init.onUnreachable
  }

  /** The default relay dialler: the dial ladder, remembering the winning rung per network in `stateDir`. */
  private ladder (mesh: ReservationManagerComponents, stateDir: string | undefined): DialLadder {
    const ladderLog = this.log.child('ladder')
    if (stateDir == null) {
      ladderLog.debug('no state directory given: the winning dial rungs are remembered only until this process stops')
    }
    const memory = stateDir != null
      ? RungMemory.inStateDir(stateDir, { logger: ladderLog })
      : new RungMemory({ logger: ladderLog })
    return new DialLadder({
      dial: async (ma, options) => await mesh.dialler.dialTransport(ma, { ...options, purpose: 'bootstrap' }),
      memory,
      logger: ladderLog
    })
  }

  start (): void {
    if (this.controller != null) return
    this.controller = new AbortController()
    if (this.relays.length === 0) {
      this.log.warn('no bootstrap relays configured: this donor cannot be reached by anyone. Give one with --bootstrap /ip4/…/tcp/4001/p2p/<relay PeerId>, WORLDCOMPUTE_BOOTSTRAP, or "bootstrap" in config.json')
    }
    this.mesh.events.on('connection:close', this.onConnectionClose)
    const signal = this.controller.signal
    for (const relay of this.relays) this.startLoop(relay, signal)
    this.coverage = this.keepCovered(signal).catch((err: unknown) => {
      if (!signal.aborted) this.log.error(`relay coverage loop stopped unexpectedly: ${(err as Error).stack ?? String(err)}`)
    })
  }

  private startLoop (relay: RelayEntry, signal: AbortSignal): void {
    relay.begin()
    relay.loop = (async () => {
      try {
        await this.run(relay, signal)
      } catch (err) {
        if (!signal.aborted) {
          // run() handles every expected failure itself; reaching here is a bug, so say it loudly
          this.log.error(`reservation loop for relay ${relay.peerId} stopped unexpectedly: ${(err as Error).stack ?? String(err)}`, { peer: relay.peerId })
        }
      } finally {
        relay.loop = undefined
        relay.parked()
        this.coverageWaker.wake()
      }
    })()
  }

  /**
   * A relay learned from the mesh (gossip announcement, identify). Reserved on
   * only while this donor holds fewer reservations than it wants; otherwise
   * kept as a standby for when one is lost.
   */
  learn (known: KnownRelay): void {
    const existing = this.relays.find(r => r.peerId === known.peerId)
    if (existing?.source === 'bootstrap') return
    const addrs: Multiaddr[] = []
    for (const a of known.addrs) {
      try {
        addrs.push(multiaddr(a))
      } catch (err) {
        this.log.warn(`relay ${known.peerId} (${known.source}): unusable address ${a}: ${(err as Error).message}`, { peer: known.peerId })
      }
    }
    if (addrs.length === 0) return
    if (existing != null) {
      existing.addrs = addrs
      existing.lastHeard = known.lastHeard
      existing.source = known.source
    } else {
      this.relays.push(new RelayEntry({ peerId: known.peerId, addrs, source: known.source, lastHeard: known.lastHeard }))
    }
    this.coverageWaker.wake()
  }

  /** Relays holding a reservation for us now. */
  private held (): RelayEntry[] {
    return this.relays.filter(r => r.phase.name === 'reserved' && this.mesh.reservations.hasReservation(r.peerId))
  }

  private describeHeld (): string {
    const held = this.held()
    return held.length === 0
      ? 'holding no reservation: this donor cannot be dialled until one is back'
      : `holding ${held.length} reservation(s): ${held.map(r => `${r.peerId} (${r.path?.transport ?? '?'}, ${r.source})`).join(', ')}`
  }

  /**
   * Keeps at least `target` reservations when enough relays are known: when
   * fewer are held (or on their way on learned relays) than wanted, starts a
   * loop on the learned relay heard from most recently. Never drops one to
   * make room (make-before-break); `cap` bounds what learned relays add.
   * Woken by every loss, loop end and newly learned relay; also checks when a
   * retired relay may be tried again (`nextCoverageCheck`). Ends (rejecting)
   * when `signal` aborts.
   */
  private async keepCovered (signal: AbortSignal): Promise<void> {
    for (;;) {
      try {
        this.topUp(signal)
      } catch (err) {
        this.log.error(`relay coverage check failed: ${(err as Error).stack ?? String(err)}`)
      }
      await this.coverageWaker.wait(this.nextCoverageCheck(Date.now()), { signal })
    }
  }

  /**
   * How long the coverage check may sleep: every change it acts on wakes it
   * (a loss, a loop ending, a relay learned), except a retired learned relay
   * becoming eligible again, so it sleeps until the first such time, or
   * COVERAGE_RECHECK_MS as a safety net. Cost: one wake-up per 30 s per
   * donor, not one a second.
   */
  private nextCoverageCheck (now: number): number {
    let next = COVERAGE_RECHECK_MS
    for (const r of this.relays) {
      if (r.source !== 'bootstrap' && r.loop == null && r.phase.name === 'retired' && r.phase.until > now) next = Math.min(next, r.phase.until - now)
    }
    return next
  }

  private topUp (signal: AbortSignal): void {
    const held = this.held()
    if (held.length >= this.target) return
    // learned relays already being reserved on count as coming, and so does a
    // bootstrap relay on its first round (at start, gossip through the first
    // relay reserved would otherwise add a learned one while the second
    // bootstrap relay is still dialling: three reservations, one too many);
    // a bootstrap relay redialling after a loss does not: it may be dead (a
    // QUIC rung alone waits 3 s), and make-before-break wants the replacement now
    const coming = this.relays.filter(r => r.loop != null && r.coming && (r.source !== 'bootstrap' || r.firstRound))
    if (held.length + coming.length >= Math.min(this.target, this.cap)) return
    const now = Date.now()
    const candidate = this.relays
      .filter(r => r.source !== 'bootstrap' && r.idleAt(now))
      .sort((a, b) => b.lastHeard - a.lastHeard)[0]
    if (candidate == null) return
    this.log.info(`${this.describeHeld()}, fewer than the ${this.target} wanted: reserving on relay ${candidate.peerId} (learned from ${candidate.source}) at ${candidate.addrs.map(String).join(', ')}`, { peer: candidate.peerId, source: candidate.source })
    this.startLoop(candidate, signal)
  }

  /**
   * The network changed (a captive portal let this device out): every relay
   * waiting out a back-off is tried now, with its back-off started afresh,
   * and learned relays set aside for failing may be tried again at once.
   */
  networkChanged (): void {
    const now = Date.now()
    this.failureSummaries.clear()
    this.dialler.networkChanged?.()
    for (const relay of this.relays) {
      if (relay.phase.name === 'backing-off') {
        relay.failures = 0
        relay.waker.wake()
      } else if (relay.phase.name === 'retired') {
        relay.learnedFailures = 0
        relay.phase = { name: 'retired', until: now }
      }
    }
    this.coverageWaker.wake()
  }

  async stop (): Promise<void> {
    if (this.controller == null) return
    this.controller.abort()
    this.mesh.events.off('connection:close', this.onConnectionClose)
    await Promise.allSettled([...this.relays.map(r => r.loop), this.coverage])
    this.coverage = undefined
    this.controller = undefined
  }

  bootstrapStatus (): BootstrapStatus[] {
    return this.relays.filter(r => r.source === 'bootstrap').map(r => r.bootstrapView())
  }

  /** Relays learned from the mesh and what this donor does with each. */
  knownRelays (): KnownRelayStatus[] {
    const now = Date.now()
    return this.relays.filter(r => r.source !== 'bootstrap').map(r => r.knownView(now))
  }

  reservations (): RelayReservationStatus[] {
    const out: RelayReservationStatus[] = []
    for (const relay of this.relays) {
      const circuit = this.mesh.reservations.circuitAddrsVia(relay.peerId)
      const conn = this.mesh.connections.bestDirect(relay.peerId)
      if (circuit.length === 0 || conn == null || relay.grantedAt == null) continue
      out.push({
        peerId: relay.peerId,
        circuitAddr: circuit.find(a => a.startsWith(conn.remoteAddr.toString())) ?? circuit[0],
        transport: uplinkTransport(conn.remoteAddr),
        since: relay.grantedAt.toISOString(),
        source: relay.source,
        addr: conn.remoteAddr.toString(),
        ...(relay.path != null ? { reason: relay.path.reason } : {}),
        ...this.tlsView(relay, conn)
      })
    }
    return out
  }

  /** Relay PeerIds we hold a connection to, for `ping` to try circuits through. */
  connectedRelays (): string[] {
    return this.relays.filter(r => this.mesh.connections.isConnected(r.peerId)).map(r => r.peerId)
  }

  /**
   * One relay's loop: one step per phase until the relay is retired (a
   * learned relay that failed) or `signal` aborts. Bounded only by the
   * daemon's lifetime: the donor never gives up on a bootstrap relay.
   */
  private async run (relay: RelayEntry, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const phase = relay.phase
      switch (phase.name) {
        case 'connecting': await this.connect(relay, signal); break
        case 'connected': await this.reserve(relay, phase.conn, signal); break
        case 'reserved': await this.hold(relay, phase.conn, signal); break
        case 'backing-off': await this.waitToRetry(relay, phase.until, signal); break
        case 'standby': case 'retired': return
      }
    }
  }

  /** connecting → connected: the open connection to the relay, or a new one over its resolved, not refused addresses. */
  private async connect (relay: RelayEntry, signal: AbortSignal): Promise<void> {
    const open = this.mesh.connections.bestDirect(relay.peerId)
    if (open != null) {
      relay.connected(open, this.pathOf(relay, open))
      return
    }
    relay.dialling()
    const addrs = await this.resolveAddrs(relay, signal)
    if (signal.aborted) return
    if (addrs.length === 0) {
      this.roundFailed(relay, `no address resolved: ${(relay.resolution ?? []).map(r => `${r.addr}: ${r.note ?? r.via}`).join('; ')}`)
      return
    }
    const usable = this.withoutRefused(relay, addrs)
    if (usable.length === 0) {
      this.roundFailed(relay, [...relay.refused.values()].map(r => r.reason).join('; '))
      return
    }
    let result: LadderResult
    try {
      result = await this.dialler.dial(relay.peerId, usable, { signal })
    } catch (err) {
      if (signal.aborted) return
      this.roundFailed(relay, ladderFailureText(err))
      return
    }
    const conn = result.connection
    relay.connectionId = conn.id
    relay.connected(conn, { transport: result.transport, addr: result.addr, reason: result.reason, remembered: result.remembered, ...(result.family != null ? { family: result.family } : {}), at: new Date().toISOString() })
    if (this.refuseIntercepted && pathUsesTls(result.addr)) {
      // before the reservation: a refused path must never make this donor dispatchable
      await this.refuseIfIntercepted(relay, conn, result.addr, signal)
    }
  }

  /** connected → backing-off when the TLS of a just-dialled `wss` or TLS poll path is intercepted (--refuse-intercepted): the path is refused and closed. */
  private async refuseIfIntercepted (relay: RelayEntry, conn: Connection, addr: string, signal: AbortSignal): Promise<void> {
    const check = await this.checkTls(relay, conn, addr, signal)
    if (signal.aborted || check.intercepted !== 'yes') return
    const until = Date.now() + this.refusedPathMs
    const cause = `refused the path ${addr}: TLS to relay ${relay.peerId} is intercepted by '${check.interceptor ?? '?'}' and --refuse-intercepted is set; not dialling it again for ${Math.round(this.refusedPathMs / 1000)} s`
    // the same sentence is the relay's lastError for as long as the refusal lasts (rounds in which every address is refused repeat it)
    relay.refused.set(addr, { until, reason: `refused the path ${addr}: TLS to relay ${relay.peerId} is intercepted by '${check.interceptor ?? '?'}' and --refuse-intercepted is set; not dialling it again before ${new Date(until).toISOString()}` })
    // a graceful close: @libp2p/websockets aborts with WebSocket.close(1006), which the
    // WHATWG WebSocket refuses (InvalidAccessError), leaving the socket open for ever
    const reason = new Error(cause)
    const refused = conn
    // forgotten when its close event is seen (one id per refusal, at most one refusal per round)
    this.closedOnPurpose.add(refused.id)
    await refused.close({ signal: AbortSignal.timeout(2_000) }).catch((err: unknown) => {
      this.log.debug(`closing the refused connection to ${relay.peerId} gracefully failed (${(err as Error).message}); aborting it`, { peer: relay.peerId })
      refused.abort(reason)
    })
    this.roundFailed(relay, cause)
  }

  /**
   * connected → reserved: a reservation on `conn`. Asked for even when the
   * relay seems to hold one already: `reserve` sends nothing for a reservation
   * held on an open connection, and makes a new one for any other, so the
   * phase never says "reserved" on a record alone (nor without `grantedAt`,
   * which `status` needs to list it).
   */
  private async reserve (relay: RelayEntry, conn: Connection, signal: AbortSignal): Promise<void> {
    try {
      const result = await this.mesh.reservations.reserve(conn, { signal })
      relay.reserved(conn, result.grantedAt)
      const path = relay.path ?? this.pathOf(relay, conn)
      this.log.info(`reserved on relay ${relay.peerId} over ${path.transport}: ${path.reason}; reachable at ${result.circuitAddrs[0]}; relay from ${relay.source}, dialled at ${path.addr}; ${this.describeHeld()}`, { peer: relay.peerId, addr: path.addr, transport: path.transport, remembered: path.remembered, source: relay.source })
      if (relay.tlsConnectionId !== conn.id && pathUsesTls(path.addr)) {
        // after the reservation, off the path to "dispatchable": an intercepted path is still used
        void this.checkTls(relay, conn, path.addr, signal)
      }
    } catch (err) {
      if (signal.aborted) return
      this.roundFailed(relay, (err as Error).message)
    }
  }

  /** reserved → connecting: watches the reservation until it is lost. */
  private async hold (relay: RelayEntry, conn: Connection, signal: AbortSignal): Promise<void> {
    const addr = relay.path?.addr ?? conn.remoteAddr.toString()
    const cause = await this.watch(relay, signal)
    relay.lost(cause)
    this.log.warn(`lost reservation on relay ${relay.peerId} (${relay.source}) at ${addr} over ${uplinkTransport(addr)}: ${cause}; ${this.describeHeld()}; ${relay.source === 'bootstrap' ? 'redialling it' : 'trying it once more'}${this.held().length < this.target ? ', and replacing it with another known relay if there is one' : ''}`, { peer: relay.peerId, addr, transport: uplinkTransport(addr), source: relay.source })
    this.coverageWaker.wake()
  }

  /** backing-off → connecting: when the wait is over, or sooner when the relay connection closes. */
  private async waitToRetry (relay: RelayEntry, until: number, signal: AbortSignal): Promise<void> {
    await relay.waker.wait(until - Date.now(), { signal })
    relay.retry()
  }

  /**
   * After a failed round: a bootstrap relay backs off (capped exponential,
   * ±20% jitter); a learned one is retired, its loop ends and another known
   * relay gets the slot.
   */
  private roundFailed (relay: RelayEntry, cause: string): void {
    if (this.held().length === 0) this.onUnreachable?.()
    if (relay.source !== 'bootstrap') {
      this.retire(relay, cause)
      return
    }
    this.coverageWaker.wake()
    // ±20% jitter so many donors do not hammer a restarted relay in lock-step
    const wait = backoffDelay({ initialMs: this.initialBackoffMs, maxMs: this.retryCeiling(relay), jitter: 0.2 }, relay.failures + 1)
    relay.backingOff(cause, Date.now() + wait)
    this.reportRoundFailed(relay, cause, wait)
  }

  /**
   * Short of the reservations wanted, a relay coming back must be noticed
   * within seconds; one that has been down for several rounds is polled less
   * often (another known relay fills the gap through the coverage loop, not
   * through this wait).
   */
  private retryCeiling (relay: RelayEntry): number {
    if (this.held().length >= this.target) return this.maxBackoffMs
    const cap = relay.failures >= this.quietAfterFailures ? this.downMaxBackoffMs : this.underTargetMaxBackoffMs
    return Math.min(this.maxBackoffMs, cap)
  }

  /** Each failed round while a relay blips; once it is down, one line per `failureSummaryMs` with the count. */
  private reportRoundFailed (relay: RelayEntry, cause: string, wait: number): void {
    const fields = { peer: relay.peerId, failures: relay.failures }
    if (relay.failures <= this.quietAfterFailures) {
      this.failureSummaries.delete(relay.peerId)
      this.log.info(`relay ${relay.peerId}: attempt ${relay.failures} failed (${cause}); retrying in ${(wait / 1000).toFixed(1)} s`, fields)
      return
    }
    const now = Date.now()
    const summary = this.failureSummaries.get(relay.peerId)
    if (summary == null) {
      this.failureSummaries.set(relay.peerId, { since: now, count: 0 })
      this.log.info(`relay ${relay.peerId}: attempt ${relay.failures} failed (${cause}); it looks down: retrying every ${(this.retryCeiling(relay) / 1000).toFixed(0)} s at most, one line per ${(this.failureSummaryMs / 1000).toFixed(0)} s from now`, fields)
      return
    }
    summary.count++
    if (now - summary.since < this.failureSummaryMs) return
    this.log.info(`relay ${relay.peerId}: ${summary.count} more attempt(s) failed in the last ${((now - summary.since) / 1000).toFixed(0)} s, ${relay.failures} in a row (last: ${cause}); retrying in ${(wait / 1000).toFixed(1)} s`, { ...fields, suppressed: summary.count })
    this.failureSummaries.set(relay.peerId, { since: now, count: 0 })
  }

  /** A learned relay that failed: not tried again for a while, doubling per failure. */
  private retire (relay: RelayEntry, cause: string): void {
    const wait = backoffDelay(this.learnedRetry, relay.learnedFailures + 1)
    relay.retired(cause, Date.now() + wait)
    this.log.info(`relay ${relay.peerId} (learned from ${relay.source}) failed: ${cause}; not trying it again for ${(wait / 1000).toFixed(1)} s, trying another known relay if one is needed`, { peer: relay.peerId, source: relay.source })
  }

  /**
   * The relay's configured addresses with their names resolved (OS resolver,
   * then DoH). A name that does not resolve is recorded as a failed dial at
   * the `dns` phase (one WARN line through telemetry) and left out; the
   * ladder dials what remains.
   */
  private async resolveAddrs (relay: RelayEntry, signal: AbortSignal): Promise<Multiaddr[]> {
    const out: Multiaddr[] = []
    const resolution: AddrResolution[] = []
    await Promise.all(relay.addrs.map(async (ma, i) => {
      const started = Date.now()
      try {
        const r = await this.resolver.resolveMultiaddr(ma, { signal })
        const { multiaddrs, ...entry } = r
        resolution[i] = entry
        return multiaddrs
      } catch (err) {
        if (signal.aborted) return []
        const cause = (err as Error)?.message ?? String(err)
        resolution[i] = { addr: ma.toString(), via: 'failed', resolved: [], note: cause }
        this.mesh.telemetry.record({
          ts: new Date(started).toISOString(),
          target: ma.toString(),
          peerId: relay.peerId,
          transport: transportOf(ma),
          phase: 'dns',
          outcome: 'failure',
          cause: `name did not resolve: ${cause}`,
          code: (err as { code?: string })?.code ?? 'DNS_FAILED',
          duration_ms: Date.now() - started,
          purpose: 'bootstrap'
        })
        return []
      }
    })).then(lists => { for (const list of lists) out.push(...list) })
    relay.resolution = resolution
    return out
  }

  /** The addresses not refused for intercepted TLS (expired refusals are forgotten). */
  private withoutRefused (relay: RelayEntry, addrs: Multiaddr[]): Multiaddr[] {
    const now = Date.now()
    for (const [addr, r] of relay.refused) if (r.until <= now) relay.refused.delete(addr)
    if (relay.refused.size === 0) return addrs
    const bare = (a: string): string => a.replace(/\/p2p\/[^/]+$/, '')
    const refused = new Set([...relay.refused.keys()].map(bare))
    return addrs.filter(a => !refused.has(bare(a.toString())))
  }

  /**
   * TLS interception check of a `wss` or TLS poll relay connection (relay-tls-check.ts);
   * the verdict goes to status and one log line (WARN when intercepted or
   * when the check could not run). Never throws.
   */
  private async checkTls (relay: RelayEntry, conn: Connection, addr: string, signal: AbortSignal): Promise<RelayTlsCheck> {
    relay.tlsConnectionId = conn.id
    relay.tls = { intercepted: 'unknown', addr, reason: 'checking' }
    let check: RelayTlsCheck
    try {
      check = await checkRelayTls(this.mesh.proxies, conn, addr, { signal })
    } catch (err) {
      check = { intercepted: 'unknown', addr, failed: true, reason: `not checked: ${(err as Error).message}` }
    }
    if (relay.tlsConnectionId !== conn.id) return check
    relay.tls = check
    relay.tlsVerdict = check
    if (signal.aborted) return check
    const fields = { peer: relay.peerId, addr, transport: uplinkTransport(addr), phase: 'tls' }
    if (check.intercepted === 'yes') {
      this.log.warn(`TLS to relay ${relay.peerId} is intercepted by '${check.interceptor ?? '?'}' at ${addr}: ${check.reason}; ${this.refuseIntercepted ? 'refusing this path (--refuse-intercepted)' : 'using the path anyway (start with --refuse-intercepted to refuse it)'}`, { ...fields, interceptor: check.interceptor })
    } else if (check.failed === true) {
      this.log.warn(`relay ${relay.peerId} at ${addr}: TLS interception ${check.reason}`, fields)
    } else {
      this.log.info(`relay ${relay.peerId} at ${addr}: TLS interception ${check.intercepted === 'no' ? 'none' : 'unknown'}: ${check.reason}`, fields)
    }
    return check
  }

  /** status fields of the TLS check for the connection holding the reservation */
  private tlsView (relay: RelayEntry, conn: Connection): Pick<RelayReservationStatus, 'tlsIntercepted' | 'tlsInterceptor' | 'tlsCheck'> {
    if (relay.tls != null && relay.tlsConnectionId === conn.id) {
      return { tlsIntercepted: relay.tls.intercepted, ...(relay.tls.interceptor != null ? { tlsInterceptor: relay.tls.interceptor } : {}), tlsCheck: relay.tls.reason }
    }
    const transport = uplinkTransport(conn.remoteAddr)
    return { tlsIntercepted: 'unknown', tlsCheck: pathUsesTls(conn.remoteAddr.toString()) ? 'not checked yet' : `not checked: this path does not use TLS (${transport})` }
  }

  /** The ladder's path when `conn` is the connection it made, otherwise what we can say about `conn`. */
  private pathOf (relay: RelayEntry, conn: Connection): RelayPath {
    const known = relay.path
    if (known != null && relay.connectionId === conn.id) return known
    return {
      transport: uplinkTransport(conn.remoteAddr),
      addr: conn.remoteAddr.toString(),
      reason: 'already connected (a connection opened outside the dial ladder)',
      remembered: false,
      ...(familyOf(conn.remoteAddr) != null ? { family: familyOf(conn.remoteAddr) } : {}),
      at: new Date().toISOString()
    }
  }

  /**
   * Waits until the relay connection or reservation is lost (event or
   * watchdog); returns the cause in words. Rejects when `signal` aborts.
   */
  private async watch (relay: RelayEntry, signal: AbortSignal): Promise<string> {
    // a change of our circuit addresses (the store recorded or removed a
    // reservation) wakes the watch at once, as a closed connection does:
    // the local check runs on events, not on a timer
    const unsubscribe = this.mesh.reservations.onChange(() => { relay.waker.wake() })
    try {
      let pingedAt = Date.now()
      for (;;) {
        // checked before every wait: a wake-up that came during a ping is not lost
        if (!this.mesh.connections.isConnected(relay.peerId)) return 'the connection to the relay closed'
        if (!this.mesh.reservations.hasReservation(relay.peerId)) {
          this.log.warn(`reservation on relay ${relay.peerId} is gone while connected; reserving again`, { peer: relay.peerId })
          return 'the relay dropped the reservation while connected'
        }
        // a silent relay (host gone, path black-holed) keeps the connection
        // "open" for a long time: ask it, unless the transport watches it
        const conn = this.mesh.connections.bestDirect(relay.peerId)
        const pings = conn != null && !transportWatchesLiveness(conn)
        const untilPing = pings ? pingedAt + this.pingIntervalMs - Date.now() : Infinity
        if (conn != null && untilPing <= 0) {
          pingedAt = Date.now()
          if (!(await this.pingRelay(relay, conn, signal))) {
            // abort, not close: a graceful close waits for a peer that is not answering
            conn.abort(new Error(`relay ${relay.peerId} did not answer a watchdog ping in time`))
            return 'no answer to a watchdog ping in time (relay gone or path black-holed)'
          }
          continue
        }
        await relay.waker.wait(Math.min(this.watchdogIntervalMs, untilPing), { signal })
      }
    } finally {
      unsubscribe()
    }
  }

  /**
   * One round trip on the relay connection (a muxer ping frame: a few dozen
   * bytes per relay per ping interval, on each side), false when it does
   * not come back in time.
   */
  private async pingRelay (relay: RelayEntry, conn: Connection, signal: AbortSignal): Promise<boolean> {
    const addr = conn.remoteAddr.toString()
    // why adaptive: with a fixed 2 s, a machine whose CPU is saturated (or a
    // slow satellite path) misses pings it would answer, and every false
    // alarm costs a redial and a new reservation — more load. A relay that
    // answered in 50 ms is still declared lost after 2 s.
    const timeoutMs = this.pingTimeout(relay)
    try {
      const rtt = await this.mesh.pinger.linkRtt(conn, { signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]) })
      relay.rttMs = relay.rttMs == null ? rtt : 0.7 * relay.rttMs + 0.3 * rtt
      return true
    } catch (err) {
      if (signal.aborted) return true
      if ((err as Error).name === 'TooManyOutboundProtocolStreamsError') {
        // an earlier ping's stream is still closing (a slow answer under load):
        // says nothing about the relay; the next round asks again
        this.log.debug(`relay ${relay.peerId}: ping skipped: ${(err as Error).message}`, { peer: relay.peerId })
        return true
      }
      this.log.warn(`relay ${relay.peerId} did not answer a ping within ${timeoutMs / 1000} s over ${addr} (recent round trip ${relay.rttMs != null ? `${Math.round(relay.rttMs)} ms` : 'unknown'}): ${(err as Error).message}; dropping the connection and redialling`, { peer: relay.peerId, transport: uplinkTransport(addr), phase: 'protocol' })
      relay.rttMs = undefined
      return false
    }
  }

  private pingTimeout (relay: { rttMs?: number }): number {
    return watchdogPingTimeout(this.pingTimeoutMs, relay.rttMs)
  }
}

/** Each tried address with its cause, for `status`: js-libp2p would give one bare AggregateError. */
function ladderFailureText (err: unknown): string {
  if (err instanceof DialLadderError && err.attempts.length > 0) {
    return err.attempts
      .filter(a => a.outcome !== 'not-tried')
      .map(a => `${a.addr}: ${a.cause ?? a.outcome}${a.code != null ? ` (${a.code})` : ''}`)
      .join('; ')
  }
  return (err as Error)?.message ?? String(err)
}
