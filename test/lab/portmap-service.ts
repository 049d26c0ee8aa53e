/**
 * A home router that maps ports on request: Debian's miniupnpd (nftables
 * build) on a site router of the lab, serving UPnP IGD or NAT-PMP/PCP on the
 * LAN bridge, with `secure_mode` (a host may only map to itself) and the LAN
 * allowed. miniupnpd adds its own nftables table and chains for the
 * forwarding (DNAT) it is asked for; the router's own filter (FORWARD policy
 * DROP, topology.ts) gets one rule a home router has too: connections it
 * port-forwards (conntrack state DNAT) may enter the LAN.
 *
 * A missing miniupnpd is a failure with the package to install, not a skip.
 */
import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { NODE } from './processes.ts'
import type { Lab, LabProcess } from './topology.ts'

export const MINIUPNPD = '/usr/sbin/miniupnpd'

/**
 * - `upnp`: UPnP IGD only
 * - `pcp`: NAT-PMP and PCP (miniupnpd 2.x serves both on port 5351; our client asks PCP first)
 * - `natpmp`: the same daemon, with PCP requests (version 2) dropped at the router: a gateway that answers NAT-PMP only
 */
export type PortMapKind = 'upnp' | 'natpmp' | 'pcp'

export interface MiniUpnpd {
  proc: LabProcess
  /** the router's nftables ruleset now (miniupnpd's DNAT rules are in it while a mapping lives) */
  ruleset: () => Promise<string>
  /** whether a DNAT rule forwards `port` (TCP) to `host` */
  forwards: (host: string, port: number) => Promise<boolean>
  configFile: string
  /** what miniupnpd logged so far (-d: to stderr) */
  log: () => string
}

/** What a home router does for the connections it port-forwards: lets them into the LAN (its FORWARD policy is DROP). */
async function acceptForwarded (lab: Lab, router: string): Promise<void> {
  await lab.run(router, ['iptables', '-A', 'FORWARD', '-i', 'wan', '-o', 'lan', '-m', 'conntrack', '--ctstate', 'DNAT', '-j', 'ACCEPT'])
}

export interface GrantingGateway {
  proc: LabProcess
  /** the router's nat PREROUTING rules now */
  natRules: () => Promise<string>
  /** whether a DNAT rule forwards to `host:port` */
  forwards: (host: string, port: number) => Promise<boolean>
}

/** The lab's granting PCP gateway (portmap-gateway.ts) on the router of `site`; resolves once it listens. */
export async function startGrantingGateway (lab: Lab, site: string, lanHost: string, runDir: string): Promise<GrantingGateway> {
  const router = `router:${site}`
  await acceptForwarded(lab, router)
  const script = fileURLToPath(new URL('./portmap-gateway.ts', import.meta.url))
  const proc = lab.exec(router, [NODE, script, lab.ip(lanHost).replace(/\.\d+$/, '.1'), lab.publicIp(lanHost)], { logFile: join(runDir, `pcp-gateway-${site}.log`) })
  const deadline = Date.now() + 10_000
  while (!/listening/.test(proc.stdout())) {
    if (!proc.running() || Date.now() > deadline) throw new Error(`the lab PCP gateway did not start:\n${proc.stderr()}${proc.stdout()}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  const natRules = async (): Promise<string> => (await lab.run(router, ['iptables', '-t', 'nat', '-S', 'PREROUTING'], { timeoutMs: 10_000 })).stdout
  return { proc, natRules, forwards: async (host, port) => (await natRules()).includes(`--to-destination ${host}:${port}`) }
}

/** Starts miniupnpd on the router of `site`, for the LAN of `lanHost`; resolves once it listens. */
export async function startMiniupnpd (lab: Lab, site: string, lanHost: string, kind: PortMapKind, runDir: string): Promise<MiniUpnpd> {
  if (!existsSync(MINIUPNPD)) throw new Error(`${MINIUPNPD} is missing: the port-mapping scenarios need Debian's miniupnpd (apt-get install miniupnpd-nftables)`)
  const router = `router:${site}`
  const lanNet = lab.ip(lanHost).replace(/\.\d+$/, '.0/24')
  await acceptForwarded(lab, router)
  if (kind === 'natpmp') {
    // UDP payload byte 0 (after the IP header, whose length is IHL*4, and the 8-byte UDP header) = 2: a PCP request
    await lab.run(router, ['iptables', '-I', 'INPUT', '-i', 'lan', '-p', 'udp', '--dport', '5351', '-m', 'u32', '--u32', '0>>22&0x3C@8>>24=2', '-j', 'DROP'])
  }
  const configFile = join(runDir, `miniupnpd-${site}.conf`)
  writeFileSync(configFile, [
    // the WAN address is the lab's TEST-NET one: miniupnpd 2.3.1 counts it as reserved and refuses every
    // mapping ("Port forwarding is impossible"), as a router behind carrier-grade NAT does; an ext_ip=
    // in a reserved range stops it at start, and a public address is never used in the lab
    'ext_ifname=wan',
    'listening_ip=lan',
    'port=0',
    `enable_upnp=${kind === 'upnp' ? 'yes' : 'no'}`,
    `enable_natpmp=${kind === 'upnp' ? 'no' : 'yes'}`,
    'secure_mode=yes',
    'system_uptime=yes',
    'min_lifetime=60',
    'max_lifetime=86400',
    `lease_file=${join(runDir, `miniupnpd-${site}.leases`)}`,
    'uuid=8d1c4b52-3b7a-4c1e-9d51-6f2b8e0c7a11',
    `allow 1024-65535 ${lanNet} 1024-65535`,
    'deny 0-65535 0.0.0.0/0 0-65535',
    ''
  ].join('\n'))
  const proc = lab.exec(router, [MINIUPNPD, '-d', '-f', configFile], { logFile: join(runDir, `miniupnpd-${site}.log`) })
  const ready = kind === 'upnp' ? /HTTP listening on port/ : /Listening for NAT-PMP\/PCP traffic/
  const deadline = Date.now() + 10_000
  while (!ready.test(proc.stderr() + proc.stdout())) {
    if (!proc.running()) throw new Error(`miniupnpd exited at start:\n${proc.stderr()}${proc.stdout()}`)
    if (Date.now() > deadline) throw new Error(`miniupnpd did not say it listens within 10 s:\n${proc.stderr()}${proc.stdout()}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  const ruleset = async (): Promise<string> => (await lab.run(router, ['nft', 'list', 'ruleset'], { timeoutMs: 10_000 })).stdout
  return {
    proc,
    configFile,
    log: () => proc.stderr() + proc.stdout(),
    ruleset,
    forwards: async (host, port) => (await ruleset()).split('\n').some(l => l.includes('dnat') && l.includes(`${host}:${port}`) && /tcp dport \d+/.test(l))
  }
}
