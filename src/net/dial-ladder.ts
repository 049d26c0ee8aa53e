import { createHash } from 'node:crypto'
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { networkInterfaces } from 'node:os'
import { dirname, join } from 'node:path'
import { Waker } from '../core/async.ts'
import { WorldComputeError } from '../core/errors.ts'
import { duration, portOf } from '../core/format.ts'
import { TRANSPORTS, type AddrFamily, type DialAttempt, type DialPhase, type Transport } from '../core/types.ts'
import { createLogger, type Logger } from '../log/logger.ts'
import { describeDialError, initialPhase, phaseForProgress } from './dial-error.ts'
import { familyOf, transportOf } from './transport-of.ts'
import { withPollFallbacks } from './https-poll/address.ts'
import type { AbortOptions, Connection } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/**
 * Our own dial ladder for one peer (a relay or a bootstrap peer): staggered
 * parallel attempts, "happy eyeballs" (RFC 8305) as go-libp2p's smart dialing
 * does it. js-libp2p's own multi-address dial is sequential, 6 s per address
 * inside 10 s, puts QUIC last and cannot abort it (measured in the namespace
 * lab: test/lab), so on a network that drops packets silently
 * the rung that would work is never reached.
 *
 * Rules:
 *  - addresses are ranked QUIC, TCP, WebSocket (port 443 first), others, circuit;
 *    the rung remembered for this network and peer goes first;
 *  - within a rung the address families race as RFC 8305 §4 has it: IPv6
 *    first, IPv4 one stagger later (or the family that won last time on
 *    this network first), so a broken IPv6 path costs a quarter second and a
 *    working one is preferred;
 *  - the first attempt starts at once, each next one {@link RUNG_STAGGER_MS}
 *    after the previous started, or at once when every attempt started so far
 *    has failed;
 *  - each attempt has its own timeout by transport, the ladder a budget;
 *  - the first connection wins; the attempts still running are cancelled (the
 *    recorder records them as `cancelled`), and a loser that connects anyway
 *    is closed.
 */

/**
 * Gap between the starts of two attempts: RFC 8305 §5's recommended
 * "Connection Attempt Delay", and go-libp2p's smart-dialing TCP delay after
 * QUIC. A healthy QUIC handshake (8–21 ms in the namespace lab) wins
 * before TCP is even opened; a rung whose packets are dropped costs a quarter
 * second instead of a full timeout.
 */
export const RUNG_STAGGER_MS = 250

/**
 * QUIC handshake: one round trip. A lost Initial is retransmitted after the
 * probe timeout (RFC 9002 §6.2: initial RTT 333 ms, PTO ≈ 1 s, then doubling),
 * so 3 s covers the first flight and two retransmissions; past that UDP is
 * being dropped. The QUIC transport ignores the dial signal; the recorder
 * settles the attempt at the signal anyway.
 */
export const QUIC_ATTEMPT_TIMEOUT_MS = 3_000

/**
 * TCP, to the end of the upgrade (Noise and the muxer, which is when the
 * transport dial returns): SYN (Linux resends a lost SYN after 1 s), then
 * multistream-select, the Noise XX handshake (1.5 round trips) and yamux.
 * A handshake still unanswered after 2.5 s is a middlebox that lets the SYN
 * through and drops libp2p's cleartext negotiation ("SYN allowed, upgrade
 * blocked"); waiting the old 5–6 s never makes it answer.
 */
export const TCP_ATTEMPT_TIMEOUT_MS = 2_500

/** Plain WebSocket: TCP plus one HTTP upgrade round trip before Noise. */
export const WS_ATTEMPT_TIMEOUT_MS = 3_000

/**
 * WebSocket over TLS: TCP, TLS (1–2 round trips), the HTTP upgrade and Noise,
 * possibly through an HTTP CONNECT proxy (one more hop). It is the rung that
 * works where nothing else does (443-only and proxy-only networks),
 * so it gets the most room.
 */
export const WSS_ATTEMPT_TIMEOUT_MS = 4_000

/**
 * HTTPS long polling (https-poll/): a session request, then Noise and yamux
 * over request/response exchanges through a buffering proxy, each round trip
 * a full HTTP exchange. The last rung: it starts when the WebSocket attempts
 * before it failed, or when they made no progress for {@link HTTPS_POLL_STALL_MS}.
 */
export const HTTPS_POLL_ATTEMPT_TIMEOUT_MS = 6_000

/**
 * How long the poll rung waits for the attempts before it (WSS above all) to
 * fail, win or move on: counted from the last attempt's start or a running
 * WebSocket's last phase change, so a WebSocket held by a middlebox starts the
 * poll after 2 s while one that is slowly getting through (TLS, upgrade, Noise
 * on a loaded machine) is not overtaken by the costlier poll.
 */
export const HTTPS_POLL_STALL_MS = 2_000

/**
 * A circuit address (reaching the peer through another relay) or an address
 * only libp2p's dial queue can resolve (`/dnsaddr`): two dials in series, so
 * the old per-address budget.
 */
export const OTHER_ATTEMPT_TIMEOUT_MS = 5_000

/**
 * The whole ladder. The last of several rungs starts within about a second and
 * may need {@link WSS_ATTEMPT_TIMEOUT_MS}; 8 s leaves room for that and stays
 * under js-libp2p's own 10 s dial timeout. Whatever the number of addresses, a
 * ladder ends within this budget and the caller decides when to try again.
 */
export const LADDER_BUDGET_MS = 8_000

/**
 * How far a peer's attempt timeouts (and the ladder's budget) may grow. After
 * a ladder in which every attempt that ran timed out, the next ladder to that
 * peer waits twice as long per attempt, up to this factor; a connection resets
 * it. Why: the timeouts above are tuned to fail fast on a black hole, and a
 * relay starved of CPU (50 daemons on 2 cores in bench/scale.ts) answers the
 * same way — too late. At the fixed timeouts its donors never got back in
 * (70+ rounds, every rung "timed out"). A first ladder stays fast; only a peer
 * that has answered nothing in time for a whole round is given longer, which
 * costs nothing where nothing answers anyway.
 */
export const MAX_PATIENCE = 4

/** Peers whose patience is remembered; the oldest is forgotten beyond this. */
const MAX_PATIENCE_PEERS = 1_024

/** Per-transport attempt timeouts (see the constants above for why). */
export const ATTEMPT_TIMEOUTS_MS: Readonly<Record<Transport, number>> = Object.freeze({
  quic: QUIC_ATTEMPT_TIMEOUT_MS,
  tcp: TCP_ATTEMPT_TIMEOUT_MS,
  ws: WS_ATTEMPT_TIMEOUT_MS,
  wss: WSS_ATTEMPT_TIMEOUT_MS,
  webrtc: OTHER_ATTEMPT_TIMEOUT_MS,
  circuit: OTHER_ATTEMPT_TIMEOUT_MS,
  unknown: OTHER_ATTEMPT_TIMEOUT_MS,
  'https-poll': HTTPS_POLL_ATTEMPT_TIMEOUT_MS
})

/** File in the data directory's state folder that keeps the winning rungs. */
export const RUNG_MEMORY_FILE = 'dial-rungs.json'

/** Rung order; WebSocket with and without TLS share a rung, sorted by port within it. */
const RUNG_RANK: Readonly<Record<Transport, number>> = {
  quic: 0,
  tcp: 1,
  wss: 2,
  ws: 2,
  webrtc: 3,
  unknown: 3,
  circuit: 4,
  'https-poll': 5
}

export type { AddrFamily }
export { familyOf }

/** The family the ladder tries first within a rung when nothing is remembered (RFC 8305 §4: IPv6 first). */
export const PREFERRED_FAMILY: AddrFamily = 'ip6'

export interface PlannedAttempt {
  addr: Multiaddr
  transport: Transport
  /** undefined for an address by name */
  family?: AddrFamily
  /** the address belongs to the rung remembered for this network */
  remembered: boolean
}

/** What the ladder remembers per peer and network. */
export interface RememberedRung {
  transport: Transport
  /** the address that won */
  addr: string
  /** the family of the address that won: the ladder tries it first in every rung next time */
  family?: AddrFamily
  /** when it won, ISO 8601 UTC */
  at: string
}

/** How one attempt of a ladder ended, for `status`, logs and the error. */
export interface LadderAttempt {
  addr: string
  transport: Transport
  /** `not-tried`: the ladder ended before this address's turn; `closed-late`: connected after another won, and closed */
  outcome: 'success' | 'failure' | 'cancelled' | 'closed-late' | 'not-tried'
  remembered: boolean
  /** the phase the attempt had reached */
  phase?: DialPhase
  cause?: string
  code?: string
  /** the attempt's own timeout (or the ladder's budget) ended it */
  timedOut?: boolean
  /** ms after the ladder's start */
  startedAfterMs?: number
  durationMs?: number
}

export interface LadderResult {
  connection: Connection
  transport: Transport
  addr: string
  /** the IP family that won the race; undefined when the winner was dialled by name */
  family?: AddrFamily
  /** the winner came from the rung remembered for this network */
  remembered: boolean
  /** why this rung, in words: "first to connect (tcp: stalled at noise after 2.5 s)" */
  reason: string
  attempts: LadderAttempt[]
}

/** Every attempt of a ladder failed, or its budget or the caller ended it first. */
export class DialLadderError extends WorldComputeError {
  readonly attempts: LadderAttempt[]
  constructor (message: string, attempts: LadderAttempt[], options?: { cause?: unknown }) {
    super(message, 'DIAL_LADDER_FAILED', options)
    this.attempts = attempts
  }
}

/** The abort reason given to the attempts still running when another one won. */
export class DialAttemptCancelledError extends WorldComputeError {
  constructor (message: string) {
    super(message, 'CANCELLED')
  }
}

export interface AttemptDialOptions extends AbortOptions {
  signal: AbortSignal
  /** libp2p progress events of this attempt, for the phase it reached */
  onProgress: (evt: { type: string }) => void
  /**
   * the telemetry record of this attempt; it can say more than the error (a
   * WebSocket error says nothing, the recorder's probe finds the cause)
   */
  onRecord: (attempt: DialAttempt) => void
}

/** Dials exactly one address and records it once (MeshNode.dialTransport in the daemon). */
export type AttemptDialer = (addr: Multiaddr, options: AttemptDialOptions) => Promise<Connection>

/**
 * Orders the addresses of one peer into the ladder's rungs. Stable: addresses
 * of the same rank keep the order they were given in. Duplicates are dropped.
 * Within a rung the families alternate, the first family first (the
 * remembered one, else {@link PREFERRED_FAMILY}): with the stagger between
 * starts, that is RFC 8305's "IPv6 first, IPv4 after the connection attempt
 * delay".
 */
export function planLadder (addrs: readonly Multiaddr[], remembered?: Pick<RememberedRung, 'transport' | 'addr' | 'family'>): PlannedAttempt[] {
  const seen = new Set<string>()
  const unique: Array<{ addr: Multiaddr, text: string, transport: Transport, family?: AddrFamily, index: number }> = []
  for (const addr of addrs) {
    const text = addr.toString()
    if (seen.has(text)) continue
    seen.add(text)
    unique.push({ addr, text, transport: transportOf(text), family: familyOf(text), index: unique.length })
  }
  const first = remembered?.family ?? PREFERRED_FAMILY
  // the n-th address of a family within its rung: v6 #0, v4 #0, v6 #1, v4 #1, …
  const turn = new Map<typeof unique[number], number>()
  const counted = new Map<string, number>()
  for (const a of unique) {
    const group = `${RUNG_RANK[a.transport]}|${a.family ?? 'name'}`
    const n = counted.get(group) ?? 0
    counted.set(group, n + 1)
    turn.set(a, a.family == null ? 0 : n * 2 + (a.family === first ? 0 : 1))
  }
  const key = (a: typeof unique[number]): number[] => {
    const isRemembered = remembered != null && a.transport === remembered.transport
    return [
      isRemembered ? 0 : 1,
      // the exact address that won goes first within the remembered rung
      isRemembered && a.text === remembered.addr ? 0 : 1,
      RUNG_RANK[a.transport],
      // 443 is the port most likely to be let out of a restrictive network: first among WebSockets
      a.transport === 'ws' || a.transport === 'wss' ? (portOf(a.text) === 443 ? 0 : 1) : 0,
      a.transport === 'wss' ? 0 : 1,
      turn.get(a) ?? 0,
      a.index
    ]
  }
  return unique
    .map(a => ({ a, k: key(a) }))
    .sort((x, y) => compareKeys(x.k, y.k))
    .map(({ a }) => ({ addr: a.addr, transport: a.transport, ...(a.family != null ? { family: a.family } : {}), remembered: remembered != null && a.transport === remembered.transport }))
}

function compareKeys (x: number[], y: number[]): number {
  for (let i = 0; i < x.length; i++) {
    if (x[i] !== y[i]) return x[i] - y[i]
  }
  return 0
}

export interface DialLadderInit {
  dial: AttemptDialer
  /** where winning rungs are remembered; without it nothing is remembered */
  memory?: RungMemory
  logger?: Logger
  /** @default RUNG_STAGGER_MS */
  staggerMs?: number
  /** @default LADDER_BUDGET_MS */
  budgetMs?: number
  /** @default ATTEMPT_TIMEOUTS_MS */
  timeoutsMs?: Partial<Record<Transport, number>>
  /** @default MAX_PATIENCE; 1 keeps the timeouts fixed */
  maxPatience?: number
  /**
   * add the HTTPS poll address of each `/tls/ws` address as the last rung
   * (https-poll/address.ts); the doctor, which probes each address on its
   * own, turns it off @default true
   */
  pollFallback?: boolean
}

type AttemptStatus = 'pending' | 'running' | 'success' | 'failure' | 'cancelled' | 'closed-late'

function isWebSocket (s: AttemptState): boolean {
  return s.plan.transport === 'wss' || s.plan.transport === 'ws'
}

interface AttemptState {
  plan: PlannedAttempt
  status: AttemptStatus
  phase: DialPhase
  controller: AbortController
  signal?: AbortSignal
  startedAt?: number
  /** when the attempt last moved to a new phase (a WebSocket that moves is slow, not stalled) */
  progressAt?: number
  endedAt?: number
  connection?: Connection
  cause?: string
  code?: string
  timedOut?: boolean
  /** the recorder's record of a failure, when it came */
  record?: DialAttempt
}

function applyRecord (s: AttemptState, record: DialAttempt): void {
  s.phase = record.phase
  s.cause = record.cause
  s.code = record.code
}

export class DialLadder {
  private readonly dialer: AttemptDialer
  private readonly memory?: RungMemory
  private readonly log: Logger
  private readonly staggerMs: number
  private readonly budgetMs: number
  private readonly timeoutsMs: Record<Transport, number>
  private readonly maxPatience: number
  private readonly pollFallback: boolean
  /** per peer: the factor its timeouts and budget are multiplied by (absent = 1) */
  private readonly patience = new Map<string, number>()

  constructor (init: DialLadderInit) {
    this.dialer = init.dial
    this.memory = init.memory
    this.log = init.logger ?? createLogger('net.ladder')
    this.staggerMs = init.staggerMs ?? RUNG_STAGGER_MS
    this.budgetMs = init.budgetMs ?? LADDER_BUDGET_MS
    this.timeoutsMs = { ...ATTEMPT_TIMEOUTS_MS, ...init.timeoutsMs }
    this.maxPatience = Math.max(1, init.maxPatience ?? MAX_PATIENCE)
    this.pollFallback = init.pollFallback ?? true
  }

  /** The factor the next ladder to `peerId` multiplies its timeouts and budget by (1 unless earlier ladders timed out). */
  patienceFor (peerId: string): number {
    return this.patience.get(peerId) ?? 1
  }

  /**
   * The way out changed (a captive portal let this device out, a new
   * network): timeouts grown while every attempt timed out described the old
   * path — a portal swallowing packets looks like a slow peer — so every peer
   * starts again at the usual timeouts.
   */
  networkChanged (): void {
    if (this.patience.size === 0) return
    this.log.info(`the network changed: ${this.patience.size} peer(s) back to the usual dial timeouts`)
    this.patience.clear()
  }

  /** The order the next ladder to this peer would try its addresses in. */
  plan (peerId: string, addrs: readonly Multiaddr[]): PlannedAttempt[] {
    return planLadder(this.pollFallback ? withPollFallbacks(addrs) : addrs, this.memory?.recall(peerId))
  }

  /**
   * Dials one peer over all its addresses; resolves with the first connection.
   * The caller checks for an existing connection first: the ladder always dials.
   */
  async dial (peerId: string, addrs: readonly Multiaddr[], options: AbortOptions = {}): Promise<LadderResult> {
    const plan = planLadder(this.pollFallback ? withPollFallbacks(addrs) : addrs, this.memory?.recall(peerId))
    if (plan.length === 0) {
      throw new DialLadderError(`no address to dial for ${peerId}`, [])
    }
    options.signal?.throwIfAborted()
    this.log.debug(`dialing ${peerId}: ${plan.map(p => `${p.transport}${p.remembered ? ' (remembered)' : ''} ${p.addr.toString()}`).join(', then ')}`, { peer: peerId })
    const factor = this.patienceFor(peerId)
    const run = new LadderRun({
      peerId,
      plan,
      factor,
      budgetMs: this.budgetMs * factor,
      staggerMs: this.staggerMs,
      timeoutsMs: this.timeoutsMs,
      dialer: this.dialer,
      log: this.log,
      signal: options.signal
    })
    const winner = await run.run()
    return winner != null ? this.won(run, winner) : this.lost(run, options)
  }

  /** The first connection won: the attempts still running are cancelled, the rung remembered. */
  private won (run: LadderRun, won: AttemptState): LadderResult {
    const { peerId, factor } = run
    run.cancelRunning(new DialAttemptCancelledError(`${won.plan.transport} to ${peerId} connected first`))
    const attempts = run.summaries()
    const reason = explain(attempts[run.states.indexOf(won)], attempts, won.plan.remembered)
    this.memory?.remember(peerId, { transport: won.plan.transport, addr: won.plan.addr.toString(), ...(won.plan.family != null ? { family: won.plan.family } : {}) })
    if (factor > 1) {
      this.patience.delete(peerId)
      this.log.info(`${won.plan.transport} to ${peerId} connected in ${Date.now() - run.t0} ms with timeouts ×${factor} (earlier ladders timed out: the peer was slow, not gone); back to the usual timeouts`, { peer: peerId, transport: won.plan.transport })
    }
    return {
      connection: won.connection as Connection,
      transport: won.plan.transport,
      addr: won.plan.addr.toString(),
      ...(won.plan.family != null ? { family: won.plan.family } : {}),
      remembered: won.plan.remembered,
      reason,
      attempts
    }
  }

  /** No winner: every attempt failed, or the budget or the caller ended the ladder. */
  private lost (run: LadderRun, options: AbortOptions): never {
    const { peerId, factor } = run
    const cancelled = options.signal?.aborted === true
    const budgetEnded = run.budget.aborted && !cancelled
    run.endRunning(budgetEnded)
    const attempts = run.summaries()
    const patient = factor > 1 ? ` (timeouts ×${factor}: earlier ladders to it timed out)` : ''
    const why = budgetEnded
      ? `no address of ${peerId} connected within the ladder's ${duration(run.budgetMs)} budget${patient}`
      : cancelled
        ? `dial to ${peerId} cancelled`
        : `all ${attempts.length} address(es) of ${peerId} failed${patient}`
    if (!cancelled) this.growPatience(peerId, factor, attempts)
    throw new DialLadderError(`${why}: ${attempts.map(a => describeAttempt(a, attempts)).join('; ')}`, attempts, { cause: cancelled ? options.signal?.reason : undefined })
  }

  /** After a failed ladder: when every attempt that ran timed out, the next one to this peer waits longer. */
  private growPatience (peerId: string, factor: number, attempts: readonly LadderAttempt[]): void {
    const ran = attempts.filter(a => a.outcome !== 'not-tried')
    if (ran.length === 0 || !ran.every(a => a.timedOut === true) || factor >= this.maxPatience) return
    const next = Math.min(this.maxPatience, factor * 2)
    this.patience.delete(peerId)
    this.patience.set(peerId, next)
    if (this.patience.size > MAX_PATIENCE_PEERS) {
      const oldest = this.patience.keys().next().value
      if (oldest != null) this.patience.delete(oldest)
    }
    const per = [...new Set(ran.map(a => a.transport))].map(t => `${t} ${duration(this.timeoutsMs[t] * next)}`).join(', ')
    this.log.info(`every attempt to ${peerId} timed out (${ran.length}); the next ladder to it waits ×${next} as long (${per}; budget ${duration(this.budgetMs * next)}): a peer that answers too late may be overloaded rather than blocked`, { peer: peerId })
  }
}

interface LadderRunInit {
  peerId: string
  plan: PlannedAttempt[]
  /** the patience factor the attempt timeouts are multiplied by */
  factor: number
  budgetMs: number
  staggerMs: number
  timeoutsMs: Record<Transport, number>
  dialer: AttemptDialer
  log: Logger
  signal?: AbortSignal
}

/**
 * One ladder to one peer, as a small state machine per address: `pending`
 * → `running` → `success` | `failure` | `cancelled` | `closed-late`. The
 * loop starts one attempt per step and sleeps on a waker that every
 * settlement, the stagger timer and the end of the budget wake.
 */
class LadderRun {
  readonly peerId: string
  readonly factor: number
  readonly budgetMs: number
  readonly states: AttemptState[]
  readonly t0 = Date.now()
  readonly budget: AbortSignal
  private readonly init: LadderRunInit
  /** the budget or the caller's signal */
  private readonly signal: AbortSignal
  private readonly waker = new Waker()
  private winner?: AttemptState

  constructor (init: LadderRunInit) {
    this.init = init
    this.peerId = init.peerId
    this.factor = init.factor
    this.budgetMs = init.budgetMs
    this.budget = AbortSignal.timeout(init.budgetMs)
    this.signal = init.signal != null ? AbortSignal.any([init.signal, this.budget]) : this.budget
    this.states = init.plan.map(p => ({
      plan: p,
      status: 'pending',
      phase: initialPhase(p.addr.toString(), p.transport),
      controller: new AbortController()
    }))
  }

  /**
   * Bounded: each step starts one of plan.length attempts, or waits for one
   * of plan.length settlements, a stagger timer (always followed by a start)
   * or the end of the budget. Resolves with the winner, if any.
   */
  async run (): Promise<AttemptState | undefined> {
    const wake = (): void => { this.waker.wake() }
    this.signal.addEventListener('abort', wake, { once: true })
    let next = 0
    try {
      while (this.winner == null && !this.signal.aborted) {
        if (next < this.states.length && this.mayStart(this.states[next])) this.launch(this.states[next++])
        if (!this.states.some(s => s.status === 'running')) {
          if (next >= this.states.length) break
          // everything started so far has failed: the next rung now, not after the stagger
          continue
        }
        // with every rung started, only a settlement or the budget's end (the signal) wakes us
        await this.waker.wait(next < this.states.length ? this.gapBefore(this.states[next]) : this.budgetMs)
      }
    } finally {
      this.signal.removeEventListener('abort', wake)
    }
    return this.winner
  }

  /**
   * The poll rung starts once the WebSocket attempts before it have failed (or
   * nothing runs), or after they stalled; every other rung starts on its turn.
   */
  private mayStart (s: AttemptState): boolean {
    if (s.plan.transport !== 'https-poll') return true
    const webSockets = this.states.filter(o => o.startedAt != null && isWebSocket(o))
    const wsEnded = webSockets.length > 0 && webSockets.every(o => o.status !== 'running')
    return wsEnded || !this.states.some(o => o.status === 'running') || this.gapBefore(s) === 0
  }

  private gapBefore (s: AttemptState): number {
    if (s.plan.transport !== 'https-poll') return this.init.staggerMs
    const lastStart = Math.max(...this.states.map(o => o.startedAt ?? 0))
    const lastProgress = Math.max(...this.states.map(o => o.status === 'running' && isWebSocket(o) ? o.progressAt ?? 0 : 0))
    return Math.max(0, HTTPS_POLL_STALL_MS - (Date.now() - Math.max(lastStart, lastProgress)))
  }

  private launch (s: AttemptState): void {
    s.status = 'running'
    s.startedAt = Date.now()
    const timeoutMs = this.init.timeoutsMs[s.plan.transport] * this.factor
    const signal = AbortSignal.any([this.signal, s.controller.signal, AbortSignal.timeout(timeoutMs)])
    s.signal = signal
    const onProgress = (evt: { type: string }): void => {
      const phase = phaseForProgress(evt.type, s.plan.transport, s.phase)
      if (phase !== s.phase) s.progressAt = Date.now()
      s.phase = phase
    }
    const onRecord = (record: DialAttempt): void => {
      // only a failure's diagnosis adds anything; a cancellation or the win we describe ourselves
      if (record.outcome !== 'failure') return
      s.record = record
      if (s.status === 'failure') applyRecord(s, record)
    }
    let attempt: Promise<Connection>
    try {
      attempt = this.init.dialer(s.plan.addr, { signal, onProgress, onRecord })
    } catch (err) {
      // a dialer that throws instead of rejecting is still one failed attempt
      attempt = Promise.reject(err)
    }
    attempt.then(
      (conn) => { this.connected(s, conn) },
      (err: unknown) => {
        if (s.status === 'running') settleFailure(s, err)
        this.waker.wake()
      }
    )
  }

  private connected (s: AttemptState, conn: Connection): void {
    if (this.winner == null && s.status === 'running' && conn.status === 'open') {
      s.status = 'success'
      s.endedAt = Date.now()
      s.connection = conn
      this.winner = s
    } else if (s.status === 'running' && conn.status !== 'open') {
      settleFailure(s, new Error(`connection to ${s.plan.addr.toString()} closed as it opened`))
    } else {
      // it connected after another attempt won (or after the ladder gave up)
      s.status = 'closed-late'
      s.endedAt ??= Date.now()
      this.init.log.debug(`closing ${s.plan.transport} connection to ${s.plan.addr.toString()}: another attempt won first`, { peer: this.peerId })
      conn.close().catch((err: Error) => { conn.abort(err) })
    }
    this.waker.wake()
  }

  /** Settles our view of the losers now; the recorder records each as cancelled when its signal fires. */
  cancelRunning (reason: Error): void {
    for (const s of this.states) {
      if (s.status !== 'running') continue
      s.status = 'cancelled'
      s.endedAt = Date.now()
      s.cause = 'cancelled: another attempt connected first'
      s.code = 'CANCELLED'
      s.controller.abort(reason)
    }
  }

  /** The ladder ended without a winner: what still runs timed out (budget) or was cancelled (caller). */
  endRunning (budgetEnded: boolean): void {
    for (const s of this.states) {
      if (s.status !== 'running') continue
      s.endedAt = Date.now()
      if (budgetEnded) {
        s.status = 'failure'
        s.timedOut = true
        s.code = 'TIMEOUT'
        s.cause = `the ladder's ${duration(this.budgetMs)} budget ran out at ${s.phase}`
      } else {
        s.status = 'cancelled'
        s.code = 'CANCELLED'
        s.cause = 'cancelled (shutting down)'
      }
    }
  }

  summaries (): LadderAttempt[] {
    return this.states.map(s => summary(s, this.t0))
  }
}

function settleFailure (s: AttemptState, err: unknown): void {
  s.endedAt = Date.now()
  const reason = s.signal?.reason as { name?: string } | undefined
  const aborted = s.signal?.aborted === true
  const timedOut = aborted && reason?.name === 'TimeoutError'
  const cancelled = aborted && !timedOut
  const d = describeDialError(err, { phase: s.phase, transport: s.plan.transport, elapsedMs: s.endedAt - (s.startedAt ?? s.endedAt), timedOut, cancelled })
  s.status = cancelled ? 'cancelled' : 'failure'
  s.phase = d.phase
  s.cause = d.cause
  s.code = d.code
  s.timedOut = timedOut || d.code === 'TIMEOUT'
  if (s.status === 'failure' && s.record != null) applyRecord(s, s.record)
}

function summary (s: AttemptState, t0: number): LadderAttempt {
  const out: LadderAttempt = {
    addr: s.plan.addr.toString(),
    transport: s.plan.transport,
    outcome: s.status === 'pending' ? 'not-tried' : s.status === 'running' ? 'cancelled' : s.status,
    remembered: s.plan.remembered
  }
  if (s.startedAt == null) return out
  out.phase = s.status === 'success' ? 'protocol' : s.phase
  out.startedAfterMs = s.startedAt - t0
  out.durationMs = (s.endedAt ?? Date.now()) - s.startedAt
  if (s.cause != null) out.cause = s.cause
  if (s.code != null) out.code = s.code
  if (s.timedOut === true) out.timedOut = true
  return out
}

function label (a: LadderAttempt, all: LadderAttempt[]): string {
  // the transport alone is ambiguous when the peer has several addresses on it: the family, then the port, tell them apart
  const twins = all.filter(o => o.transport === a.transport)
  const family = familyOf(a.addr)
  const mixed = family != null && twins.some(o => familyOf(o.addr) !== family)
  const port = portOf(a.addr)
  return `${a.transport}${mixed ? `/${family}` : ''}${twins.length > 1 && port != null ? `:${port}` : ''}${a.remembered ? ' (remembered)' : ''}`
}

/** One attempt that did not win, in a few words. */
export function describeAttempt (a: LadderAttempt, all: LadderAttempt[] = [a]): string {
  const name = label(a, all)
  switch (a.outcome) {
    case 'not-tried': return `${name}: not tried`
    case 'success': return `${name}: connected in ${duration(a.durationMs)}`
    case 'closed-late': return `${name}: connected too late, closed`
    case 'cancelled':
      // past the TCP connect and still unanswered: the one case a reader needs more than the phase for
      if ((a.transport === 'tcp' || a.transport === 'ws') && (a.phase === 'noise' || a.phase === 'muxer')) {
        return `${name}: cancelled at ${a.phase} after ${duration(a.durationMs)}, TCP connected but no handshake answer yet`
      }
      return `${name}: cancelled at ${a.phase ?? 'start'} after ${duration(a.durationMs)}`
    case 'failure':
      if (a.timedOut === true && (a.transport === 'tcp' || a.transport === 'ws') && (a.phase === 'noise' || a.phase === 'muxer')) {
        return `${name}: stalled at ${a.phase} after ${duration(a.durationMs)}, TCP connected but the handshake got no answer (protocol-inspecting firewall?)`
      }
      if (a.timedOut === true) return `${name}: stalled at ${a.phase ?? 'start'} after ${duration(a.durationMs)}`
      return `${name}: failed at ${a.phase ?? 'start'} (${a.code ?? 'UNKNOWN'}) after ${duration(a.durationMs)}`
  }
}

/** Why the winner won: "first to connect (tcp: stalled at noise after 2.5 s; wss: not tried)". */
export function explain (winner: LadderAttempt, attempts: LadderAttempt[], rememberedWon: boolean): string {
  const head = rememberedWon ? 'remembered from the last run on this network' : 'first to connect'
  const others = attempts.filter(a => a !== winner).map(a => describeAttempt(a, attempts))
  return others.length === 0 ? head : `${head} (${others.join('; ')})`
}

export interface RungMemoryInit {
  /** JSON file; without one the memory lasts as long as the process */
  file?: string
  /** identifies the network we are on; @default {@link networkFingerprint} */
  network?: () => string
  logger?: Logger
  /** oldest entries are dropped beyond this @default 256 */
  maxEntries?: number
}

interface RungFile {
  version: 1
  /** `<network>|<peerId>` → rung */
  entries: Record<string, RememberedRung>
}

/**
 * Remembers which rung reached which peer from which network, so the next
 * ladder from the same network starts with it. A rung that worked from home
 * says nothing about a hotel's Wi-Fi, hence the network in the key.
 */
export class RungMemory {
  private readonly file?: string
  private readonly network: () => string
  private readonly log: Logger
  private readonly maxEntries: number
  private entries?: Map<string, RememberedRung>

  constructor (init: RungMemoryInit = {}) {
    this.file = init.file
    this.network = init.network ?? networkFingerprint
    this.log = init.logger ?? createLogger('net.ladder')
    this.maxEntries = init.maxEntries ?? 256
  }

  /** The memory kept in `<stateDir>/dial-rungs.json`. */
  static inStateDir (stateDir: string, init: Omit<RungMemoryInit, 'file'> = {}): RungMemory {
    return new RungMemory({ ...init, file: join(stateDir, RUNG_MEMORY_FILE) })
  }

  recall (peerId: string): RememberedRung | undefined {
    return this.load().get(this.key(peerId))
  }

  remember (peerId: string, rung: { transport: Transport, addr: string, family?: AddrFamily }): void {
    const entries = this.load()
    const key = this.key(peerId)
    const prev = entries.get(key)
    if (prev?.transport === rung.transport && prev.addr === rung.addr && prev.family === rung.family) return
    entries.delete(key)
    entries.set(key, { transport: rung.transport, addr: rung.addr, ...(rung.family != null ? { family: rung.family } : {}), at: new Date().toISOString() })
    // Map keeps insertion order: the first keys are the least recently changed
    for (const old of entries.keys()) {
      if (entries.size <= this.maxEntries) break
      entries.delete(old)
    }
    this.save(entries)
  }

  private key (peerId: string): string {
    return `${this.network()}|${peerId}`
  }

  private load (): Map<string, RememberedRung> {
    if (this.entries != null) return this.entries
    this.entries = new Map()
    if (this.file == null) return this.entries
    let text: string
    try {
      text = readFileSync(this.file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.log.warn(`cannot read the remembered dial rungs in ${this.file}: ${(err as Error).message}; starting without them`)
      }
      return this.entries
    }
    try {
      const parsed = JSON.parse(text) as Partial<RungFile>
      for (const [key, value] of Object.entries(parsed.entries ?? {})) {
        if (isRememberedRung(value)) this.entries.set(key, value)
      }
    } catch (err) {
      this.log.warn(`the remembered dial rungs in ${this.file} are not valid JSON (${(err as Error).message}); starting without them`)
    }
    return this.entries
  }

  private save (entries: Map<string, RememberedRung>): void {
    if (this.file == null) return
    const body: RungFile = { version: 1, entries: Object.fromEntries(entries) }
    const tmp = `${this.file}.${process.pid}.tmp`
    try {
      mkdirSync(dirname(this.file), { recursive: true, mode: 0o700 })
      // write then rename: a crash mid-write must not leave half a file
      writeFileSync(tmp, JSON.stringify(body, null, 2) + '\n', { mode: 0o600 })
      renameSync(tmp, this.file)
    } catch (err) {
      // losing the memory only costs the stagger next time; not worth failing a dial for
      this.log.warn(`cannot save the winning dial rung to ${this.file}: ${(err as Error).message}`)
    }
  }
}

function isRememberedRung (v: unknown): v is RememberedRung {
  const o = v as Partial<RememberedRung> | null
  return o != null && typeof o === 'object' && typeof o.addr === 'string' && typeof o.at === 'string' &&
    typeof o.transport === 'string' && (TRANSPORTS as readonly string[]).includes(o.transport) &&
    (o.family == null || o.family === 'ip4' || o.family === 'ip6')
}

/**
 * A cheap name for the network we are on: a hash of the non-loopback
 * interface addresses with their prefixes. It changes when the machine moves
 * to another network (new DHCP lease, other Wi-Fi, VPN up), which is when a
 * remembered rung stops being a good first guess.
 */
export function networkFingerprint (): string {
  const parts: string[] = []
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    for (const a of addrs ?? []) {
      // link-local IPv6 addresses say nothing about the network and some change at each boot
      if (a.internal || a.address.toLowerCase().startsWith('fe80')) continue
      parts.push(`${name}=${a.cidr ?? a.address}`)
    }
  }
  if (parts.length === 0) return 'no-network'
  return createHash('sha256').update(parts.sort().join(',')).digest('hex').slice(0, 16)
}
