import { createLogger, type Logger } from '../log/logger.ts'
import { sleep, type MeshNode } from '../net/mesh-node.ts'
import { peerIdOf, uplinkTransport } from '../net/transport-of.ts'
import type { BootstrapStatus, RelayReservationStatus } from '../core/types.ts'
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
  logger?: Logger
}

interface RelayState {
  peerId: string
  addrs: Multiaddr[]
  status: BootstrapStatus
  since?: Date
  wake?: () => void
}

/**
 * Keeps the donor reserved on every bootstrap relay, for ever:
 * dial (each address recorded by telemetry) → reserve as soon as connected
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
        since: relay.since.toISOString()
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
        relay.since = undefined
        for (const addr of relay.addrs) {
          if (signal.aborted) return
          try {
            conn = await this.mesh.dial(addr, { purpose: 'bootstrap', signal })
            break
          } catch (err) {
            relay.status.lastError = `${addr.toString()}: ${(err as Error).message ?? String(err)}`
          }
        }
        if (signal.aborted) return
        if (conn == null) {
          await this.backoff(relay, signal)
          continue
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
          this.log.info(`reserved on relay ${relay.peerId} over ${uplinkTransport(conn.remoteAddr)}: reachable at ${result.circuitAddrs[0]}`, { peer: relay.peerId })
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
