/**
 * IPv6 for the namespace lab (test/lab/topology.ts calls `setupIpv6` once the
 * IPv4 lab is up, which switched IPv6 off everywhere): only the namespaces of
 * relays given an `ip6` and of sites given `ipv6` get it back.
 *
 *   relay            <ip6>/128 (2001:db8:ffff::<n>), default via 2001:db8:ffff::1
 *   inet             2001:db8:ffff::1 on every v6 link, /128 routes to relays,
 *                    the site LANs via each router's WAN address; NO default route
 *   site router k    WAN 2001:db8:fffe::<10+k>/128; LAN 2001:db8:<k+1>::1/64 on the
 *                    bridge; ip6tables: a stateful firewall (outbound and replies in,
 *                    nothing new in), or with `ipv6Egress: 'blocked'` nothing out
 *   host j           2001:db8:<k+1>::<2+j>/64, default via the router; with
 *                    `ipv6: 'only'` its IPv4 address and routes are removed
 *
 * 2001:db8::/32 is the documentation prefix: nothing here is routable outside,
 * and the internet namespace has no IPv6 default route either.
 */
import { execFile } from 'node:child_process'
import type { SiteSpec, TopologySpec } from './topology.ts'

/** A site's IPv6: `only` (no IPv4 on its hosts) or `dual` (IPv4 as the site's `nat` says, plus IPv6). */
export type SiteIpv6 = 'only' | 'dual'

export const INET_V6_GW = '2001:db8:ffff::1'
const CMD_TIMEOUT_MS = 10_000

const hex = (n: number): string => n.toString(16)
export const siteLan6 = (k: number): { gw: string, net: string } => ({ gw: `2001:db8:${hex(k + 1)}::1`, net: `2001:db8:${hex(k + 1)}::/64` })
export const siteWan6 = (k: number): string => `2001:db8:fffe::${hex(10 + k)}`
export const hostIp6 = (k: number, j: number): string => `2001:db8:${hex(k + 1)}::${hex(2 + j)}`

/** The IPv6 address of a host or relay of `spec`, or undefined when it has none. */
export function ip6Of (spec: TopologySpec, host: string): string | undefined {
  const relay = spec.relays.find(r => r.name === host)
  if (relay != null) return relay.ip6
  for (const [k, site] of spec.sites.entries()) {
    const j = site.hosts.findIndex(h => h.name === host)
    if (j !== -1 && site.ipv6 != null) return hostIp6(k, j)
  }
  return undefined
}

async function run (argv: string[], input?: string): Promise<string> {
  return await new Promise<string>((resolve, reject) => {
    let stdinError: Error | undefined
    const child = execFile(argv[0], argv.slice(1), { timeout: CMD_TIMEOUT_MS, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (err != null) reject(new Error(`\`${argv.join(' ')}\` failed: ${stderr.trim() || err.message}${stdinError != null ? ` (its input was not read: ${stdinError.message})` : ''}${input != null ? `\ninput:\n${input}` : ''}`))
      else resolve(stdout)
    })
    // a command that exits without reading its input (EPIPE): its exit status, above, decides
    child.stdin?.on('error', (err) => { stdinError = err })
    if (input != null) child.stdin?.end(input)
    else child.stdin?.end()
  })
}

/** ip6tables-restore input for a site router with IPv6. */
export function router6Rules (site: SiteSpec): string {
  return [
    '*filter',
    ':INPUT ACCEPT [0:0]',
    ':FORWARD DROP [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    // neighbour discovery on the WAN link is ICMPv6: without it the router cannot find its gateway
    '-A INPUT -i wan -p ipv6-icmp -j ACCEPT',
    '-A INPUT -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT',
    '-A INPUT -i wan -j DROP',
    // a stateful firewall, no NAT: replies come in, nothing new does
    '-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT',
    site.ipv6Egress === 'blocked' ? '-A FORWARD -i lan -j DROP' : '-A FORWARD -i lan -j ACCEPT',
    'COMMIT',
    ''
  ].join('\n')
}

export function needsIpv6 (spec: TopologySpec): boolean {
  return spec.relays.some(r => r.ip6 != null) || spec.sites.some(s => s.ipv6 != null)
}

/** Gives IPv6 back to the namespaces that get it, after the IPv4 lab is set up. */
export async function setupIpv6 (spec: TopologySpec, prefix: string): Promise<void> {
  if (!needsIpv6(spec)) return
  const inet = `${prefix}inet`
  const lines = new Map<string, string[]>()
  const push = (ns: string, ...l: string[]): void => { lines.set(ns, [...(lines.get(ns) ?? []), ...l]) }
  const routers: string[] = []
  const v4Removed: string[] = []
  spec.relays.forEach((r, i) => {
    if (r.ip6 == null) return
    push(inet, `addr add ${INET_V6_GW}/128 dev r${i} nodad`, `route add ${r.ip6}/128 dev r${i}`)
    push(`${prefix}${r.name}`, `addr add ${r.ip6}/128 dev eth0 nodad`, `route add ${INET_V6_GW}/128 dev eth0`, `route add default via ${INET_V6_GW} dev eth0`)
  })
  spec.sites.forEach((site, k) => {
    if (site.ipv6 == null) return
    const router = `${prefix}${site.name}-gw`
    routers.push(router)
    const lan = siteLan6(k)
    push(inet, `addr add ${INET_V6_GW}/128 dev s${k} nodad`, `route add ${siteWan6(k)}/128 dev s${k}`, `route add ${lan.net} via ${siteWan6(k)} dev s${k}`)
    push(router, `addr add ${siteWan6(k)}/128 dev wan nodad`, `route add ${INET_V6_GW}/128 dev wan`, `route add default via ${INET_V6_GW} dev wan`, `addr add ${lan.gw}/64 dev lan nodad`)
    site.hosts.forEach((h, j) => {
      push(`${prefix}${h.name}`, `addr add ${hostIp6(k, j)}/64 dev eth0 nodad`, `route add default via ${lan.gw} dev eth0`)
      if (site.ipv6 === 'only') v4Removed.push(`${prefix}${h.name}`)
    })
  })
  const forwarding = new Set([inet, ...routers])
  await Promise.all([...lines.keys()].map(async ns => {
    // DAD off first: addresses are usable at once, and the lab has no duplicates by construction
    await run(['ip', 'netns', 'exec', ns, 'sysctl', '-q', '-w',
      'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_ra=0', 'net.ipv6.conf.default.accept_ra=0',
      'net.ipv6.conf.all.disable_ipv6=0', 'net.ipv6.conf.default.disable_ipv6=0', 'net.ipv6.conf.lo.disable_ipv6=0',
      `net.ipv6.conf.all.forwarding=${forwarding.has(ns) ? 1 : 0}`])
  }))
  await Promise.all([...lines.entries()].map(async ([ns, l]) => { await run(['ip', '-6', '-n', ns, '-batch', '-'], l.join('\n') + '\n') }))
  for (const ns of v4Removed) {
    await run(['ip', '-4', '-n', ns, 'addr', 'flush', 'dev', 'eth0'])
    await run(['ip', '-4', '-n', ns, 'route', 'flush', 'table', 'main'])
  }
  await Promise.all(spec.sites.map(async (site) => {
    if (site.ipv6 == null) return
    await run(['ip', 'netns', 'exec', `${prefix}${site.name}-gw`, 'ip6tables-restore'], router6Rules(site))
  }))
  // safety check, as for IPv4: nothing the internet namespace cannot place leaves the machine
  const inetDefault = await run(['ip', '-6', '-n', inet, 'route', 'show', 'default'])
  if (inetDefault.trim() !== '') throw new Error(`the internet router has an IPv6 default route: ${inetDefault}`)
}
