import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { PeerUnreachableError } from '../core/errors.ts'
import { parsePeerIdText } from '../codec/peer-id.ts'
import { describeDialError, initialPhase } from './dial-error.ts'
import { planLadder } from './dial-ladder.ts'
import { parseAddr } from './parse-addr.ts'
import { circuitAddress, relayPeerOf, transportOf, viaRelay, withPeerId } from './transport-of.ts'
import type { Logger } from '../log/logger.ts'
import type { DialPhase, Transport } from '../core/types.ts'
import type { AddressDialOptions, Connections, PeerAddresses, PeerDialler, ReachOptions, TransportDialOptions } from './components.ts'
import type { AbortOptions, Connection } from '@libp2p/interface'

/**
 * How long a direct address whose dial failed is skipped: each failure costs
 * a dial timeout, and the relayed path serves meanwhile.
 */
export const DIRECT_FAILURE_MEMORY_MS = 60_000

/** Past this many remembered failures the expired ones are dropped. */
const MAX_REMEMBERED_FAILURES = 256

/** One address tried by {@link MeshPeerDialler.reach}, and how it failed. */
export interface ReachAttempt {
  addr: string
  transport: Transport
  phase: DialPhase
  /** the failure in words (describeDialError) */
  cause: string
  code: string
  /** the error's own message */
  message: string
}

/** No address of the peer connected; each one tried is in `attempts`. */
export class ReachFailedError extends PeerUnreachableError {
  readonly peerId: string
  /** addresses there were to try (0: nothing known and no relay to go through) */
  readonly candidates: number
  readonly attempts: ReachAttempt[]
  constructor (peerId: string, candidates: number, attempts: ReachAttempt[]) {
    super(candidates === 0
      ? `no address known for ${peerId} and no relay to try`
      : `could not reach ${peerId} on any of ${candidates} address(es): ${attempts.map(a => `${a.addr}: ${a.message}`).join('; ')}`,
    { cause: new AggregateError(attempts.map(a => a.message)) })
    this.peerId = peerId
    this.candidates = candidates
    this.attempts = attempts
  }
}

/** The one address-level dialler the peer dialler runs its attempts with (AddressDialler). */
export interface AttemptDialler {
  dial: (target: Multiaddr, options: AddressDialOptions) => Promise<Connection>
  dialTransport: (target: Multiaddr, options: TransportDialOptions) => Promise<Connection>
  dialAll: (targets: Multiaddr[], options?: AbortOptions) => Promise<Connection>
}

export interface MeshPeerDiallerComponents {
  attempts: AttemptDialler
  connections: Connections
  peers: PeerAddresses
  logger: Logger
}

export interface MeshPeerDiallerInit {
  /** @default 5000 */
  dialAttemptTimeoutMs: number
  /** @default DIRECT_FAILURE_MEMORY_MS */
  failureMemoryMs?: number
}

interface Plan {
  direct: string[]
  circuits: string[]
}

/**
 * Reaching a peer, one way for every role: an open connection first, then
 * the peer's direct addresses in the dial ladder's order (each a new
 * connection attempt, a recently failed one skipped), then an open relayed
 * connection, then circuits through the relays we hold. WebRTC
 * (`…/p2p-circuit/webrtc`) is not dialled here: it needs both NAT types
 * checked first and may take seconds (donor/direct-paths.ts).
 */
export class MeshPeerDialler implements PeerDialler {
  private readonly components: MeshPeerDiallerComponents
  private readonly dialAttemptTimeoutMs: number
  private readonly failureMemoryMs: number
  /** direct address → until when it is not tried again */
  private readonly failedUntil = new Map<string, number>()

  constructor (components: MeshPeerDiallerComponents, init: MeshPeerDiallerInit) {
    this.components = components
    this.dialAttemptTimeoutMs = init.dialAttemptTimeoutMs
    this.failureMemoryMs = init.failureMemoryMs ?? DIRECT_FAILURE_MEMORY_MS
  }

  async dial (target: Multiaddr, options: AddressDialOptions): Promise<Connection> {
    return await this.components.attempts.dial(target, options)
  }

  async dialTransport (target: Multiaddr, options: TransportDialOptions): Promise<Connection> {
    return await this.components.attempts.dialTransport(target, options)
  }

  async dialAll (targets: Multiaddr[], options: AbortOptions = {}): Promise<Connection> {
    return await this.components.attempts.dialAll(targets, options)
  }

  async reach (target: string, options: ReachOptions): Promise<Connection> {
    if (target.startsWith('/')) return await this.dial(multiaddr(target), { purpose: options.purpose, signal: options.signal })
    const peerId = parsePeerId(target)
    const { connections } = this.components
    const open = options.reuse === false ? undefined : options.preferDirect === true || options.directOnly === true ? connections.bestDirect(peerId) : connections.best(peerId)
    if (open != null) return open
    const plan = await this.plan(peerId, options)
    const attempts: ReachAttempt[] = []
    const direct = await this.tryDirect(plan.direct, options, attempts)
    if (direct != null || options.directOnly === true) return direct ?? this.fail(peerId, plan.direct.length, attempts)
    const relayed = options.reuse === false ? undefined : connections.relayed(peerId, options.avoidRelays)
    if (relayed != null) {
      if (attempts.length > 0) this.components.logger.info(`${options.purpose === 'dispatch' ? 'executor' : 'peer'} ${peerId}: direct dial failed (${attempts.map(a => `${a.addr}: ${a.message}`).join('; ')}); using the relayed connection`, { peer: peerId })
      return relayed
    }
    return await this.tryCircuits(plan.circuits, options, attempts) ?? this.fail(peerId, plan.direct.length + plan.circuits.length, attempts)
  }

  private fail (peerId: string, candidates: number, attempts: ReachAttempt[]): never {
    throw new ReachFailedError(peerId, candidates, attempts)
  }

  /** The peer's addresses in the order they are tried: direct ones by rung, circuits by relay. */
  private async plan (peerId: string, options: ReachOptions): Promise<Plan> {
    const stored = await this.storedAddrs(peerId, options)
    const relays = typeof options.relays === 'function' ? options.relays() : options.relays ?? []
    const viaRelays = relays.flatMap(relay => {
      const conn = this.components.connections.bestDirect(relay)
      return conn == null ? [] : [circuitAddress(conn.remoteAddr, relay, peerId)]
    })
    const all = [...new Set([...(options.addrs ?? []), ...stored, ...viaRelays].map(a => withPeerId(a, peerId)))]
    const planned = planLadder(all.flatMap(a => parseAddr(a) ?? [])).map(p => p.addr.toString())
    const direct = planned.filter(a => !viaRelay(a))
    if (options.directOnly === true) return { direct, circuits: [] }
    const rank = (a: string): number => {
      const relay = relayPeerOf(a)
      if (relay != null && options.avoidRelays?.has(relay) === true) return 2 // its circuit just broke: last resort
      return relay != null && this.components.connections.bestDirect(relay) != null ? 0 : 1 // a relay we are connected to dials in one hop
    }
    const circuits = planned.filter(a => transportOf(a) === 'circuit').sort((a, b) => rank(a) - rank(b))
    return { direct, circuits }
  }

  private async storedAddrs (peerId: string, options: ReachOptions): Promise<string[]> {
    if (options.stored === 'none') return []
    let stored: string[] = []
    try {
      stored = await this.components.peers.addressesOf(peerId, options)
    } catch (err) {
      this.components.logger.debug(`peer store lookup for ${peerId} failed: ${(err as Error).message}`)
    }
    return options.stored === 'circuit' ? stored.filter(a => transportOf(a) === 'circuit') : stored
  }

  /** Direct addresses one after the other, each a new connection attempt bounded by its own timeout. */
  private async tryDirect (addrs: string[], options: ReachOptions, attempts: ReachAttempt[]): Promise<Connection | undefined> {
    const now = Date.now()
    const usable = addrs.filter(a => options.skipRecentFailures === false || (this.failedUntil.get(a) ?? 0) <= now)
    for (const addr of usable.slice(0, options.maxDirect ?? usable.length)) {
      options.onAttempt?.(addr)
      const started = Date.now()
      const timeout = AbortSignal.timeout(options.directTimeoutMs ?? this.dialAttemptTimeoutMs)
      try {
        const conn = await this.components.attempts.dialTransport(multiaddr(addr), { purpose: options.purpose, signal: options.signal != null ? AbortSignal.any([options.signal, timeout]) : timeout })
        if (viaRelay(conn.remoteAddr)) throw new Error(`libp2p answered with a connection through a relay (${conn.remoteAddr.toString()})`)
        this.failedUntil.delete(addr)
        return conn
      } catch (err) {
        if (options.signal?.aborted === true) throw err
        // recorded and logged by the dial telemetry; later reaches skip this address for a while
        this.rememberFailure(addr)
        attempts.push(attemptOf(addr, err, Date.now() - started, timeout.aborted))
      }
    }
    return undefined
  }

  /**
   * Circuits one after the other. A relay that answered that it holds no
   * reservation for the peer answers the same over any transport (a
   * reservation is the peer's, not a connection's), so the peer's other
   * circuits through that relay are not dialled: on a real path each would
   * cost a hop request's round trip to the relay and a failed dial for
   * nothing. They are listed in `attempts` as not dialled, and why.
   */
  private async tryCircuits (addrs: string[], options: ReachOptions, attempts: ReachAttempt[]): Promise<Connection | undefined> {
    /** relay → the circuit over which it said it holds no reservation for the peer */
    const noReservation = new Map<string, string>()
    for (const addr of addrs) {
      const relay = relayPeerOf(addr)
      const answered = relay != null ? noReservation.get(relay) : undefined
      if (relay != null && answered != null) {
        attempts.push(notDialled(addr, `not dialled: relay ${relay} already said over ${answered} that it holds no reservation for this peer`))
        continue
      }
      options.onAttempt?.(addr)
      const started = Date.now()
      try {
        return await this.components.attempts.dial(multiaddr(addr), { purpose: options.purpose, signal: options.signal })
      } catch (err) {
        if (options.signal?.aborted === true) throw err
        const attempt = attemptOf(addr, err, Date.now() - started, false)
        attempts.push(attempt)
        if (attempt.code === 'NO_RESERVATION' && relay != null) noReservation.set(relay, addr)
      }
    }
    return undefined
  }

  private rememberFailure (addr: string): void {
    const now = Date.now()
    this.failedUntil.set(addr, now + this.failureMemoryMs)
    if (this.failedUntil.size <= MAX_REMEMBERED_FAILURES) return
    for (const [a, until] of this.failedUntil) if (until <= now) this.failedUntil.delete(a)
  }
}

function attemptOf (addr: string, err: unknown, elapsedMs: number, timedOut: boolean): ReachAttempt {
  const transport = transportOf(addr)
  const d = describeDialError(err, { phase: initialPhase(addr, transport), transport, elapsedMs, timedOut })
  return { addr, transport, phase: d.phase, cause: d.cause, code: d.code, message: (err as Error)?.message ?? String(err) }
}

/** A circuit left out because its relay already answered NO_RESERVATION: the attempt it would have been. */
function notDialled (addr: string, why: string): ReachAttempt {
  return { addr, transport: 'circuit', phase: 'protocol', cause: why, code: 'NO_RESERVATION', message: why }
}

/** A target's PeerId in its canonical text (parsed once for the dispatches that reach the same executor: codec/peer-id.ts). */
function parsePeerId (target: string): string {
  try {
    return parsePeerIdText(target).toString()
  } catch (err) {
    throw new PeerUnreachableError(`"${target}" is neither a PeerId nor a multiaddr`, { cause: err })
  }
}

