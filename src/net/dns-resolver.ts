import { promises as dnsPromises } from 'node:dns'
import { isIP } from 'node:net'
import { networkInterfaces } from 'node:os'
import { RecordType, type Answer, type DNS, type DNSResponse, type QueryOptions } from '@multiformats/dns'
import { dnsOverHttps, type DNSResolver } from '@multiformats/dns/resolvers'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { raceSignal } from '../core/async.ts'
import { WorldComputeError } from '../core/errors.ts'
import { DEFAULT_DOH_ENDPOINTS } from '../config/doh.ts'
import { createLogger, type Logger } from '../log/logger.ts'
import { ipv6Bytes, ipv6Text, isLinkLocalIp } from './address-scope.ts'
import { transportOf } from './transport-of.ts'
import type { AddrResolution, ResolvedVia } from '../core/types.ts'

/**
 * Resolves the names in bootstrap multiaddrs (`/dns4`, `/dns6`, `/dns`,
 * `/dnsaddr`) to concrete IP addresses before the dial ladder sees them:
 * the operating system's resolver first, then DNS-over-HTTPS (RFC 8484)
 * endpoints in the order given, for networks that filter or hijack port 53.
 *
 * js-libp2p v3 itself resolves only `/dnsaddr` (in its dial queue, through
 * `components.dns`, @multiformats/dns with `node:dns` by default) and leaves
 * `/dns4` to the transport (`net.connect` → getaddrinfo), so a filtered
 * resolver fails every TCP rung with a bare ENOTFOUND/EAI_AGAIN. Resolving
 * here gives the ladder IP addresses, one fallback path for every name, and
 * one log line per fallback. The same object is handed to libp2p as its
 * `dns` so the `/dnsaddr` lookups libp2p makes on its own fall back too.
 *
 * The DoH wire format comes from @multiformats/dns (`dnsOverHttps`, which
 * uses the global `fetch`, so `NODE_EXTRA_CA_CERTS` and the system store
 * apply); the order, timeouts, sinkhole detection and logging are ours
 * (@multiformats/dns shuffles its resolvers and keeps no record of which one
 * answered).
 */

/**
 * The OS resolver's time before DoH is tried. getaddrinfo against a resolver
 * whose packets are dropped waits `timeout:5 × attempts:2` per nameserver
 * (resolv.conf(5) defaults); a resolver that answers at all does so within
 * tens of milliseconds. The OS lookup keeps running (getaddrinfo cannot be
 * cancelled) and a late answer is ignored.
 */
export const OS_RESOLVE_TIMEOUT_MS = 1_500

/** One DoH request: a TCP and TLS handshake and one HTTP round trip. */
export const DOH_TIMEOUT_MS = 3_000

/**
 * How long an answer is reused. Bootstrap relays are re-resolved at each
 * reconnection round; without a cache a donor under backoff would log the
 * same fallback every few seconds.
 */
export const MIN_CACHE_TTL_S = 30
export const MAX_CACHE_TTL_S = 300

/** `/dnsaddr` records may point at more `/dnsaddr` records; libp2p allows 32 levels, a bootstrap list needs few. */
export const MAX_DNSADDR_DEPTH = 4
/** Cap on the addresses one bootstrap multiaddr may expand to. */
export const MAX_RESOLVED_ADDRS = 32

export type RecordKind = 'A' | 'AAAA' | 'TXT'

/** The name RFC 7050 has a host ask for AAAA records to learn its network's NAT64 prefix. */
export const NAT64_DISCOVERY_NAME = 'ipv4only.arpa'

/** The IPv4 addresses `ipv4only.arpa` has (RFC 7050 §2.2): found inside an AAAA answer, they mark the prefix. */
const NAT64_WELL_KNOWN_IPV4 = ['192.0.0.170', '192.0.0.171']

/** Which IP families this host can send from. */
export interface HostFamilies {
  ip4: boolean
  ip6: boolean
}

/**
 * From the interface addresses: a family counts when a non-loopback,
 * non-link-local address of it is configured (a link-local address alone
 * reaches no relay).
 */
export function hostFamilies (): HostFamilies {
  const out: HostFamilies = { ip4: false, ip6: false }
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.internal || isLinkLocalIp(a.address)) continue
      if (a.family === 'IPv4') out.ip4 = true
      else out.ip6 = true
    }
  }
  return out
}

const RECORD_TYPE: Record<RecordKind, RecordType> = { A: RecordType.A, AAAA: RecordType.AAAA, TXT: RecordType.TXT }

/** A name could not be resolved by the OS resolver nor by any DoH endpoint. */
export class DnsResolutionError extends WorldComputeError {
  /** the name that did not resolve */
  readonly hostname: string
  /** each resolver tried, with its cause */
  readonly attempts: string[]
  constructor (message: string, hostname: string, attempts: string[], options?: { cause?: unknown }) {
    super(message, 'DNS_FAILED', options)
    this.hostname = hostname
    this.attempts = attempts
  }
}

/** What one record lookup found, and how. */
export interface LookupResult {
  records: string[]
  via: 'os' | 'doh'
  /** the DoH endpoint that answered */
  endpoint?: string
  /** why the OS resolver was not used */
  osError?: string
  /** seconds the answer may be reused */
  ttl: number
}

/** The OS side of a lookup, replaceable in tests. */
export type OsLookup = (name: string, kind: RecordKind, options: { signal: AbortSignal }) => Promise<{ records: string[], ttl?: number }>

export interface MeshResolverInit {
  /** DoH endpoints (RFC 8484 URLs), tried in order after the OS resolver @default DEFAULT_DOH_ENDPOINTS */
  doh?: readonly string[]
  /** @default OS_RESOLVE_TIMEOUT_MS */
  osTimeoutMs?: number
  /** @default DOH_TIMEOUT_MS */
  dohTimeoutMs?: number
  /** @default the system resolver (getaddrinfo for A/AAAA, c-ares for TXT) */
  osLookup?: OsLookup
  /** which families this host can use, asked at each resolution @default {@link hostFamilies} */
  families?: () => HostFamilies
  logger?: Logger
}

/** What resolving one bootstrap multiaddr gave. */
export interface MultiaddrResolution extends AddrResolution {
  /** the concrete addresses to dial */
  multiaddrs: Multiaddr[]
}

interface CacheEntry { result: LookupResult, expires: number }

/**
 * Resolves with the OS first and DoH after; implements @multiformats/dns's
 * `DNS` so libp2p can use it for its own `/dnsaddr` lookups.
 */
export class MeshResolver implements DNS {
  readonly endpoints: readonly string[]
  private readonly osTimeoutMs: number
  private readonly dohTimeoutMs: number
  private readonly osLookup: OsLookup
  private readonly families: () => HostFamilies
  private readonly doh: Array<{ url: string, resolve: DNSResolver }>
  private readonly log: Logger
  private readonly cache = new Map<string, CacheEntry>()
  /** concurrent lookups of one name share one query (and one log line) */
  private readonly inflight = new Map<string, Promise<LookupResult>>()
  /** the NAT64 prefix found (or not) last, and until when it is trusted */
  private nat64?: { prefix?: Uint8Array, expires: number }

  constructor (init: MeshResolverInit = {}) {
    this.endpoints = Object.freeze([...(init.doh ?? DEFAULT_DOH_ENDPOINTS)])
    this.osTimeoutMs = init.osTimeoutMs ?? OS_RESOLVE_TIMEOUT_MS
    this.dohTimeoutMs = init.dohTimeoutMs ?? DOH_TIMEOUT_MS
    this.osLookup = init.osLookup ?? systemLookup
    this.families = init.families ?? hostFamilies
    this.log = init.logger ?? createLogger('net.dns')
    // one dnsOverHttps per endpoint, made once: each keeps its own request queue
    this.doh = this.endpoints.map(url => ({ url, resolve: dnsOverHttps(url) }))
  }

  /**
   * Records of one kind for `name`: OS resolver, then each DoH endpoint in
   * order. `osOnly`: the OS resolver already answered another record type for
   * this name, so its "no such record" is an answer, not a filter (a host
   * without IPv6 must not send every `/dns` lookup to DoH).
   */
  async lookup (name: string, kind: RecordKind, options: { signal?: AbortSignal, osOnly?: boolean } = {}): Promise<LookupResult> {
    const key = `${kind} ${name.toLowerCase()}${options.osOnly === true ? ' os' : ''}`
    const cached = this.cache.get(key)
    if (cached != null && cached.expires > Date.now()) return cached.result
    let pending = this.inflight.get(key)
    if (pending == null) {
      pending = this.lookupUncached(name, kind, options.signal, options.osOnly === true).finally(() => { this.inflight.delete(key) })
      this.inflight.set(key, pending)
    }
    const result = await pending
    const ttl = Math.min(MAX_CACHE_TTL_S, Math.max(MIN_CACHE_TTL_S, result.ttl))
    this.cache.set(key, { result, expires: Date.now() + ttl * 1000 })
    return result
  }

  private async lookupUncached (name: string, kind: RecordKind, signal: AbortSignal | undefined, osOnly: boolean): Promise<LookupResult> {
    signal?.throwIfAborted()
    const started = Date.now()
    let osError: string
    try {
      const found = await this.lookupOs(name, kind, signal)
      const sinkhole = kind !== 'TXT' && !isLocalName(name) && found.records.length > 0 && found.records.every(isSinkhole)
      if (found.records.length > 0 && !sinkhole) {
        this.log.debug(`resolved ${name} (${kind}) with the OS resolver in ${Date.now() - started} ms: ${found.records.join(', ')}`)
        return { records: found.records, via: 'os', ttl: found.ttl ?? MIN_CACHE_TTL_S }
      }
      osError = sinkhole
        ? `answered ${found.records.join(', ')}, a sinkhole address (a filtering resolver?)`
        : 'answered with no records'
    } catch (err) {
      signal?.throwIfAborted()
      osError = describeOsError(err, this.osTimeoutMs)
    }
    if (osOnly) {
      this.log.debug(`no ${kind} record for ${name} from the OS resolver (${osError}); it answered another type, so DoH is not asked`)
      throw new DnsResolutionError(`no ${kind} record for ${name}: ${osError}`, name, [`os: ${osError}`])
    }
    if (this.doh.length === 0) {
      this.log.warn(`cannot resolve ${name} (${kind}): the OS resolver failed (${osError}) and no DNS-over-HTTPS endpoint is configured (--doh URL, WORLDCOMPUTE_DOH, "doh" in config.json)`, { name, kind, phase: 'dns' })
      throw new DnsResolutionError(`cannot resolve ${name}: OS resolver: ${osError}; no DoH endpoint configured`, name, [`os: ${osError}`])
    }
    const attempts = [`os: ${osError}`]
    for (const { url, resolve } of this.doh) {
      signal?.throwIfAborted()
      const t0 = Date.now()
      try {
        const found = await this.lookupDoh(resolve, name, kind, signal)
        if (found.records.length === 0) throw new Error('answered with no records (NXDOMAIN or no data)')
        // one line per fallback, at the default level: which name, why the OS failed, which endpoint answered what
        this.log.warn(`DNS fallback: the OS resolver could not resolve ${name} (${kind}): ${osError}; resolved over DNS-over-HTTPS ${url} in ${Date.now() - t0} ms: ${found.records.join(', ')}`,
          { name, kind, endpoint: url, phase: 'dns' })
        return { records: found.records, via: 'doh', endpoint: url, osError, ttl: found.ttl }
      } catch (err) {
        signal?.throwIfAborted()
        const why = describeDohError(err, this.dohTimeoutMs)
        attempts.push(`${url}: ${why}`)
        this.log.warn(`DNS fallback: DNS-over-HTTPS ${url} could not resolve ${name} (${kind}) after the OS resolver failed (${osError}): ${why}`, { name, kind, endpoint: url, phase: 'dns' })
      }
    }
    throw new DnsResolutionError(`cannot resolve ${name} (${kind}): ${attempts.join('; ')}`, name, attempts)
  }

  private async lookupOs (name: string, kind: RecordKind, signal?: AbortSignal): Promise<{ records: string[], ttl?: number }> {
    const timeout = AbortSignal.timeout(this.osTimeoutMs)
    const combined = signal != null ? AbortSignal.any([signal, timeout]) : timeout
    const query = this.osLookup(name, kind, { signal: combined })
    // getaddrinfo cannot be cancelled: stop waiting at the signal; its late verdict must not become an unhandled rejection
    query.catch((err: unknown) => { this.log.trace(`OS resolver verdict for ${name} (${kind}) after we stopped waiting: ${(err as Error)?.message ?? String(err)}`) })
    return await raceSignal(query, combined)
  }

  private async lookupDoh (resolve: DNSResolver, name: string, kind: RecordKind, signal?: AbortSignal): Promise<{ records: string[], ttl: number }> {
    const timeout = AbortSignal.timeout(this.dohTimeoutMs)
    const combined = signal != null ? AbortSignal.any([signal, timeout]) : timeout
    const response = await raceSignal(resolve(name, { types: [RECORD_TYPE[kind]], signal: combined }), combined)
    const answers = response.Answer.filter(a => a.type === RECORD_TYPE[kind])
    const records = answers.map(a => recordText(a.data)).filter(r => r !== '')
    if (kind !== 'TXT') {
      for (const r of records) {
        if (isIP(r) === 0) throw new Error(`answered "${r}", which is not an IP address`)
      }
    }
    const ttl = answers.length > 0 ? Math.min(...answers.map(a => a.TTL)) : MIN_CACHE_TTL_S
    return { records, ttl }
  }

  /** @multiformats/dns's `DNS.query`, for libp2p's own `/dnsaddr` lookups. */
  async query (fqdn: string, options: QueryOptions = {}): Promise<DNSResponse> {
    const types = options.types == null ? [RecordType.A, RecordType.AAAA] : Array.isArray(options.types) ? options.types : [options.types]
    const answers: Answer[] = []
    const errors: unknown[] = []
    let osAnswered = false
    for (const type of types) {
      const kind = type === RecordType.A ? 'A' : type === RecordType.AAAA ? 'AAAA' : type === RecordType.TXT ? 'TXT' : undefined
      if (kind == null) {
        errors.push(new Error(`record type ${String(type)} is not supported`))
        continue
      }
      try {
        const found = await this.lookup(fqdn, kind, { signal: options.signal, osOnly: osAnswered })
        if (found.via === 'os') osAnswered = true
        for (const data of found.records) answers.push({ name: fqdn, type, TTL: found.ttl, data })
      } catch (err) {
        errors.push(err)
      }
    }
    if (answers.length === 0 && errors.length > 0) {
      // the name libp2p's dnsaddr resolver looks for when every resolver failed
      const err = new AggregateError(errors, `DNS lookup of ${fqdn} failed: ${errors.map(e => (e as Error).message).join('; ')}`)
      err.name = 'DNSQueryFailedError'
      throw err
    }
    return { Status: 0, TC: false, RD: true, RA: true, AD: false, CD: false, Question: types.map(type => ({ name: fqdn, type })), Answer: answers }
  }

  /**
   * Turns one bootstrap multiaddr into the addresses to dial. IP addresses
   * pass through; `/dns4`, `/dns6` and `/dns` become `/ip4` / `/ip6`;
   * `/dnsaddr` is expanded from its `_dnsaddr` TXT records (only entries for
   * the same `/p2p/` PeerId), recursively.
   *
   * A WebSocket-over-TLS address keeps its name: TLS checks the certificate
   * against the name dialled, and a public certificate names the host, not its
   * IP, so the WebSocket client resolves it itself (with the OS resolver) when
   * it connects.
   */
  async resolveMultiaddr (ma: Multiaddr, options: { signal?: AbortSignal } = {}): Promise<MultiaddrResolution> {
    return await this.resolveAt(ma, 0, options.signal)
  }

  private async resolveAt (ma: Multiaddr, depth: number, signal?: AbortSignal): Promise<MultiaddrResolution> {
    const addr = ma.toString()
    const components = ma.getComponents()
    const first = components[0]
    if (first == null || (first.name !== 'dns' && first.name !== 'dns4' && first.name !== 'dns6' && first.name !== 'dnsaddr')) {
      return await this.resolveLiteral(ma, signal)
    }
    const name = first.value ?? ''
    const rest = components.slice(1).map(c => c.value != null ? `/${c.name}/${c.value}` : `/${c.name}`).join('')
    if (first.name === 'dnsaddr') return await this.resolveDnsaddr(ma, name, depth, signal)
    if (transportOf(addr) === 'wss') {
      return { addr, via: 'at-connect', resolved: [addr], multiaddrs: [ma], note: 'TLS checks the certificate against the name, so the WebSocket client resolves it with the OS resolver when it connects' }
    }
    const v6Only = this.isV6Only()
    const kinds = recordKinds(first.name, v6Only)
    const results: LookupResult[] = []
    const errors: unknown[] = []
    for (const kind of kinds) {
      try {
        results.push(await this.lookup(name, kind, { signal, osOnly: results.some(r => r.via === 'os') }))
      } catch (err) {
        signal?.throwIfAborted()
        errors.push(err)
      }
    }
    if (results.length === 0) throw errors.length === 1 ? errors[0] : new DnsResolutionError(`cannot resolve ${name}: ${errors.map(e => (e as Error).message).join('; ')}`, name, [], { cause: new AggregateError(errors) })
    let resolved = [...new Set(results.flatMap(r => r.records.map(ip => `/${isIP(ip) === 6 ? 'ip6' : 'ip4'}/${ip}${rest}`)))]
    const notes: string[] = []
    if (first.name === 'dns4' && v6Only) notes.push('this host has no IPv4 address: AAAA records were asked too (a DNS64 resolver synthesizes them for IPv4-only names)')
    if (v6Only && !resolved.some(a => a.startsWith('/ip6/'))) {
      const synth = await this.synthesize(resolved, signal)
      resolved = [...resolved, ...synth.added]
      if (synth.note != null) notes.push(synth.note)
    }
    const viaDoh = results.find(r => r.via === 'doh')
    const kept = resolved.slice(0, MAX_RESOLVED_ADDRS)
    return {
      addr,
      via: viaDoh != null ? 'doh' : 'os',
      ...(viaDoh?.endpoint != null ? { endpoint: viaDoh.endpoint } : {}),
      ...(viaDoh?.osError != null ? { osError: viaDoh.osError } : {}),
      resolved: kept,
      ...(notes.length > 0 ? { note: notes.join('; ') } : {}),
      multiaddrs: kept.map(a => multiaddr(a))
    }
  }

  /**
   * An IP address passes through; on an IPv6-only host an IPv4 one gains its
   * NAT64 form when the network has a NAT64 prefix (RFC 7050), since the
   * IPv4 address itself cannot be reached from here.
   */
  private async resolveLiteral (ma: Multiaddr, signal?: AbortSignal): Promise<MultiaddrResolution> {
    const addr = ma.toString()
    if (!addr.startsWith('/ip4/') || !this.isV6Only()) return { addr, via: 'literal', resolved: [addr], multiaddrs: [ma] }
    const synth = await this.synthesize([addr], signal)
    const resolved = [addr, ...synth.added]
    return { addr, via: 'literal', resolved, ...(synth.note != null ? { note: synth.note } : {}), multiaddrs: resolved.map(a => multiaddr(a)) }
  }

  /** True when the host has an IPv6 address and no IPv4 one: an IPv4 address from here goes nowhere without NAT64. */
  private isV6Only (): boolean {
    const f = this.families()
    return f.ip6 && !f.ip4
  }

  /** The NAT64 forms of the `/ip4/` addresses in `addrs`, with a note saying where the prefix came from. */
  private async synthesize (addrs: readonly string[], signal?: AbortSignal): Promise<{ added: string[], note?: string }> {
    const v4 = addrs.filter(a => a.startsWith('/ip4/'))
    if (v4.length === 0) return { added: [] }
    const prefix = await this.nat64Prefix({ signal })
    if (prefix == null) return { added: [], note: `this host has only IPv6 and the network announces no NAT64 prefix (no AAAA record for ${NAT64_DISCOVERY_NAME}): IPv4 addresses are unreachable from here` }
    const added = v4.map(a => {
      const [, , ip, ...rest] = a.split('/')
      return `/ip6/${synthesizeNat64(prefix, ip)}/${rest.join('/')}`
    })
    return { added, note: `IPv6-only host: IPv4 addresses reached through the network's NAT64 prefix ${ipv6Text(Uint8Array.from([...prefix, 0, 0, 0, 0]))}/96 (from ${NAT64_DISCOVERY_NAME})` }
  }

  /**
   * The network's NAT64 prefix (RFC 7050): the first 96 bits of an AAAA
   * answer for `ipv4only.arpa` that ends in one of its well-known IPv4
   * addresses. Asked of the OS resolver only — the network's DNS64 is what
   * knows the local NAT64; a DoH server elsewhere does not. Only /96
   * prefixes (the well-known 64:ff9b::/96 and most operators') are found.
   */
  async nat64Prefix (options: { signal?: AbortSignal } = {}): Promise<Uint8Array | undefined> {
    if (this.nat64 != null && this.nat64.expires > Date.now()) return this.nat64.prefix
    let prefix: Uint8Array | undefined
    try {
      const found = await this.lookup(NAT64_DISCOVERY_NAME, 'AAAA', { signal: options.signal, osOnly: true })
      for (const record of found.records) {
        const bytes = ipv6Bytes(record)
        if (bytes != null && NAT64_WELL_KNOWN_IPV4.includes(bytes.slice(12).join('.'))) prefix = bytes.slice(0, 12)
      }
    } catch (err) {
      options.signal?.throwIfAborted()
      this.log.debug(`no NAT64 prefix from ${NAT64_DISCOVERY_NAME}: ${(err as Error).message}`, { phase: 'dns' })
    }
    this.nat64 = { prefix, expires: Date.now() + MIN_CACHE_TTL_S * 1000 }
    return prefix
  }

  private async resolveDnsaddr (ma: Multiaddr, name: string, depth: number, signal?: AbortSignal): Promise<MultiaddrResolution> {
    const addr = ma.toString()
    if (depth >= MAX_DNSADDR_DEPTH) throw new DnsResolutionError(`${addr}: /dnsaddr records nest deeper than ${MAX_DNSADDR_DEPTH} levels`, name, [])
    const found = await this.lookup(`_dnsaddr.${name}`, 'TXT', { signal })
    const peer = ma.getComponents().filter(c => c.name === 'p2p').pop()?.value
    const targets: Multiaddr[] = []
    for (const record of found.records) {
      // dnsaddr=<multiaddr> (github.com/multiformats/multiaddr/blob/master/protocols/DNSADDR.md)
      const m = /^dnsaddr=(\/.+)$/.exec(record.trim())
      if (m == null) continue
      if (peer != null && !m[1].endsWith(`/p2p/${peer}`)) continue
      try {
        targets.push(multiaddr(m[1]))
      } catch (err) {
        this.log.warn(`ignoring a _dnsaddr.${name} record that is not a multiaddr: "${record}" (${(err as Error).message})`, { name, phase: 'dns' })
      }
    }
    if (targets.length === 0) {
      throw new DnsResolutionError(`_dnsaddr.${name} has no dnsaddr= record${peer != null ? ` for /p2p/${peer}` : ''} (${found.records.length} TXT record(s))`, name, [])
    }
    const resolved: Multiaddr[] = []
    const notes: string[] = []
    for (const target of targets) {
      try {
        const inner = await this.resolveAt(target, depth + 1, signal)
        resolved.push(...inner.multiaddrs)
        if (inner.via === 'doh') notes.push(`${target.toString()} via DoH ${inner.endpoint ?? ''}`)
      } catch (err) {
        signal?.throwIfAborted()
        this.log.warn(`${addr}: cannot resolve ${target.toString()} from _dnsaddr.${name}: ${(err as Error).message}`, { name, phase: 'dns' })
      }
    }
    if (resolved.length === 0) throw new DnsResolutionError(`${addr}: none of the ${targets.length} address(es) in _dnsaddr.${name} resolved`, name, [])
    const unique = [...new Map(resolved.map(m => [m.toString(), m])).values()].slice(0, MAX_RESOLVED_ADDRS)
    return {
      addr,
      via: found.via === 'doh' || notes.length > 0 ? 'doh' : 'os',
      ...(found.endpoint != null ? { endpoint: found.endpoint } : {}),
      ...(found.osError != null ? { osError: found.osError } : {}),
      resolved: unique.map(m => m.toString()),
      multiaddrs: unique
    }
  }
}

/**
 * The records to ask for a name. `/dns4` asks for A, except on a host with
 * only IPv6: there the family is a hint, not a wall (RFC 7050's spirit): the
 * name's IPv4 address is unreachable, and a DNS64 resolver answers a
 * synthesized AAAA that its NAT64 translates, so AAAA is asked too.
 */
function recordKinds (protocol: 'dns' | 'dns4' | 'dns6', v6Only: boolean): RecordKind[] {
  if (protocol === 'dns6') return ['AAAA']
  if (protocol === 'dns4' && !v6Only) return ['A']
  return ['A', 'AAAA']
}

/** The IPv6 address of an IPv4 one under a /96 NAT64 prefix (RFC 6052 §2.2). */
export function synthesizeNat64 (prefix: Uint8Array, ipv4: string): string {
  return ipv6Text(Uint8Array.from([...prefix.slice(0, 12), ...ipv4.split('.').map(Number)]))
}

/** How a whole relay's addresses were resolved, for `BootstrapStatus.resolvedVia`. */
export function overallVia (list: ReadonlyArray<Pick<AddrResolution, 'via'>>): ResolvedVia {
  if (list.some(r => r.via === 'doh')) return 'doh'
  if (list.some(r => r.via === 'os' || r.via === 'at-connect')) return 'os'
  return 'literal'
}

/** The system resolver: getaddrinfo (hosts file, nsswitch, resolv.conf) for addresses, c-ares for TXT. */
export const systemLookup: OsLookup = async (name, kind, { signal }) => {
  if (kind === 'TXT') {
    const resolver = new dnsPromises.Resolver({ timeout: 1_000, tries: 1 })
    const cancel = (): void => { resolver.cancel() }
    signal.addEventListener('abort', cancel, { once: true })
    try {
      const chunks = await resolver.resolveTxt(name)
      return { records: chunks.map(c => c.join('')) }
    } finally {
      signal.removeEventListener('abort', cancel)
    }
  }
  const found = await dnsPromises.lookup(name, { family: kind === 'A' ? 4 : 6, all: true })
  return { records: found.map(f => f.address) }
}

function recordText (data: unknown): string {
  if (typeof data === 'string') return data.replace(/^"|"$/g, '')
  // dns-packet gives TXT data as an array of byte strings (RFC 1035 §3.3.14: one record, several chunks)
  if (Array.isArray(data)) return data.map(d => typeof d === 'string' ? d : new TextDecoder().decode(d as Uint8Array)).join('')
  if (data instanceof Uint8Array) return new TextDecoder().decode(data)
  return ''
}

function isLocalName (name: string): boolean {
  const n = name.toLowerCase().replace(/\.$/, '')
  return n === 'localhost' || n.endsWith('.localhost')
}

/** Addresses filtering resolvers answer for blocked names (RFC 8499 "sinkhole"). */
function isSinkhole (ip: string): boolean {
  return ip === '0.0.0.0' || ip === '::' || ip === '::1' || ip.startsWith('127.')
}

function describeOsError (err: unknown, timeoutMs: number): string {
  const e = err as { name?: string, code?: string, message?: string } | undefined
  if (e?.name === 'TimeoutError') return `no answer within ${(timeoutMs / 1000).toFixed(1)} s (port 53 filtered?)`
  switch (e?.code) {
    case 'ENOTFOUND': return 'no such name (ENOTFOUND; a filtering resolver may answer this for blocked names)'
    case 'EAI_AGAIN': return 'resolver unreachable or not answering (EAI_AGAIN)'
    case 'ECONNREFUSED': return 'resolver refused the query (ECONNREFUSED; no nameserver configured?)'
    case 'ETIMEOUT': return 'resolver did not answer (ETIMEOUT; port 53 filtered?)'
    case 'ENODATA': return 'no record of that type (ENODATA)'
    case 'ESERVFAIL': return 'resolver failed (SERVFAIL)'
    case 'EREFUSED': return 'resolver refused the query (REFUSED)'
  }
  return `${e?.code != null ? `${e.code}: ` : ''}${e?.message ?? String(err)}`
}

function describeDohError (err: unknown, timeoutMs: number): string {
  const e = err as { name?: string, message?: string, cause?: { code?: string, message?: string } } | undefined
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return `no answer within ${(timeoutMs / 1000).toFixed(1)} s`
  // fetch hides the socket/TLS error in `cause`
  const cause = e?.cause
  if (cause != null) return `${e?.message ?? 'failed'}: ${cause.code != null ? `${cause.code} ` : ''}${cause.message ?? ''}`.trim()
  return e?.message ?? String(err)
}
