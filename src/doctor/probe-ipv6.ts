import { readFileSync } from 'node:fs'
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os'
import { ipv6Bytes, ipv6Text, isLinkLocalIp } from '../net/address-scope.ts'
import type { Ipv6Observation } from '../core/doctor.ts'
import type { Logger } from '../log/logger.ts'
import type { AbortOptions } from '@libp2p/interface'

/**
 * What this host has of IPv6, for the doctor's `ipv6` check: its global
 * unicast addresses (2000::/3: what can reach a relay across the internet;
 * ULA and link-local cannot), whether it has an IPv6 default route, whether
 * it has IPv4 at all, and on an IPv6-only host the network's NAT64 prefix.
 * The relays' IPv6 rungs themselves are dialled with the other rungs.
 */

export interface Ipv6ProbeInit {
  /** the daemon's resolver: its RFC 7050 discovery of the NAT64 prefix */
  resolver: { nat64Prefix: (options?: AbortOptions) => Promise<Uint8Array | undefined> }
  /** @default os.networkInterfaces */
  interfaces?: () => NodeJS.Dict<NetworkInterfaceInfo[]>
  /** the text of the IPv6 routing table; @default reads /proc/net/ipv6_route (Linux) */
  routes?: () => string
  logger?: Logger
}

const PROC_ROUTES = '/proc/net/ipv6_route'

export async function probeIpv6 (init: Ipv6ProbeInit, options: AbortOptions = {}): Promise<Ipv6Observation> {
  const interfaces = (init.interfaces ?? networkInterfaces)()
  const globalAddrs: string[] = []
  for (const list of Object.values(interfaces)) {
    for (const a of list ?? []) {
      if (a.family === 'IPv6' && !a.internal && isGlobalUnicast(a.address)) globalAddrs.push(a.address)
    }
  }
  const ipv4 = Object.values(interfaces).some(list => (list ?? []).some(a => a.family === 'IPv4' && !a.internal && !isLinkLocalIp(a.address)))
  const defaultRoute = hasDefaultRoute(init)
  const out: Ipv6Observation = { globalAddrs: [...new Set(globalAddrs)], ipv4, ...(defaultRoute != null ? { defaultRoute } : {}) }
  if (!ipv4 && (globalAddrs.length > 0 || defaultRoute === true)) {
    const prefix = await init.resolver.nat64Prefix(options)
    if (prefix != null) out.nat64Prefix = `${ipv6Text(Uint8Array.from([...prefix, 0, 0, 0, 0]))}/96`
  }
  return out
}

/** 2000::/3 (RFC 4291 §2.4): the global unicast space; the documentation prefix 2001:db8::/32 the lab uses is inside it. */
function isGlobalUnicast (ip: string): boolean {
  const b = ipv6Bytes(ip)
  return b != null && (b[0] & 0xe0) === 0x20
}

/** A `::/0` route on an interface other than `lo` (the kernel parks unreachable defaults there). */
function hasDefaultRoute (init: Ipv6ProbeInit): boolean | undefined {
  let text: string
  try {
    text = (init.routes ?? (() => readFileSync(PROC_ROUTES, 'utf8')))()
  } catch (err) {
    init.logger?.debug(`cannot read the IPv6 routing table ${PROC_ROUTES}: ${(err as Error).message}`)
    return undefined
  }
  return text.split('\n').some(line => {
    const f = line.trim().split(/\s+/)
    return f.length >= 10 && /^0{32}$/.test(f[0]) && f[1] === '00' && f[9] !== 'lo'
  })
}
