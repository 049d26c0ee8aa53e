import { isIPv4, isIPv6 } from 'node:net'
import { ipv6Groups, mappedIpv4 } from '../core/ip.ts'

/**
 * Which network an executor is in, for placing the replicas of one job in
 * distinct networks: identities cost nothing, so "distinct PeerIds" alone let
 * one process out-vote an honest donor. A network is the observed IP address
 * cut to a prefix (by default an IPv4 /24 or an IPv6 /48: what one operator
 * or one site typically holds), taken from what this broker or a relay saw a
 * socket connected from, never from what the executor claims.
 *
 * - Loopback addresses are each peer's own network, so single-machine meshes
 *   (tests, demos) still place replicas on distinct local donors.
 * - An executor whose address nobody observed is in the one shared network
 *   {@link UNOBSERVED}: it may serve, but at most one replica of a job runs
 *   where we cannot see the network, so unobservable identities, however
 *   many, hold one vote between them.
 */

/** How much of an observed address names its network. */
export interface NetworkPrefixes {
  /** @default 24 */
  ipv4: number
  /** @default 48 */
  ipv6: number
}

export const DEFAULT_NETWORK_PREFIXES: Readonly<NetworkPrefixes> = Object.freeze({ ipv4: 24, ipv6: 48 })

/** The network of every executor whose address nobody observed. */
export const UNOBSERVED = 'unobserved'

/** The network of an executor seen at `ip` (undefined: nobody observed it). */
export function networkOf (ip: string | undefined, peerId: string, prefixes: NetworkPrefixes = DEFAULT_NETWORK_PREFIXES): string {
  if (ip == null) return UNOBSERVED
  const mapped = mappedIpv4(ip)
  const v4 = mapped ?? (isIPv4(ip) ? ip : undefined)
  if (v4 != null) {
    if (v4.startsWith('127.')) return `loopback:${peerId}`
    return `ip4:${maskBits(v4.split('.').map(Number), 8, prefixes.ipv4).join('.')}/${prefixes.ipv4}`
  }
  if (!isIPv6(ip)) return UNOBSERVED
  const groups = ipv6Groups(ip)
  if (groups.slice(0, 7).every(g => g === 0) && groups[7] === 1) return `loopback:${peerId}`
  return `ip6:${maskBits(groups, 16, prefixes.ipv6).map(g => g.toString(16)).join(':')}/${prefixes.ipv6}`
}

/** Keeps the first `bits` bits of a number split in `width`-bit parts. */
function maskBits (parts: number[], width: number, bits: number): number[] {
  return parts.map((p, i) => {
    const keep = Math.max(0, Math.min(width, bits - i * width))
    return keep === 0 ? 0 : p & (((1 << width) - 1) ^ ((1 << (width - keep)) - 1))
  })
}
