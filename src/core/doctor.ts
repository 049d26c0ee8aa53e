import type { AddrResolution, CaptivePortalProbe, DialPhase, NatMapping, NatReport, PortMappingStatus, ProxyDiscoveryStatus, ProxyStatus, RelayReservationStatus, Transport } from './types.ts'

/**
 * `worldcompute doctor`: what was observed (gathered by src/doctor from the
 * daemon's own code paths) and the report made from it (src/doctor/assess.ts).
 * Plain data: the CLI renders it, `--json` prints it, evidence bundles keep
 * it. The field names of {@link DoctorReport} are a contract: other tools read
 * `doctor --json` and evidence bundles, so fields are added, never renamed.
 */

/** A check's answer. `unknown` when the check could not run: never a guessed `no` (Tailscale's opt.Bool). */
export type CheckValue = 'yes' | 'no' | 'unknown'

/** Every check the doctor reports, in the order it prints them. */
export const CHECK_NAMES = [
  'dns', 'doh', 'udp', 'nat', 'tcp-connect', 'libp2p-over-tcp', 'quic', 'ws', 'wss-443',
  'tls-intercepted', 'proxy', 'reservation', 'reachability', 'webrtc', 'clock-skew',
  'https-fallback', 'proxy-discovery', 'proxy-auth', 'ipv6', 'port-mapping', 'captive-portal'
] as const
export type CheckName = typeof CHECK_NAMES[number]

export interface DoctorCheck {
  name: CheckName
  value: CheckValue
  /** the cause in words: what was tried, what answered, why unknown */
  detail: string
}

export interface DoctorPath {
  /** PeerId of the relay the donor holds its reservation on */
  relay: string
  transport: Transport
  viaProxy: boolean
  /** the address that connected */
  addr?: string
  /** the proxy (credentials redacted) when viaProxy */
  proxy?: string
}

/** One address of one bootstrap relay, dialled on its own with the daemon's dial ladder. */
export interface RungObservation {
  relay: string
  addr: string
  transport: Transport
  host?: string
  port?: number
  outcome: 'success' | 'failure' | 'cancelled' | 'not-tried'
  /** the furthest phase reached */
  phase?: DialPhase
  cause?: string
  code?: string
  timedOut?: boolean
  durationMs?: number
  /** the proxy this dial went through (redacted URL), when one applies */
  proxy?: string
}

/** A direct question to one DNS-over-HTTPS endpoint (the daemon's resolver with the OS side switched off). */
export interface DohProbe {
  endpoint: string
  name: string
  ok: boolean
  detail: string
}

/** What a TLS handshake to a relay's WebSocket-over-TLS address showed about the certificate chain. */
export interface TlsObservation {
  addr: string
  /** undefined: could not tell */
  intercepted?: boolean
  /** who issued the certificate we were shown */
  issuer?: string
  detail: string
}

export interface ClockObservation {
  /** local clock minus the remote's, ms (positive: we are ahead) */
  skewMs?: number
  /** where the remote time came from, e.g. `HTTP Date header of https://198.51.100.53/dns-query` */
  source?: string
  detail: string
}

/**
 * The HTTPS long-polling rung (the last one, for proxies that pass no
 * WebSocket upgrade): the poll address derived from each bootstrap relay's
 * `/tls/ws` address, probed on its own, beside how WebSocket over TLS fared.
 */
export interface HttpsFallbackObservation {
  /** one probe per poll address (also among `rungs`); empty: no `/tls/ws` address to derive one from */
  attempts: RungObservation[]
  /** a WebSocket-over-TLS probe of a bootstrap relay connected */
  wssReached: boolean
  /** WebSocket-over-TLS probes were made (and none connected when wssReached is false) */
  wssTried: boolean
  /** the donor's reservation runs over the poll transport */
  reservedOver: boolean
}

/** The captive portal probe against the relays' WebSocket addresses (src/net/captive-portal.ts), and what it asked. */
export interface CaptivePortalObservation extends CaptivePortalProbe {
  /** the probe URLs (`http://host:port/generate_204`, then https), empty when no relay has a WebSocket address */
  urls: string[]
}

/** What this host has of IPv6 (src/doctor/probe-ipv6.ts); the relays' IPv6 rungs are in `rungs`. */
export interface Ipv6Observation {
  /** global unicast IPv6 addresses (2000::/3) on this host's interfaces */
  globalAddrs: string[]
  /** an IPv6 default route exists; undefined when the routing table could not be read */
  defaultRoute?: boolean
  /** the host has an IPv4 address besides loopback and link-local */
  ipv4: boolean
  /** on an IPv6-only host: the network's NAT64 prefix (RFC 7050), e.g. `64:ff9b::/96` */
  nat64Prefix?: string
}

/** The donor's port mapping at the home router (PCP, NAT-PMP, UPnP IGD) once it settled, and how long the doctor waited for it. */
export interface PortMappingObservation {
  status: PortMappingStatus
  /** ms from the doctor's start until the mapping settled (obtained and confirmed, or failed), or the wait ended */
  waitedMs: number
  /** the wait ended before the mapping settled */
  timedOut: boolean
}

/** Everything the doctor gathered; the report is computed from this alone (unit-testable). */
export interface DoctorObservations {
  /** the bootstrap multiaddrs as configured */
  bootstrap: string[]
  /** where they came from, in words (`--bootstrap`, `WORLDCOMPUTE_BOOTSTRAP`, …) */
  bootstrapSource?: string
  /** PeerIds of the bootstrap relays */
  relays: string[]
  /** per configured address, how its name resolved */
  dns: AddrResolution[]
  doh: DohProbe[]
  /** DoH endpoints configured */
  dohEndpoints: string[]
  rungs: RungObservation[]
  /** the proxies from the environment (redacted) and whether the relay path uses one */
  proxies: ProxyStatus[]
  nat: NatReport
  reachability: { value: 'public' | 'private' | 'unknown', reason: string }
  reservations: RelayReservationStatus[]
  /** per bootstrap relay: last error of the reservation loop, if any */
  reservationErrors: Array<{ relay: string, state: string, error?: string }>
  tls: TlsObservation[]
  /** why there is no TLS observation, when there is none */
  tlsNote?: string
  clock: ClockObservation
  /** the build has a WebRTC transport for direct donor-to-donor connections */
  webrtcTransport: boolean
  /** PAC / WPAD proxy discovery as the donor's node ran it; absent: the node does none */
  proxyDiscovery?: ProxyDiscoveryObservation
  /** is a sign-in page (captive portal) in the way of the relays? absent from older reports */
  captivePortal?: CaptivePortalObservation
  /** how long the doctor observed, ms */
  observedMs: number
  /** the HTTPS fallback rung; absent from reports of builds without it */
  httpsFallback?: HttpsFallbackObservation
  /** IPv6 on this host; absent when not gathered */
  ipv6?: Ipv6Observation
  /** port mapping at the home router; absent when the doctor did not run it (older reports) */
  portMapping?: PortMappingObservation
}

/** What proxy discovery did while the doctor ran (`status --json`'s `proxyDiscovery`). */
export type ProxyDiscoveryObservation = ProxyDiscoveryStatus

/** `worldcompute doctor --json`. */
export interface DoctorReport {
  canDonate: boolean
  verdict: string
  /** the path the daemon would use; absent when no relay could be reserved */
  path?: DoctorPath
  natMapping: NatMapping
  checks: DoctorCheck[]
  /** what to ask the network administrators to allow, only what the checks showed missing */
  allowlist: string[]
  /** ISO 8601 UTC */
  startedAt: string
  endedAt: string
  version: string
  /** the ephemeral PeerId the doctor ran as (not the daemon's identity) */
  peerId?: string
  observations: DoctorObservations
  /** the evidence bundle written, when --evidence was given */
  evidence?: string
}
