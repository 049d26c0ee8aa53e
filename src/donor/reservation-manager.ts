import { createLogger, type Logger } from '../log/logger.ts'
import { DialLadder, DialLadderError, RungMemory, type LadderResult } from '../net/dial-ladder.ts'
import { sleep, type MeshNode } from '../net/mesh-node.ts'
import { peerIdOf, uplinkTransport } from '../net/transport-of.ts'
import type { BootstrapStatus, RelayPath, RelayReservationStatus } from '../core/types.ts'
import type { Connection } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

export interface ReservationManagerInit {
  bootstrap: readonly Multiaddr[]
  /** first retry delay after a failed round @default 500 */
  initialBackoffMs?: number
  /** longest delay between rounds; retries never stop @default 30000 */
  maxBackoffMs?: number
  /** how often the watchdog checks and pings each relay @default 5000 */
  watchdogIntervalMs?: number
  /** a relay that does not answer a ping within this is treated as lost @default 5000 */
  pingTimeoutMs?: number
  /**
   * the data directory's state folder, where the dial ladder remembers the rung
   * that reached each relay from this network; without it the memory lasts
   * only as long as the process
   */
  stateDir?: string
  logger?: Logger
}

interface RelayState {
  peerId: string
  addrs: Multiaddr[]
  status: BootstrapStatus
  since?: Date
  /** the connection the ladder made, to tell its path from one opened some other way */
  connectionId?: string
  wake?: () => void
}

/**
 * Keeps the donor reserved on every bootstrap relay, for ever:
 * dial all its addresses with the dial ladder (staggered parallel attempts,
 * each recorded by telemetry, the rung that won remembered for this network)
 * → reserve as soon as connected
 * (not gated on AutoNAT, which never says "private" without connections) →
 * watch → on loss, redial and re-reserve with capped exponential backoff.
 * js-libp2p does not re-reserve a restarted static relay (issue 3601); this does.
 */
export class ReservationManager {
  private readonly mesh: MeshNode
  private readonly relays: RelayState[]
  private readonly log: Logger
  private readonly initialBackoffMs: number
  private readonly maxBackoffMs: number
  private readonly watchdogIntervalMs: number
  private readonly pingTimeoutMs: number
  private readonly ladder: DialLadder
  private controller?: AbortController
  private loops: Array<Promise<void>> = []
  private readonly onConnectionClose = (evt: CustomEvent<{ remotePeer: { toString: () => string } }>): void => {
    const peer = evt.detail.remotePeer.toString()
    const relay = this.relays.find(r => r.peerId === peer)
    if (relay == null) return
    if (!this.mesh.isConnected(peer)) {
      this.log.warn(`lost connection to relay ${peer}; reconnecting`, { peer })
    }
    relay.wake?.()
  }

  constructor (mesh: MeshNode, init: ReservationManagerInit) {
    this.mesh = mesh
    this.log = init.logger ?? createLogger('donor.reservation')
    this.initialBackoffMs = init.initialBackoffMs ?? 500
    this.maxBackoffMs = init.maxBackoffMs ?? 30_000
    this.watchdogIntervalMs = init.watchdogIntervalMs ?? 5_000
    this.pingTimeoutMs = init.pingTimeoutMs ?? 5_000
    const ladderLog = this.log.child('ladder')
    if (init.stateDir == null) {
      ladderLog.debug('no state directory given: the winning dial rungs are remembered only until this process stops')
    }
    const memory = init.stateDir != null
      ? RungMemory.inStateDir(init.stateDir, { logger: ladderLog })
      : new RungMemory({ logger: ladderLog })
    this.ladder = new DialLadder({
      dial: async (ma, options) => await mesh.dialTransport(ma, { ...options, purpose: 'bootstrap' }),
      memory,
      logger: ladderLog
    })
    const groups = new Map<string, Multiaddr[]>()
    for (const ma of init.bootstrap) {
      const peer = peerIdOf(ma)
      if (peer == null) continue
      groups.set(peer, [...(groups.get(peer) ?? []), ma])
    }
    this.relays = [...groups.entries()].map(([peerId, addrs]) => ({
      peerId,
      addrs,
      status: { addr: addrs[0].toString(), peerId, state: 'connecting', failures: 0 }
    }))
  }

  start (): void {
    if (this.controller != null) return
    this.controller = new AbortController()
    if (this.relays.length === 0) {
      this.log.warn('no bootstrap relays configured: this donor cannot be reached by anyone. Give one with --bootstrap /ip4/…/tcp/4001/p2p/<relay PeerId>, WORLDCOMPUTE_BOOTSTRAP, or "bootstrap" in config.json')
    }
    this.mesh.libp2p.addEventListener('connection:close', this.onConnectionClose as any)
    const signal = this.controller.signal
    this.loops = this.relays.map(async relay => {
      try {
        await this.run(relay, signal)
      } catch (err) {
        if (!signal.aborted) {
          // run() handles every expected failure itself; reaching here is a bug, so say it loudly
          this.log.error(`reservation loop for relay ${relay.peerId} stopped unexpectedly: ${(err as Error).stack ?? String(err)}`, { peer: relay.peerId })
        }
      }
    })
  }

  async stop (): Promise<void> {
    if (this.controller == null) return
    this.controller.abort()
    this.mesh.libp2p.removeEventListener('connection:close', this.onConnectionClose as any)
    for (const relay of this.relays) relay.wake?.()
    await Promise.allSettled(this.loops)
    this.loops = []
    this.controller = undefined
  }

  bootstrapStatus (): BootstrapStatus[] {
    return this.relays.map(r => ({ ...r.status }))
  }

  reservations (): RelayReservationStatus[] {
    const out: RelayReservationStatus[] = []
    for (const relay of this.relays) {
      const circuit = this.mesh.circuitAddrsVia(relay.peerId)
      const conn = this.mesh.directConnection(relay.peerId)
      if (circuit.length === 0 || conn == null || relay.since == null) continue
      out.push({
        peerId: relay.peerId,
        circuitAddr: circuit.find(a => a.startsWith(conn.remoteAddr.toString())) ?? circuit[0],
        transport: uplinkTransport(conn.remoteAddr),
        since: relay.since.toISOString(),
        ...(relay.status.path != null ? { reason: relay.status.path.reason } : {})
      })
    }
    return out
  }

  /** Relay PeerIds we hold a connection to, for `ping` to try circuits through. */
  connectedRelays (): string[] {
    return this.relays.filter(r => this.mesh.isConnected(r.peerId)).map(r => r.peerId)
  }

  private async run (relay: RelayState, signal: AbortSignal): Promise<void> {
    // bounded only by the daemon's lifetime: the donor never gives up on a relay
    while (!signal.aborted) {
      let conn = this.mesh.directConnection(relay.peerId)
      if (conn == null) {
        relay.status.state = 'connecting'
        relay.status.path = undefined
        relay.since = undefined
        let result: LadderResult
        try {
          result = await this.ladder.dial(relay.peerId, relay.addrs, { signal })
        } catch (err) {
          if (signal.aborted) return
          relay.status.lastError = ladderFailureText(err)
          await this.backoff(relay, signal)
          continue
        }
        conn = result.connection
        relay.connectionId = conn.id
        relay.status.path = {
          transport: result.transport,
          addr: result.addr,
          reason: result.reason,
          remembered: result.remembered,
          at: new Date().toISOString()
        }
        relay.status.state = 'connected'
      }
      if (!this.mesh.hasReservation(relay.peerId)) {
        try {
          const result = await this.mesh.reserve(conn, { signal })
          relay.since = result.grantedAt
          relay.status.failures = 0
          relay.status.lastError = undefined
          relay.status.nextAttemptAt = undefined
          const path = this.pathOf(relay, conn)
          relay.status.path = path
          this.log.info(`reserved on relay ${relay.peerId} over ${path.transport}: ${path.reason}; reachable at ${result.circuitAddrs[0]}`, { peer: relay.peerId, transport: path.transport, remembered: path.remembered })
        } catch (err) {
          if (signal.aborted) return
          relay.status.lastError = (err as Error).message
          await this.backoff(relay, signal)
          continue
        }
      }
      relay.status.state = 'reserved'
      await this.watch(relay, signal)
    }
  }

  /** The ladder's path when `conn` is the connection it made, otherwise what we can say about `conn`. */
  private pathOf (relay: RelayState, conn: Connection): RelayPath {
    const known = relay.status.path
    if (known != null && relay.connectionId === conn.id) return known
    return {
      transport: uplinkTransport(conn.remoteAddr),
      addr: conn.remoteAddr.toString(),
      reason: 'already connected (a connection opened outside the dial ladder)',
      remembered: false,
      at: new Date().toISOString()
    }
  }

  /** Waits until the relay connection or reservation is lost (event or watchdog). */
  private async watch (relay: RelayState, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const woken = await this.waitForWake(relay, this.watchdogIntervalMs, signal)
      if (signal.aborted) return
      if (!this.mesh.isConnected(relay.peerId)) return
      if (!this.mesh.hasReservation(relay.peerId)) {
        this.log.warn(`reservation on relay ${relay.peerId} is gone while connected; reserving again`, { peer: relay.peerId })
        relay.since = undefined
        return
      }
      if (!woken) {
        // a silent relay (host gone, path black-holed) keeps the connection
        // "open" for a long time: ask it
        const conn = this.mesh.directConnection(relay.peerId)
        if (conn != null && !(await this.pingRelay(relay, conn.remoteAddr.toString(), signal))) {
          await conn.close().catch((err: Error) => conn.abort(err))
          return
        }
      }
    }
  }

  private async pingRelay (relay: RelayState, addr: string, signal: AbortSignal): Promise<boolean> {
    const pingService = this.mesh.libp2p.services.ping as { ping: (p: unknown, o?: { signal?: AbortSignal }) => Promise<number> }
    const conn = this.mesh.directConnection(relay.peerId)
    if (conn == null) return false
    try {
      await pingService.ping(conn.remotePeer, { signal: AbortSignal.any([signal, AbortSignal.timeout(this.pingTimeoutMs)]) })
      return true
    } catch (err) {
      if (signal.aborted) return true
      this.log.warn(`relay ${relay.peerId} did not answer a ping within ${this.pingTimeoutMs / 1000} s over ${addr}: ${(err as Error).message}; dropping the connection and redialling`, { peer: relay.peerId, transport: uplinkTransport(addr), phase: 'protocol' })
      return false
    }
  }

  private async waitForWake (relay: RelayState, ms: number, signal: AbortSignal): Promise<boolean> {
    let woken = false
    const controller = new AbortController()
    relay.wake = () => { woken = true; controller.abort() }
    try {
      await sleep(ms, AbortSignal.any([signal, controller.signal]))
    } finally {
      relay.wake = undefined
    }
    return woken
  }

  private async backoff (relay: RelayState, signal: AbortSignal): Promise<void> {
    relay.status.failures++
    relay.status.state = 'backing-off'
    const exp = Math.min(this.maxBackoffMs, this.initialBackoffMs * 2 ** Math.min(relay.status.failures - 1, 20))
    // ±20% jitter so many donors do not hammer a restarted relay in lock-step
    const delay = Math.round(exp * (0.8 + Math.random() * 0.4))
    relay.status.nextAttemptAt = new Date(Date.now() + delay).toISOString()
    this.log.info(`relay ${relay.peerId}: attempt ${relay.status.failures} failed (${relay.status.lastError ?? 'unknown cause'}); retrying in ${(delay / 1000).toFixed(1)} s`, { peer: relay.peerId, failures: relay.status.failures })
    await this.waitForWake(relay, delay, signal)
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
