/**
 * Proxies as networks provide them (issue 16, part 2): the executor's site
 * lets its hosts out only through a squid on the internet (`proxy-only`
 * firewall), and says so only the way corporate networks do: its DNS (on the
 * site router) answers `wpad.corp.lab.example`, whose web server serves a
 * wpad.dat naming the squid; the host's resolv.conf has `search
 * corp.lab.example`. No proxy variable, no flag: the donor's direct dials
 * fail, it finds the PAC by WPAD, reserves through the proxy the PAC names,
 * and runs a job; the doctor's `proxy-discovery` says yes with the URL. A
 * second scenario names the PAC with `--proxy-pac http://…` (no search
 * domain: no WPAD).
 *
 *   npm run test:lab -- --only wpad        (or WC_LAB_ONLY=wpad,wpad-pac-flag)
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { it, type TestContext } from 'node:test'
import { BIN, statusOf, tail, type DonorNode } from './processes.ts'
import { PROXY, SQUID_PORT, squidMissing, type Service } from './proxy-services.ts'
import { labSuite, pairScenario, scenarioKeys, TEST_TIMEOUT_MS, type Row } from './scenario.ts'
import { labEnv, type Lab } from './topology.ts'
import { startOpenSquid, startSiteServices, type SiteServices } from './wpad-services.ts'
import type { DoctorReport } from '../../src/core/doctor.ts'
import type { DaemonStatus } from '../../src/core/types.ts'

const only = scenarioKeys(['wpad', 'wpad-pac-flag'] as const)
const SEARCH = 'corp.lab.example'
const WPAD_URL = `http://wpad.${SEARCH}/wpad.dat`
/** what the site's PAC says: local names direct, everything else through the squid */
const PAC = `function FindProxyForURL(url, host) {
  if (isPlainHostName(host) || dnsDomainIs(host, ".${SEARCH}")) return "DIRECT";
  return "PROXY ${PROXY.ip}:${SQUID_PORT}";
}
`

/** Polls the executor's status (bounded) until discovery has an outcome. */
async function discoveryOf (lab: Lab, executor: DonorNode): Promise<DaemonStatus> {
  const deadline = Date.now() + 30_000
  let last: DaemonStatus | undefined
  while (Date.now() < deadline) {
    last = await statusOf(lab, executor)
    if (last?.proxyDiscovery != null && last.proxyDiscovery.state !== 'running' && last.proxyDiscovery.state !== 'not-needed') return last
    await new Promise(resolve => setTimeout(resolve, 300))
  }
  throw new Error(`no proxy discovery outcome in the executor's status within 30 s: ${JSON.stringify(last?.proxyDiscovery)}\n${tail(executor.proc.stderr())}`)
}

/** The executor's state through the PAC's proxy: reserved, the tunnel in use, no password-less surprises. */
function assertThroughPacProxy (t: TestContext, s: DaemonStatus, relayId: string): void {
  t.diagnostic(`executor status.proxyDiscovery: ${JSON.stringify(s.proxyDiscovery)}`)
  t.diagnostic(`executor status.proxies: ${JSON.stringify(s.proxies)}`)
  assert.ok(s.relays.some(r => r.peerId === relayId), 'the executor holds a reservation on the relay')
  const p = s.proxies?.find(x => x.inUse)
  assert.ok(p != null, `a PAC proxy carries the relay connection: ${JSON.stringify(s.proxies)}`)
  assert.equal(p.url, `http://${PROXY.ip}:${SQUID_PORT}`)
  assert.match(p.source, /^PAC /)
  assert.ok(s.proxyDiscovery?.answers.some(a => a.answer === `PROXY ${PROXY.ip}:${SQUID_PORT}`), 'the PAC named the squid for a relay address')
}

/**
 * `worldcompute doctor --json` on the executor's host with the executor's
 * bootstrap list and `args`; `--duration` lets the donor inside reserve
 * through the PAC's proxy after its direct dials failed.
 */
async function doctorOnExecutor (t: TestContext, lab: Lab, executor: DonorNode, bootstrap: string[], args: string[], row: Row): Promise<DoctorReport> {
  const argv = [BIN, 'doctor', '--json', '--duration', '25s', '--data-dir', executor.dataDir, ...bootstrap.flatMap(b => ['--bootstrap', b]), ...args]
  const res = await lab.run('executor', argv, { env: labEnv(), timeoutMs: 90_000 })
  let report: DoctorReport
  try {
    report = JSON.parse(res.stdout) as DoctorReport
  } catch (err) {
    throw new Error(`doctor on the executor printed no JSON report (exit ${String(res.code)}); stderr:\n${tail(res.stderr)}`, { cause: err })
  }
  const check = report.checks.find(c => c.name === 'proxy-discovery')
  row.doctor = `${report.canDonate ? 'can donate' : 'CANNOT donate'}; proxy-discovery=${check?.value ?? '?'}`
  t.diagnostic(`doctor on the executor: exit ${String(res.code)} in ${res.ms} ms: ${report.verdict}`)
  t.diagnostic(`doctor checks: ${report.checks.map(c => `${c.name}=${c.value}`).join(' ')}`)
  t.diagnostic(`doctor proxy-discovery: ${check?.value ?? '?'}: ${check?.detail ?? ''}`)
  return report
}

async function wpadScenario (t: TestContext, key: 'wpad' | 'wpad-pac-flag'): Promise<void> {
  const explicit = key === 'wpad-pac-flag'
  let squid: Service | undefined
  let site: SiteServices | undefined
  let pacUrl = ''
  let bootstrapUsed: string[] = []
  await pairScenario(t, {
    key,
    submitter: { nat: 'cone' },
    executor: { nat: 'cone', firewall: 'proxy-only', proxy: `${PROXY.ip}:${SQUID_PORT}` },
    services: [PROXY],
    // direct dials must fail first (each a few seconds) before WPAD runs
    dispatchTimeoutMs: 90_000,
    beforeDonors: async ({ lab, runDir }) => {
      squid = await startOpenSquid(lab, runDir)
      const files: Record<string, string> = { [explicit ? 'corp.pac' : 'wpad.dat']: PAC }
      // with --proxy-pac the site has no search domain: only the flag can name the PAC
      site = await startSiteServices(lab, runDir, 'executor', { zone: { [`wpad.${SEARCH}`]: { A: [lab.ip('executor').replace(/\.\d+$/, '.1')] } }, files, ...(explicit ? {} : { search: SEARCH }) })
      pacUrl = explicit ? `http://${site.ip}/corp.pac` : WPAD_URL
      t.diagnostic(`squid on ${PROXY.ip}:${SQUID_PORT}; site DNS and WPAD on ${site.ip}; PAC ${pacUrl}`)
      return async () => { await site?.stop(); await squid?.stop() }
    },
    bootstrap: (relays) => {
      bootstrapUsed = relays.flatMap(r => [r.addr.tcp, r.addr.quic, r.addr.ws])
      return bootstrapUsed
    },
    donorArgs: (name) => explicit && name === 'executor' ? ['--proxy-pac', pacUrl] : [],
    doctor: false,
    during: async ({ t, lab, executor, relay, row }) => {
      const s = await discoveryOf(lab, executor)
      const d = s.proxyDiscovery
      assert.equal(d?.state, 'found', `discovery found the PAC: ${JSON.stringify(d)}`)
      assert.equal(d?.url, pacUrl)
      assert.equal(d?.source, explicit ? 'flag' : 'wpad-dns')
      if (!explicit) {
        assert.ok(d?.looked.includes(`/etc/resolv.conf: search ${SEARCH}`), `it says it read the search domain: ${JSON.stringify(d?.looked)}`)
        const found = executor.proc.stderr().split('\n').filter(l => l.includes('PROXY_PAC_FOUND') || l.includes('proxy discovery: using the PAC'))
        assert.equal(found.length, 1, `logged once at INFO:\n${found.join('\n')}`)
        assert.match(found[0], / INFO /)
      }
      assertThroughPacProxy(t, (await statusOf(lab, executor)) ?? s, relay.peerId)
      const report = await doctorOnExecutor(t, lab, executor, bootstrapUsed, explicit ? ['--proxy-pac', pacUrl] : [], row)
      const check = report.checks.find(c => c.name === 'proxy-discovery')
      assert.equal(check?.value, 'yes', `doctor proxy-discovery: ${check?.detail ?? ''}`)
      assert.ok(check?.detail.includes(pacUrl), 'the doctor names the PAC URL')
      assert.equal(report.observations.proxyDiscovery?.url, pacUrl)
      t.diagnostic(`site service log:\n${site?.proc.stderr().trim() ?? ''}`)
    }
  })
  // squid writes a tunnel's access-log line when the tunnel closes: read it once squid has stopped
  const access = readFileSync(squid?.log ?? join('/nonexistent'), 'utf8')
  t.diagnostic(`squid access log:\n${tail(access, 10)}`)
  assert.match(access, /CONNECT 198\.51\.100\.10:(443|4001)/, 'the relay connection went through the squid the PAC named')
}

labSuite('Network-namespace lab: a donor whose network names its proxy only by WPAD or a PAC file', () => {
  it('A donor behind a proxy-only firewall with no proxy configured finds the proxy by WPAD (DNS search domain), becomes dispatchable through it and runs a job', { skip: only('wpad') ?? squidMissing, timeout: TEST_TIMEOUT_MS + 60_000 }, async (t) => {
    await wpadScenario(t, 'wpad')
  })

  it('A donor given --proxy-pac http://… on a proxy-only network uses the PAC from the start and runs a job', { skip: only('wpad-pac-flag') ?? squidMissing, timeout: TEST_TIMEOUT_MS + 60_000 }, async (t) => {
    await wpadScenario(t, 'wpad-pac-flag')
  })
})
