/**
 * What every port-mapping protocol client shares: the mapping it asks for and
 * gets, the errors (each naming protocol, gateway and phase), the default
 * route it talks to, and the guard that decides whether mapping applies at
 * all. The guard is the safety rule: discovery sends SSDP multicast and
 * PCP/NAT-PMP datagrams to the default gateway, so it runs only for a node
 * that listens on a private, non-loopback address of the interface that
 * carries the default route; a node listening on 127.0.0.1 (the tests, the
 * demo) never sends anything.
 */
import { readFileSync } from 'node:fs'
import { isIPv4 } from 'node:net'
import { networkInterfaces } from 'node:os'
import { WorldComputeError } from '../core/errors.ts'
import type { PortMappingPhase, PortMappingProtocol } from '../core/types.ts'
import type { AbortOptions } from '@libp2p/interface'
import type { MappedProtocol } from './port-mapping-wire.ts'

/** The default route: the gateway and our address on its interface. */
export interface LanRoute {
  gateway: string
  iface: string
  localAddress: string
}

/** One listener to map: our TCP or UDP (QUIC) port on the LAN address. */
export interface MappableListen {
  transport: MappedProtocol
  host: string
  port: number
}

export interface MappingRequest extends MappableListen {
  /** the external port we ask for (the gateway may give another) */
  suggestedExternalPort: number
  lifetimeSeconds: number
}

export interface GatewayMapping extends MappableListen {
  externalHost: string
  externalPort: number
  /** seconds the gateway granted; 0: until deleted (a UPnP router that only keeps permanent leases) */
  lifetimeSeconds: number
}

/** One protocol spoken to one gateway. */
export interface MappingClient {
  readonly protocol: PortMappingProtocol
  readonly gateway: string
  /** creates the mapping, or renews it when asked again for the same listener */
  map: (req: MappingRequest, options?: AbortOptions) => Promise<GatewayMapping>
  /** deletes it at the gateway */
  unmap: (mapping: GatewayMapping, options?: AbortOptions) => Promise<void>
  /** releases the client's socket */
  close: () => void
}

export type MappingClientFactory = (route: LanRoute) => MappingClient

export interface PortMappingWhere {
  protocol: PortMappingProtocol
  gateway: string
  phase: PortMappingPhase
}

/** A port-mapping step failed; `code` tells which way, the fields where. */
export class PortMappingError extends WorldComputeError {
  readonly protocol: PortMappingProtocol
  readonly gateway: string
  readonly phase: PortMappingPhase
  constructor (message: string, code: string, where: PortMappingWhere, options?: { cause?: unknown }) {
    super(`${where.protocol} ${where.phase} at ${where.gateway}: ${message}`, code, options)
    this.protocol = where.protocol
    this.gateway = where.gateway
    this.phase = where.phase
  }
}

/** Nothing answered within the retransmissions (no gateway speaking this protocol, or a firewall). */
export class PortMappingNoAnswerError extends PortMappingError {
  constructor (message: string, where: PortMappingWhere, options?: { cause?: unknown }) {
    super(message, 'PORT_MAPPING_NO_ANSWER', where, options)
  }
}

/** The gateway answered that it does not speak this protocol version: try the next protocol. */
export class PortMappingUnsupportedError extends PortMappingError {
  constructor (message: string, where: PortMappingWhere, options?: { cause?: unknown }) {
    super(message, 'PORT_MAPPING_UNSUPPORTED', where, options)
  }
}

/** The gateway answered and refused (not authorised, no resources, conflict, …). */
export class PortMappingRefusedError extends PortMappingError {
  /** the protocol's own result or error code, e.g. `NOT_AUTHORIZED` or `718 ConflictInMappingEntry` */
  readonly result: string
  constructor (result: string, where: PortMappingWhere, options?: { cause?: unknown }) {
    super(`the gateway refused: ${result}`, 'PORT_MAPPING_REFUSED', where, options)
    this.result = result
  }
}

/** Anything else: a socket error, a malformed answer, an HTTP failure. */
export class PortMappingFailedError extends PortMappingError {
  constructor (message: string, where: PortMappingWhere, options?: { cause?: unknown }) {
    super(message, 'PORT_MAPPING_FAILED', where, options)
  }
}

/** The gateway of the IPv4 default route in /proc/net/route's text (addresses are little-endian hex). */
export function parseProcNetRoute (text: string): Array<{ iface: string, gateway: string }> {
  const out: Array<{ iface: string, gateway: string }> = []
  for (const line of text.split('\n').slice(1)) {
    const [iface, destination, gateway, flags, , , , mask] = line.trim().split(/\s+/)
    if (iface == null || mask == null) continue
    // RTF_UP (1) | RTF_GATEWAY (2), destination and mask 0: the default route
    if (destination !== '00000000' || mask !== '00000000' || (parseInt(flags, 16) & 3) !== 3) continue
    const n = parseInt(gateway, 16)
    out.push({ iface, gateway: [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, (n >>> 24) & 255].join('.') })
  }
  return out
}

/**
 * The default route of this host and our IPv4 address on its interface;
 * undefined without one (no gateway, or not Linux: /proc/net/route is read,
 * so elsewhere port mapping does not apply).
 */
export function defaultLanRoute (readRoutes: () => string = () => readFileSync('/proc/net/route', 'utf8'), interfaces = networkInterfaces): LanRoute | undefined {
  let routes: Array<{ iface: string, gateway: string }>
  try {
    routes = parseProcNetRoute(readRoutes())
  } catch {
    // no /proc/net/route (not Linux): no default route known, so nothing is sent
    return undefined
  }
  for (const route of routes) {
    const local = interfaces()[route.iface]?.find(a => a.family === 'IPv4' && !a.internal)
    if (local != null) return { gateway: route.gateway, iface: route.iface, localAddress: local.address }
  }
  return undefined
}

/** RFC 1918 and RFC 6598 (carrier-grade NAT): the addresses a home or office router hands out. */
export function isPrivateLanAddress (ip: string): boolean {
  if (!isIPv4(ip)) return false
  const [a, b] = ip.split('.').map(Number)
  return a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || (a === 100 && b >= 64 && b <= 127)
}

export type MappingCandidate =
  | { applies: true, route: LanRoute, listens: MappableListen[] }
  | { applies: false, reason: string }

/**
 * Whether port mapping applies to a node bound on `boundAddrs`: it needs a
 * default gateway, and a TCP or QUIC listener on our private address on the
 * gateway's interface (or on the wildcard). Loopback-only nodes never qualify.
 */
export function mappingCandidate (boundAddrs: readonly string[], route: LanRoute | undefined): MappingCandidate {
  if (route == null) return { applies: false, reason: 'no IPv4 default gateway on this host' }
  if (!isPrivateLanAddress(route.localAddress)) {
    return { applies: false, reason: `our address on ${route.iface} (${route.localAddress}) is not a private LAN address: no home router to ask` }
  }
  const listens: MappableListen[] = []
  for (const addr of boundAddrs) {
    const listen = mappableListen(addr, route.localAddress)
    if (listen != null && !listens.some(l => l.transport === listen.transport && l.port === listen.port)) listens.push(listen)
  }
  if (listens.length === 0) {
    return { applies: false, reason: `no TCP or QUIC listener on ${route.localAddress} (listening on ${boundAddrs.length === 0 ? 'relays only' : boundAddrs.join(', ')})` }
  }
  return { applies: true, route, listens }
}

/** `/ip4/H/tcp/P` or `/ip4/H/udp/P/quic-v1` bound on our LAN address (or the wildcard); nothing else maps. */
function mappableListen (addr: string, localAddress: string): MappableListen | undefined {
  const parts = addr.split('/p2p/')[0].split('/')
  if (parts[1] !== 'ip4' || (parts[2] !== localAddress && parts[2] !== '0.0.0.0')) return undefined
  const port = Number(parts[4])
  if (!Number.isInteger(port) || port <= 0) return undefined
  const rest = parts.slice(5).filter(p => p !== '')
  if (parts[3] === 'tcp' && rest.length === 0) return { transport: 'tcp', host: localAddress, port }
  if (parts[3] === 'udp' && rest.length === 1 && rest[0] === 'quic-v1') return { transport: 'udp', host: localAddress, port }
  return undefined
}
