/**
 * `worldcompute doctor` in the namespace lab (issue 5): for each network of
 * the traversal issue, one donor host behind the firewall the test builds, a
 * real relay on the lab's internet (TCP and QUIC on 4001, WebSocket on 80,
 * WebSocket over TLS on 443 with a certificate from a private CA made here),
 * and the real CLI run inside the donor's namespace. The verdict and each
 * check's value must match the network; the evidence bundle each run writes
 * must validate with `worldcompute evidence validate`.
 *
 *   npm run test:lab -- --only doctor-open     (keys: doctor-open, doctor-443-only, doctor-symmetric,
 *                                               doctor-inspecting-firewall, doctor-dns-filtered, doctor-proxy-only)
 */
import assert from 'node:assert/strict'
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { it, type TestContext } from 'node:test'
import { issueCert, makeCa, type TestCa } from '../helpers/dns-server.ts'
import { BIN, NODE, startRelay, tail, type RelayNode } from './processes.ts'
import { PASSWORD, PROXY, PROXY_URL, SQUID_PORT, squidMissing, startSquid } from './proxy-services.ts'
import { labSuite, markFailed, RUN_ROOT, rows, scenarioKeys, secs, TEST_TIMEOUT_MS, type Row } from './scenario.ts'
import { buildTopology, labEnv, namespacesWithPrefix, type Firewall, type Lab, type LabProcess, type NatKind, type RelaySpec } from './topology.ts'
import { expectedOf } from '../../src/doctor/evidence.ts'
import type { CheckValue, DoctorReport } from '../../src/core/doctor.ts'

const only = scenarioKeys(['doctor-open', 'doctor-443-only', 'doctor-symmetric', 'doctor-inspecting-firewall', 'doctor-dns-filtered', 'doctor-proxy-only'] as const)

const RELAY: RelaySpec = { name: 'relay', ip: '198.51.100.10' }
const DNS: RelaySpec = { name: 'dns', ip: '198.51.100.53' }
const RELAY_NAME = 'relay.lab.test'
const DOH_URL = `https://${DNS.ip}/dns-query`
const DNS_SERVICE = new URL('./dns-service.ts', import.meta.url).pathname

interface Setup { env?: Record<string, string>, args?: string[], bootstrap?: string[], cleanup?: () => Promise<void> }

interface DoctorScenario {
  key: string
  nat: NatKind
  firewall?: Firewall
  proxy?: string
  services?: RelaySpec[]
  /** start services the network needs (squid, DNS); may replace the bootstrap list */
  setup?: (ctx: { lab: Lab, runDir: string, relay: RelayNode, ca: TestCa }) => Promise<Setup>
  canDonate: boolean
  /** the path's transport(s) allowed */
  transport?: string[]
  viaProxy?: boolean
  natMapping?: string
  checks: Partial<Record<string, CheckValue>>
  verdict: RegExp[]
  /** each must match one allowlist line */
  allow?: RegExp[]
  /** none may match an allowlist line */
  notAllow?: RegExp[]
  /** strings that must appear nowhere (output, log, bundle) */
  secrets?: string[]
}

function checkTable (r: DoctorReport): string {
  return r.checks.map(c => `  ${c.name.padEnd(16)} ${c.value.padEnd(8)} ${c.detail}`).join('\n')
}

async function doctorScenario (t: TestContext, s: DoctorScenario): Promise<void> {
  const row: Row = { scenario: s.key, dispatchable: '-', time: '-', path: '-', job: '-', lab: '-' }
  rows.push(row)
  const runDir = join(RUN_ROOT, s.key)
  mkdirSync(runDir, { recursive: true })
  const lab = await buildTopology({
    relays: [RELAY, ...(s.services ?? [])],
    sites: [{ name: 'site', nat: s.nat, ...(s.firewall != null ? { firewall: s.firewall } : {}), ...(s.proxy != null ? { proxy: s.proxy } : {}), hosts: [{ name: 'donor' }] }]
  })
  let relay: RelayNode | undefined
  let setup: Setup = {}
  let failure: unknown
  try {
    const pki = join(runDir, 'pki')
    mkdirSync(pki, { recursive: true })
    const ca = makeCa(pki, 'WorldCompute Lab Relay CA')
    relay = await startRelay(lab, RELAY.name, runDir, { tls: issueCert(ca, RELAY.name, [`IP:${lab.ip(RELAY.name)}`]) })
    setup = await s.setup?.({ lab, runDir, relay, ca }) ?? {}
    // what a user copies from the relay's start-up output
    const bootstrap = setup.bootstrap ?? [relay.addr.tcp, relay.addr.quic, relay.addr.ws, relay.addr.wss ?? '']
    const evidence = join(runDir, 'evidence')
    const argv = [BIN, 'doctor', '--data-dir', join(runDir, 'donor'), '--json', '--evidence', evidence, ...bootstrap.flatMap(a => ['--bootstrap', a]), ...(setup.args ?? [])]
    const res = await lab.run('donor', argv, { env: labEnv({ NODE_EXTRA_CA_CERTS: ca.caCert, ...setup.env }), timeoutMs: 60_000 })
    row.time = `${secs(res.ms)} wall`
    t.diagnostic(`doctor exited ${String(res.code)} after ${res.ms} ms (one CLI start-up included); stderr:\n${tail(res.stderr, 20)}`)
    let r: DoctorReport
    try {
      r = JSON.parse(res.stdout) as DoctorReport
    } catch (err) {
      throw new Error(`doctor printed no JSON report (exit ${String(res.code)}): ${res.stdout}\n${res.stderr}`, { cause: err })
    }
    row.dispatchable = r.canDonate ? 'can donate' : 'cannot donate'
    row.path = r.path != null ? `${r.path.transport}${r.path.viaProxy ? ' via proxy' : ''}` : 'none'
    // the checks that found something closed ("no" is the good answer for these four)
    const closed = r.checks.filter(c => c.value === 'no' && !['tls-intercepted', 'clock-skew', 'proxy', 'reachability'].includes(c.name)).map(c => c.name)
    row.job = `doctor: ${closed.length > 0 ? `no ${closed.join(', ')}` : 'nothing closed'}`
    t.diagnostic(`verdict: ${r.verdict}\nchecks:\n${checkTable(r)}\nallowlist:\n${r.allowlist.map(a => `  - ${a}`).join('\n')}\nobserved ${r.observations.observedMs} ms`)

    assert.equal(res.code, s.canDonate ? 0 : 1, 'exit code 0 exactly when donating is possible')
    assert.equal(r.canDonate, s.canDonate)
    if (s.transport != null) assert.ok(s.transport.includes(r.path?.transport ?? ''), `path over ${s.transport.join(' or ')}, got ${r.path?.transport ?? 'none'}`)
    if (s.viaProxy != null) assert.equal(r.path?.viaProxy, s.viaProxy)
    if (s.natMapping != null) assert.equal(r.natMapping, s.natMapping)
    const values = Object.fromEntries(r.checks.map(c => [c.name, c.value]))
    const wrong = Object.entries(s.checks).filter(([name, v]) => values[name] !== v).map(([name, v]) => `${name}: expected ${String(v)}, got ${values[name]} (${r.checks.find(c => c.name === name)?.detail ?? ''})`)
    assert.deepEqual(wrong, [], 'every check matches the network')
    for (const re of s.verdict) assert.match(r.verdict, re)
    for (const re of s.allow ?? []) assert.ok(r.allowlist.some(a => re.test(a)), `the allowlist asks for ${String(re)}: ${JSON.stringify(r.allowlist)}`)
    for (const re of s.notAllow ?? []) assert.ok(!r.allowlist.some(a => re.test(a)), `the allowlist must not ask for ${String(re)}: ${JSON.stringify(r.allowlist)}`)

    // the bundle: written, and valid by the validator users run
    assert.ok(r.evidence != null && r.evidence.startsWith(join(evidence, 'phase1', 'firewall-traversal')), `bundle under ${evidence}: ${String(r.evidence)}`)
    const v = await lab.run('donor', [BIN, 'evidence', 'validate', r.evidence, '--json'], { env: labEnv(), timeoutMs: 20_000 })
    t.diagnostic(`evidence validate: exit ${String(v.code)} ${v.stdout.trim().split('\n').slice(0, 8).join(' ')}`)
    assert.equal(v.code, 0, `the bundle validates: ${v.stdout}${v.stderr}`)
    const validation = JSON.parse(v.stdout) as Array<{ attempts: number, overall: string }>
    assert.ok(validation[0].attempts > 0, 'the trace has dial attempts')
    assert.equal(validation[0].overall, s.canDonate ? (r.checks.every(c => c.value === expectedOf(c.name, r)) ? 'pass' : 'partial') : 'fail')
    for (const secret of s.secrets ?? []) {
      const files = readdirSync(r.evidence).map(f => readFileSync(join(r.evidence ?? '', f), 'utf8')).join('\n')
      for (const [what, text] of [['stdout', res.stdout], ['stderr', res.stderr], ['evidence bundle', files]] as const) {
        assert.ok(!text.includes(secret), `the ${what} holds a secret`)
      }
    }
  } catch (err) {
    failure = err
    markFailed()
  } finally {
    await setup.cleanup?.().catch((err: unknown) => { t.diagnostic(`clean-up failed: ${String(err)}`) })
    const code = await relay?.proc.stop(10_000)
    const report = await lab.teardown()
    row.lab = `${lab.setupMs} ms / ${report.ms} ms`
    t.diagnostic(`relay exit ${String(code)}; torn down in ${report.ms} ms (${report.killed} killed, ${report.strays} strays)`)
    if (failure != null && relay != null) t.diagnostic(`relay log:\n${tail(relay.proc.stderr(), 20)}`)
    assert.deepEqual(namespacesWithPrefix(lab.prefix), [], 'no namespace of this scenario is left')
    assert.equal(report.strays, 0)
  }
  if (failure != null) throw failure
}

/** The lab's DNS host (plain DNS and DoH from one zone) and the donor's resolv.conf pointing at it. */
async function startDns (lab: Lab, runDir: string, relay: RelayNode, ca: TestCa): Promise<LabProcess> {
  const cert = issueCert(ca, 'doh', [`IP:${DNS.ip}`])
  const zoneFile = join(runDir, 'zone.json')
  writeFileSync(zoneFile, JSON.stringify({ [RELAY_NAME]: { A: [lab.ip(relay.host)] } }))
  const proc = lab.exec(DNS.name, [NODE, DNS_SERVICE, DNS.ip, zoneFile, cert.cert, cert.key], { logFile: join(runDir, 'dns.log') })
  const deadline = Date.now() + 15_000
  while (!proc.stdoutLines.includes('ready') && proc.running() && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 50))
  assert.ok(proc.stdoutLines.includes('ready'), `the DNS service is ready within 15 s; stderr: ${proc.stderr()}`)
  // `ip netns exec` bind-mounts this over /etc/resolv.conf for the doctor
  writeFileSync(join('/etc/netns', lab.ns('donor'), 'resolv.conf'), `nameserver ${DNS.ip}\n`)
  return proc
}

labSuite('Network-namespace lab: worldcompute doctor says what each network allows', () => {
  it('On an open network the doctor says the donor can donate over QUIC, every path is open, and asks IT for nothing', { skip: only('doctor-open'), timeout: TEST_TIMEOUT_MS }, async (t) => {
    await doctorScenario(t, {
      key: 'doctor-open',
      nat: 'none',
      canDonate: true,
      transport: ['quic'],
      natMapping: 'none',
      checks: { udp: 'yes', nat: 'yes', 'tcp-connect': 'yes', 'libp2p-over-tcp': 'yes', quic: 'yes', ws: 'yes', 'wss-443': 'yes', 'tls-intercepted': 'no', proxy: 'no', reservation: 'yes', webrtc: 'yes', 'clock-skew': 'no', dns: 'unknown', doh: 'unknown' },
      verdict: [/^You can donate: reachable through relay \S+ over QUIC \(UDP\) on port 4001\./, /Direct connections to other donors are possible \(no NAT\)/],
      notAllow: [/./]
    })
  })

  it('Behind a firewall that lets out only TCP 80/443 the doctor reports UDP and TCP 4001 blocked, donating over WebSocket, and asks for exactly those', { skip: only('doctor-443-only'), timeout: TEST_TIMEOUT_MS }, async (t) => {
    await doctorScenario(t, {
      key: 'doctor-443-only',
      nat: 'cone',
      firewall: 'tcp-80-443-only',
      canDonate: true,
      transport: ['wss', 'ws'],
      natMapping: 'no-udp',
      checks: { udp: 'no', nat: 'no', quic: 'no', 'tcp-connect': 'no', 'libp2p-over-tcp': 'unknown', ws: 'yes', 'wss-443': 'yes', 'tls-intercepted': 'no', proxy: 'no', reservation: 'yes', webrtc: 'no' },
      verdict: [/^You can donate: reachable through relay \S+ over WebSocket/, /UDP is blocked; TCP 4001 is blocked\./, /not possible from this network \(no UDP\)/],
      allow: [/^outbound UDP to 198\.51\.100\.10:4001 \(QUIC/, /^outbound TCP to 198\.51\.100\.10:4001 \(libp2p over TCP/, /^outbound UDP to 198\.51\.100\.10:3478, 198\.51\.100\.10:3479 \(STUN/],
      notAllow: [/:443/, /:80\b/]
    })
  })

  it('Behind a symmetric NAT the doctor reports the mapping and says direct connections to other donors are not possible', { skip: only('doctor-symmetric'), timeout: TEST_TIMEOUT_MS }, async (t) => {
    await doctorScenario(t, {
      key: 'doctor-symmetric',
      nat: 'symmetric',
      canDonate: true,
      transport: ['quic'],
      natMapping: 'address-and-port-dependent',
      checks: { udp: 'yes', nat: 'no', quic: 'yes', 'tcp-connect': 'yes', 'libp2p-over-tcp': 'yes', 'wss-443': 'yes', reservation: 'yes', webrtc: 'no', proxy: 'no' },
      verdict: [/^You can donate: reachable through relay \S+ over QUIC/, /Direct connections to other donors are not possible from this network \(symmetric NAT\)/],
      allow: [/^endpoint-independent UDP NAT mapping/],
      notAllow: [/^outbound/]
    })
  })

  it('Behind a protocol-inspecting firewall the doctor says TCP connects but the libp2p handshake is dropped, and donating works over WebSocket/TLS', { skip: only('doctor-inspecting-firewall'), timeout: TEST_TIMEOUT_MS }, async (t) => {
    await doctorScenario(t, {
      key: 'doctor-inspecting-firewall',
      nat: 'cone',
      firewall: 'inspect-multistream',
      canDonate: true,
      transport: ['wss'],
      checks: { udp: 'no', quic: 'no', 'tcp-connect': 'yes', 'libp2p-over-tcp': 'no', ws: 'no', 'wss-443': 'yes', reservation: 'yes', webrtc: 'no' },
      verdict: [/^You can donate: reachable through relay \S+ over WebSocket\/TLS on port 443\./, /TCP 4001 connects but the libp2p handshake is dropped — likely a protocol-inspecting firewall/],
      allow: [/^TCP to 198\.51\.100\.10:4001 without protocol inspection/],
      notAllow: [/^outbound TCP to 198\.51\.100\.10:4001/]
    })
  })

  it('On a network that drops DNS the doctor reports the OS resolver failing and DNS-over-HTTPS working, and the donor can donate', { skip: only('doctor-dns-filtered'), timeout: TEST_TIMEOUT_MS }, async (t) => {
    let dns: LabProcess | undefined
    await doctorScenario(t, {
      key: 'doctor-dns-filtered',
      nat: 'cone',
      firewall: 'dns-filtered',
      services: [DNS],
      setup: async ({ lab, runDir, relay, ca }) => {
        dns = await startDns(lab, runDir, relay, ca)
        return {
          // the relay by name for TCP and QUIC; WebSocket/TLS by IP (its certificate names the IP)
          bootstrap: [`/dns4/${RELAY_NAME}/tcp/4001/p2p/${relay.peerId}`, `/dns4/${RELAY_NAME}/udp/4001/quic-v1/p2p/${relay.peerId}`, relay.addr.wss ?? ''],
          args: ['--doh', DOH_URL],
          cleanup: async () => { await dns?.stop(5_000) }
        }
      },
      canDonate: true,
      transport: ['quic'],
      natMapping: 'endpoint-independent',
      checks: { dns: 'no', doh: 'yes', udp: 'yes', nat: 'yes', quic: 'yes', 'tcp-connect': 'yes', 'libp2p-over-tcp': 'yes', 'wss-443': 'yes', reservation: 'yes', webrtc: 'yes' },
      verdict: [/^You can donate/, /The OS resolver cannot resolve the relays' names, but DNS-over-HTTPS can\./],
      notAllow: [/DNS/]
    })
  })

  it('On a network whose only way out is an authenticating proxy the doctor says the donor is reachable only through that proxy, named without its password', { skip: only('doctor-proxy-only') ?? squidMissing, timeout: TEST_TIMEOUT_MS }, async (t) => {
    await doctorScenario(t, {
      key: 'doctor-proxy-only',
      nat: 'cone',
      firewall: 'proxy-only',
      proxy: `${PROXY.ip}:${SQUID_PORT}`,
      services: [PROXY],
      setup: async ({ lab, runDir }) => {
        const squid = await startSquid(lab, runDir)
        return { env: { HTTPS_PROXY: PROXY_URL }, cleanup: squid.stop }
      },
      canDonate: true,
      transport: ['wss'],
      viaProxy: true,
      checks: { proxy: 'yes', 'wss-443': 'yes', udp: 'no', quic: 'no', 'tcp-connect': 'no', 'libp2p-over-tcp': 'unknown', reservation: 'yes', webrtc: 'no' },
      verdict: [new RegExp(`^You can donate: reachable only through proxy http://\\*\\*\\*@${PROXY.ip.replaceAll('.', '\\.')}:${SQUID_PORT}, to relay \\S+ over WebSocket/TLS on port 443\\.`)],
      allow: [/^outbound UDP to 198\.51\.100\.10:4001/, /^outbound TCP to 198\.51\.100\.10:4001/],
      secrets: [PASSWORD, encodeURIComponent(PASSWORD)]
    })
  })
})
