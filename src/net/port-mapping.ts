/**
 * Port mapping at the home router: a donor behind a gateway that speaks PCP,
 * NAT-PMP or UPnP IGD asks it to forward its TCP (and QUIC) listen ports,
 * hands the external address to libp2p as an IP mapping (AutoNAT v2 then
 * dials it back and, once it answers, it is advertised), renews the lease
 * before it ends, and deletes it at stop.
 *
 * Protocols are tried in order, PCP → NAT-PMP → UPnP, not raced: PCP and
 * NAT-PMP share the gateway's port 5351 and a NAT-PMP gateway answers a PCP
 * request at once with "unsupported version", so the first two cost one
 * round trip when the gateway speaks either; UPnP comes last because its
 * SSDP search waits seconds for an answer and is the protocol most routers
 * ship switched off. Racing would leave mappings from two protocols to undo.
 *
 * Safety: nothing is sent unless `mappingCandidate` finds a default gateway
 * and a listener on our private LAN address (port-mapping-gateway.ts).
 */
import { transportOf } from './transport-of.ts'
import { createLogger, type Logger } from '../log/logger.ts'
import { duration } from '../core/format.ts'
import type { PortMappingFailure, PortMappingLease, PortMappingProtocol, PortMappingState, PortMappingStatus } from '../core/types.ts'
import { NatPmpClient, PcpClient } from './port-mapping-udp.ts'
import { UpnpClient } from './port-mapping-upnp.ts'
import type { NodeCore } from './node-core.ts'
import type { Connection } from '@libp2p/interface'
import {
  defaultLanRoute, mappingCandidate, PortMappingError,
  type GatewayMapping, type LanRoute, type MappableListen, type MappingClient, type MappingClientFactory
} from './port-mapping-gateway.ts'

export const DEFAULT_PORT_MAPPING_LEASE_SECONDS = 3600
/** failures kept for status and the doctor */
const MAX_FAILURES = 8
/** the longest wait between two rounds of asking a gateway that did not map */
const MAX_RETRY_MS = 6 * 3600_000

/** Where mapped addresses go: libp2p's address manager in a node (mesh-node.ts). */
export interface MappedAddressBook {
  add: (mapping: GatewayMapping) => void
  remove: (mapping: GatewayMapping) => void
  /** AutoNAT v2 dialled the external address back */
  confirmed: (mapping: GatewayMapping) => boolean
}

/** Timers, so a test can run renewals on a fake clock. */
export interface MappingClock {
  now: () => number
  setTimeout: (fn: () => void, ms: number) => unknown
  clearTimeout: (handle: unknown) => void
}

export const SYSTEM_CLOCK: MappingClock = {
  now: () => Date.now(),
  // unref'd: a renewal timer never keeps the process alive on its own
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (handle) => { clearTimeout(handle as ReturnType<typeof setTimeout>) }
}

export interface PortMapperInit {
  /** false: never map (`--no-port-mapping`, `"portMapping": false`) @default true */
  enabled?: boolean
  /** the lease asked for, seconds @default 3600 */
  leaseSeconds?: number
  /** renew when this share of the lease has passed (RFC 6887 §11.2.1 renews from half the lifetime) @default 0.5 */
  renewAt?: number
  /**
   * after every protocol failed or a lease was lost, ask again after this long, doubled after each
   * round that failed again (at most 6 h: a network without port mapping is not asked, and logged, every few minutes) @default 600000 (10 min)
   */
  retryMs?: number
  /** how long deleting all mappings at stop may take @default 3000 */
  stopTimeoutMs?: number
  logger?: Logger
}

export interface PortMapperComponents {
  /** the addresses our transports are bound to */
  boundAddrs: () => string[]
  addresses: MappedAddressBook
  /** @default the IPv4 default route from /proc/net/route */
  route?: () => LanRoute | undefined
  /** the protocol clients, in the order they are tried @default PCP, NAT-PMP, UPnP */
  clients?: ReadonlyArray<{ protocol: PortMappingProtocol, create: MappingClientFactory }>
  clock?: MappingClock
}

export const DEFAULT_MAPPING_CLIENTS: ReadonlyArray<{ protocol: PortMappingProtocol, create: MappingClientFactory }> = [
  { protocol: 'pcp', create: (route) => new PcpClient(route) },
  { protocol: 'natpmp', create: (route) => new NatPmpClient(route) },
  { protocol: 'upnp', create: (route) => new UpnpClient(route) }
]

interface Lease { mapping: GatewayMapping, renewedAt: number }

/** The face status and the doctor read. */
export interface PortMappingView {
  status: () => PortMappingStatus
}

export class PortMapper implements PortMappingView {
  readonly #init: Required<Omit<PortMapperInit, 'logger'>>
  readonly #c: Required<PortMapperComponents>
  readonly #log: Logger
  #state: PortMappingState = 'off'
  #reason = 'not started'
  #client?: MappingClient
  #route?: LanRoute
  #listens: MappableListen[] = []
  #leases: Lease[] = []
  readonly #failures: PortMappingFailure[] = []
  #timer?: unknown
  #abort = new AbortController()
  #stopped = false
  /** rounds in a row in which no protocol mapped */
  #failedRounds = 0
  /** a gateway refused in this round (rather than staying silent) */
  #roundRefused = false

  constructor (init: PortMapperInit, components: PortMapperComponents) {
    this.#init = { enabled: init.enabled ?? true, leaseSeconds: init.leaseSeconds ?? DEFAULT_PORT_MAPPING_LEASE_SECONDS, renewAt: init.renewAt ?? 0.5, retryMs: init.retryMs ?? 600_000, stopTimeoutMs: init.stopTimeoutMs ?? 3000 }
    this.#c = { route: () => defaultLanRoute(), clients: DEFAULT_MAPPING_CLIENTS, clock: SYSTEM_CLOCK, ...components }
    this.#log = init.logger ?? createLogger('net.port-mapping')
  }

  /** Decides whether mapping applies and, when it does, starts asking the gateway (in the background). */
  start (): void {
    if (!this.#init.enabled) {
      this.#set('off', 'switched off (--no-port-mapping or "portMapping": false)')
      return
    }
    const candidate = mappingCandidate(this.#c.boundAddrs(), this.#c.route())
    if (!candidate.applies) {
      this.#set('not-applicable', candidate.reason)
      this.#log.info(`port mapping not attempted: ${candidate.reason}`)
      return
    }
    this.#route = candidate.route
    this.#listens = candidate.listens
    void this.#obtain()
  }

  status (): PortMappingStatus {
    return {
      state: this.#state,
      reason: this.#reason,
      ...(this.#client != null ? { protocol: this.#client.protocol } : {}),
      ...(this.#route != null ? { gateway: this.#route.gateway } : {}),
      mappings: this.#leases.map(l => this.#leaseView(l)),
      failures: [...this.#failures]
    }
  }

  /** Deletes every mapping at the gateway (bounded by stopTimeoutMs) and stops renewing. */
  async stop (): Promise<void> {
    if (this.#stopped) return
    this.#stopped = true
    this.#abort.abort()
    this.#clearTimer()
    const client = this.#client
    const leases = this.#leases
    this.#leases = []
    if (client == null) return
    const signal = AbortSignal.timeout(this.#init.stopTimeoutMs)
    await Promise.all(leases.map(async ({ mapping }) => {
      this.#c.addresses.remove(mapping)
      try {
        await client.unmap(mapping, { signal })
        this.#log.info(`${client.protocol}: removed the mapping ${pair(mapping)} at ${client.gateway}`)
      } catch (err) {
        this.#fail(err, client.protocol, 'unmap')
      }
    }))
    client.close()
    this.#set('removed', leases.length > 0 ? `mappings deleted at ${client.gateway} at stop` : 'stopped')
  }

  /** Each protocol in turn until one maps the first listener; then the others through it. */
  async #obtain (): Promise<void> {
    const route = this.#route as LanRoute
    this.#set('discovering', `asking ${route.gateway} for a mapping of ${this.#listens.map(l => `${l.transport} ${internal(l)}`).join(', ')}`)
    this.#roundRefused = false
    for (const { protocol, create } of this.#c.clients) {
      if (this.#stopped) return
      const client = create(route)
      const first = await this.#mapOne(client, this.#listens[0])
      if (first == null) { client.close(); continue }
      this.#client = client
      this.#accept(first)
      for (const listen of this.#listens.slice(1)) {
        const m = await this.#mapOne(client, listen)
        if (m != null) this.#accept(m)
      }
      if (this.#stopped) return
      this.#set('mapped', `${protocol} at ${route.gateway}: ${this.#leases.map(l => pair(l.mapping)).join(', ')}`)
      this.#failedRounds = 0
      this.#scheduleRenewal()
      return
    }
    this.#failedRounds++
    const retryMs = Math.min(this.#init.retryMs * 2 ** (this.#failedRounds - 1), MAX_RETRY_MS)
    this.#set('failed', `${this.#roundRefused ? `the gateway ${route.gateway} refused every mapping (see failures)` : `no gateway answered PCP, NAT-PMP or UPnP at ${route.gateway}`}; asking again in ${duration(retryMs)}`)
    this.#retryLater(retryMs)
  }

  async #mapOne (client: MappingClient, listen: MappableListen): Promise<GatewayMapping | undefined> {
    try {
      return await client.map({ ...listen, suggestedExternalPort: listen.port, lifetimeSeconds: this.#init.leaseSeconds }, { signal: this.#abort.signal })
    } catch (err) {
      if (!this.#stopped) this.#fail(err, client.protocol, 'map', listen)
      return undefined
    }
  }

  #accept (mapping: GatewayMapping): void {
    if (this.#stopped) return
    this.#leases.push({ mapping, renewedAt: this.#c.clock.now() })
    this.#c.addresses.add(mapping)
    this.#log.info(`${this.#client?.protocol ?? '?'}: ${this.#route?.gateway ?? '?'} maps ${pair(mapping)} for ${mapping.lifetimeSeconds === 0 ? 'ever (until deleted)' : duration(mapping.lifetimeSeconds * 1000)}`, { protocol: this.#client?.protocol, gateway: this.#route?.gateway, external: external(mapping), internal: internal(mapping) })
  }

  /** The next renewal: the earliest lease's renewAt share of its lifetime; none for leases without end. */
  #scheduleRenewal (): void {
    const due = this.#leases.filter(l => l.mapping.lifetimeSeconds > 0).map(l => l.renewedAt + l.mapping.lifetimeSeconds * 1000 * this.#init.renewAt)
    if (due.length === 0) return
    this.#setTimer(Math.max(0, Math.min(...due) - this.#c.clock.now()), () => { void this.#renew() })
  }

  /** Renews the leases that are due; a failed one is retried until it runs out, then it is lost. */
  async #renew (): Promise<void> {
    const client = this.#client
    if (client == null || this.#stopped) return
    const now = this.#c.clock.now()
    let retryIn: number | undefined
    for (const lease of [...this.#leases]) {
      const { mapping } = lease
      if (mapping.lifetimeSeconds === 0 || now < lease.renewedAt + mapping.lifetimeSeconds * 1000 * this.#init.renewAt) continue
      try {
        const renewed = await client.map({ ...mapping, suggestedExternalPort: mapping.externalPort, lifetimeSeconds: this.#init.leaseSeconds }, { signal: this.#abort.signal })
        if (this.#stopped) return
        this.#replace(lease, renewed)
      } catch (err) {
        if (this.#stopped) return
        this.#fail(err, client.protocol, 'renew', mapping)
        const endsIn = lease.renewedAt + mapping.lifetimeSeconds * 1000 - this.#c.clock.now()
        if (endsIn <= 0) this.#lose(lease)
        // a quarter of what is left (at least 30 s), and once more at the very end, when the loss is certain
        else retryIn = Math.min(retryIn ?? Infinity, endsIn, Math.max(30_000, endsIn / 4))
      }
    }
    if (this.#leases.length === 0) {
      this.#set('lost', `every lease at ${client.gateway} ran out unrenewed; asking again in ${duration(this.#init.retryMs)}`)
      this.#client = undefined
      client.close()
      this.#retryLater(this.#init.retryMs)
      return
    }
    if (retryIn != null) this.#setTimer(retryIn, () => { void this.#renew() })
    else this.#scheduleRenewal()
  }

  #replace (lease: Lease, renewed: GatewayMapping): void {
    if (renewed.externalHost !== lease.mapping.externalHost || renewed.externalPort !== lease.mapping.externalPort) {
      this.#log.warn(`${this.#client?.protocol ?? '?'}: the renewed mapping of ${renewed.transport} ${internal(renewed)} moved from ${external(lease.mapping)} to ${external(renewed)}`, { gateway: this.#route?.gateway })
      this.#c.addresses.remove(lease.mapping)
      this.#c.addresses.add(renewed)
    }
    lease.mapping = renewed
    lease.renewedAt = this.#c.clock.now()
    this.#log.debug(`renewed ${pair(renewed)} for ${duration(renewed.lifetimeSeconds * 1000)}`)
  }

  #lose (lease: Lease): void {
    this.#leases = this.#leases.filter(l => l !== lease)
    this.#c.addresses.remove(lease.mapping)
    const protocol = this.#client?.protocol ?? 'pcp'
    const gateway = this.#route?.gateway ?? '?'
    this.#record({ protocol, gateway, phase: 'renew', code: 'PORT_MAPPING_LEASE_LOST', cause: `the lease of ${pair(lease.mapping)} ended unrenewed` })
  }

  #retryLater (ms: number): void {
    if (this.#stopped) return
    this.#setTimer(ms, () => { void this.#obtain() })
  }

  #fail (err: unknown, protocol: PortMappingProtocol, phase: PortMappingFailure['phase'], listen?: MappableListen): void {
    const e = err instanceof PortMappingError ? err : undefined
    this.#record({
      protocol: e?.protocol ?? protocol,
      gateway: e?.gateway ?? this.#route?.gateway ?? '?',
      // a renewal is a MAP request to the client, but a renewal to whoever reads the log
      phase: phase === 'renew' ? 'renew' : e?.phase ?? phase,
      code: e?.code ?? (err as { code?: string }).code ?? 'PORT_MAPPING_FAILED',
      cause: `${listen != null ? `${listen.transport} ${internal(listen)}: ` : ''}${(err as Error).message}`
    })
  }

  #record (failure: Omit<PortMappingFailure, 'at'>): void {
    if (failure.code === 'PORT_MAPPING_REFUSED') this.#roundRefused = true
    this.#failures.push({ ...failure, at: new Date(this.#c.clock.now()).toISOString() })
    if (this.#failures.length > MAX_FAILURES) this.#failures.shift()
    this.#log.warn(`port mapping: ${failure.protocol} ${failure.phase} at ${failure.gateway} failed: ${failure.cause}`, { protocol: failure.protocol, gateway: failure.gateway, phase: failure.phase, code: failure.code })
  }

  #leaseView ({ mapping, renewedAt }: Lease): PortMappingLease {
    return {
      transport: mapping.transport,
      internal: internal(mapping),
      external: external(mapping),
      lifetimeSeconds: mapping.lifetimeSeconds,
      ...(mapping.lifetimeSeconds > 0 ? { expiresAt: new Date(renewedAt + mapping.lifetimeSeconds * 1000).toISOString() } : {}),
      renewedAt: new Date(renewedAt).toISOString(),
      confirmed: this.#c.addresses.confirmed(mapping)
    }
  }

  #set (state: PortMappingState, reason: string): void {
    this.#state = state
    this.#reason = reason
  }

  #setTimer (ms: number, fn: () => void): void {
    this.#clearTimer()
    this.#timer = this.#c.clock.setTimeout(fn, ms)
  }

  #clearTimer (): void {
    if (this.#timer != null) this.#c.clock.clearTimeout(this.#timer)
    this.#timer = undefined
  }
}

function internal (m: MappableListen): string {
  return `${m.host}:${m.port}`
}

function external (m: GatewayMapping): string {
  return `${m.externalHost}:${m.externalPort}`
}

/** `tcp 203.0.113.10:4001 → 10.1.0.2:4001`, for logs */
function pair (m: GatewayMapping): string {
  return `${m.transport} ${external(m)} → ${internal(m)}`
}

interface AddressEntry { multiaddr: { toString: () => string }, verified: boolean, type: string }

/**
 * libp2p's address manager as the book of mapped addresses: an IP mapping
 * makes it list the external address beside the internal one, AutoNAT v2
 * tests it like any unverified public address (one successful dial-back
 * confirms a mapping), and a confirmed one is advertised.
 */
export function libp2pAddressBook (core: NodeCore): MappedAddressBook {
  const am = core.internals.addressManager
  const prefix = (m: GatewayMapping): string => `/ip4/${m.externalHost}/${m.transport}/${m.externalPort}`
  const entries = (m: GatewayMapping): AddressEntry[] => (am.getAddressesWithMetadata() as AddressEntry[]).filter(e => e.type === 'ip-mapping' && `${e.multiaddr.toString()}/`.startsWith(`${prefix(m)}/`))
  const book: MappedAddressBook = {
    add: (m) => {
      am.addPublicAddressMapping(m.host, m.port, m.externalHost, m.externalPort, m.transport)
      askAutoNatAgain(core, () => entries(m).length > 0 && !book.confirmed(m))
    },
    remove: (m) => { am.removePublicAddressMapping(m.host, m.port, m.externalHost, m.externalPort, m.transport) },
    confirmed: (m) => entries(m).some(e => e.verified)
  }
  return book
}

/** Waits between asking the AutoNAT v2 servers again about a mapping still unconfirmed: 2, 4, 8, 16, 32 s. */
const AUTONAT_RETRY_MS = [2000, 4000, 8000, 16_000, 32_000]

interface AutoNatClient { dialRequestProtocol?: string, verifyExternalAddresses?: (conn: Connection) => Promise<void> }

/**
 * The AutoNAT v2 client tests our unverified addresses only when a
 * connection to a server opens; a mapping granted after the relay connection
 * (the usual order: the gateway answers while the relay is dialled) would
 * wait for the next new connection, which an idle donor may never make. So
 * the connected servers are asked again, through the client's own method
 * (its private API, as reachability.ts reads its tallies: checked here, and
 * without it the mapping waits for the next connection), and again a few
 * times while the mapping stays unconfirmed.
 */
function askAutoNatAgain (core: NodeCore, stillUnconfirmed: () => boolean, round = 0): void {
  const client = (core.libp2p.services.autoNAT as { client?: AutoNatClient } | undefined)?.client
  const verify = client?.verifyExternalAddresses
  const protocol = client?.dialRequestProtocol
  if (typeof verify !== 'function' || protocol == null) {
    core.log.warn('port mapping: this @libp2p/autonat-v2 has no verifyExternalAddresses (code AUTONAT_API_CHANGED): the mapped address is tested only at the next connection to an AutoNAT server, so it may stay unconfirmed while the donor is idle')
    return
  }
  void (async () => {
    for (const conn of core.libp2p.getConnections()) {
      // a relayed connection's far end cannot tell whether our own address answers
      if (conn.limits != null || conn.status !== 'open') continue
      // a peer the store does not know has told us no protocols: not a server to ask
      const peer = await core.libp2p.peerStore.get(conn.remotePeer).catch(() => undefined)
      if (peer?.protocols.includes(protocol) !== true) continue
      await verify.call(client, conn).catch((err: Error) => {
        core.log.warn(`port mapping: AutoNAT v2 check of the mapped address failed: peer ${conn.remotePeer.toString()}, address ${conn.remoteAddr.toString()}, transport ${transportOf(conn.remoteAddr)}, phase autonat, code ${(err as { code?: string }).code ?? err.name}: ${err.message}`)
      })
    }
  })()
  // a server may be busy with an earlier check (or not yet identified): asked again a few times while unconfirmed
  const wait = AUTONAT_RETRY_MS[round]
  if (wait == null) return
  setTimeout(() => {
    if (core.libp2p.status === 'started' && stillUnconfirmed()) askAutoNatAgain(core, stillUnconfirmed, round + 1)
  }, wait).unref()
}

/** The addresses libp2p's transports are bound to now. */
export function boundAddrsOf (core: NodeCore): () => string[] {
  return () => (core.internals.transportManager.getAddrs() as Array<{ toString: () => string }>).map(a => a.toString())
}
