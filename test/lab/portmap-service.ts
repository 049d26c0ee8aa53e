/**
 * A home router that maps ports on request: Debian's miniupnpd (nftables
 * build) on a site router of the lab, serving UPnP IGD or NAT-PMP/PCP on the
 * LAN bridge, with `secure_mode` (a host may only map to itself) and the LAN
 * allowed. miniupnpd puts the forwarding (DNAT) it is asked for into an
 * nftables table set up here (NFT_TABLE); the router's own filter (FORWARD
 * policy DROP, topology.ts) gets one rule a home router has too: connections
 * it port-forwards (conntrack state DNAT) may enter the LAN.
 *
 * Given a STUN server (startLabStun), miniupnpd checks at start that its WAN
 * address reaches the internet untranslated and unfiltered, and then maps
 * although that address is in a reserved range; without one it refuses.
 *
 * A missing miniupnpd or nft is a failure with the package to install, not a skip.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { NODE } from './processes.ts'
import type { Lab, LabProcess } from './topology.ts'

export const MINIUPNPD = '/usr/sbin/miniupnpd'
const NFT = '/usr/sbin/nft'

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
  /** its lease file now: one `PROTO:eport:iaddr:iport:expiry:description` line per live mapping ('' when none) */
  leases: () => string
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

export interface LabStun {
  proc: LabProcess
  ip: string
  otherIp: string
  port: number
}

/** The lab STUN server with two IPs (portmap-stun.ts) on the internet host `host`; `otherIp` is added to it here. */
export async function startLabStun (lab: Lab, host: string, otherIp: string, runDir: string): Promise<LabStun> {
  const ip = lab.ip(host)
  const dev = /\bdev (\S+)/.exec((await lab.run('inet', ['ip', 'route', 'show', `${ip}/32`])).stdout)?.[1]
  if (dev == null) throw new Error(`no route to ${ip} on the internet router`)
  await lab.run(host, ['ip', 'addr', 'add', `${otherIp}/32`, 'dev', 'eth0'])
  await lab.run('inet', ['ip', 'route', 'add', `${otherIp}/32`, 'dev', dev])
  const script = fileURLToPath(new URL('./portmap-stun.ts', import.meta.url))
  const proc = lab.exec(host, [NODE, script, ip, otherIp, '3478', '3479'], { logFile: join(runDir, `stun-${host}.log`) })
  const deadline = Date.now() + 10_000
  while (!/listening/.test(proc.stdout())) {
    if (!proc.running() || Date.now() > deadline) throw new Error(`the lab STUN server did not start:\n${proc.stderr()}${proc.stdout()}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  return { proc, ip, otherIp, port: 3478 }
}

/**
 * The nftables table miniupnpd's nftables build fills but does not create
 * (Debian ships nft_init.sh for it): its chains hooked into forward and NAT.
 * The forward chain accepts by default: the router's own iptables FORWARD
 * (policy DROP) decides, and lets in what is port-forwarded.
 */
const NFT_TABLE = `table inet miniupnpd {
  chain forward { type filter hook forward priority 0; policy accept; jump forward_upnp; }
  chain forward_upnp { }
  chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_upnp; }
  chain prerouting_upnp { }
  chain postrouting { type nat hook postrouting priority 100; policy accept; jump postrouting_upnp; }
  chain postrouting_upnp { }
}
`

/** Starts miniupnpd on the router of `site`, for the LAN of `lanHost`; resolves once it listens. */
export async function startMiniupnpd (lab: Lab, site: string, lanHost: string, kind: PortMapKind, runDir: string, stun?: LabStun): Promise<MiniUpnpd> {
  if (!existsSync(MINIUPNPD)) throw new Error(`${MINIUPNPD} is missing: the port-mapping scenarios need Debian's miniupnpd (apt-get install miniupnpd-nftables)`)
  if (!existsSync(NFT)) throw new Error(`${NFT} is missing: miniupnpd's nftables table is set up with it (apt-get install nftables)`)
  const router = `router:${site}`
  const lanNet = lab.ip(lanHost).replace(/\.\d+$/, '.0/24')
  await acceptForwarded(lab, router)
  if (stun != null) {
    // the STUN test's answers from the server's other IP and port are no replies conntrack knows: the
    // router's INPUT (unsolicited dropped) lets them in; miniupnpd opens its test ports in its forward chain only
    for (const ip of [stun.ip, stun.otherIp]) await lab.run(router, ['iptables', '-I', 'INPUT', '1', '-i', 'wan', '-p', 'udp', '-s', ip, '-j', 'ACCEPT'])
  }
  const nftFile = join(runDir, `miniupnpd-${site}.nft`)
  writeFileSync(nftFile, NFT_TABLE)
  const loaded = await lab.run(router, ['nft', '-f', nftFile])
  if (loaded.code !== 0) throw new Error(`nft -f ${nftFile} in ${router} exited ${String(loaded.code)} (the scenarios need the nftables package): ${loaded.stderr}`)
  if (kind === 'natpmp') {
    // UDP payload byte 0 (after the IP header, whose length is IHL*4, and the 8-byte UDP header) = 2: a PCP request
    await lab.run(router, ['iptables', '-I', 'INPUT', '-i', 'lan', '-p', 'udp', '--dport', '5351', '-m', 'u32', '--u32', '0>>22&0x3C@8>>24=2', '-j', 'DROP'])
  }
  const configFile = join(runDir, `miniupnpd-${site}.conf`)
  const leaseFile = join(runDir, `miniupnpd-${site}.leases`)
  writeFileSync(configFile, [
    // the WAN address is the lab's TEST-NET one, which miniupnpd 2.3.1 counts as reserved: without STUN it
    // refuses every mapping ("Port forwarding is impossible"), as a router behind carrier-grade NAT does;
    // with STUN showing nothing in front translates or filters, it maps (an ext_ip= in a reserved range
    // stops it at start, and a public address is never used in the lab)
    'ext_ifname=wan',
    'listening_ip=lan',
    'port=0',
    `enable_upnp=${kind === 'upnp' ? 'yes' : 'no'}`,
    `enable_natpmp=${kind === 'upnp' ? 'no' : 'yes'}`,
    'secure_mode=yes',
    'system_uptime=yes',
    'min_lifetime=60',
    'max_lifetime=86400',
    `lease_file=${leaseFile}`,
    'uuid=8d1c4b52-3b7a-4c1e-9d51-6f2b8e0c7a11',
    `allow 1024-65535 ${lanNet} 1024-65535`,
    'deny 0-65535 0.0.0.0/0 0-65535',
    'upnp_table_name=miniupnpd',
    'upnp_nat_table_name=miniupnpd',
    'upnp_forward_chain=forward_upnp',
    'upnp_nat_chain=prerouting_upnp',
    'upnp_nat_postrouting_chain=postrouting_upnp',
    ...(stun != null ? ['ext_perform_stun=yes', `ext_stun_host=${stun.ip}`, `ext_stun_port=${stun.port}`] : []),
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
  const ruleset = async (): Promise<string> => {
    const listed = await lab.run(router, ['nft', 'list', 'ruleset'], { timeoutMs: 10_000 })
    if (listed.code !== 0) throw new Error(`nft list ruleset in ${router} exited ${String(listed.code)}: ${listed.stderr}`)
    return listed.stdout
  }
  return {
    proc,
    configFile,
    log: () => proc.stderr() + proc.stdout(),
    leases: () => existsSync(leaseFile) ? readFileSync(leaseFile, 'utf8') : '',
    ruleset,
    // a rule of the table above: `… tcp dport N … dnat ip to HOST:PORT` (or `th dport` after a protocol match)
    forwards: async (host, port) => (await ruleset()).split('\n').some(l => l.includes('dnat') && l.includes(` to ${host}:${port}`) && /(tcp|th) dport \d+/.test(l))
  }
}
