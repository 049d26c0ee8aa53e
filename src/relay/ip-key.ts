import { BlockList, isIP } from 'node:net'
import { ipv6Groups, mappedIpv4 } from '../core/ip.ts'
import type { Cidr } from '../config/cidr.ts'

/**
 * What the per-IP limits count by: an IPv4 address, or the /64 of an IPv6
 * one (one subscriber's prefix: a host with a /64 has 2^64 addresses to
 * rotate through). An IPv4-mapped IPv6 address counts as its IPv4 address.
 */
export interface IpKey {
  /** `203.0.113.7` or `2001:db8:1:2::/64` */
  key: string
  ip: string
  family: 'ipv4' | 'ipv6'
}

/** The IP key of a multiaddr's leading `/ip4` or `/ip6`; undefined for anything else (a name, a circuit, …). */
export function ipKeyOf (remoteAddr: string): IpKey | undefined {
  const m = /^\/(ip4|ip6)\/([^/]+)/.exec(remoteAddr)
  if (m == null) return undefined
  const ip = m[2]
  if (m[1] === 'ip4') return isIP(ip) === 4 ? { key: ip, ip, family: 'ipv4' } : undefined
  if (isIP(ip) !== 6) return undefined
  const mapped = mappedIpv4(ip)
  if (mapped != null) return { key: mapped, ip: mapped, family: 'ipv4' }
  return { key: `${ipv6Groups(ip).slice(0, 4).map(g => g.toString(16)).join(':')}::/64`, ip, family: 'ipv6' }
}

/** Address ranges the per-IP limits leave alone. */
export class IpRanges {
  private readonly list = new BlockList()

  constructor (ranges: readonly Cidr[]) {
    for (const r of ranges) this.list.addSubnet(r.address, r.prefix, r.family)
  }

  has (key: IpKey): boolean {
    return this.list.check(key.ip, key.family)
  }
}
