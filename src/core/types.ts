import type { JobLimits } from './job.ts'

/**
 * Plain data shared by every layer: no I/O, no libp2p imports. The API, the
 * CLI and the daemon all speak these shapes, so a field renamed here is a
 * breaking change for tools that drive `worldcompute … --json`.
 */

/** The transports a connection or dial attempt can use, as shown in `status` and telemetry. */
export const TRANSPORTS = ['tcp', 'quic', 'ws', 'wss', 'webrtc', 'circuit', 'unknown', 'https-poll'] as const
export type Transport = typeof TRANSPORTS[number]

/**
 * How far a dial got. Ordered: a failure "at noise" means DNS, any proxy
 * tunnel, TCP and any WebSocket upgrade already succeeded, which is what tells
 * a protocol-inspecting firewall ("SYN allowed, upgrade blocked") apart from a
 * port block. `proxy` is the CONNECT / SOCKS5 tunnel of a dial through a proxy.
 * A WebRTC dial (private-to-private, net/direct-paths) has its own two:
 * `signalling` (the SDP offer/answer over the relayed connection) and `ice`
 * (connectivity checks between the two NATs). `http` is the HTTPS poll
 * transport's session request, its counterpart of the WebSocket upgrade.
 */
export const DIAL_PHASES = ['dns', 'proxy', 'tcp-connect', 'tls', 'ws-upgrade', 'http', 'noise', 'muxer', 'protocol', 'reservation', 'signalling', 'ice'] as const
export type DialPhase = typeof DIAL_PHASES[number]

export type DialOutcome = 'success' | 'failure' | 'cancelled'

/**
 * Why a dial was made; `internal` is a dial libp2p made by itself (reconnect,
 * gossip); `dial-back` this node's AutoNAT server dialling an address another
 * peer asked it to check; `doctor` a probe of `worldcompute doctor` (each rung on its own).
 */
export type DialPurpose = 'bootstrap' | 'reservation' | 'ping' | 'dispatch' | 'upgrade' | 'internal' | 'doctor' | 'dial-back'

/** One outbound dial attempt, recorded once when it ends (success or not). */
export interface DialAttempt {
  /** ISO 8601 UTC time the attempt started */
  ts: string
  /** the multiaddr dialled, including `/p2p/<peer>` when known */
  target: string
  /** PeerId of the target when the address names one */
  peerId?: string
  transport: Transport
  /** the last phase the attempt reached (for a success: the last one it completed) */
  phase: DialPhase
  outcome: DialOutcome
  /** the cause in words, for a failure or a cancellation; for a success, what was reached */
  cause: string
  /** stable machine-readable cause, e.g. `ECONNREFUSED`, `TIMEOUT`, `TLS_UNTRUSTED` */
  code: string
  duration_ms: number
  purpose: DialPurpose
  /** the IP family of the address dialled (of the relay's, for a circuit); absent for an address by name */
  family?: AddrFamily
}

/** The IP family of a dialled address; names (`/dns4`, WebSocket-over-TLS names) have none. */
export type AddrFamily = 'ip4' | 'ip6'

export type Reachability = 'public' | 'private' | 'unknown'

/** How a home router is asked for a port mapping (src/net/port-mapping.ts). */
export type PortMappingProtocol = 'pcp' | 'natpmp' | 'upnp'
/** The step of port mapping that failed. */
export type PortMappingPhase = 'discover' | 'map' | 'external-address' | 'renew' | 'unmap'
/**
 * - `off`: `--no-port-mapping` / `"portMapping": false`
 * - `not-applicable`: no default gateway, or no TCP/QUIC listener on a private LAN address
 * - `discovering`: asking the gateway; `mapped`: a lease held; `failed`: every protocol failed or was refused
 * - `lost`: a lease ran out unrenewed (asked again later); `removed`: deleted at stop
 */
export type PortMappingState = 'off' | 'not-applicable' | 'discovering' | 'mapped' | 'failed' | 'lost' | 'removed'

/** One mapping held at the gateway. */
export interface PortMappingLease {
  transport: 'tcp' | 'udp'
  /** our LAN address and port, `10.1.0.2:4001` */
  internal: string
  /** the gateway's public address and port */
  external: string
  /** seconds granted; 0: until deleted */
  lifetimeSeconds: number
  /** ISO 8601; absent for a lease without end */
  expiresAt?: string
  /** ISO 8601: when it was granted or last renewed */
  renewedAt: string
  /** AutoNAT v2 dialled the external address back */
  confirmed: boolean
}

/** A failed port-mapping step, as logged. */
export interface PortMappingFailure {
  protocol: PortMappingProtocol
  gateway: string
  phase: PortMappingPhase
  /** PORT_MAPPING_NO_ANSWER, PORT_MAPPING_REFUSED, PORT_MAPPING_UNSUPPORTED, PORT_MAPPING_FAILED, PORT_MAPPING_LEASE_LOST */
  code: string
  cause: string
  /** ISO 8601 */
  at: string
}

/** `status --json`'s `portMapping`. */
export interface PortMappingStatus {
  state: PortMappingState
  /** the state in words */
  reason: string
  protocol?: PortMappingProtocol
  /** the default gateway asked */
  gateway?: string
  mappings: PortMappingLease[]
  /** the latest failures, newest last (a few) */
  failures: PortMappingFailure[]
}

/**
 * NAT mapping behaviour (RFC 4787 / RFC 5780 §4.3) as measured with STUN:
 * `none` (the mapped address is our own), the three RFC behaviours, `no-udp`
 * (no STUN server answered over UDP) or `unknown` (not measured yet).
 */
export const NAT_MAPPINGS = ['none', 'endpoint-independent', 'address-dependent', 'address-and-port-dependent', 'no-udp', 'unknown'] as const
export type NatMapping = typeof NAT_MAPPINGS[number]

/** NAT filtering behaviour (RFC 5780 §4.4); `unknown` when it could not be measured. */
export type NatFiltering = 'endpoint-independent' | 'address-dependent' | 'address-and-port-dependent' | 'unknown'

/** Whether UDP reaches the internet (a STUN server answered): tri-state. */
export type UdpState = 'yes' | 'no' | 'unknown'

/** The last STUN measurement, as `status` shows it. */
export interface NatReport {
  mapping: NatMapping
  filtering: NatFiltering
  udp: UdpState
  /** why the values are what they are, in words */
  reason: string
  /** our address as the STUN servers saw it (`ip:port`), when any answered */
  mappedAddress?: string
  /**
   * a symmetric NAT handing out ports in sequence: the step between the ports
   * of consecutive new flows (net/stun/classify.ts sequentialStep), so the
   * next ones can be predicted; absent for random allocation
   */
  portDelta?: number
  /** the STUN servers asked (`ip:port`) */
  servers: string[]
  /** when the measurement finished, ISO 8601 UTC; absent when it never ran */
  at?: string
  durationMs?: number
}

export interface RelayReservationStatus {
  peerId: string
  circuitAddr: string
  transport: Transport
  /** when the reservation was granted, ISO 8601 UTC */
  since: string
  /** why the dial ladder reached the relay over this transport, in words */
  reason?: string
  /** how the donor knows this relay: `bootstrap` (configured), `gossip` (its announcement) or `identify` */
  source?: 'bootstrap' | 'gossip' | 'identify'
  /** the address of the relay connection that holds the reservation */
  addr?: string
  /**
   * whether a middlebox re-signs TLS on this path (checked on `wss` paths: the
   * certificate seen against the one the relay publishes over Noise);
   * `unknown` when not checked or not over TLS
   */
  tlsIntercepted?: TlsInterception
  /** who re-signed the certificate (its issuer's name), when `tlsIntercepted` is `yes` */
  tlsInterceptor?: string
  /** the check's outcome in words */
  tlsCheck?: string
}

export type TlsInterception = 'yes' | 'no' | 'unknown'

/** One proxy from the environment, as `status` shows it. */
export interface ProxyStatus {
  /** the proxy URL with any user and password replaced by `***` */
  url: string
  kind: 'http' | 'https' | 'socks5' | 'socks5h'
  /** the environment variable it came from, e.g. `HTTPS_PROXY` */
  source: string
  /** which dials it serves: `wss`/`ws` WebSockets, `tcp` raw TCP (QUIC never can) */
  usedFor: Array<'wss' | 'ws' | 'tcp'>
  /** how many NO_PROXY rules exempt targets from it */
  noProxyRules: number
  /** a relay connection of this donor goes through it right now */
  inUse: boolean
  /** PeerIds of the relays reached through it */
  relays: string[]
  /** connections open through it now (relays and others) */
  tunnels: number
  /** what the proxy asked for and how we answered (src/net/proxy-auth.ts); absent until it asked, and from older daemons */
  auth?: ProxyAuthView
}

/** Authentication to one proxy as the daemon met it: the schemes offered, the one used, the outcome. */
export interface ProxyAuthView {
  /** the schemes the proxy's last 407 offered, as it named them (`NTLM`, `Negotiate`, `Basic`) */
  offered: string[]
  /** the scheme of the last successful authentication, else of the last attempt; absent when none could be tried */
  scheme?: 'basic' | 'ntlm' | 'negotiate'
  /** tunnels the proxy opened after authenticating us */
  passed: number
  /** tunnels refused for authentication */
  refused: number
  /** `passed`, or why the last refusal: no credentials, no scheme we can do, credentials rejected */
  last: 'passed' | 'required' | 'unsupported' | 'failed'
  /** PROXY_AUTH_REQUIRED / _UNSUPPORTED / _FAILED of the last refusal */
  code?: string
  /** the last refusal's cause (credentials redacted) */
  detail?: string
  /** ISO 8601 UTC of the last outcome */
  at: string
}

/**
 * Proxy auto-configuration (PAC) found by the network's own means (WPAD by
 * DNS or DHCP) or named by `--proxy-pac` / config "proxyPac", as `status`
 * and the doctor show it.
 */
export interface ProxyDiscoveryStatus {
  /**
   * `not-needed`: a proxy is configured, or no direct dial failed yet;
   * `running`: looking now; `found`: a PAC is in use; `not-found`: looked
   * everywhere, nothing; `failed`: a PAC was named or found but cannot be used
   */
  state: 'not-needed' | 'running' | 'found' | 'not-found' | 'failed'
  /** where the PAC came from */
  source?: 'flag' | 'config' | 'wpad-dhcp' | 'wpad-dns'
  /** the PAC's URL (credentials redacted) */
  url?: string
  /** every place looked at, in order: files read, URLs fetched, each with what it gave */
  looked: string[]
  /** why it failed or found nothing, in words */
  detail?: string
  /** what the PAC named for the addresses asked so far (the latest few), e.g. `PROXY 10.0.0.1:3128; DIRECT` */
  answers: Array<{ url: string, answer: string }>
}

/** A relay learned from the mesh (not in the bootstrap list) and what the donor does with it. */
export interface KnownRelayView {
  peerId: string
  source: 'gossip' | 'identify' | 'bootstrap'
  addrs: string[]
  /** `standby`: known, not needed now (enough reservations); `cooling-down`: failed, tried again at `retryAt` */
  state: 'reserved' | 'connecting' | 'connected' | 'backing-off' | 'standby' | 'cooling-down'
  retryAt?: string
  lastError?: string
}

export interface ConnectionStatus {
  peerId: string
  remoteAddr: string
  transport: Transport
  direct: boolean
}

/**
 * Whether this donor has, or tried to get, a direct connection to a peer it
 * met through a relay (direct upgrades: a public address dialled directly, or
 * private-to-private WebRTC between two cone NATs), and why not when not.
 */
export interface DirectPathView {
  peerId: string
  /** `direct`: a direct connection is open; `trying`: an attempt runs; `skipped`: not attempted (see reason); `failed`: the last attempt failed, the peer stays relayed */
  state: 'direct' | 'trying' | 'skipped' | 'failed'
  /** the transport of the direct connection or of the last attempt */
  transport?: Transport
  /** the address dialled, when one was */
  addr?: string
  reason: string
  /** ISO time of the last change */
  at: string
  /** how long the last attempt took, ms */
  durationMs?: number
}

/** `worldcompute status --json`: fields fixed by the foundation issue, more may be added. */
export interface DaemonStatus {
  peerId: string
  reachability: Reachability
  /** why reachability has its value, in words */
  reachabilityReason: string
  /** NAT mapping behaviour from the STUN probe against the connected relays */
  natMapping?: NatMapping
  /** NAT filtering behaviour, when measurable */
  natFiltering?: NatFiltering
  /** whether UDP gets out (a relay's STUN responder answered) */
  udp?: UdpState
  /** the STUN measurement behind natMapping / natFiltering / udp */
  nat?: NatReport
  listenAddrs: string[]
  relays: RelayReservationStatus[]
  connections: ConnectionStatus[]
  /** direct upgrades of relayed peers (absent from older daemons) */
  directPaths?: DirectPathView[]
  bootstrap: BootstrapStatus[]
  /** relays learned beyond the bootstrap list (relay gossip, identify); absent from older daemons */
  knownRelays?: KnownRelayView[]
  /** the proxies from the environment (HTTPS_PROXY, ALL_PROXY, …), credentials redacted; empty when none is set */
  proxies?: ProxyStatus[]
  /** PAC / WPAD proxy discovery (absent from older daemons) */
  proxyDiscovery?: ProxyDiscoveryStatus
  startedAt: string
  version: string
  /** the donor's executor; absent from daemons that predate the job pipeline */
  executor?: ExecutorStatusView
  /** other peers that accept jobs, heard from recently: how many replicas a job can get now; absent from older daemons */
  knownExecutors?: number
  /**
   * whether this daemon listens to capacity announcements now (it starts at its
   * first job and stops 10 minutes after the last): while it does not,
   * `knownExecutors` counts only what it heard before; absent from older daemons
   */
  executorsListening?: boolean
  /** the donor's owner paused it (`worldcompute pause`); false with --no-execute; absent from older daemons */
  paused?: boolean
  /** the donor controls and why jobs are suspended now; absent from older daemons and with --no-execute */
  controls?: DonorControlsView
  /** whether this network shows a sign-in page (captive portal) instead of the relays; absent from older daemons */
  captivePortal?: CaptivePortalStatus
  /** UPnP IGD / NAT-PMP / PCP mapping of the listen ports at the home router; absent from older daemons */
  portMapping?: PortMappingStatus
}

/** `status`' view of the captive portal check (src/donor/captive-portal-watch.ts). */
export interface CaptivePortalStatus {
  /** yes: a sign-in page answered instead of our relays (bad); no: a relay answered the probe; unknown: nothing answered or not checked yet */
  state: 'yes' | 'no' | 'unknown'
  /** the sign-in page, while state is yes */
  url?: string
  /** since when the portal is seen (ISO time), while state is yes */
  since?: string
  /** when the network was last probed (ISO time) */
  checkedAt?: string
}

/** One request of the captive portal probe to one relay address (src/net/captive-portal.ts). */
export interface PortalProbeAnswer {
  /** what was asked, e.g. `http://198.51.100.10:80/generate_204` */
  url: string
  /** relay: our relay's 204; portal: a sign-in page or a redirect; other: an answer that is neither; silent: no HTTP answer */
  outcome: 'relay' | 'portal' | 'other' | 'silent'
  status?: number
  /** the sign-in page a portal answer points at */
  signInUrl?: string
  /** https: who issued the certificate shown, and whether it verifies against the trusted CAs */
  certIssuer?: string
  certTrusted?: boolean
  detail: string
}

/** The captive portal probe's answer: tri-state, with the sign-in URL when a portal answered. */
export interface CaptivePortalProbe {
  state: 'yes' | 'no' | 'unknown'
  url?: string
  answers: PortalProbeAnswer[]
  /** in words: what answered */
  detail: string
  checkedAt: string
}

/** Why a donor's jobs are suspended right now: its owner paused it, or a limit it set holds them. */
export type SuspendReason = 'user' | 'cpu-limit' | 'busy' | 'run-hours'

/** The donor controls as `status`, `pause` and `resume` show them. */
export interface DonorControlsView {
  /** the owner paused this donor (`worldcompute pause`); kept across restarts until `resume` */
  paused: boolean
  /** when the owner paused it (ISO time), while paused */
  pausedAt?: string
  /** why running jobs are suspended (and new ones declined, except for cpu-limit) right now; null: they run */
  pausedBy: SuspendReason | null
  /** share of one core jobs may use on average, percent; 100: no limit */
  cpuLimit: number
  /** other programs' share of the machine above which jobs are suspended, percent; null: off */
  suspendWhenBusy: number | null
  /** other programs' share of the machine at the last sample, percent; absent until sampled */
  otherCpuPercent?: number
  /** the local-time window jobs run in (`18-08`); null: always */
  runHours: string | null
  /** pausedBy in words */
  reason?: string
}

/** One task this donor ran for someone else (`worldcompute donated`). */
export interface DonatedTask {
  /** when it ended (ISO time) */
  at: string
  /** when it started (ISO time) */
  startedAt: string
  /** the PeerId of the broker that sent it */
  broker: string
  jobId: string
  taskId: string
  /** the executor's result status, or `abandoned` (its broker left) / `aborted` (its stream ended) */
  status: string
  /** CPU time the task's worker thread used (preparation and run), ms; absent when it never reached a worker */
  cpuTimeMs?: number
  /** metered units it used */
  fuelUsed: number
  /** wall time in the executor, suspended time excluded, ms */
  durationMs: number
}

export interface ExecutorStatusView {
  accepting: boolean
  /** why not accepting */
  reason?: string
  state?: string
  maxConcurrent?: number
  running?: number
  queued?: number
  /** sandbox processes restarted after a crash or hang */
  restarts?: number
  /** the donor controls hold every job (the sandbox process is stopped) */
  suspended?: boolean
  sandboxPid?: number
  /** the sandbox starts at the first job and stops when idle: state 'stopped' then means "not needed yet" */
  onDemand?: boolean
  /** why the last start of the sandbox failed, while it is not running */
  lastStartError?: string
  maxLimits?: JobLimits
}

/** What the donor knows about each configured bootstrap relay. */
export interface BootstrapStatus {
  addr: string
  peerId?: string
  state: 'connecting' | 'connected' | 'reserved' | 'backing-off'
  /** consecutive failed rounds since the last success */
  failures: number
  /** when the next attempt starts, when backing off */
  nextAttemptAt?: string
  lastError?: string
  /** which rung of the dial ladder reached this relay and why; present while connected */
  path?: RelayPath
  /**
   * how the relay's names were last resolved: `literal` (IP addresses given),
   * `os` (the system resolver), `doh` (DNS-over-HTTPS after the OS resolver failed)
   */
  resolvedVia?: ResolvedVia
  /** per configured address, what its name resolved to and how */
  resolution?: AddrResolution[]
  /** TLS interception on the last `wss` path to this relay (see RelayReservationStatus) */
  tlsIntercepted?: TlsInterception
  tlsInterceptor?: string
  tlsCheck?: string
}

export type ResolvedVia = 'literal' | 'os' | 'doh'

/** How one bootstrap multiaddr was turned into addresses to dial. */
export interface AddrResolution {
  /** the address as configured */
  addr: string
  /**
   * `at-connect`: a WebSocket-over-TLS address keeps its name (TLS checks the
   * certificate against it); the WebSocket client resolves it when it connects
   */
  via: ResolvedVia | 'at-connect' | 'failed'
  /** the DoH endpoint that answered */
  endpoint?: string
  /** why the OS resolver was not used */
  osError?: string
  /** the addresses dialled */
  resolved: string[]
  /** why it failed (via 'failed'), or a note */
  note?: string
}

/** The path the dial ladder chose to a relay, and why. */
export interface RelayPath {
  transport: Transport
  /** the address that connected */
  addr: string
  /**
   * why this rung, in words: "first to connect (tcp: stalled at noise after
   * 2.5 s)", "remembered from the last run on this network", …
   */
  reason: string
  /** the rung went first because it won last time on this network */
  remembered: boolean
  /** the IP family that won the race (happy eyeballs); absent for an address by name */
  family?: 'ip4' | 'ip6'
  /** when the connection was made, ISO 8601 UTC */
  at: string
}

export interface PingProbe {
  seq: number
  ok: boolean
  rttMs?: number
  /** `direct` or `relay` */
  path?: 'direct' | 'relay'
  transport?: Transport
  /** the relay's PeerId when the path is through a relay */
  relay?: string
  remoteAddr?: string
  error?: string
}

export interface PingResult {
  target: string
  peerId?: string
  probes: PingProbe[]
}
