/**
 * NAT64 for an IPv6-only lab site: tayga on the site router, translating the
 * network-specific prefix 2001:db8:64::/96 to IPv4 from a dynamic pool that
 * the router's IPv4 NAT (the site's `nat`) then masquerades onto its WAN
 * address. A network-specific prefix rather than 64:ff9b::/96: RFC 6052 has
 * the well-known prefix refuse non-global IPv4 addresses, and the lab's relays
 * sit on a documentation range.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Lab, LabProcess } from './topology.ts'

export const NAT64_PREFIX = '2001:db8:64::'
const POOL = '192.168.255.0/24'

/** Starts tayga on `router:<site>`; the process is the lab's (stopped at teardown). */
export async function startNat64 (lab: Lab, site: string, runDir: string): Promise<LabProcess> {
  // a missing tool fails the scenario, it does not skip it: CI installs tayga
  if (!['/usr/sbin/tayga', '/usr/bin/tayga', '/sbin/tayga'].some(p => existsSync(p))) throw new Error('tayga is not installed (apt-get install tayga): the NAT64 scenario needs it')
  const router = `router:${site}`
  const dir = join(runDir, `tayga-${site}`)
  mkdirSync(dir, { recursive: true })
  const conf = join(dir, 'tayga.conf')
  writeFileSync(conf, [
    'tun-device nat64',
    'ipv4-addr 192.168.255.1',
    `prefix ${NAT64_PREFIX}/96`,
    `dynamic-pool ${POOL}`,
    `data-dir ${dir}`,
    ''
  ].join('\n'))
  const steps = [
    ['tayga', '--mktun', '-c', conf],
    ['ip', 'link', 'set', 'nat64', 'up'],
    ['ip', 'route', 'add', POOL, 'dev', 'nat64'],
    ['ip', '-6', 'route', 'add', `${NAT64_PREFIX}/96`, 'dev', 'nat64'],
    // translated flows leave for the WAN (masqueraded there); their replies match ESTABLISHED
    ['iptables', '-A', 'FORWARD', '-i', 'nat64', '-o', 'wan', '-j', 'ACCEPT']
  ]
  for (const argv of steps) {
    const r = await lab.run(router, argv, { timeoutMs: 10_000 })
    if (r.code !== 0) throw new Error(`NAT64 setup on ${router}: \`${argv.join(' ')}\` exited ${String(r.code)}: ${r.stderr}`)
  }
  return lab.exec(router, ['tayga', '-d', '-c', conf], { logFile: join(runDir, `tayga-${site}.log`) })
}
