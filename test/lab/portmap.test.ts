/**
 * Port mapping at a home router (issue 16, part 4), against Debian's
 * miniupnpd on the executor's site router, once per protocol: the executor
 * finds the gateway, asks it in the order PCP → NAT-PMP → UPnP IGD, maps its
 * TCP port, announces the mapped address, AutoNAT v2 confirms it, a broker at
 * another site dials it directly over TCP and runs a job on it, the mapping
 * is gone from the router (nft ruleset and miniupnpd's lease file) when the
 * daemon stops, and the doctor reports it.
 *
 * The lab's WAN addresses are TEST-NET, which miniupnpd 2.3.1 counts as
 * reserved; it maps anyway once its STUN test (`ext_perform_stun`) shows that
 * nothing in front of the router translates or filters, which is true in the
 * lab: the test asks a lab STUN server with two IPs (portmap-stun.ts), since a
 * relay's responder has one IP and cannot answer "change IP". No public
 * address is used. `portmap-refused` keeps the refusal path: miniupnpd
 * without STUN refuses every mapping ("Port forwarding is impossible"), as a
 * router behind carrier-grade NAT does, and status, log and doctor say so.
 * `portmap-granted` runs the same chain through the lab's own PCP gateway
 * (portmap-gateway.ts: PCP MAP answered with an iptables DNAT rule).
 *
 *   npm run test:lab -- --only portmap-upnp,portmap-natpmp,portmap-pcp,portmap-refused,portmap-granted
 */
import assert from 'node:assert/strict'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { it, type TestContext } from 'node:test'
import { startDonor, statusOf, tail, waitDispatchable, type DonorNode } from './processes.ts'
import { labSuite, pairScenario, runJobAcross, scenarioKeys, secs, TEST_TIMEOUT_MS, type PairContext } from './scenario.ts'
import type { Lab, RelaySpec } from './topology.ts'
import { startGrantingGateway, startLabStun, startMiniupnpd, type MiniUpnpd, type PortMapKind } from './portmap-service.ts'
import type { DaemonStatus, PortMappingFailure } from '../../src/core/types.ts'

const KEYS = ['portmap-upnp', 'portmap-natpmp', 'portmap-pcp', 'portmap-granted', 'portmap-refused'] as const
type ScenarioKey = typeof KEYS[number]
const only = scenarioKeys(KEYS)
const PORT = 4001
/** the lab's "internet" is TEST-NET, which js-libp2p calls private: declared public so AutoNAT v2 tests a mapped address */
const LAB_RANGES = ['198.51.100.0/24', '192.0.2.0/24', '203.0.113.0/24']
const LAB_PUBLIC = LAB_RANGES.flatMap(r => ['--public-range', r])

/**
 * the refusal: miniupnpd without STUN, which counts its TEST-NET WAN address as reserved. The failures the
 * executor must record, in order (protocol, code, the gateway's answer): every protocol is asked even after a
 * refusal, since a router may refuse one (PCP restricted) and grant another (UPnP switched on).
 */
const REFUSAL: Array<{ protocol: string, code: string, cause?: RegExp }> = [
  { protocol: 'pcp', code: 'PORT_MAPPING_REFUSED', cause: /NO_RESOURCES/ },
  { protocol: 'natpmp', code: 'PORT_MAPPING_REFUSED', cause: /NETWORK_FAILURE/ },
  { protocol: 'upnp', code: 'PORT_MAPPING_NO_ANSWER' }
]

/** A gateway that grants: the lab's PCP gateway or miniupnpd, as the granted-path checks see it. */
interface Granting {
  protocol: string
  /** whether the router forwards `port` (TCP) to `host` now */
  forwards: (host: string, port: number) => Promise<boolean>
  /** what the gateway logged so far */
  log: () => string
  /** what the gateway logs when the mapping is deleted */
  deleted?: RegExp
  /** miniupnpd's lease file now */
  leases?: () => string
  /** the router's forwarding rules now, for failure messages */
  rules: () => Promise<string>
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

async function waitStatus (lab: Lab, donor: DonorNode, what: string, done: (s: DaemonStatus) => boolean, timeoutMs: number): Promise<{ status: DaemonStatus, ms: number }> {
  const started = Date.now()
  let last: DaemonStatus | undefined
  while (Date.now() < started + timeoutMs) {
    if (!donor.proc.running()) throw new Error(`daemon ${donor.name} exited before ${what}; stderr:\n${tail(donor.proc.stderr())}`)
    last = await statusOf(lab, donor).catch(() => undefined) ?? last
    if (last != null && done(last)) return { status: last, ms: Date.now() - started }
    await sleep(250)
  }
  throw new Error(`${donor.name}: no ${what} within ${timeoutMs} ms; portMapping ${JSON.stringify(last?.portMapping ?? null)}; stderr:\n${tail(donor.proc.stderr())}`)
}

function matches (f: PortMappingFailure, e: { protocol: string, code: string, cause?: RegExp }): boolean {
  return f.protocol === e.protocol && f.code === e.code && f.gateway === '10.2.0.1' && (e.cause == null || e.cause.test(f.cause))
}

async function refusedScenario (t: TestContext): Promise<void> {
  let router: MiniUpnpd | undefined
  await pairScenario(t, {
    key: 'portmap-refused',
    submitter: { nat: 'cone' },
    executor: { nat: 'cone' },
    // a TCP listener on the executor's LAN address: what a gateway is asked to map
    donorArgs: (name, lab) => name === 'executor' ? ['--listen', `/ip4/${lab.ip('executor')}/tcp/${PORT}`] : [],
    beforeDonors: async ({ lab, runDir }) => {
      router = await startMiniupnpd(lab, 'siteb', 'executor', 'pcp', runDir)
      return undefined
    },
    during: async ({ lab, executor, submitter }) => {
      if (router == null) throw new Error('miniupnpd did not start')
      const settled = await waitStatus(lab, executor, 'a pcp answer from the gateway', s => s.portMapping?.state === 'failed', 45_000)
      const pm = settled.status.portMapping
      t.diagnostic(`executor's port mapping settled in ${secs(settled.ms)}: ${JSON.stringify(pm)}`)
      assert.equal(pm?.gateway, '10.2.0.1')
      assert.match(pm?.reason ?? '', /refused every mapping/)
      assert.deepEqual(pm?.mappings, [])
      const failures = pm?.failures ?? []
      assert.equal(failures.length, REFUSAL.length, JSON.stringify(failures))
      REFUSAL.forEach((e, i) => { assert.ok(matches(failures[i], e), `failure ${i}: ${JSON.stringify(failures[i])} is ${JSON.stringify({ ...e, cause: e.cause?.source })}`) })
      // every failure at the default log level with protocol, gateway, phase and code
      const warns = executor.proc.stderr().split('\n').filter(l => /WARN +net\.port-mapping/.test(l))
      for (const e of REFUSAL) assert.ok(warns.some(l => l.includes(`protocol=${e.protocol}`) && l.includes('gateway=10.2.0.1') && l.includes('phase=') && l.includes(`code=${e.code}`)), `a WARN line for ${e.protocol}: ${warns.join('\n')}`)
      const log = router.log()
      t.diagnostic(`miniupnpd:\n${log.split('\n').filter(l => /request|mapping|Reserved/.test(l)).slice(0, 12).join('\n')}`)
      assert.match(log, /Reserved \/ private IP address 203\.0\.113\.11 on ext interface wan: Port forwarding is impossible/)
      assert.match(log, /PCP request received from 10\.2\.0\.2/, 'the request reached miniupnpd')
      assert.equal(await router.forwards(lab.ip('executor'), PORT), false, 'nothing is forwarded')
      assert.equal(router.leases(), '', 'miniupnpd holds no lease')
      // the submitter listens only through its relay: nothing to map, nothing sent
      assert.equal((await statusOf(lab, submitter))?.portMapping?.state, 'not-applicable')
    },
    doctorExpect: (report) => {
      const check = report.checks.find(c => c.name === 'port-mapping')
      t.diagnostic(`doctor: port-mapping ${check?.value ?? '?'}: ${check?.detail ?? ''}`)
      assert.equal(check?.value, 'no')
      assert.match(check?.detail ?? '', /10\.2\.0\.1 answered and refused a mapping \(pcp:/)
      assert.equal(report.observations.portMapping?.status.state, 'failed')
    }
  })
}

/** The executor's mapping granted, announced, confirmed by AutoNAT v2, and the submitter's broker on it over TCP. */
async function grantedAndDialledDirectly (ctx: PairContext, gateway: Granting): Promise<void> {
  const { t, lab, submitter, executor } = ctx
  const mapped = await waitStatus(lab, executor, `a ${gateway.protocol} mapping confirmed by AutoNAT v2`,
    s => s.portMapping?.state === 'mapped' && s.portMapping.mappings.some(m => m.confirmed) && s.reachability === 'public', 60_000)
  const pm = mapped.status.portMapping
  t.diagnostic(`executor mapped and confirmed in ${secs(mapped.ms)}: ${JSON.stringify(pm)}; reachability: ${mapped.status.reachabilityReason}`)
  assert.equal(pm?.protocol, gateway.protocol)
  assert.equal(pm?.gateway, '10.2.0.1')
  const lease = pm?.mappings.find(m => m.transport === 'tcp')
  assert.equal(lease?.internal, `${lab.ip('executor')}:${PORT}`)
  assert.equal(lease?.external, `${lab.publicIp('executor')}:${PORT}`)
  assert.ok(await gateway.forwards(lab.ip('executor'), PORT), `the router forwards the port:\n${await gateway.rules()}`)
  if (gateway.leases != null) assert.match(gateway.leases(), leaseLine(lab), 'miniupnpd holds the lease')
  const external = `/ip4/${lab.publicIp('executor')}/tcp/${PORT}`
  assert.ok(mapped.status.listenAddrs.some(a => a.startsWith(external)), `the mapped address is announced: ${mapped.status.listenAddrs.join(' ')}`)
  const exec = mapped.status.peerId
  // an idle donor hears no executors; its first job makes its broker listen and dial the announced address
  await runJobAcross(ctx, 'warm-up: ')
  await waitStatus(lab, submitter, 'a direct TCP connection to the executor\'s mapped address',
    s => s.connections.some(c => c.peerId === exec && c.direct && c.transport === 'tcp' && c.remoteAddr.startsWith(external)), 45_000)
  const job = await runJobAcross(ctx, 'first: ')
  assert.equal(job.view.replicas[0].path, 'direct', 'the job went over the direct connection')
  // the broker may also hold a WebRTC connection: a relayed dispatch schedules an upgrade at once, and it can
  // start before the executor's mapped address reaches the broker; the mapped TCP connection must stay open beside it
  const direct = (await statusOf(lab, submitter))?.connections.filter(c => c.peerId === exec && c.direct) ?? []
  t.diagnostic(`the broker's direct connections to the executor: ${direct.map(c => `${c.transport} ${c.remoteAddr}`).join('; ')}`)
  const conn = direct.find(c => c.transport === 'tcp')
  assert.ok(conn?.remoteAddr.startsWith(external), `a TCP connection to ${external}: ${JSON.stringify(direct)}`)
}

/** miniupnpd's lease line for the executor's TCP mapping: `TCP:eport:iaddr:iport:…` */
function leaseLine (lab: Lab): RegExp {
  return new RegExp(`^TCP:${PORT}:${lab.ip('executor').replaceAll('.', '\\.')}:${PORT}:`, 'm')
}

/** Stops the executor: its mapping must leave the router; then starts it again for the rest of the scenario. */
async function removedAtStop (ctx: PairContext, gateway: Granting, bootstrap: string[]): Promise<void> {
  const { t, lab, executor, runDir } = ctx
  assert.equal(await executor.proc.stop(15_000), 0, 'the executor exits 0 on SIGTERM')
  const removal = readFileSync(executor.logFile, 'utf8').split('\n').filter(l => /removed the mapping/.test(l))
  t.diagnostic(`executor's log at stop:\n${removal.join('\n')}; gateway:\n${gateway.log().split('\n').slice(-8).join('\n')}`)
  assert.ok(removal.length > 0, 'the executor logged the removal')
  if (gateway.deleted != null) assert.match(gateway.log(), gateway.deleted)
  if (gateway.leases != null) assert.doesNotMatch(gateway.leases(), leaseLine(lab), 'miniupnpd holds the lease no more')
  assert.equal(await gateway.forwards(lab.ip('executor'), PORT), false, 'the router forwards the port no more')
  const again = startDonor(lab, 'executor', runDir, { name: 'executor', bootstrap, args: ['--listen', `/ip4/${lab.ip('executor')}/tcp/${PORT}`, ...LAB_PUBLIC] })
  Object.assign(ctx.executor, { proc: again.proc, startedAt: again.startedAt })
  await waitDispatchable(lab, ctx.executor, { timeoutMs: 30_000 })
}

/**
 * The granted path end to end: `start` brings up the site router's gateway before the donors; the mapping is
 * granted, confirmed, dialled directly, removed at stop, and after a restart the doctor reports it — also when
 * PCP (and NAT-PMP) go unanswered first (~4 s of retries each) and AutoNAT v2 confirms the address some 10 s
 * after it appears: the doctor waits for a confirmation from the grant on (src/doctor/probe-port-mapping.ts).
 */
async function grantedScenario (t: TestContext, key: ScenarioKey, start: (ctx: { lab: Lab, runDir: string }) => Promise<Granting>, opts: { services?: RelaySpec[] } = {}): Promise<void> {
  let gateway: Granting | undefined
  let bootstrap: string[] = []
  await pairScenario(t, {
    key,
    submitter: { nat: 'cone' },
    executor: { nat: 'cone' },
    services: opts.services ?? [],
    relayArgs: LAB_PUBLIC,
    donorArgs: (name, lab) => name === 'executor' ? ['--listen', `/ip4/${lab.ip('executor')}/tcp/${PORT}`, ...LAB_PUBLIC] : LAB_PUBLIC,
    beforeDonors: async ({ lab, runDir, relays }) => {
      gateway = await start({ lab, runDir })
      bootstrap = relays.flatMap(r => [r.addr.tcp, r.addr.quic, r.addr.ws])
      // the doctor reads the data directory's config.json (the daemon has the flags too)
      mkdirSync(join(runDir, 'executor'), { recursive: true })
      writeFileSync(join(runDir, 'executor', 'config.json'), JSON.stringify({ publicRanges: LAB_RANGES }))
      return undefined
    },
    during: async (ctx) => {
      if (gateway == null) throw new Error('the gateway did not start')
      await grantedAndDialledDirectly(ctx, gateway)
      await removedAtStop(ctx, gateway, bootstrap)
    },
    doctorExpect: (report) => {
      const check = report.checks.find(c => c.name === 'port-mapping')
      t.diagnostic(`doctor: port-mapping ${check?.value ?? '?'}: ${check?.detail ?? ''}`)
      const protocol = (gateway?.protocol ?? '?').toUpperCase()
      const mapped = `^${protocol} at 10\\.2\\.0\\.1 mapped tcp 203\\.0\\.113\\.11:\\d+ → 10\\.2\\.0\\.2:\\d+`
      assert.equal(check?.value, 'yes', JSON.stringify(report.observations.portMapping))
      assert.match(check?.detail ?? '', new RegExp(`${mapped}.*; AutoNAT v2 confirmed 203\\.0\\.113\\.11:\\d+`))
    }
  })
}

/** the lab's STUN server with two IPs, for miniupnpd's STUN test (portmap-stun.ts) */
const STUN_HOST: RelaySpec = { name: 'stun', ip: '198.51.100.30' }
const STUN_OTHER_IP = '198.51.100.31'

/** miniupnpd on the executor's router, STUN-checked, serving `kind`; the protocol our client settles on. */
function miniupnpdGranting (kind: PortMapKind): (ctx: { lab: Lab, runDir: string }) => Promise<Granting> {
  return async ({ lab, runDir }: { lab: Lab, runDir: string }): Promise<Granting> => {
    const stun = await startLabStun(lab, STUN_HOST.name, STUN_OTHER_IP, runDir)
    const router = await startMiniupnpd(lab, 'siteb', 'executor', kind, runDir, stun)
    const log = router.log()
    assert.match(log, /STUN: ext interface wan with IP address 203\.0\.113\.11 is now behind unrestricted full-cone NAT 1:1/, `miniupnpd's STUN test:\n${log}`)
    return { protocol: kind, forwards: router.forwards, log: router.log, leases: router.leases, rules: router.ruleset }
  }
}

labSuite('Network-namespace lab: port mapping against miniupnpd on a home router (UPnP IGD, NAT-PMP, PCP)', () => {
  it('PCP at miniupnpd: granted, announced, confirmed by AutoNAT v2, dialled directly by a broker at another site, the doctor says yes, and stop removes it', { skip: only('portmap-pcp'), timeout: TEST_TIMEOUT_MS }, async (t) => {
    await grantedScenario(t, 'portmap-pcp', miniupnpdGranting('pcp'), { services: [STUN_HOST] })
  })

  it('NAT-PMP at miniupnpd (PCP dropped at the router): PCP times out, NAT-PMP is granted; the same chain, and the doctor says yes', { skip: only('portmap-natpmp'), timeout: TEST_TIMEOUT_MS }, async (t) => {
    await grantedScenario(t, 'portmap-natpmp', miniupnpdGranting('natpmp'), { services: [STUN_HOST] })
  })

  it('UPnP IGD at miniupnpd: PCP and NAT-PMP go unanswered, SSDP finds the gateway, AddPortMapping is granted; the same chain, and the doctor says yes', { skip: only('portmap-upnp'), timeout: TEST_TIMEOUT_MS }, async (t) => {
    await grantedScenario(t, 'portmap-upnp', miniupnpdGranting('upnp'), { services: [STUN_HOST] })
  })

  it('A refusing miniupnpd (no STUN, so its reserved WAN address forbids forwarding): every protocol asked, the refusal in status, log and doctor, nothing forwarded, jobs run relayed', { skip: only('portmap-refused'), timeout: TEST_TIMEOUT_MS }, async (t) => {
    await refusedScenario(t)
  })

  it('The lab\'s own granting PCP gateway (iptables DNAT): the same chain', { skip: only('portmap-granted'), timeout: TEST_TIMEOUT_MS }, async (t) => {
    await grantedScenario(t, 'portmap-granted', async ({ lab, runDir }) => {
      const gw = await startGrantingGateway(lab, 'siteb', 'executor', runDir)
      return { protocol: 'pcp', forwards: gw.forwards, log: gw.proc.stdout, rules: gw.natRules, deleted: new RegExp(`DELETE tcp ${PORT} ${lab.ip('executor').replaceAll('.', '\\.')}:${PORT}`) }
    })
  })
})
