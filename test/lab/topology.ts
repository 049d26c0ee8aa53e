/**
 * Network-namespace lab: a declarative topology of separate "hosts" (Linux
 * network namespaces) joined by veth pairs, with real routing, NAT and
 * filtering (iptables), in which the real `worldcompute` processes run.
 *
 *                 relay hosts (public /32 each, e.g. 198.51.100.10)
 *                         |
 *          <prefix>inet  (router: ip_forward=1, NO default route)
 *         /         |          \
 *   site router  site router   ...   WAN 203.0.113.<10+k>/32, gateway 203.0.113.1
 *   (NAT kind, firewall)             LAN bridge "lan": 10.<k+1>.0.0/24, or for nat 'none'
 *         |                          a public 192.0.2.<16(k+1)>/28
 *   hosts (eth0, default via the router)
 *
 * Safety: every address belongs to a namespace created here; no veth reaches
 * the root namespace (each pair is created directly between two lab
 * namespaces); the internet router has no default route, so nothing can
 * leave the machine; every namespace gets an empty /etc/netns/<ns>/resolv.conf.
 * Everything is torn down by `teardown()`, and also on SIGINT/SIGTERM/exit.
 * Every command and wait is bounded in time.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync, type WriteStream } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { captivePortalFilterRules, captivePortalNatRules } from './captive-rules.ts'
import { setupIpv6, type SiteIpv6 } from './ipv6-topology.ts'
import { extraNatRules, isExtraNatKind, type ExtraNatKind } from './nat-kinds.ts'

export type NatKind = 'none' | 'cone' | 'symmetric' | ExtraNatKind
/**
 * Egress filters a site router can apply.
 * - `tcp-80-443-only`: only TCP 80/443 out; everything else, UDP included, dropped silently
 * - `dns-filtered`: everything out except DNS (UDP and TCP port 53, dropped silently)
 * - `inspect-multistream`: TCP out on any port, UDP dropped, and every packet carrying
 *   libp2p's cleartext negotiation (`/multistream/1.0.0`) dropped in both directions:
 *   "SYN allowed, upgrade blocked"
 * - `proxy-only`: the LAN may reach one TCP `ip:port`, the site's `proxy`; everything else dropped silently
 * - `captive-portal`: every TCP 80/443 from the LAN lands on a portal web server on the router
 *   (captive-rules.ts; the scenario starts the server and "signs in" hosts); everything else dropped
 */
export type Firewall = 'tcp-80-443-only' | 'dns-filtered' | 'inspect-multistream' | 'proxy-only' | 'captive-portal'

export interface RelaySpec {
  name: string
  ip: string
  /** an IPv6 address too (2001:db8:ffff::<n>; see ipv6-topology.ts) */
  ip6?: string
}
export interface HostSpec { name: string }
export interface SiteSpec {
  name: string
  /** 'none': hosts have public addresses and accept inbound connections (an open network) */
  nat: NatKind
  firewall?: Firewall
  /** for `proxy-only`: the one TCP `ip:port` (an HTTP or SOCKS proxy on the internet) the LAN may reach */
  proxy?: string
  /** IPv6 on the LAN (ipv6-topology.ts): `only` removes IPv4 from the hosts, `dual` adds IPv6 */
  ipv6?: SiteIpv6
  /** with `ipv6`: the router drops every IPv6 packet from the LAN, silently */
  ipv6Egress?: 'blocked'
  hosts: HostSpec[]
}
export interface TopologySpec { relays: RelaySpec[], sites: SiteSpec[] }

export interface ExecOptions {
  /** environment of the child, passed as is (build it with `labEnv`) */
  env?: NodeJS.ProcessEnv
  /** append stdout and stderr to this file as well */
  logFile?: string
  /** keep at most this many characters of output in memory @default 2 MiB */
  maxBuffer?: number
}

export interface LabProcess {
  host: string
  ns: string
  argv: string[]
  child: ChildProcess
  pid: number
  /** Date.now() when spawned */
  startedAt: number
  stdoutLines: string[]
  stdout: () => string
  stderr: () => string
  /** the process itself exited */
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  /** its output is fully read */
  closed: Promise<void>
  /** processes of its group still alive after it exited (found by `stop`), as "pid command" */
  stragglers: string[]
  running: () => boolean
  /** SIGTERM to the process group, SIGKILL after `graceMs`; resolves with the exit code */
  stop: (graceMs?: number) => Promise<number | null>
}

export interface RunResult { code: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string, ms: number }

export interface LinkConditions {
  /** one-way delay added on the host's side of its uplink (needs sch_netem) */
  delayMs?: number
  jitterMs?: number
  /** packet loss in percent, each direction (sch_netem; falls back to iptables `statistic`) */
  lossPct?: number
  /** MTU of the host's link (both ends) */
  mtu?: number
}

export interface TeardownReport {
  ms: number
  /** tracked processes still running at teardown, stopped */
  killed: number
  /** other processes found inside the lab's namespaces (`ip netns pids`), killed */
  leftovers: number
  /** lab namespaces still listed after teardown (should be 0) */
  namespaces: number
  /** processes still inside a lab namespace after its name was deleted, killed (should be 0) */
  strays: number
}

export interface Lab {
  /** the name prefix of every namespace of this topology */
  readonly prefix: string
  readonly spec: TopologySpec
  /** namespace setup time, ms */
  readonly setupMs: number
  /** namespace of a host, relay or site router (`router:<site>`), or 'inet' */
  ns: (host: string) => string
  /** the host's own address (private behind a NAT) */
  ip: (host: string) => string
  /** the address the rest of the lab sees for this host: its own, or its site router's WAN address */
  publicIp: (host: string) => string
  siteOf: (host: string) => SiteSpec | undefined
  /** spawns argv inside the host's namespace, in its own process group, tracked for cleanup */
  exec: (host: string, argv: string[], opts?: ExecOptions) => LabProcess
  /** runs argv inside the host's namespace to completion, bounded by `timeoutMs` */
  run: (host: string, argv: string[], opts?: ExecOptions & { timeoutMs?: number, input?: string }) => Promise<RunResult>
  /** whether `tc netem` works in this kernel (delay needs it; loss falls back to iptables) */
  netemAvailable: () => Promise<boolean>
  /** applies delay / loss / MTU to a host's uplink (the veth between the host and its router) */
  setLink: (host: string, conditions: LinkConditions) => Promise<void>
  /** stops every tracked process, kills leftovers in the lab's namespaces, deletes the namespaces and /etc/netns entries */
  teardown: () => Promise<TeardownReport>
  readonly tornDown: boolean
}

const CMD_TIMEOUT_MS = 10_000
const NETNS_ETC = '/etc/netns'

/** Why the lab cannot run here, or undefined when it can. */
export function labSkipReason (): string | undefined {
  if (process.platform !== 'linux') return 'the network-namespace lab needs Linux: skipped'
  if (process.getuid?.() !== 0) return 'the network-namespace lab needs root (ip netns, iptables): skipped; CI runs it as root'
  for (const tool of ['ip', 'iptables', 'iptables-restore', 'sysctl']) {
    if (whichSync(tool) == null) return `the network-namespace lab needs \`${tool}\` (apt-get install iproute2 iptables procps): skipped`
  }
  return undefined
}

function whichSync (tool: string): string | undefined {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':').concat(['/usr/sbin', '/sbin'])) {
    const p = join(dir, tool)
    if (existsSync(p)) return p
  }
  return undefined
}

/** `wc<pid%10000>-`: the prefix of every namespace this process creates. */
export const RUN_PREFIX = `wc${process.pid % 10000}-`
let topologyCounter = 0

/** Environment for lab children: nothing of the caller's WORLDCOMPUTE_*, proxy or test-runner settings leaks in. */
export function labEnv (extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('WORLDCOMPUTE_')) continue
    if (/^(https?|all|no|ftp)_proxy$/i.test(k) || k === 'NODE_USE_ENV_PROXY') continue
    if (k === 'NODE_TEST_CONTEXT' || k === 'NODE_OPTIONS' || k === 'NODE_EXTRA_CA_CERTS') continue
    env[k] = v
  }
  return { ...env, ...extra }
}

// ---------------------------------------------------------------------------
// commands

async function cmd (argv: string[], opts: { input?: string, timeoutMs?: number } = {}): Promise<string> {
  return await new Promise((resolve, reject) => {
    const child = execFile(argv[0], argv.slice(1), { timeout: opts.timeoutMs ?? CMD_TIMEOUT_MS, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err != null) {
        reject(new Error(`\`${argv.join(' ')}\` failed: ${stderr.trim() || err.message}${opts.input != null ? `\ninput:\n${opts.input}` : ''}`))
      } else {
        resolve(stdout)
      }
    })
    if (opts.input != null) child.stdin?.end(opts.input)
    else child.stdin?.end()
  })
}

function cmdSync (argv: string[], opts: { input?: string, timeoutMs?: number } = {}): string {
  return execFileSync(argv[0], argv.slice(1), { input: opts.input ?? '', timeout: opts.timeoutMs ?? CMD_TIMEOUT_MS, killSignal: 'SIGKILL', stdio: ['pipe', 'pipe', 'pipe'] }).toString()
}

function listNamespaces (): string[] {
  try {
    return cmdSync(['ip', 'netns', 'list']).split('\n').map(l => l.trim().split(/\s+/)[0]).filter(n => n !== '')
  } catch {
    return []
  }
}

/** Namespaces currently present whose name starts with `prefix` (default: this run's prefix). */
export function namespacesWithPrefix (prefix = RUN_PREFIX): string[] {
  return listNamespaces().filter(n => n.startsWith(prefix))
}

function sleepSync (ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

/** True while the process exists and is not a zombie (a synchronous loop cannot let Node reap its children). */
function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return false
  }
}

/** PIDs of processes whose network namespace is one of `inodes` ("net:[N]"). */
function processesIn (inodes: Set<string>): number[] {
  if (inodes.size === 0) return []
  const out: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      if (inodes.has(readlinkSync(`/proc/${entry}/ns/net`))) out.push(Number(entry))
    } catch { /* gone, or not ours to read */ }
  }
  return out
}

/** "pid command" of each process in a process group (from /proc). */
function groupMembers (pgid: number): string[] {
  try {
    return cmdSync(['ps', '-e', '-o', 'pgid=,pid=,args='], { timeoutMs: 5_000 }).split('\n')
      .map(l => l.trim().split(/\s+/))
      .filter(f => Number(f[0]) === pgid)
      .map(f => f.slice(1).join(' ').slice(0, 200))
  } catch {
    return [`process group ${pgid}`]
  }
}

/** True while any process of the group exists. */
function groupAlive (pgid: number): boolean {
  try {
    process.kill(-pgid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function killQuiet (pid: number, signal: NodeJS.Signals): void {
  try { process.kill(pid, signal) } catch { /* already gone */ }
}

// ---------------------------------------------------------------------------
// addressing

interface Node {
  name: string
  ns: string
  kind: 'relay' | 'router' | 'host'
  ip: string
  publicIp: string
  site?: SiteSpec
  /** interface of this node's uplink and its peer (namespace, interface) */
  uplink?: { dev: string, peerNs: string, peerDev: string }
}

function ipv4 (text: string): number[] {
  const parts = text.split('.').map(Number)
  if (parts.length !== 4 || parts.some(p => !Number.isInteger(p) || p < 0 || p > 255)) throw new Error(`not an IPv4 address: ${text}`)
  return parts
}

const TEST_NETS = ['192.0.2.', '198.51.100.', '203.0.113.']

function plan (spec: TopologySpec, prefix: string): { nodes: Map<string, Node>, inet: string, routers: Map<string, Node> } {
  const nodes = new Map<string, Node>()
  const routers = new Map<string, Node>()
  const inet = `${prefix}inet`
  const taken = new Set<string>()
  const claimName = (name: string): void => {
    if (!/^[a-z0-9]{1,10}$/.test(name)) throw new Error(`lab name "${name}" must be 1-10 lower-case letters or digits`)
    if (taken.has(name)) throw new Error(`lab name "${name}" is used twice`)
    taken.add(name)
  }
  if (spec.sites.length > 14) throw new Error('at most 14 sites')
  spec.relays.forEach((r, i) => {
    claimName(r.name)
    const octets = ipv4(r.ip)
    if (!r.ip.startsWith('198.51.100.') || octets[3] < 2 || octets[3] > 254) {
      throw new Error(`relay ${r.name}: use an address in 198.51.100.2-254 (TEST-NET-2; 192.0.2/24 and 203.0.113/24 are taken by sites), not ${r.ip}`)
    }
    nodes.set(r.name, { name: r.name, ns: `${prefix}${r.name}`, kind: 'relay', ip: r.ip, publicIp: r.ip, uplink: { dev: 'eth0', peerNs: inet, peerDev: `r${i}` } })
  })
  spec.sites.forEach((site, k) => {
    claimName(site.name)
    if (site.hosts.length === 0 || site.hosts.length > 13) throw new Error(`site ${site.name}: 1 to 13 hosts`)
    const wan = `203.0.113.${10 + k}`
    const router: Node = { name: site.name, ns: `${prefix}${site.name}-gw`, kind: 'router', ip: wan, publicIp: wan, site, uplink: { dev: 'wan', peerNs: inet, peerDev: `s${k}` } }
    routers.set(site.name, router)
    nodes.set(`router:${site.name}`, router)
    site.hosts.forEach((h, j) => {
      claimName(h.name)
      const ip = site.nat === 'none' ? `192.0.2.${16 * (k + 1) + 2 + j}` : `10.${k + 1}.0.${2 + j}`
      nodes.set(h.name, { name: h.name, ns: `${prefix}${h.name}`, kind: 'host', ip, publicIp: site.nat === 'none' ? ip : wan, site, uplink: { dev: 'eth0', peerNs: router.ns, peerDev: `p${j}` } })
    })
  })
  return { nodes, inet, routers }
}

function siteLan (site: SiteSpec, k: number): { gw: string, cidr: number, net: string } {
  return site.nat === 'none'
    ? { gw: `192.0.2.${16 * (k + 1) + 1}`, cidr: 28, net: `192.0.2.${16 * (k + 1)}/28` }
    : { gw: `10.${k + 1}.0.1`, cidr: 24, net: `10.${k + 1}.0.0/24` }
}

function gatewayOf (ip: string): string {
  const net = TEST_NETS.find(n => ip.startsWith(n))
  if (net == null) throw new Error(`${ip} is not in a TEST-NET range`)
  return `${net}1`
}

/** iptables-restore input for a site router; `lanHost`: its first host's address (the extra NAT kinds DNAT to it). */
export function routerRules (site: SiteSpec, lanHost?: string): string {
  const filter = [
    '*filter',
    ':INPUT ACCEPT [0:0]',
    ':FORWARD DROP [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    // like a home router: nothing unsolicited reaches the router itself, dropped silently (no RST, no ICMP)
    '-A INPUT -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT',
    '-A INPUT -i wan -j DROP'
  ]
  if (site.firewall === 'inspect-multistream') {
    // before the ESTABLISHED accept: the handshake travels on an established flow.
    // Boyer-Moore search of each packet (xt_string) for the protocol name, both directions
    filter.push('-A FORWARD -m string --algo bm --string /multistream/1.0.0 -j DROP')
  }
  filter.push('-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT')
  if (site.firewall === 'inspect-multistream') {
    filter.push('-A FORWARD -i lan -o wan -p tcp -j ACCEPT')
    filter.push('-A FORWARD -i lan -j DROP')
  } else if (site.firewall === 'dns-filtered') {
    // a resolver outside cannot be asked: queries vanish without an answer, as on networks that force their own DNS
    filter.push('-A FORWARD -i lan -p udp --dport 53 -j DROP')
    filter.push('-A FORWARD -i lan -p tcp --dport 53 -j DROP')
    filter.push('-A FORWARD -i lan -o wan -j ACCEPT')
  } else if (site.firewall === 'proxy-only') {
    const [ip, port] = (site.proxy ?? '').split(':')
    if (ip == null || port == null || !/^\d+$/.test(port)) throw new Error(`site ${site.name}: a proxy-only firewall needs \`proxy: "ip:port"\``)
    ipv4(ip)
    filter.push(`-A FORWARD -i lan -o wan -p tcp -d ${ip} --dport ${port} -j ACCEPT`)
    // no other route out: TCP, UDP (QUIC, DNS) and ICMP vanish without an answer
    filter.push('-A FORWARD -i lan -j DROP')
  } else if (site.firewall === 'tcp-80-443-only') {
    filter.push('-A FORWARD -i lan -o wan -p tcp -m multiport --dports 80,443 -j ACCEPT')
    // everything else from the LAN, UDP included, disappears without an answer
    filter.push('-A FORWARD -i lan -j DROP')
  } else if (site.firewall === 'captive-portal') {
    filter.push(...captivePortalFilterRules())
  } else if (site.firewall != null) {
    throw new Error(`unknown firewall ${String(site.firewall)}`)
  } else {
    filter.push('-A FORWARD -i lan -o wan -j ACCEPT')
  }
  if (site.nat === 'none' && site.firewall == null) {
    // an open network: public hosts accept inbound connections
    filter.push('-A FORWARD -i wan -o lan -j ACCEPT')
  }
  const extra = isExtraNatKind(site.nat) ? extraNatRules(site, site.nat, lanHost) : undefined
  filter.push(...extra?.filter ?? [])
  filter.push('COMMIT')
  const nat = ['*nat', ':PREROUTING ACCEPT [0:0]', ':INPUT ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ':POSTROUTING ACCEPT [0:0]']
  nat.push(...extra?.nat ?? [])
  if (site.nat === 'cone') nat.push('-A POSTROUTING -o wan -j MASQUERADE')
  // a new random source port for every flow: endpoint-dependent mapping
  if (site.nat === 'symmetric') nat.push('-A POSTROUTING -o wan -j MASQUERADE --random-fully')
  if (site.firewall === 'captive-portal') nat.push(...captivePortalNatRules())
  nat.push('COMMIT')
  return [...filter, ...nat, ''].join('\n')
}

// ---------------------------------------------------------------------------
// clean-up registry: every live lab is torn down on SIGINT/SIGTERM/exit too

const liveLabs = new Set<LabImpl>()
let createdEtcNetns = false
let handlersInstalled = false

function installExitHandlers (): void {
  if (handlersInstalled) return
  handlersInstalled = true
  process.on('exit', () => {
    for (const lab of [...liveLabs]) lab.teardownSync(500)
  })
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const) {
    process.on(signal, () => {
      process.stderr.write(`lab: ${signal}: tearing down ${liveLabs.size} topolog${liveLabs.size === 1 ? 'y' : 'ies'}\n`)
      for (const lab of [...liveLabs]) lab.teardownSync(1000)
      process.exit(code)
    })
  }
}

// ---------------------------------------------------------------------------

class LabImpl implements Lab {
  readonly prefix: string
  readonly spec: TopologySpec
  setupMs = 0
  tornDown = false
  private readonly nodes: Map<string, Node>
  private readonly inet: string
  private readonly routers: Map<string, Node>
  private readonly namespaces: string[] = []
  private readonly etcDirs: string[] = []
  private readonly procs = new Set<LabProcess>()
  private readonly nsInodes = new Set<string>()

  constructor (spec: TopologySpec, prefix: string) {
    this.spec = spec
    this.prefix = prefix
    const p = plan(spec, prefix)
    this.nodes = p.nodes
    this.inet = p.inet
    this.routers = p.routers
  }

  private node (host: string): Node {
    if (host === 'inet') return { name: 'inet', ns: this.inet, kind: 'router', ip: '', publicIp: '' }
    const n = this.nodes.get(host)
    if (n == null) throw new Error(`no host "${host}" in this lab (known: ${[...this.nodes.keys()].join(', ')})`)
    return n
  }

  ns (host: string): string { return this.node(host).ns }
  ip (host: string): string { return this.node(host).ip }
  publicIp (host: string): string { return this.node(host).publicIp }
  siteOf (host: string): SiteSpec | undefined { return this.node(host).site }

  async setup (): Promise<void> {
    const started = Date.now()
    const existing = namespacesWithPrefix(this.prefix)
    if (existing.length > 0) throw new Error(`namespaces with prefix ${this.prefix} already exist: ${existing.join(', ')}`)
    const all = [this.inet, ...[...this.nodes.values()].map(n => n.ns)]
    // 1. namespaces, each with an empty resolv.conf: nothing resolves, nothing reaches a real DNS server
    if (!existsSync(NETNS_ETC)) {
      mkdirSync(NETNS_ETC, { recursive: true })
      createdEtcNetns = true
    }
    for (const ns of all) {
      const dir = join(NETNS_ETC, ns)
      mkdirSync(dir, { recursive: true })
      this.etcDirs.push(dir)
      writeFileSync(join(dir, 'resolv.conf'), '')
    }
    this.namespaces.push(...all)
    await cmd(['ip', '-batch', '-'], { input: all.map(ns => `netns add ${ns}`).join('\n') + '\n' })
    // the kernel's identity of each namespace, to find processes that outlive its name
    for (const ns of all) this.nsInodes.add(`net:[${statSync(join('/run/netns', ns)).ino}]`)
    // 2. veth pairs created directly between two lab namespaces (never in the root namespace)
    const links: string[] = []
    for (const n of this.nodes.values()) {
      if (n.uplink == null) continue
      links.push(`link add name ${n.uplink.dev} netns ${n.ns} type veth peer name ${n.uplink.peerDev} netns ${n.uplink.peerNs}`)
    }
    await cmd(['ip', '-batch', '-'], { input: links.join('\n') + '\n' })
    // 3. addresses, routes, sysctls, firewall, per namespace
    const perNs = new Map<string, string[]>(all.map(ns => [ns, ['link set dev lo up']]))
    const push = (ns: string, ...lines: string[]): void => { perNs.get(ns)?.push(...lines) }
    for (const n of this.nodes.values()) {
      if (n.kind === 'relay' && n.uplink != null) {
        const gw = gatewayOf(n.ip)
        push(this.inet, `addr add ${gw}/32 dev ${n.uplink.peerDev}`, `link set dev ${n.uplink.peerDev} up`, `route add ${n.ip}/32 dev ${n.uplink.peerDev}`)
        push(n.ns, `addr add ${n.ip}/32 dev eth0`, 'link set dev eth0 up', `route add ${gw}/32 dev eth0`, `route add default via ${gw} dev eth0`)
      }
    }
    this.spec.sites.forEach((site, k) => {
      const router = this.routers.get(site.name)
      if (router?.uplink == null) return
      const wanGw = gatewayOf(router.ip)
      const lan = siteLan(site, k)
      push(this.inet, `addr add ${wanGw}/32 dev ${router.uplink.peerDev}`, `link set dev ${router.uplink.peerDev} up`, `route add ${router.ip}/32 dev ${router.uplink.peerDev}`)
      if (site.nat === 'none') push(this.inet, `route add ${lan.net} via ${router.ip} dev ${router.uplink.peerDev}`)
      push(router.ns,
        `addr add ${router.ip}/32 dev wan`, 'link set dev wan up', `route add ${wanGw}/32 dev wan`, `route add default via ${wanGw} dev wan`,
        'link add name lan type bridge', `addr add ${lan.gw}/${lan.cidr} dev lan`, 'link set dev lan up')
      site.hosts.forEach((h, j) => {
        const host = this.node(h.name)
        push(router.ns, `link set dev p${j} master lan`, `link set dev p${j} up`)
        push(host.ns, `addr add ${host.ip}/${lan.cidr} dev eth0`, 'link set dev eth0 up', `route add default via ${lan.gw} dev eth0`)
      })
    })
    // the internet router deliberately has no default route: a packet to anything
    // that is not a lab namespace is unroutable and never leaves the machine
    await Promise.all([...perNs.entries()].map(async ([ns, lines]) => await cmd(['ip', '-n', ns, '-batch', '-'], { input: lines.join('\n') + '\n' })))
    const forwarding = new Set([this.inet, ...[...this.routers.values()].map(r => r.ns)])
    await Promise.all(all.map(async ns => {
      const settings = [
        `net.ipv4.ip_forward=${forwarding.has(ns) ? 1 : 0}`,
        // IPv4 only: no IPv6 link-local chatter, no second address family to reason about
        'net.ipv6.conf.all.disable_ipv6=1',
        'net.ipv6.conf.default.disable_ipv6=1',
        // no ICMP redirects from the routers
        'net.ipv4.conf.all.send_redirects=0',
        'net.ipv4.conf.default.send_redirects=0',
        // a site's LAN bridge is a switch: hosts of one site reach each other without the
        // router's filter. With br_netfilter loaded (per namespace, on by default) bridged
        // frames would cross the router's FORWARD chain (policy DROP) and two hosts of one
        // site could not talk. -e: absent when br_netfilter is not loaded, nothing to undo
        'net.bridge.bridge-nf-call-iptables=0',
        'net.bridge.bridge-nf-call-arptables=0'
      ]
      await cmd(['ip', 'netns', 'exec', ns, 'sysctl', '-q', '-e', '-w', ...settings])
    }))
    await Promise.all([...this.routers.values()].map(async r => {
      if (r.site == null) return
      await cmd(['ip', 'netns', 'exec', r.ns, 'iptables-restore'], { input: routerRules(r.site, r.site.hosts[0] != null ? this.ip(r.site.hosts[0].name) : undefined) })
    }))
    await setupIpv6(this.spec, this.prefix)
    // safety check: the internet router must have no default route
    const inetRoutes = await cmd(['ip', '-n', this.inet, 'route', 'show', 'default'])
    if (inetRoutes.trim() !== '') throw new Error(`the internet router has a default route: ${inetRoutes}`)
    this.setupMs = Date.now() - started
  }

  exec (host: string, argv: string[], opts: ExecOptions = {}): LabProcess {
    if (this.tornDown) throw new Error('lab already torn down')
    const ns = this.ns(host)
    const maxBuffer = opts.maxBuffer ?? 2 * 1024 * 1024
    // detached: its own process group, so a stop also reaches the daemon's sandbox children
    const child = spawn('ip', ['netns', 'exec', ns, ...argv], { env: opts.env ?? labEnv(), stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    if (child.pid == null) throw new Error(`could not spawn ${argv.join(' ')} in ${ns}`)
    const pid = child.pid
    let out = ''
    let err = ''
    const stdoutLines: string[] = []
    let log: WriteStream | undefined
    if (opts.logFile != null) {
      log = createWriteStream(opts.logFile, { flags: 'a' })
      log.write(`# ${new Date().toISOString()} pid ${pid} in ${ns}: ${argv.join(' ')}\n`)
    }
    child.stdout?.on('data', (d: Buffer) => { if (out.length < maxBuffer) out += d.toString(); log?.write(d) })
    child.stderr?.on('data', (d: Buffer) => { if (err.length < maxBuffer) err += d.toString(); log?.write(d) })
    if (child.stdout != null) createInterface({ input: child.stdout }).on('line', l => { if (stdoutLines.length < 10_000) stdoutLines.push(l) })
    const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => {
      child.once('error', () => resolve({ code: null, signal: null }))
      child.once('exit', (code, signal) => resolve({ code, signal }))
    })
    // all output read: the leader and everything holding its pipes are gone
    const closed = new Promise<void>(resolve => {
      child.once('error', () => resolve())
      child.once('close', (code, signal) => {
        log?.end(`# exit code ${String(code)} signal ${String(signal)}\n`)
        resolve()
      })
    })
    let done = false
    void exited.then(() => { done = true })
    const proc: LabProcess = {
      host,
      ns,
      argv,
      child,
      pid,
      startedAt: Date.now(),
      stdoutLines,
      stdout: () => out,
      stderr: () => err,
      exited,
      closed,
      stragglers: [],
      running: () => !done,
      stop: async (graceMs = 10_000) => {
        if (!done) {
          killQuiet(-pid, 'SIGTERM')
          const timer = setTimeout(() => killQuiet(-pid, 'SIGKILL'), graceMs)
          await exited
          clearTimeout(timer)
        }
        // the group may outlive its leader (e.g. a sandbox child): note it, then no stragglers
        if (groupAlive(pid)) {
          proc.stragglers.push(...groupMembers(pid))
          killQuiet(-pid, 'SIGKILL')
        }
        await Promise.race([closed, new Promise(resolve => setTimeout(resolve, 2_000))])
        return (await exited).code
      }
    }
    this.procs.add(proc)
    return proc
  }

  async run (host: string, argv: string[], opts: ExecOptions & { timeoutMs?: number, input?: string } = {}): Promise<RunResult> {
    const started = Date.now()
    const p = this.exec(host, argv, opts)
    const timeoutMs = opts.timeoutMs ?? 30_000
    let timedOut = false
    const timer = setTimeout(() => { timedOut = true; killQuiet(-p.pid, 'SIGKILL') }, timeoutMs)
    const { code, signal } = await p.exited
    await Promise.race([p.closed, new Promise(resolve => setTimeout(resolve, 2_000))])
    clearTimeout(timer)
    if (groupAlive(p.pid)) killQuiet(-p.pid, 'SIGKILL')
    this.procs.delete(p)
    if (timedOut) throw new Error(`\`${argv.join(' ')}\` in ${p.ns} did not finish within ${timeoutMs} ms\nstdout: ${p.stdout()}\nstderr: ${p.stderr()}`)
    return { code, signal, stdout: p.stdout(), stderr: p.stderr(), ms: Date.now() - started }
  }

  async netemAvailable (): Promise<boolean> {
    return await netemIn(this.inet)
  }

  async setLink (host: string, c: LinkConditions): Promise<void> {
    const n = this.node(host)
    if (n.uplink == null) throw new Error(`${host} has no uplink`)
    const ends: Array<[string, string]> = [[n.ns, n.uplink.dev], [n.uplink.peerNs, n.uplink.peerDev]]
    if (c.mtu != null) {
      for (const [ns, dev] of ends) await cmd(['ip', '-n', ns, 'link', 'set', 'dev', dev, 'mtu', String(c.mtu)])
    }
    if (c.delayMs == null && c.lossPct == null) return
    if (await this.netemAvailable()) {
      for (const [ns, dev] of ends) {
        const args = ['tc', '-n', ns, 'qdisc', 'replace', 'dev', dev, 'root', 'netem']
        if (c.delayMs != null) args.push('delay', `${c.delayMs}ms`, ...(c.jitterMs != null ? [`${c.jitterMs}ms`] : []))
        if (c.lossPct != null) args.push('loss', `${c.lossPct}%`)
        await cmd(args)
      }
      return
    }
    if (c.delayMs != null) throw new Error('tc netem is not available in this kernel (sch_netem): delay cannot be emulated')
    // loss without netem: drop a random share of packets leaving each end of the link
    for (const [ns, dev] of ends) {
      const rule = ['OUTPUT', '-o', dev, '-m', 'statistic', '--mode', 'random', '--probability', String((c.lossPct ?? 0) / 100), '-j', 'DROP']
      await cmd(['ip', 'netns', 'exec', ns, 'iptables', '-t', 'mangle', '-A', ...rule])
      const fwd = ['FORWARD', ...rule.slice(1)]
      await cmd(['ip', 'netns', 'exec', ns, 'iptables', '-t', 'mangle', '-A', ...fwd])
    }
  }

  async teardown (): Promise<TeardownReport> {
    // graceful first: SIGTERM every live process we started, in parallel, bounded
    await Promise.all([...this.procs].map(async p => await p.stop(5_000)))
    return this.teardownSync(2_000)
  }

  /** Synchronous, so it can run from an `exit` handler too. Idempotent. */
  teardownSync (graceMs: number): TeardownReport {
    const started = Date.now()
    let killed = 0
    let leftovers = 0
    if (!this.tornDown) {
      this.tornDown = true
      // 1. the processes we started (their whole process groups)
      const running = [...this.procs].filter(p => p.running())
      for (const p of running) { killQuiet(-p.pid, 'SIGTERM'); killed++ }
      const deadline = Date.now() + graceMs
      while (running.some(p => alive(p.pid)) && Date.now() < deadline) sleepSync(20)
      // only groups whose leader we have not reaped: a reaped leader's group ID could belong to someone else by now
      for (const p of running) killQuiet(-p.pid, 'SIGKILL')
      // 2. anything else still inside our namespaces (e.g. an orphaned sandbox): only ours by construction
      for (let round = 0; round < 3; round++) {
        const pids = this.namespaces.flatMap(ns => {
          try {
            return cmdSync(['ip', 'netns', 'pids', ns], { timeoutMs: 5_000 }).split('\n').map(Number).filter(n => n > 0 && n !== process.pid)
          } catch { return [] }
        })
        if (pids.length === 0) break
        leftovers += round === 0 ? pids.length : 0
        for (const pid of pids) killQuiet(pid, 'SIGKILL')
        const until = Date.now() + 2_000
        while (pids.some(alive) && Date.now() < until) sleepSync(20)
      }
      // 3. the namespaces (their veths and bridges go with them), then /etc/netns entries
      try {
        cmdSync(['ip', '-force', '-batch', '-'], { input: this.namespaces.map(ns => `netns del ${ns}`).join('\n') + '\n' })
      } catch {
        // -force reports any failure at the end; the check below says what is left
      }
      for (const dir of this.etcDirs) rmSync(dir, { recursive: true, force: true })
      // /etc/netns itself only when this process created it and nothing else is in it
      if (createdEtcNetns && liveLabs.size <= 1) {
        try { cmdSync(['rmdir', '--ignore-fail-on-non-empty', NETNS_ETC]) } catch { /* not ours to insist on */ }
      }
      liveLabs.delete(this)
    }
    // a process still inside one of our (now nameless) namespaces would keep it alive: find, kill, report
    const strays = processesIn(this.nsInodes)
    for (const pid of strays) killQuiet(pid, 'SIGKILL')
    const left = namespacesWithPrefix(this.prefix)
    const report = { ms: Date.now() - started, killed, leftovers, namespaces: left.length, strays: strays.length }
    if (left.length > 0) {
      process.stderr.write(`lab: namespaces left after teardown: ${left.join(', ')}\n`)
    }
    if (strays.length > 0) {
      process.stderr.write(`lab: processes were still inside deleted lab namespaces (killed): ${strays.join(', ')}\n`)
    }
    return report
  }
}

let netemCache: boolean | undefined
/** Whether this kernel has sch_netem: probed once on the loopback of a lab namespace, then removed. */
async function netemIn (ns: string): Promise<boolean> {
  if (netemCache != null) return netemCache
  try {
    await cmd(['tc', '-n', ns, 'qdisc', 'add', 'dev', 'lo', 'root', 'netem', 'delay', '1ms'])
    await cmd(['tc', '-n', ns, 'qdisc', 'del', 'dev', 'lo', 'root'])
    netemCache = true
  } catch {
    netemCache = false
  }
  return netemCache
}

/** Builds the topology; on any failure it is torn down before the error is thrown. */
export async function buildTopology (spec: TopologySpec): Promise<Lab> {
  installExitHandlers()
  const prefix = `${RUN_PREFIX}${++topologyCounter}-`
  const lab = new LabImpl(spec, prefix)
  liveLabs.add(lab)
  try {
    await lab.setup()
  } catch (err) {
    lab.teardownSync(1_000)
    throw err
  }
  return lab
}
