import { createLogger, type Logger } from '../log/logger.ts'
import { delay, Waker } from '../core/async.ts'
import { probeNat, type StunProbeOptions, type StunServer } from '../net/stun/probe.ts'
import type { NatReport } from '../core/types.ts'
import type { MeshComponents } from '../net/components.ts'

export interface NatProberInit {
  /** shortest time between two probes; triggers in between are coalesced @default 30000 */
  minIntervalMs?: number
  /** per-round STUN timeout (probe.ts) @default 1500 */
  probeTimeoutMs?: number
  /** after each new verdict (direct upgrades wait for it) */
  onReport?: (report: NatReport) => void
  logger?: Logger
}

interface Target extends StunServer { peerId: string }

/** The longest a Node timer waits: the probe loop idles this long at most between two asks. */
const LONGEST_TIMER_MS = 2 ** 31 - 1
/** What the NAT prober needs of the node. */
export type NatProberComponents = Pick<MeshComponents, 'events' | 'stun'>

/**
 * Classifies this donor's NAT with the STUN responders of the relays it is
 * connected to (net/stun): at start, as soon as the first relay has been
 * identified (its agent version names its STUN ports), and again whenever
 * the set of connected STUN-capable relays changes — at most once per
 * `minIntervalMs`, one probe at a time, each probe bounded (~2 × 1.5 s).
 * The result is data for `status` (natMapping, natFiltering, udp) and one
 * INFO line per probe.
 */
export class NatProber {
  private readonly mesh: NatProberComponents
  private readonly log: Logger
  private readonly minIntervalMs: number
  private readonly probeOptions: StunProbeOptions
  private readonly onReport?: (report: NatReport) => void
  private current: NatReport = {
    mapping: 'unknown',
    filtering: 'unknown',
    udp: 'unknown',
    reason: 'not measured yet: the STUN probe runs once a relay with a STUN responder is connected',
    servers: []
  }

  private controller?: AbortController
  private loop?: Promise<void>
  /** a probe was asked for; latched, so an ask that lands while a probe runs is not lost */
  private readonly asked = new Waker({ latch: true })
  private lastRunAt = 0
  private lastTargets = ''
  private readonly onChange = (): void => { this.schedule() }

  constructor (mesh: NatProberComponents, init: NatProberInit = {}) {
    this.mesh = mesh
    this.log = init.logger ?? createLogger('donor.nat')
    this.minIntervalMs = init.minIntervalMs ?? 30_000
    this.probeOptions = { timeoutMs: init.probeTimeoutMs ?? 1500 }
    this.onReport = init.onReport
  }

  start (): void {
    if (this.controller != null) return
    this.controller = new AbortController()
    // identify completes after the connection opens: that is when the relay's STUN ports are known
    this.mesh.events.on('peer:identify', this.onChange)
    this.mesh.events.on('peer:disconnect', this.onChange)
    const signal = this.controller.signal
    this.loop = this.probeLoop(signal).catch((err: unknown) => {
      if (!signal.aborted) this.log.error(`NAT probe loop stopped unexpectedly: ${(err as Error).stack ?? String(err)}`)
    })
    this.schedule()
  }

  async stop (): Promise<void> {
    if (this.controller == null) return
    this.controller.abort()
    this.controller = undefined
    this.mesh.events.off('peer:identify', this.onChange)
    this.mesh.events.off('peer:disconnect', this.onChange)
    await this.loop
    this.loop = undefined
  }

  report (): NatReport {
    return { ...this.current, servers: [...this.current.servers] }
  }

  /** Asks for a probe: now if allowed, else once `minIntervalMs` has passed since the last one; asks coalesce. */
  schedule (): void {
    if (this.controller == null) return
    this.asked.wake()
  }

  /** One probe per ask, never two within `minIntervalMs`, one at a time; ends (rejecting) when `signal` aborts. */
  private async probeLoop (signal: AbortSignal): Promise<void> {
    for (;;) {
      if (await this.asked.wait(LONGEST_TIMER_MS, { signal }) === 'timeout') continue
      if (this.lastRunAt !== 0) await delay(this.lastRunAt + this.minIntervalMs - Date.now(), { signal })
      try {
        await this.run(signal)
      } catch (err) {
        if (signal.aborted) throw err
        // run() reports every expected failure itself: this is a bug, and the next ask probes again
        this.log.error(`NAT probe failed unexpectedly: ${(err as Error).stack ?? String(err)}`)
      }
    }
  }

  private async run (signal: AbortSignal): Promise<void> {
    let targets: Target[]
    try {
      targets = await this.mesh.stun.stunServers()
    } catch (err) {
      this.log.warn(`cannot list the relays' STUN endpoints: ${(err as Error).message}`, { phase: 'stun' })
      return
    }
    // two relays at most, preferring distinct IPs (address-dependence needs them)
    targets = pickTargets(targets)
    const key = targets.map(t => `${t.address}:${t.ports.join(',')}`).sort().join(' ')
    if (targets.length === 0) {
      this.log.debug('no connected relay announces a STUN responder yet: NAT type stays unknown')
      return
    }
    // the same relays as last time and a verdict already: nothing new to learn
    if (key === this.lastTargets && this.current.at != null) return
    this.lastRunAt = Date.now()
    const servers = targets.flatMap(t => t.ports.map(p => `${t.address}:${p}`))
    try {
      const result = await probeNat(targets, { ...this.probeOptions, signal })
      if (signal.aborted) return
      this.lastTargets = key
      this.current = {
        mapping: result.mapping,
        filtering: result.filtering,
        udp: result.udp,
        reason: result.reason,
        ...(result.mappedAddress != null ? { mappedAddress: result.mappedAddress } : {}),
        ...(result.portDelta != null ? { portDelta: result.portDelta } : {}),
        servers,
        at: new Date().toISOString(),
        durationMs: result.durationMs
      }
      this.onReport?.(this.report())
      this.log.info(`NAT: mapping ${result.mapping}, filtering ${result.filtering}, UDP ${result.udp}${result.mappedAddress != null ? `, seen as ${result.mappedAddress}` : ''} (STUN ${servers.join(', ')} of ${targets.map(t => t.peerId).join(', ')}, ${result.durationMs} ms): ${result.reason}`, { mapping: result.mapping, filtering: result.filtering, udp: result.udp })
    } catch (err) {
      if (signal.aborted) return
      this.log.warn(`STUN probe of ${servers.join(', ')} failed: ${(err as Error).message}; NAT type stays ${this.current.mapping}`, { phase: 'stun', transport: 'udp' })
    }
  }
}

function pickTargets (all: Target[]): Target[] {
  const out: Target[] = []
  for (const t of all) {
    if (out.length === 2) break
    if (out.length === 1 && out[0].address === t.address && all.some(x => x.address !== t.address)) continue
    out.push(t)
  }
  return out
}
