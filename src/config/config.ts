import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { readFileSync } from 'node:fs'
import { availableParallelism, totalmem } from 'node:os'
import { peerIdFromString } from '@libp2p/peer-id'
import { ConfigError, InvalidMultiaddrError } from '../core/errors.ts'
import { DATA_DIR_ENV, dataDirPaths, resolveDataDir } from './data-dir.ts'
import { parseCidr, type Cidr } from './cidr.ts'
import { DEFAULT_DOH_ENDPOINTS, dohEndpointProblem } from './doh.ts'
import { unknownConfigKeys, type UnknownConfigKey } from './config-keys.ts'
import { loadMetricsEndpoint, readMetricsKeys, type MetricsEndpoint } from './metrics-endpoint.ts'
import { parseRunHours, type RunHours } from './run-hours.ts'

/**
 * One typed, frozen config per role, merged once at the edge:
 * flag > environment (`WORLDCOMPUTE_*`) > config file in the data dir > built-in default.
 * Every error names where the bad value came from.
 */

export type ValueSource = 'flag' | 'env' | 'file' | 'default'

export const BOOTSTRAP_ENV = 'WORLDCOMPUTE_BOOTSTRAP'
/** DNS-over-HTTPS endpoints, comma-separated (same precedence as the bootstrap list) */
export const DOH_ENV = 'WORLDCOMPUTE_DOH'
export const DEFAULT_API_PORT = 7767

/**
 * No public relays exist for this project yet, so the built-in bootstrap list
 * is empty rather than pointing at somebody else's infrastructure (the earlier
 * implementation dialled libp2p's public bootstrap list, which is not a relay
 * network for us). The daemon says so loudly when the list is empty.
 */
export const DEFAULT_BOOTSTRAP: readonly string[] = []

export const DEFAULT_DAEMON_LISTEN: readonly string[] = [
  '/ip4/0.0.0.0/tcp/0',
  '/ip4/0.0.0.0/udp/0/quic-v1',
  '/p2p-circuit'
]

/**
 * Every transport on both families: IPv6-only donors (mobile networks,
 * some campuses) reach a relay only over IPv6. A host without IPv6 binds
 * the IPv4 ones alone (libp2p skips IPv6 when all of it fails).
 */
export const DEFAULT_RELAY_LISTEN: readonly string[] = [
  '/ip4/0.0.0.0/tcp/4001',
  '/ip4/0.0.0.0/udp/4001/quic-v1',
  '/ip4/0.0.0.0/tcp/4002/ws',
  '/ip6/::/tcp/4001',
  '/ip6/::/udp/4001/quic-v1',
  '/ip6/::/tcp/4002/ws'
]

/** Relay limits sized for jobs (js-libp2p's default is 2 min / 128 KiB per relayed connection). */
export interface RelayLimits extends RelayAdmissionLimits {
  readonly dataLimitBytes: number
  readonly durationLimitMs: number
  readonly maxReservations: number
  readonly reservationTtlMs: number
  readonly maxConnections: number
  readonly inboundConnectionThresholdPerHost: number
  readonly maxHopStreamsPerPeer: number
  /** HTTPS poll sessions (the transport for networks whose proxy passes no WebSocket) open at once */
  readonly maxPollSessions: number
  /** HTTPS poll sessions open at once from one IP (IPv4 address, IPv6 /64) */
  readonly maxPollSessionsPerIp: number
}

/**
 * What one address or one identity may hold on a relay, so identities that
 * cost nothing cannot fill it. "Per IP" is per IPv4 address and per IPv6 /64
 * (one subscriber's prefix), as the relay sees the connection.
 */
export interface RelayAdmissionLimits {
  readonly maxReservationsPerIp: number
  readonly maxConnectionsPerIp: number
  /** relayed connections whose either end connects from one IP */
  readonly maxCircuitsPerIp: number
  readonly maxConnectionsPerPeer: number
  /** relayed connections one peer is an end of, as source or destination */
  readonly maxCircuitsPerPeer: number
  /** how long a reservation outlives its holder's last connection (a donor reconnecting within it keeps its slot) */
  readonly reservationGraceMs: number
  /** addresses the per-IP limits do not apply to (the per-peer limits still do) */
  readonly perIpExempt: readonly Cidr[]
}

/**
 * The defaults fit a NAT with a few dozen donors behind one address (a home,
 * an office, the lab's sites) while one host with throw-away identities holds
 * 32 of the 1024 slots at most. Loopback is exempt: a relay sees loopback
 * peers only from its own machine (tests, a local mesh, the demo).
 */
export const DEFAULT_ADMISSION_LIMITS: RelayAdmissionLimits = Object.freeze({
  maxReservationsPerIp: 32,
  /** a donor holds one connection to its relay; brokers and re-dials need a few more */
  maxConnectionsPerIp: 64,
  maxCircuitsPerIp: 256,
  maxConnectionsPerPeer: 8,
  /** a source is also bounded by maxHopStreamsPerPeer on each connection */
  maxCircuitsPerPeer: 64,
  /**
   * a donor notices a restarted relay within 3.5 s (FIN, or QUIC's idle
   * timeout), retries after 0.5, 1 and 2 s and a dial attempt may take 5 s:
   * 15 s covers a reconnect after a blip (a black-holed TCP path takes its
   * donor ~17 s to notice, so its reservation may be gone by then), while a throw-away identity that leaves frees its slot within 15 s
   * instead of the 2 h TTL
   */
  reservationGraceMs: 15_000,
  perIpExempt: Object.freeze([parseCidr('127.0.0.0/8', 'default'), parseCidr('::1/128', 'default')])
})

export const DEFAULT_RELAY_LIMITS: RelayLimits = Object.freeze({
  dataLimitBytes: 64 * 1024 * 1024,
  durationLimitMs: 60 * 60 * 1000,
  maxReservations: 1024,
  reservationTtlMs: 2 * 60 * 60 * 1000,
  maxConnections: 4096,
  /** inbound connection attempts per second from one host before it is refused */
  inboundConnectionThresholdPerHost: 10,
  /** concurrent hop streams one peer may open (reservations + circuit requests) */
  maxHopStreamsPerPeer: 32,
  /**
   * a poll session holds a request open for up to 10 s and buffers up to
   * 4 MiB downstream: 1024 sessions is one per reservation slot, and 32 per
   * IP matches maxReservationsPerIp (a NATed office behind one proxy)
   */
  maxPollSessions: 1024,
  maxPollSessionsPerIp: 32,
  ...DEFAULT_ADMISSION_LIMITS
})

export interface ConfigFile {
  bootstrap?: string[]
  /** DNS-over-HTTPS endpoints (RFC 8484 URLs) */
  doh?: string[]
  listen?: string[]
  announce?: string[]
  apiPort?: number
  /** address ranges (CIDR) to treat as public, for private deployments */
  publicRanges?: string[]
  /** drop relay paths whose TLS a middlebox re-signs (daemon) */
  refuseIntercepted?: boolean
  /** a proxy auto-config (PAC) URL, http://, https:// or file:// (daemon, doctor) */
  proxyPac?: string
  /** the relay's admission limits (relay); each key as the flag of the same name */
  relayLimits?: RelayLimitsFile
  /** the Prometheus endpoint, "HOST:PORT" (daemon, relay) */
  metrics?: string
  /** serve metrics on a non-loopback host */
  metricsAllowRemote?: boolean
  /** donor controls (daemon): share of one core jobs may use, percent 1–100 */
  cpuLimit?: number
  /** donor controls (daemon): suspend jobs while other programs use more than this share of the machine, percent 1–100 */
  suspendWhenBusy?: number
  /** donor controls (daemon): the local-time window jobs run in, "18-08" */
  runHours?: string
  /** map the listen ports at the home router with PCP, NAT-PMP or UPnP IGD (daemon) */
  portMapping?: boolean
}

/** `"relayLimits"` in config.json: counts as numbers, the grace as a duration ("15s") or ms. */
export interface RelayLimitsFile {
  maxReservations?: number
  maxReservationsPerIp?: number
  maxConnectionsPerIp?: number
  maxCircuitsPerIp?: number
  maxConnectionsPerPeer?: number
  maxCircuitsPerPeer?: number
  maxPollSessions?: number
  maxPollSessionsPerIp?: number
  reservationGrace?: string | number
  perIpExempt?: string[]
}

export interface CommonFlags {
  dataDir?: string
  bootstrap?: string[]
  listen?: string[]
  /** --public-range CIDR, repeatable */
  publicRanges?: string[]
  /** --metrics HOST:PORT */
  metrics?: string
  /** --metrics-allow-remote */
  metricsAllowRemote?: boolean
}

export interface DaemonFlags extends CommonFlags {
  /** --doh URL, repeatable */
  doh?: string[]
  apiPort?: string
  noExecute?: boolean
  maxJobs?: string
  maxJobMemory?: string
  maxDeadline?: string
  /** --max-payload SIZE: module + input + directories of one job */
  maxPayload?: string
  /** --content-cache SIZE: the donor's on-disk store of big modules and inputs fetched by CID */
  contentCache?: string
  memoryBudget?: string
  maxTasksPerBroker?: string
  /** --refuse-intercepted */
  refuseIntercepted?: boolean
  /** --proxy-pac URL */
  proxyPac?: string
  /** --no-direct: keep every peer relayed (no direct dial of public addresses, no WebRTC) */
  noDirect?: boolean
  /** --replica-network-prefix V4,V6: no two replicas of a job in one IPv4 /V4 or IPv6 /V6 network */
  replicaNetworkPrefix?: string
  /** --keep-jobs N: finished jobs the broker's job store keeps */
  keepJobs?: string
  /** --cpu-limit PERCENT */
  cpuLimit?: string
  /** --suspend-when-busy PERCENT */
  suspendWhenBusy?: string
  /** --run-hours START-END */
  runHours?: string
  /** --no-port-mapping: never ask the home router to map the listen ports */
  noPortMapping?: boolean
}

/** Finished jobs the broker's job store keeps by default: a batch of 10,000 inputs fits whole. */
export const DEFAULT_KEEP_JOBS = 10_000

/**
 * The donor's content store of big modules and inputs fetched by CID, by
 * default: a few jobs' 200 MiB inputs, kept for the next job that names them.
 */
export const DEFAULT_CONTENT_CACHE_BYTES = 2 * 1024 * 1024 * 1024

/** What a donor offers: the maxima a job may ask for, and how many run at once. */
export interface DonorLimits {
  readonly execute: boolean
  readonly maxConcurrentJobs: number
  /** per-job memory maximum, bytes */
  readonly maxJobMemoryBytes: number
  /** per-job deadline maximum, ms */
  readonly maxDeadlineMs: number
  /** per-job payload maximum (module + input + directories), bytes */
  readonly maxPayloadBytes: number
  /** the content store of big modules and inputs fetched by CID, on disk, bytes (`--content-cache`, default 2 GiB) */
  readonly contentCacheBytes: number
  /** memory all running jobs together may claim, bytes */
  readonly memoryBudgetBytes: number
  /** tasks one broker may hold on this donor at once; absent: every slot (`--max-tasks-per-broker`) */
  readonly maxTasksPerBroker?: number
  /** share of one core jobs together may use on average, percent (`--cpu-limit`; 100: no limit) */
  readonly cpuLimit: number
  /** other programs' share of the machine above which jobs are suspended, percent (`--suspend-when-busy`); absent: off */
  readonly suspendWhenBusy?: number
  /** the local-time window jobs run in (`--run-hours`); absent: always */
  readonly runHours?: RunHours
}

export interface DaemonConfig {
  readonly dataDir: string
  readonly bootstrap: readonly Multiaddr[]
  readonly bootstrapSource: ValueSource
  /** DNS-over-HTTPS endpoints tried in order when the OS resolver fails on a bootstrap name */
  readonly doh: readonly string[]
  readonly dohSource: ValueSource
  readonly listen: readonly Multiaddr[]
  readonly listenSource: ValueSource
  /** ranges treated as public although js-libp2p calls them private (address-scope.ts) */
  readonly publicRanges: readonly Cidr[]
  readonly apiPort: number
  readonly apiPortSource: ValueSource
  readonly donor: DonorLimits
  /** drop relay paths whose TLS is re-signed by a middlebox instead of only reporting them (flag > config file > false) */
  readonly refuseIntercepted: boolean
  /** the PAC file named by --proxy-pac (flag) or "proxyPac" (config); absent: WPAD when direct dials fail */
  readonly proxyPac?: Readonly<{ url: string, source: 'flag' | 'config' }>
  /** direct upgrades of relayed peers (public address, WebRTC); false with --no-direct */
  readonly direct: boolean
  /** map the listen ports at the home router (PCP, NAT-PMP, UPnP IGD); false with --no-port-mapping or "portMapping": false */
  readonly portMapping: boolean
  /** how much of an observed address names a network when placing replicas (default /24 and /48) */
  readonly replicaNetworkPrefix: Readonly<{ ipv4: number, ipv6: number }>
  /** where /metrics is served; absent: no metrics (the default) */
  readonly metrics?: MetricsEndpoint
  /** finished jobs the job store keeps, newest first; older ones are deleted with their outputs (`--keep-jobs`, default 10000) */
  readonly keepJobs: number
  /** where each setting without its own `…Source` field came from, for `worldcompute config` */
  readonly sources: DaemonConfigSources
  /** top-level keys of config.json no role reads, logged as a WARN at start */
  readonly unknownKeys: readonly UnknownConfigKey[]
  /** the config file read (it may not exist) */
  readonly configFile: string
}

export type DaemonConfigSources = Readonly<Record<'dataDir' | 'publicRanges' | 'refuseIntercepted' | 'direct' | 'replicaNetworkPrefix' | 'execute' | 'maxConcurrentJobs' | 'maxJobMemory' | 'maxDeadline' | 'maxPayload' | 'contentCache' | 'memoryBudget' | 'maxTasksPerBroker' | 'metrics' | 'keepJobs' | 'cpuLimit' | 'suspendWhenBusy' | 'runHours' | 'portMapping', ValueSource>>

export interface RelayFlags extends CommonFlags {
  announce?: string[]
  tlsCert?: string
  tlsKey?: string
  dataLimit?: string
  durationLimit?: string
  maxReservations?: string
  maxReservationsPerIp?: string
  maxConnectionsPerIp?: string
  maxCircuitsPerIp?: string
  maxConnectionsPerPeer?: string
  maxCircuitsPerPeer?: string
  maxPollSessions?: string
  maxPollSessionsPerIp?: string
  /** --reservation-grace D */
  reservationGrace?: string
  /** --per-ip-exempt CIDR, repeatable; "none" exempts nothing */
  perIpExempt?: string[]
  /** --stun-port N, at most twice (primary, alternate) */
  stunPorts?: string[]
  /** --no-stun */
  noStun?: boolean
}

/** The relay's STUN responder ports by default (RFC 5389 §18.4 port, and the next one for RFC 5780 change-port). */
export const DEFAULT_STUN_PORTS: readonly number[] = [3478, 3479]

export interface RelayConfig {
  readonly dataDir: string
  readonly listen: readonly Multiaddr[]
  readonly announce: readonly Multiaddr[]
  readonly bootstrap: readonly Multiaddr[]
  readonly tls?: { readonly certFile: string, readonly keyFile: string }
  readonly limits: RelayLimits
  readonly publicRanges: readonly Cidr[]
  /** STUN responder ports, primary first; empty: no responder (--no-stun) */
  readonly stunPorts: readonly number[]
  /** where /metrics is served; absent: no metrics (the default) */
  readonly metrics?: MetricsEndpoint
  /** top-level keys of config.json no role reads, logged as a WARN at start */
  readonly unknownKeys: readonly UnknownConfigKey[]
  /** the config file read (it may not exist) */
  readonly configFile: string
}

export function parseMultiaddr (value: string, source: string): Multiaddr {
  const text = value.trim()
  if (!text.startsWith('/')) {
    throw new InvalidMultiaddrError(source, value, { cause: new Error('a multiaddr starts with "/", e.g. /ip4/203.0.113.7/tcp/4001/p2p/12D3KooW…') })
  }
  try {
    return multiaddr(text)
  } catch (err) {
    throw new InvalidMultiaddrError(source, value, { cause: err })
  }
}

export function parseMultiaddrs (values: readonly string[], source: string): Multiaddr[] {
  return values.map(v => parseMultiaddr(v, source))
}

/** Splits the env form (`a,b,c`, whitespace allowed) into values. */
export function splitList (value: string): string[] {
  return value.split(/[,\s]+/).map(s => s.trim()).filter(s => s !== '')
}

export function readConfigFile (path: string): ConfigFile {
  return readConfigFileNoting(path).file
}

/** The config file's settings, and the top-level keys in it that no role reads (a mistyped "bootstap"). */
export function readConfigFileNoting (path: string): { file: ConfigFile, unknownKeys: UnknownConfigKey[] } {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { file: {}, unknownKeys: [] }
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`, { cause: err })
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${(err as Error).message}`, { cause: err })
  }
  if (parsed == null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError(`config file ${path} must hold a JSON object`)
  }
  const obj = parsed as Record<string, unknown>
  return { file: readKnownKeys(obj, path), unknownKeys: unknownConfigKeys(obj) }
}

function readKnownKeys (obj: Record<string, unknown>, path: string): ConfigFile {
  const out: ConfigFile = {}
  for (const key of ['bootstrap', 'listen', 'announce', 'doh'] as const) {
    const v = obj[key]
    if (v === undefined) continue
    if (!Array.isArray(v) || !v.every(x => typeof x === 'string')) {
      throw new ConfigError(`config file ${path}: "${key}" must be an array of ${key === 'doh' ? 'URL' : 'multiaddr'} strings`)
    }
    out[key] = v as string[]
  }
  if (obj.publicRanges !== undefined) {
    if (!Array.isArray(obj.publicRanges) || !obj.publicRanges.every(x => typeof x === 'string')) {
      throw new ConfigError(`config file ${path}: "publicRanges" must be an array of CIDR strings such as "10.0.0.0/8"`)
    }
    out.publicRanges = obj.publicRanges as string[]
  }
  if (obj.refuseIntercepted !== undefined) {
    if (typeof obj.refuseIntercepted !== 'boolean') throw new ConfigError(`config file ${path}: "refuseIntercepted" must be true or false`)
    out.refuseIntercepted = obj.refuseIntercepted
  }
  if (obj.apiPort !== undefined) {
    if (typeof obj.apiPort !== 'number') throw new ConfigError(`config file ${path}: "apiPort" must be a number`)
    out.apiPort = obj.apiPort
  }
  if (obj.relayLimits !== undefined) out.relayLimits = readRelayLimitsFile(obj.relayLimits, path)
  for (const key of ['cpuLimit', 'suspendWhenBusy'] as const) {
    if (obj[key] === undefined) continue
    if (typeof obj[key] !== 'number') throw new ConfigError(`config file ${path}: "${key}" must be a number of percent, 1–100`)
    out[key] = obj[key]
  }
  if (obj.runHours !== undefined) {
    if (typeof obj.runHours !== 'string') throw new ConfigError(`config file ${path}: "runHours" must be a string such as "18-08"`)
    out.runHours = obj.runHours
  }
  if (obj.proxyPac !== undefined) {
    if (typeof obj.proxyPac !== 'string') throw new ConfigError(`config file ${path}: "proxyPac" must be a URL string (http://, https:// or file://)`)
    out.proxyPac = obj.proxyPac
  }
  if (obj.portMapping !== undefined) {
    if (typeof obj.portMapping !== 'boolean') throw new ConfigError(`config file ${path}: "portMapping" must be true or false`)
    out.portMapping = obj.portMapping
  }
  return { ...out, ...readMetricsKeys(obj, path) }
}

const RELAY_LIMIT_COUNT_KEYS = ['maxReservations', 'maxReservationsPerIp', 'maxConnectionsPerIp', 'maxCircuitsPerIp', 'maxConnectionsPerPeer', 'maxCircuitsPerPeer', 'maxPollSessions', 'maxPollSessionsPerIp'] as const

function readRelayLimitsFile (value: unknown, path: string): RelayLimitsFile {
  const where = `config file ${path}: "relayLimits"`
  if (value == null || typeof value !== 'object' || Array.isArray(value)) throw new ConfigError(`${where} must be an object such as {"maxReservationsPerIp": 32}`)
  const obj = value as Record<string, unknown>
  const known = new Set<string>([...RELAY_LIMIT_COUNT_KEYS, 'reservationGrace', 'perIpExempt'])
  const unknown = Object.keys(obj).filter(k => !known.has(k))
  if (unknown.length > 0) throw new ConfigError(`${where}: unknown key(s) ${unknown.join(', ')} (known: ${[...known].join(', ')})`)
  const out: RelayLimitsFile = {}
  for (const key of RELAY_LIMIT_COUNT_KEYS) {
    const v = obj[key]
    if (v === undefined) continue
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) throw new ConfigError(`${where}.${key} must be a whole number of at least 1, got ${JSON.stringify(v)}`)
    out[key] = v
  }
  const grace = obj.reservationGrace
  if (grace !== undefined) {
    if (typeof grace !== 'string' && (typeof grace !== 'number' || !Number.isFinite(grace) || grace < 0)) throw new ConfigError(`${where}.reservationGrace must be a duration such as "15s" or a number of ms`)
    out.reservationGrace = grace
  }
  const exempt = obj.perIpExempt
  if (exempt !== undefined) {
    if (!Array.isArray(exempt) || !exempt.every(x => typeof x === 'string')) throw new ConfigError(`${where}.perIpExempt must be an array of CIDR strings such as "10.0.0.0/8"`)
    out.perIpExempt = exempt as string[]
  }
  return out
}

function pick<T> (flag: T | undefined, env: T | undefined, file: T | undefined, def: T): { value: T, source: ValueSource } {
  if (flag !== undefined) return { value: flag, source: 'flag' }
  if (env !== undefined) return { value: env, source: 'env' }
  if (file !== undefined) return { value: file, source: 'file' }
  return { value: def, source: 'default' }
}

function nonEmpty (list: string[] | undefined): string[] | undefined {
  return list != null && list.length > 0 ? list : undefined
}

export function parsePort (value: string | number, source: string): number {
  // Number('') and Number(' ') are 0: a blank value must not silently mean "pick a free port"
  const n = typeof value === 'number' ? value : (/^\d+$/.test(value.trim()) ? Number(value) : NaN)
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    throw new ConfigError(`invalid port for ${source}: "${value}" (expected 0–65535)`)
  }
  return n
}

/** `publicRanges`: flag > config file > none; each value checked, the error naming its source. */
export function loadPublicRanges (flags: readonly string[] | undefined, file: readonly string[] | undefined): Cidr[] {
  const picked = pick(flags != null && flags.length > 0 ? [...flags] : undefined, undefined, file != null ? [...file] : undefined, [] as string[])
  const name = picked.source === 'flag' ? '--public-range' : 'config.json "publicRanges"'
  return picked.value.map(v => parseCidr(v, name))
}

/** `--stun-port` (at most two, distinct) or the defaults; none with --no-stun. */
export function loadStunPorts (flags: readonly string[] | undefined, noStun: boolean | undefined): number[] {
  if (noStun === true) {
    if (flags != null && flags.length > 0) throw new ConfigError('--no-stun and --stun-port contradict each other: give one of them')
    return []
  }
  if (flags == null || flags.length === 0) return [...DEFAULT_STUN_PORTS]
  const ports = flags.flatMap(v => v.split(',')).map(v => parsePort(v, '--stun-port'))
  if (ports.length > 2) throw new ConfigError(`--stun-port takes at most two ports (primary and alternate), got ${ports.length}: ${ports.join(', ')}`)
  if (ports.some(p => p === 0)) throw new ConfigError('--stun-port 0 is not a port donors can be told; use --no-stun to switch the STUN responder off')
  if (ports.length === 2 && ports[0] === ports[1]) throw new ConfigError(`--stun-port: the two ports must differ (both are ${ports[0]})`)
  return ports
}

export function loadDaemonConfig (flags: DaemonFlags, env: NodeJS.ProcessEnv = process.env): DaemonConfig {
  const dataDir = resolveDataDir(flags.dataDir, env)
  const configFile = dataDirPaths(dataDir).configFile
  const { file: fileConfig, unknownKeys } = readConfigFileNoting(configFile)
  const envBootstrap = env[BOOTSTRAP_ENV] != null && env[BOOTSTRAP_ENV] !== '' ? splitList(env[BOOTSTRAP_ENV]) : undefined

  const bootstrap = pick(nonEmpty(flags.bootstrap), envBootstrap, fileConfig.bootstrap, [...DEFAULT_BOOTSTRAP])
  const bootstrapName = { flag: '--bootstrap', env: BOOTSTRAP_ENV, file: 'config.json "bootstrap"', default: 'built-in bootstrap list' }[bootstrap.source]
  const doh = loadDoh(flags, env, fileConfig)
  const listen = pick(nonEmpty(flags.listen), undefined, fileConfig.listen, [...DEFAULT_DAEMON_LISTEN])
  const listenName = { flag: '--listen', env: 'env', file: 'config.json "listen"', default: 'default listen list' }[listen.source]
  const envApiPort = env.WORLDCOMPUTE_API_PORT != null && env.WORLDCOMPUTE_API_PORT.trim() !== '' ? env.WORLDCOMPUTE_API_PORT : undefined
  const apiPort = pick<string | number>(flags.apiPort, envApiPort, fileConfig.apiPort, DEFAULT_API_PORT)
  const apiPortName = { flag: '--api-port', env: 'WORLDCOMPUTE_API_PORT', file: 'config.json "apiPort"', default: 'default' }[apiPort.source]
  const refuseIntercepted = pick(flags.refuseIntercepted === true ? true : undefined, undefined, fileConfig.refuseIntercepted, false)

  return Object.freeze({
    dataDir,
    bootstrap: Object.freeze(parseBootstrap(bootstrap.value, bootstrapName)),
    bootstrapSource: bootstrap.source,
    doh: Object.freeze([...doh.value]),
    dohSource: doh.source,
    listen: Object.freeze(parseMultiaddrs(listen.value, listenName)),
    listenSource: listen.source,
    publicRanges: Object.freeze(loadPublicRanges(flags.publicRanges, fileConfig.publicRanges)),
    apiPort: parsePort(apiPort.value, apiPortName),
    apiPortSource: apiPort.source,
    refuseIntercepted: refuseIntercepted.value,
    direct: flags.noDirect !== true,
    portMapping: flags.noPortMapping === true ? false : fileConfig.portMapping ?? true,
    replicaNetworkPrefix: Object.freeze(parseNetworkPrefix(flags.replicaNetworkPrefix ?? '24,48', '--replica-network-prefix')),
    keepJobs: flags.keepJobs != null ? parsePositiveInt(flags.keepJobs, '--keep-jobs') : DEFAULT_KEEP_JOBS,
    donor: Object.freeze({ ...loadDonorLimits(flags), ...loadDonorControls(flags, fileConfig) }),
    ...metricsOf(flags, fileConfig),
    ...proxyPacOf(flags, fileConfig),
    sources: Object.freeze(daemonSources(flags, env, fileConfig, refuseIntercepted.source)),
    unknownKeys: Object.freeze(unknownKeys),
    configFile
  })
}

/** The PAC URL of --proxy-pac, else config.json "proxyPac"; http://, https:// or file:// only. */
function proxyPacOf (flags: DaemonFlags, file: ConfigFile): { proxyPac?: { url: string, source: 'flag' | 'config' } } {
  const given = flags.proxyPac != null && flags.proxyPac !== '' ? { url: flags.proxyPac, source: 'flag' as const } : file.proxyPac != null ? { url: file.proxyPac, source: 'config' as const } : undefined
  if (given == null) return {}
  const where = given.source === 'flag' ? '--proxy-pac' : 'config.json "proxyPac"'
  let url: URL
  try {
    url = new URL(given.url)
  } catch (err) {
    throw new ConfigError(`${where}: "${redactUserInfo(given.url)}" is not a URL (expected http://…, https://… or file:///…)`, { cause: err })
  }
  if (!['http:', 'https:', 'file:'].includes(url.protocol)) throw new ConfigError(`${where}: unsupported scheme "${url.protocol}//" (a PAC is fetched over http://, https:// or read from file://)`)
  return { proxyPac: Object.freeze(given) }
}

/** A URL's user-info replaced by `***`, for messages. */
function redactUserInfo (url: string): string {
  return url.replace(/\/\/[^/@]*@/, '//***@')
}

/** `metrics` when --metrics or config.json asks for it. */
function metricsOf (flags: CommonFlags, file: ConfigFile): { metrics?: MetricsEndpoint } {
  const metrics = loadMetricsEndpoint({ flag: flags.metrics, allowRemoteFlag: flags.metricsAllowRemote, file: file.metrics, fileAllowRemote: file.metricsAllowRemote })
  return metrics != null ? { metrics } : {}
}

function loadDoh (flags: DaemonFlags, env: NodeJS.ProcessEnv, fileConfig: ConfigFile): { value: string[], source: ValueSource } {
  const envDoh = env[DOH_ENV] != null && env[DOH_ENV] !== '' ? splitList(env[DOH_ENV]) : undefined
  const doh = pick(nonEmpty(flags.doh), envDoh, fileConfig.doh, [...DEFAULT_DOH_ENDPOINTS])
  const dohName = { flag: '--doh', env: DOH_ENV, file: 'config.json "doh"', default: 'built-in DoH list' }[doh.source]
  for (const url of doh.value) {
    const problem = dohEndpointProblem(url)
    if (problem != null) throw new ConfigError(`invalid DNS-over-HTTPS endpoint for ${dohName}: "${url}": ${problem}`)
  }
  return doh
}

/** Bootstrap addresses must name the relay's PeerId, so the relay can be authenticated. */
function parseBootstrap (values: readonly string[], source: string): Multiaddr[] {
  const addrs = parseMultiaddrs(values, source)
  for (const [i, ma] of addrs.entries()) {
    const p2p = ma.getComponents().filter(c => c.name === 'p2p').pop()
    if (p2p == null) {
      throw new InvalidMultiaddrError(source, values[i], {
        cause: new Error('a bootstrap address must end in /p2p/<relay PeerId> so the relay can be authenticated')
      })
    }
    try {
      peerIdFromString(p2p.value ?? '')
    } catch (err) {
      throw new InvalidMultiaddrError(source, values[i], { cause: new Error(`"${p2p.value ?? ''}" is not a PeerId`, { cause: err }) })
    }
  }
  return addrs
}

/** --cpu-limit, --suspend-when-busy and --run-hours, each flag > config.json > default. */
function loadDonorControls (flags: DaemonFlags, file: ConfigFile): Pick<DonorLimits, 'cpuLimit' | 'suspendWhenBusy' | 'runHours'> {
  const cpuLimit = flags.cpuLimit != null ? parsePercent(flags.cpuLimit, '--cpu-limit') : file.cpuLimit != null ? parsePercent(file.cpuLimit, 'config.json "cpuLimit"') : 100
  const busy = flags.suspendWhenBusy ?? file.suspendWhenBusy
  const busySource = flags.suspendWhenBusy != null ? '--suspend-when-busy' : 'config.json "suspendWhenBusy"'
  const runHours = flags.runHours ?? file.runHours
  return {
    cpuLimit,
    ...(busy != null ? { suspendWhenBusy: parsePercent(busy, busySource) } : {}),
    ...(runHours != null ? { runHours: parseRunHours(runHours, flags.runHours != null ? '--run-hours' : 'config.json "runHours"') } : {})
  }
}

/** A whole percentage 1–100. */
export function parsePercent (value: string | number, source: string): number {
  const n = typeof value === 'number' ? value : Number(String(value).trim().replace(/%$/, ''))
  if (!Number.isInteger(n) || n < 1 || n > 100) throw new ConfigError(`${source} must be a whole percentage from 1 to 100, got "${String(value)}"`)
  return n
}

function loadDonorLimits (flags: DaemonFlags): Omit<DonorLimits, 'cpuLimit' | 'suspendWhenBusy' | 'runHours'> {
  return {
    execute: flags.noExecute !== true,
    // default: every core but one, at least one (the daemon itself needs a core)
    maxConcurrentJobs: flags.maxJobs != null ? parsePositiveInt(flags.maxJobs, '--max-jobs') : Math.max(1, availableParallelism() - 1),
    maxJobMemoryBytes: flags.maxJobMemory != null ? parseBytes(flags.maxJobMemory, '--max-job-memory') : 256 * 1024 * 1024,
    maxDeadlineMs: flags.maxDeadline != null ? parseDurationMs(flags.maxDeadline, '--max-deadline') : 10 * 60 * 1000,
    maxPayloadBytes: flags.maxPayload != null ? parseBytes(flags.maxPayload, '--max-payload') : 64 * 1024 * 1024,
    contentCacheBytes: flags.contentCache != null ? parseBytes(flags.contentCache, '--content-cache') : DEFAULT_CONTENT_CACHE_BYTES,
    // default: half the machine's memory, so jobs never push the donor's own work out
    memoryBudgetBytes: flags.memoryBudget != null ? parseBytes(flags.memoryBudget, '--memory-budget') : Math.floor(totalmem() / 2),
    ...(flags.maxTasksPerBroker != null ? { maxTasksPerBroker: parsePositiveInt(flags.maxTasksPerBroker, '--max-tasks-per-broker') } : {})
  }
}

function daemonSources (flags: DaemonFlags, env: NodeJS.ProcessEnv, file: ConfigFile, refuseIntercepted: ValueSource): DaemonConfigSources {
  const flagOr = (given: unknown): ValueSource => given != null && given !== false ? 'flag' : 'default'
  const envDataDir = env[DATA_DIR_ENV] != null && env[DATA_DIR_ENV] !== '' ? 'env' : 'default'
  return {
    dataDir: flags.dataDir != null && flags.dataDir !== '' ? 'flag' : envDataDir,
    publicRanges: nonEmpty(flags.publicRanges) != null ? 'flag' : file.publicRanges != null ? 'file' : 'default',
    refuseIntercepted,
    direct: flagOr(flags.noDirect),
    replicaNetworkPrefix: flagOr(flags.replicaNetworkPrefix),
    execute: flagOr(flags.noExecute),
    maxConcurrentJobs: flagOr(flags.maxJobs),
    maxJobMemory: flagOr(flags.maxJobMemory),
    maxDeadline: flagOr(flags.maxDeadline),
    maxPayload: flagOr(flags.maxPayload),
    contentCache: flagOr(flags.contentCache),
    memoryBudget: flagOr(flags.memoryBudget),
    maxTasksPerBroker: flagOr(flags.maxTasksPerBroker),
    metrics: flags.metrics != null ? 'flag' : file.metrics != null ? 'file' : 'default',
    keepJobs: flagOr(flags.keepJobs),
    cpuLimit: flags.cpuLimit != null ? 'flag' : file.cpuLimit != null ? 'file' : 'default',
    suspendWhenBusy: flags.suspendWhenBusy != null ? 'flag' : file.suspendWhenBusy != null ? 'file' : 'default',
    runHours: flags.runHours != null ? 'flag' : file.runHours != null ? 'file' : 'default',
    portMapping: flags.noPortMapping === true ? 'flag' : file.portMapping != null ? 'file' : 'default'
  }
}

/** One line of `worldcompute config`: a setting, its effective value and where it came from. */
export interface ConfigEntry {
  readonly key: string
  readonly value: unknown
  readonly source: ValueSource
}

/** The donor's effective settings, each with where it came from (flag > env > file > default). */
export function describeDaemonConfig (config: DaemonConfig): ConfigEntry[] {
  const s = config.sources
  const d = config.donor
  return [
    { key: 'dataDir', value: config.dataDir, source: s.dataDir },
    { key: 'bootstrap', value: config.bootstrap.map(String), source: config.bootstrapSource },
    { key: 'doh', value: [...config.doh], source: config.dohSource },
    { key: 'listen', value: config.listen.map(String), source: config.listenSource },
    { key: 'apiPort', value: config.apiPort, source: config.apiPortSource },
    { key: 'publicRanges', value: config.publicRanges.map(r => r.text), source: s.publicRanges },
    { key: 'refuseIntercepted', value: config.refuseIntercepted, source: s.refuseIntercepted },
    { key: 'proxyPac', value: config.proxyPac != null ? redactUserInfo(config.proxyPac.url) : null, source: config.proxyPac == null ? 'default' : config.proxyPac.source === 'flag' ? 'flag' : 'file' },
    { key: 'direct', value: config.direct, source: s.direct },
    { key: 'portMapping', value: config.portMapping, source: s.portMapping },
    { key: 'replicaNetworkPrefix', value: `${config.replicaNetworkPrefix.ipv4},${config.replicaNetworkPrefix.ipv6}`, source: s.replicaNetworkPrefix },
    { key: 'execute', value: d.execute, source: s.execute },
    { key: 'maxJobs', value: d.maxConcurrentJobs, source: s.maxConcurrentJobs },
    { key: 'maxJobMemory', value: `${d.maxJobMemoryBytes / 1024 / 1024}MiB`, source: s.maxJobMemory },
    { key: 'maxDeadline', value: `${d.maxDeadlineMs / 1000}s`, source: s.maxDeadline },
    { key: 'maxPayload', value: `${Math.round(d.maxPayloadBytes / 1024 / 1024)}MiB`, source: s.maxPayload },
    { key: 'contentCache', value: `${Math.round(d.contentCacheBytes / 1024 / 1024)}MiB`, source: s.contentCache },
    { key: 'memoryBudget', value: `${Math.round(d.memoryBudgetBytes / 1024 / 1024)}MiB`, source: s.memoryBudget },
    { key: 'maxTasksPerBroker', value: d.maxTasksPerBroker ?? 'every slot', source: s.maxTasksPerBroker },
    { key: 'metrics', value: config.metrics != null ? `${config.metrics.host}:${config.metrics.port}` : 'off', source: s.metrics },
    { key: 'metricsAllowRemote', value: config.metrics?.allowRemote ?? false, source: s.metrics },
    { key: 'keepJobs', value: config.keepJobs, source: s.keepJobs },
    { key: 'cpuLimit', value: `${d.cpuLimit}%`, source: s.cpuLimit },
    { key: 'suspendWhenBusy', value: d.suspendWhenBusy != null ? `${d.suspendWhenBusy}%` : 'off', source: s.suspendWhenBusy },
    { key: 'runHours', value: d.runHours?.text ?? 'always', source: s.runHours }
  ]
}

/** Parses `24,48`: the IPv4 prefix length (1–32), then the IPv6 one (1–128). */
export function parseNetworkPrefix (value: string, source: string): { ipv4: number, ipv6: number } {
  const m = /^\s*(\d{1,2})\s*,\s*(\d{1,3})\s*$/.exec(value)
  const ipv4 = Number(m?.[1])
  const ipv6 = Number(m?.[2])
  if (m == null || ipv4 < 1 || ipv4 > 32 || ipv6 < 1 || ipv6 > 128) throw new ConfigError(`invalid value for ${source}: "${value}" (expected IPv4,IPv6 prefix lengths, e.g. 24,48)`)
  return { ipv4, ipv6 }
}

export function parsePositiveInt (value: string, source: string): number {
  const n = /^\s*\d+\s*$/.test(value) ? Number(value) : NaN
  if (!Number.isSafeInteger(n) || n < 1) throw new ConfigError(`invalid value for ${source}: "${value}" (expected a whole number of at least 1)`)
  return n
}

export type SizeUnit = 'b' | 'kib' | 'mib' | 'gib' | 'kb' | 'mb' | 'gb'

/** Parses sizes such as `64MiB`, `1GiB`, `131072`; a plain number counts in `plainUnit` (bytes unless the flag says otherwise). */
export function parseBytes (value: string, source: string, plainUnit: SizeUnit = 'b'): number {
  const m = /^(\d+(?:\.\d+)?)\s*(b|kib|mib|gib|kb|mb|gb)?$/i.exec(value.trim())
  if (m == null) throw new ConfigError(`invalid size for ${source}: "${value}" (e.g. 64MiB)`)
  const mult: Record<SizeUnit, number> = { b: 1, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3, kb: 1e3, mb: 1e6, gb: 1e9 }
  return Math.round(Number(m[1]) * mult[(m[2] ?? plainUnit).toLowerCase() as SizeUnit])
}

/** Parses durations such as `1h`, `90s`, `500ms`, `2m`; a plain number is seconds. */
export function parseDurationMs (value: string, source: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/i.exec(value.trim())
  if (m == null) throw new ConfigError(`invalid duration for ${source}: "${value}" (e.g. 1h, 90s)`)
  const mult: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }
  return Math.round(Number(m[1]) * mult[(m[2] ?? 's').toLowerCase()])
}

/** The relay's admission limits (and `maxReservations`): flag > config.json "relayLimits" > default. */
export function loadAdmissionLimits (flags: RelayFlags, file: RelayLimitsFile): Partial<RelayLimits> {
  const out: Partial<Record<typeof RELAY_LIMIT_COUNT_KEYS[number], number>> = {}
  for (const key of RELAY_LIMIT_COUNT_KEYS) {
    const flag = flags[key]
    if (flag != null) out[key] = parsePositiveInt(flag, `--${key.replace(/[A-Z]/g, c => `-${c.toLowerCase()}`)}`)
    else if (file[key] != null) out[key] = file[key]
  }
  const grace = flags.reservationGrace != null
    ? parseDurationMs(flags.reservationGrace, '--reservation-grace')
    : typeof file.reservationGrace === 'string' ? parseDurationMs(file.reservationGrace, 'config.json "relayLimits.reservationGrace"') : file.reservationGrace
  const exempt = nonEmpty(flags.perIpExempt) != null
    ? { list: flags.perIpExempt ?? [], name: '--per-ip-exempt' }
    : file.perIpExempt != null ? { list: file.perIpExempt, name: 'config.json "relayLimits.perIpExempt"' } : undefined
  return {
    ...out,
    ...(grace != null ? { reservationGraceMs: grace } : {}),
    ...(exempt != null ? { perIpExempt: Object.freeze(parseExemptList(exempt.list, exempt.name)) } : {})
  }
}

/** CIDRs, with "none" for an empty list (the per-IP limits then apply to loopback too). */
function parseExemptList (values: readonly string[], source: string): Cidr[] {
  const list = values.flatMap(v => v.split(',')).map(v => v.trim()).filter(v => v !== '')
  if (list.length === 1 && list[0].toLowerCase() === 'none') return []
  return list.map(v => parseCidr(v, source))
}

export function loadRelayConfig (flags: RelayFlags, env: NodeJS.ProcessEnv = process.env): RelayConfig {
  const dataDir = resolveDataDir(flags.dataDir, env)
  const configFile = dataDirPaths(dataDir).configFile
  const { file: fileConfig, unknownKeys } = readConfigFileNoting(configFile)
  const listen = pick(nonEmpty(flags.listen), undefined, fileConfig.listen, [...DEFAULT_RELAY_LISTEN])
  const announce = pick(nonEmpty(flags.announce), undefined, fileConfig.announce, [])
  const envBootstrap = env[BOOTSTRAP_ENV] != null && env[BOOTSTRAP_ENV] !== '' ? splitList(env[BOOTSTRAP_ENV]) : undefined
  const bootstrap = pick(nonEmpty(flags.bootstrap), envBootstrap, fileConfig.bootstrap, [])

  if ((flags.tlsCert == null) !== (flags.tlsKey == null)) {
    throw new ConfigError('--tls-cert and --tls-key go together: give both, or neither')
  }
  const limits = {
    ...DEFAULT_RELAY_LIMITS,
    ...(flags.dataLimit != null ? { dataLimitBytes: parseBytes(flags.dataLimit, '--relay-data-limit') } : {}),
    ...(flags.durationLimit != null ? { durationLimitMs: parseDurationMs(flags.durationLimit, '--relay-duration-limit') } : {}),
    ...loadAdmissionLimits(flags, fileConfig.relayLimits ?? {})
  }
  const listenAddrs = parseMultiaddrs(listen.value, listen.source === 'flag' ? '--listen' : 'config.json "listen"')
  if (flags.tlsCert != null && !listenAddrs.some(ma => ma.toString().includes('/tls/ws') || ma.toString().endsWith('/wss'))) {
    listenAddrs.push(multiaddr('/ip4/0.0.0.0/tcp/443/tls/ws'), multiaddr('/ip6/::/tcp/443/tls/ws'))
  }
  return Object.freeze({
    dataDir,
    listen: Object.freeze(listenAddrs),
    announce: Object.freeze(parseMultiaddrs(announce.value, announce.source === 'flag' ? '--announce' : 'config.json "announce"')),
    bootstrap: Object.freeze(parseMultiaddrs(bootstrap.value, bootstrap.source === 'flag' ? '--bootstrap' : bootstrap.source === 'env' ? BOOTSTRAP_ENV : 'config.json "bootstrap"')),
    ...(flags.tlsCert != null && flags.tlsKey != null ? { tls: Object.freeze({ certFile: flags.tlsCert, keyFile: flags.tlsKey }) } : {}),
    limits: Object.freeze(limits),
    publicRanges: Object.freeze(loadPublicRanges(flags.publicRanges, fileConfig.publicRanges)),
    stunPorts: Object.freeze(loadStunPorts(flags.stunPorts, flags.noStun)),
    ...metricsOf(flags, fileConfig),
    unknownKeys: Object.freeze(unknownKeys),
    configFile
  })
}
