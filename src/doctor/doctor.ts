import { pathUsesTls } from '../net/tls-intercept.ts'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { createLogger, type Logger } from '../log/logger.ts'
import { DialLadder, DialLadderError, type LadderAttempt } from '../net/dial-ladder.ts'
import { MeshResolver } from '../net/dns-resolver.ts'
import { pause } from '../core/async.ts'
import { observeCaptivePortal } from './probe-captive-portal.ts'
import { probePortMapping } from './probe-port-mapping.ts'
import type { MeshComponents } from '../net/components.ts'
import { peerIdOf, transportOf } from '../net/transport-of.ts'
import { observeHttpsFallback, withHttpsFallbackTargets } from './probe-https-fallback.ts'
import { probeIpv6 } from './probe-ipv6.ts'
import type { ClockObservation, DohProbe, DoctorObservations, RungObservation, TlsObservation } from '../core/doctor.ts'
import type { AddrResolution, DaemonStatus, DialAttempt, NatReport, PortMappingStatus } from '../core/types.ts'
import type { AbortOptions, Connection } from '@libp2p/interface'
import { probeProxyDiscovery } from './probe-proxy-discovery.ts'

/**
 * The doctor role: asks the network what it allows using the daemon's own
 * code paths, while the composition root (src/daemon/doctor.ts) runs the
 * donor itself (reservation manager, NAT prober) on the same node:
 *
 *  - names: the daemon's resolver (OS, then DNS-over-HTTPS), and each DoH
 *    endpoint on its own (the same resolver class with the OS side off);
 *  - each bootstrap address on its own, through the daemon's dial ladder
 *    (same dialer, per-transport timeouts, telemetry, proxies), so a rung
 *    that would lose the race in the daemon still gets its yes or no;
 *  - the donor's reservation, NAT type (STUN against the relays) and AutoNAT
 *    v2 reachability, read from its status once it has settled;
 *  - the clock against a relay's (or DoH endpoint's) HTTP Date header.
 *
 * It gathers observations; src/doctor/assess.ts turns them into the report.
 */

/** How long the doctor waits for the donor to settle (reservation, NAT probe) before reporting what it has. */
export const DOCTOR_BUDGET_MS = 12_000

/** After every probe has ended, how long to wait for a NAT verdict that needs a relay's identify first. */
const NAT_GRACE_MS = 2_500

/** One HTTP request for the remote clock. */
const CLOCK_TIMEOUT_MS = 2_000

export interface DoctorInit {
  /** the donor's node: its dialler (the daemon's transports, proxies, telemetry), STUN view and proxies */
  mesh: Pick<MeshComponents, 'dialler' | 'stun' | 'proxies'>
  /** the daemon's resolver (shared with the reservation manager, so names are looked up once) */
  resolver: MeshResolver
  bootstrap: readonly Multiaddr[]
  bootstrapSource?: string
  dohEndpoints: readonly string[]
  /** the donor's state, as `worldcompute status` shows it */
  status: () => DaemonStatus
  /**
   * compares the certificate chain seen on a WebSocket-over-TLS relay
   * connection (the rung's own connection) with the one the relay publishes;
   * absent: `tls-intercepted` is unknown, with `tlsNote`
   */
  tlsProbe?: (conn: Connection, addr: string, options: AbortOptions) => Promise<TlsObservation>
  /** why there is no tlsProbe */
  tlsNote?: string
  /** the node dials WebRTC for direct donor-to-donor connections */
  webrtcTransport?: boolean
  logger?: Logger
  /** @default DOCTOR_BUDGET_MS */
  budgetMs?: number
  /** the node's port mapping at the home router (probe-port-mapping.ts); absent: not checked */
  portMapping?: () => PortMappingStatus
}

export interface DoctorRunOptions extends AbortOptions {
  /** keep observing (the donor keeps running) until this long after the start, ms */
  durationMs?: number
}

function hostPortOf (addr: string): { host?: string, port?: number } {
  const parts = addr.split('/')
  const host = ['ip4', 'ip6', 'dns', 'dns4', 'dns6'].includes(parts[1]) ? parts[2] : undefined
  const i = parts.findIndex(p => p === 'tcp' || p === 'udp')
  const port = i === -1 ? undefined : Number(parts[i + 1])
  return { host, ...(port != null && Number.isInteger(port) ? { port } : {}) }
}

export class Doctor {
  private readonly init: DoctorInit
  private readonly log: Logger
  private readonly ladder: DialLadder
  /** the telemetry record of each probe, by address: a WebSocket failure's cause comes from a probe, after the dial failed */
  private readonly records = new Map<string, DialAttempt>()

  constructor (init: DoctorInit) {
    this.init = init
    this.log = init.logger ?? createLogger('doctor')
    // the daemon's ladder and dialer, without rung memory: every rung is judged afresh,
    // and at the usual timeouts (no patience): each address is probed on its own, and a
    // black-holed QUIC probe must not double the time the TCP probe after it may take
    this.ladder = new DialLadder({
      maxPatience: 1,
      // the HTTPS poll rung is a target of its own (probe-https-fallback.ts)
      pollFallback: false,
      dial: async (ma, options) => await init.mesh.dialler.dialTransport(ma, {
        ...options,
        purpose: 'doctor',
        onRecord: (record) => {
          this.records.set(ma.toString(), record)
          options.onRecord(record)
        }
      }),
      logger: this.log.child('ladder')
    })
  }

  /** Each bootstrap address through the daemon's resolver: what it resolved to, and the addresses to probe (each with /p2p). */
  private async resolveBootstrap (bootstrap: readonly Multiaddr[], signal?: AbortSignal): Promise<{ dns: AddrResolution[], targets: Array<{ relay: string, addr: Multiaddr }> }> {
    const dns: AddrResolution[] = []
    const targets: Array<{ relay: string, addr: Multiaddr }> = []
    await Promise.all(bootstrap.map(async (ma, i) => {
      const relay = peerIdOf(ma) ?? '?'
      try {
        const r = await this.init.resolver.resolveMultiaddr(ma, { signal })
        const { multiaddrs, ...entry } = r
        dns[i] = entry
        for (const m of multiaddrs) targets.push({ relay, addr: m.getComponents().some(c => c.name === 'p2p') ? m : m.encapsulate(`/p2p/${relay}`) })
      } catch (err) {
        signal?.throwIfAborted()
        dns[i] = { addr: ma.toString(), via: 'failed', resolved: [], note: (err as Error).message }
        this.log.warn(`${ma.toString()} did not resolve: ${(err as Error).message}`, { peer: relay, phase: 'dns' })
      }
    }))
    return { dns, targets }
  }

  async run (options: DoctorRunOptions = {}): Promise<DoctorObservations> {
    const t0 = Date.now()
    const signal = options.signal
    const { bootstrap } = this.init
    const relays = [...new Set(bootstrap.map(ma => peerIdOf(ma)).filter((p): p is string => p != null))]

    // names first: the rungs need addresses
    const { dns, targets } = await this.resolveBootstrap(bootstrap, signal)

    const [dohDone, portalDone] = [this.probeDoh(bootstrap, signal), observeCaptivePortal(bootstrap, { signal })]
    const tls: TlsObservation[] = []
    const rungsDone = Promise.all(dedupeTargets(withHttpsFallbackTargets(targets)).map(async t => await this.probeRung(t.relay, t.addr, tls, signal)))
    let probesEnded: number | undefined
    void Promise.allSettled([rungsDone, dohDone]).then(() => { probesEnded = Date.now() })

    // wait for the donor to settle: a reservation (or a failed round on every relay) and a NAT verdict
    const budget = this.init.budgetMs ?? DOCTOR_BUDGET_MS
    const deadline = t0 + budget
    for (let i = 0; Date.now() < deadline && i < Math.ceil(budget / 100) + 1; i++) {
      signal?.throwIfAborted()
      const s = this.init.status()
      const reserved = s.relays.length > 0
      const everyRelayTried = s.bootstrap.length > 0 && s.bootstrap.every(b => b.state === 'reserved' || b.failures > 0)
      const natDone = s.nat?.at != null ||
        (probesEnded != null && (Date.now() - probesEnded > NAT_GRACE_MS || !(await this.anyDirectRelayConnection())))
      if (probesEnded != null && natDone && (reserved || everyRelayTried || relays.length === 0)) break
      await pause(100, { signal })
    }
    const [rungs, doh] = await Promise.all([rungsDone, dohDone])
    // the daemon's own check of its reservation path, when it ran on one the rungs did not cover
    for (const r of this.init.status().relays) {
      if (r.transport !== 'wss' || r.tlsIntercepted == null || r.addr == null || tls.some(t => t.addr === r.addr)) continue
      tls.push({ addr: r.addr, ...(r.tlsIntercepted !== 'unknown' ? { intercepted: r.tlsIntercepted === 'yes' } : {}), ...(r.tlsInterceptor != null ? { issuer: r.tlsInterceptor } : {}), detail: r.tlsCheck ?? '' })
    }
    const clock = await this.probeClock(rungs, doh, signal)

    if (options.durationMs != null && Date.now() - t0 < options.durationMs) {
      this.log.info(`observing the donor for ${Math.round((options.durationMs - (Date.now() - t0)) / 1000)} s more (--duration)`)
      await pause(options.durationMs - (Date.now() - t0), { signal })
    }
    signal?.throwIfAborted()

    const status = this.init.status()
    return {
      bootstrap: bootstrap.map(String),
      ...(this.init.bootstrapSource != null ? { bootstrapSource: this.init.bootstrapSource } : {}),
      relays,
      dns: dns.filter(d => d != null),
      doh,
      dohEndpoints: [...this.init.dohEndpoints],
      rungs,
      proxies: status.proxies ?? [],
      nat: status.nat ?? unmeasured(),
      reachability: { value: status.reachability, reason: status.reachabilityReason },
      reservations: status.relays,
      reservationErrors: status.bootstrap.map(b => ({ relay: b.peerId ?? peerIdOf(b.addr) ?? '?', state: b.state, ...(b.lastError != null ? { error: b.lastError } : {}) })),
      tls,
      ...(tls.length === 0
        ? { tlsNote: this.init.tlsProbe == null ? this.init.tlsNote ?? 'TLS interception is not checked by this build' : 'no WebSocket-over-TLS connection to a relay was made: nothing to check' }
        : {}),
      clock,
      webrtcTransport: this.init.webrtcTransport ?? false,
      ...await probeProxyDiscovery(this.init.mesh.proxies, { signal }),
      captivePortal: await portalDone,
      ipv6: await probeIpv6({ resolver: this.init.resolver, logger: this.log }, { signal }),
      ...(this.init.portMapping != null ? { portMapping: await probePortMapping(this.init.portMapping, { startedAt: t0, signal }) } : {}),
      observedMs: Date.now() - t0,
      httpsFallback: observeHttpsFallback(rungs, status.relays)
    }
  }

  private async anyDirectRelayConnection (): Promise<boolean> {
    return (await this.init.mesh.stun.stunServers()).length > 0
  }

  /** One address through the daemon's dial ladder; the connection, if any, stays open until the node stops. */
  private async probeRung (relay: string, addr: Multiaddr, tls: TlsObservation[], signal?: AbortSignal): Promise<RungObservation> {
    const text = addr.toString()
    const transport = transportOf(text)
    const { host, port } = hostPortOf(text)
    const use = transport === 'tcp' ? 'tcp' : transport === 'ws' ? 'ws' : transport === 'wss' || transport === 'https-poll' ? 'wss' : undefined
    const proxy = use != null && host != null && port != null ? this.init.mesh.proxies.proxyFor(use, host, port)?.url : undefined
    const base: RungObservation = { relay, addr: text, transport, ...(host != null ? { host } : {}), ...(port != null ? { port } : {}), outcome: 'not-tried', ...(proxy != null ? { proxy } : {}) }
    let attempt: LadderAttempt | undefined
    try {
      const result = await this.ladder.dial(relay, [addr], { signal })
      attempt = result.attempts[0]
      if (pathUsesTls(text) && this.init.tlsProbe != null) tls.push(await this.checkTls(this.init.tlsProbe, result.connection, text, signal))
    } catch (err) {
      signal?.throwIfAborted()
      if (err instanceof DialLadderError) attempt = err.attempts[0]
      else {
        this.log.warn(`doctor: dial of ${text} (${transport}) failed outside the ladder: ${(err as Error).message}`, { peer: relay, transport })
        return { ...base, outcome: 'failure', cause: (err as Error).message, code: (err as { code?: string }).code ?? 'UNKNOWN' }
      }
    }
    if (attempt == null) return base
    const record = attempt.outcome === 'failure' ? await this.failureRecord(text, signal) : undefined
    return {
      ...base,
      outcome: attempt.outcome === 'closed-late' ? 'success' : attempt.outcome,
      ...(attempt.phase != null ? { phase: record?.phase ?? attempt.phase } : {}),
      ...(attempt.cause != null ? { cause: record?.cause ?? attempt.cause } : {}),
      ...(attempt.code != null ? { code: record?.code ?? attempt.code } : {}),
      ...(attempt.timedOut === true ? { timedOut: true } : {}),
      ...(attempt.durationMs != null ? { durationMs: attempt.durationMs } : {})
    }
  }

  /**
   * Each DoH endpoint on its own, with the first bootstrap name: the daemon's
   * resolver with its OS side switched off, so it goes straight to DoH.
   * Only when the bootstrap list has a name (otherwise DoH is never needed).
   */
  private async probeDoh (bootstrap: readonly Multiaddr[], signal?: AbortSignal): Promise<DohProbe[]> {
    const named = bootstrap.map(ma => ma.getComponents()[0]).find(c => c != null && ['dns', 'dns4', 'dns6', 'dnsaddr'].includes(c.name))
    if (named?.value == null) return []
    const name = named.name === 'dnsaddr' ? `_dnsaddr.${named.value}` : named.value
    const kind = named.name === 'dnsaddr' ? 'TXT' : named.name === 'dns6' ? 'AAAA' : 'A'
    return await Promise.all(this.init.dohEndpoints.slice(0, 3).map(async (endpoint): Promise<DohProbe> => {
      const resolver = new MeshResolver({
        doh: [endpoint],
        osLookup: async () => { throw new Error('not asked: the doctor tests this DNS-over-HTTPS endpoint on its own') },
        logger: this.log.child('doh')
      })
      try {
        const found = await resolver.lookup(name, kind, { signal })
        return { endpoint, name, ok: true, detail: found.records.join(', ') }
      } catch (err) {
        signal?.throwIfAborted()
        const attempts = (err as { attempts?: string[] }).attempts
        const why = attempts?.find(a => a.startsWith(endpoint))?.slice(endpoint.length + 2) ?? (err as Error).message
        return { endpoint, name, ok: false, detail: why }
      }
    }))
  }

  /**
   * The recorder's record of a failed probe. A WebSocket failure says nothing
   * by itself; the recorder probes the address (ws-diagnose.ts) and writes the
   * record once it knows the cause (refused port, untrusted certificate), a
   * little after the dial failed: wait for it, bounded.
   */
  private async failureRecord (addr: string, signal?: AbortSignal): Promise<DialAttempt | undefined> {
    for (let i = 0; i < 30; i++) {
      const r = this.records.get(addr)
      if (r != null && r.outcome === 'failure') return r
      await pause(100, { signal })
    }
    this.log.debug(`no telemetry record for the failed probe of ${addr} within 3 s; using the ladder's own description`)
    return undefined
  }

  private async checkTls (probe: NonNullable<DoctorInit['tlsProbe']>, conn: Connection, addr: string, signal?: AbortSignal): Promise<TlsObservation> {
    try {
      return await probe(conn, addr, { signal })
    } catch (err) {
      signal?.throwIfAborted()
      this.log.warn(`TLS interception check of ${addr} failed: ${(err as Error).message}`, { peer: conn.remotePeer.toString(), transport: transportOf(addr), phase: 'tls' })
      return { addr, detail: `the check failed: ${(err as Error).message}` }
    }
  }

  /**
   * The remote clock from an HTTP Date header (RFC 9110 §6.6.1, one-second
   * resolution): a relay's WebSocket listener answers a plain GET (with 400),
   * a DoH endpoint answers too. Only over a direct path: a proxied one would
   * need the proxy here as well, and one source is enough.
   */
  private async probeClock (rungs: RungObservation[], doh: DohProbe[], signal?: AbortSignal): Promise<ClockObservation> {
    const urls: string[] = []
    for (const r of rungs) {
      if (r.outcome !== 'success' || r.proxy != null || r.host == null || r.port == null) continue
      if (r.transport !== 'ws' && r.transport !== 'wss') continue
      urls.push(`${r.transport === 'wss' ? 'https' : 'http'}://${r.host.includes(':') ? `[${r.host}]` : r.host}:${r.port}/`)
    }
    for (const p of doh) if (p.ok) urls.push(p.endpoint)
    const tried: string[] = []
    for (const url of [...new Set(urls)].slice(0, 3)) {
      const t0 = Date.now()
      try {
        const res = await fetch(url, { method: 'GET', signal: AbortSignal.any([...(signal != null ? [signal] : []), AbortSignal.timeout(CLOCK_TIMEOUT_MS)]) })
        const t1 = Date.now()
        await res.body?.cancel()
        const date = res.headers.get('date')
        const remote = date != null ? Date.parse(date) : NaN
        if (Number.isNaN(remote)) { tried.push(`${url}: no Date header`); continue }
        // the Date header truncates to the second: the remote time was in [date, date + 1 s)
        const skewMs = Math.round((t0 + t1) / 2 - (remote + 500))
        return { skewMs, source: `the HTTP Date header of ${url}`, detail: `local ${new Date((t0 + t1) / 2).toISOString()}, remote ${date ?? ''}` }
      } catch (err) {
        signal?.throwIfAborted()
        tried.push(`${url}: ${(err as Error).message}`)
      }
    }
    return { detail: urls.length === 0 ? 'no direct HTTP(S) path to a relay or DoH endpoint to read a clock from: not checked' : `no remote clock answered (${tried.join('; ')})` }
  }
}

function dedupeTargets (targets: Array<{ relay: string, addr: Multiaddr }>): Array<{ relay: string, addr: Multiaddr }> {
  const seen = new Set<string>()
  return targets.filter(t => {
    const key = t.addr.toString()
    if (seen.has(key)) return false
    seen.add(key)
    return true
  }).map(t => ({ relay: t.relay, addr: multiaddr(t.addr.toString()) }))
}

function unmeasured (): NatReport {
  return { mapping: 'unknown', filtering: 'unknown', udp: 'unknown', reason: 'not measured', servers: [] }
}
