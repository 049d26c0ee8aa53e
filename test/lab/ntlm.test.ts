/**
 * A proxy-only network whose proxy wants NTLM (traversal II, part 2): the
 * executor's site may reach nothing but a squid on the internet configured
 * with `auth_param ntlm` (squid's ntlm_fake_auth helper: it runs the whole
 * NTLM exchange, challenge included, and accepts any user) and no Basic.
 * The donor's only configuration is the proxy variable as a Windows user
 * writes it: `HTTPS_PROXY=http://LAB%5Cdonor:secret@proxy:3128`. It must
 * become dispatchable through the proxy, run a job, show NTLM in `status`,
 * and the doctor must say `proxy-auth` yes (NTLM). A second daemon with no
 * credentials must record PROXY_AUTH_REQUIRED (the scheme named) at phase
 * `proxy`, and its doctor must say `proxy-auth` no.
 *
 *   npm run test:lab -- --only proxy-ntlm      (or WC_LAB_ONLY=proxy-ntlm)
 */
import assert from 'node:assert/strict'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { it, type TestContext } from 'node:test'
import { BIN, describeAttempt, dialsOf, startDonor, statusOf, tail, type DonorNode } from './processes.ts'
import { PROXY, serviceDir, SQUID, SQUID_PORT, squidCommonConf, waitForLog, type Service } from './proxy-services.ts'
import { labSuite, pairScenario, scenarioKeys, TEST_TIMEOUT_MS } from './scenario.ts'
import { labEnv, type Lab } from './topology.ts'
import type { DoctorReport } from '../../src/core/doctor.ts'
import type { DaemonStatus, DialAttempt } from '../../src/core/types.ts'

const only = scenarioKeys(['proxy-ntlm'] as const)

const NTLM_HELPER = ['/usr/lib/squid/ntlm_fake_auth', '/usr/lib64/squid/ntlm_fake_auth'].find(p => existsSync(p))
const SECRET = 'n7lm:s3cret@pass'
const NTLM_URL = `http://LAB%5Cdonor:${encodeURIComponent(SECRET)}@${PROXY.ip}:${SQUID_PORT}`
const BARE_URL = `http://${PROXY.ip}:${SQUID_PORT}`

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** squid with NTLM only (no Basic): CONNECT to 443 and 4001 for authenticated users. */
async function startNtlmSquid (lab: Lab, runDir: string): Promise<Service> {
  // a tool the scenario needs is a failure when missing, not a skip: CI installs squid-openssl
  if (SQUID == null || NTLM_HELPER == null) throw new Error('squid with /usr/lib/squid/ntlm_fake_auth is needed (apt-get install squid-openssl)')
  const dir = serviceDir(runDir, 'squid-ntlm', 'proxy')
  const log = join(dir, 'access.log')
  const conf = [
    `http_port ${PROXY.ip}:${SQUID_PORT}`,
    ...squidCommonConf(dir, log, 'none'),
    `auth_param ntlm program ${NTLM_HELPER}`,
    'auth_param ntlm children 2 startup=1',
    'acl authenticated proxy_auth REQUIRED',
    'acl tunnel_ports port 443 4001',
    'acl CONNECT method CONNECT',
    'http_access deny CONNECT !tunnel_ports',
    'http_access allow authenticated',
    'http_access deny all',
    ''
  ].join('\n')
  writeFileSync(join(dir, 'squid.conf'), conf, { mode: 0o644 })
  const proc = lab.exec(PROXY.name, [SQUID, '-N', '-d', '1', '-f', join(dir, 'squid.conf')], { env: labEnv(), logFile: join(dir, 'squid.out') })
  await waitForLog(proc, join(dir, 'cache.log'), /Accepting HTTP Socket connections/, 'squid (NTLM)')
  return { proc, dir, log, stop: async () => { await proc.stop(5_000) } }
}

/** Polls a daemon's dial records (bounded) until one matches. */
async function waitForDial (lab: Lab, donor: DonorNode, match: (a: DialAttempt) => boolean, timeoutMs = 30_000): Promise<DialAttempt> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (!donor.proc.running()) throw new Error(`${donor.name} exited: ${tail(donor.proc.stderr())}`)
    const found = (await dialsOf(lab, donor).catch(() => undefined))?.attempts.find(match)
    if (found != null) return found
    await sleep(300)
  }
  throw new Error(`${donor.name}: no matching dial record within ${timeoutMs} ms; log:\n${tail(donor.proc.stderr())}`)
}

function proxyAuthCheck (report: DoctorReport): { value: string, detail: string } {
  const c = report.checks.find(x => x.name === 'proxy-auth')
  assert.ok(c != null, `the report has a proxy-auth check: ${report.checks.map(x => x.name).join(', ')}`)
  return c
}

/** The NTLM proxy as the executor's status shows it: in use, NTLM passed, no secret. */
function assertNtlmStatus (t: TestContext, s: DaemonStatus | undefined, relayPeer: string): void {
  t.diagnostic(`executor status.proxies: ${JSON.stringify(s?.proxies)}`)
  assert.equal(s?.relays[0]?.transport, 'ws', 'the executor reached the relay over the WebSocket rung')
  const p = s?.proxies?.find(x => x.inUse)
  assert.ok(p != null, `status shows a proxy in use: ${JSON.stringify(s?.proxies)}`)
  assert.deepEqual({ url: p.url, relays: p.relays }, { url: `http://***@${PROXY.ip}:${SQUID_PORT}`, relays: [relayPeer] })
  assert.deepEqual([p.auth?.scheme, p.auth?.offered, p.auth?.last], ['ntlm', ['NTLM'], 'passed'])
  assert.ok((p.auth?.passed ?? 0) >= 1)
  assert.ok(!JSON.stringify(s).includes(SECRET) && !JSON.stringify(s).includes(encodeURIComponent(SECRET)), 'no password in status')
}

/**
 * A daemon on the same host with the proxy but no credentials: one dial
 * record PROXY_AUTH_REQUIRED at phase `proxy` naming NTLM, a WARN line, not
 * dispatchable; then the doctor with the same environment says proxy-auth no.
 */
async function withoutCredentials (t: TestContext, lab: Lab, runDir: string, bootstrap: string[], relayWs: string): Promise<void> {
  const bare = startDonor(lab, 'executor', runDir, { name: 'nocreds', bootstrap, noExecute: true, env: { HTTPS_PROXY: BARE_URL } })
  try {
    const a = await waitForDial(lab, bare, x => x.outcome === 'failure' && x.target === relayWs)
    t.diagnostic(`no credentials: ${describeAttempt(a)}`)
    assert.deepEqual([a.phase, a.code], ['proxy', 'PROXY_AUTH_REQUIRED'])
    assert.match(a.cause, /407 Proxy Authentication Required \(it asks for NTLM\)/)
    assert.match(a.cause, /DOMAIN%5Cuser:password/)
    assert.match(bare.proc.stderr(), / WARN +net\.dial: dial failed: .* at proxy: /, 'the failure is a WARN line at the default level')
    const st = await statusOf(lab, bare)
    assert.equal(st?.relays.length, 0, 'no reservation without credentials')
    assert.deepEqual([st?.proxies?.[0]?.auth?.last, st?.proxies?.[0]?.auth?.code], ['required', 'PROXY_AUTH_REQUIRED'])
  } finally {
    await bare.proc.stop(10_000)
  }
  // the stopped daemon's data folder: the doctor runs with a throw-away identity beside it
  const argv = [BIN, 'doctor', '--json', '--data-dir', bare.dataDir, ...bootstrap.flatMap(b => ['--bootstrap', b])]
  const res = await lab.run('executor', argv, { env: labEnv({ HTTPS_PROXY: BARE_URL }), timeoutMs: 60_000 })
  let report: DoctorReport
  try {
    report = JSON.parse(res.stdout) as DoctorReport
  } catch (err) {
    throw new Error(`the doctor without credentials printed no JSON report (exit ${String(res.code)}):\n${tail(res.stderr)}`, { cause: err })
  }
  const c = proxyAuthCheck(report)
  t.diagnostic(`doctor without credentials: exit ${String(res.code)}; proxy-auth ${c.value}: ${c.detail}`)
  assert.equal(c.value, 'no')
  assert.match(c.detail, /offered NTLM\) and no credentials were given \[PROXY_AUTH_REQUIRED\]/)
  assert.equal(report.canDonate, false)
  assert.notEqual(res.code, 0, 'the doctor exits non-zero when donating is not possible')
}

labSuite('Network-namespace lab: a proxy that wants NTLM', () => {
  it('A donor whose only way out is an NTLM-only squid (HTTPS_PROXY=http://LAB%5Cdonor:…@proxy:3128) joins, runs a job, and the doctor says proxy-auth yes (NTLM); without credentials it says PROXY_AUTH_REQUIRED and proxy-auth no', { skip: only('proxy-ntlm'), timeout: TEST_TIMEOUT_MS }, async (t) => {
    let squid: Service | undefined
    let relayIp = ''
    await pairScenario(t, {
      key: 'proxy-ntlm',
      submitter: { nat: 'none' },
      executor: { nat: 'cone', firewall: 'proxy-only', proxy: `${PROXY.ip}:${SQUID_PORT}` },
      services: [PROXY],
      beforeDonors: async ({ lab, runDir }) => {
        squid = await startNtlmSquid(lab, runDir)
        t.diagnostic(`squid (NTLM only) ready on ${PROXY.ip}:${SQUID_PORT} (pid ${squid.proc.pid}), files in ${squid.dir}`)
        return squid.stop
      },
      donorEnv: (name): Record<string, string> => name === 'executor' ? { HTTPS_PROXY: NTLM_URL } : {},
      mustExplain: relay => ({ executor: [relay.addr.tcp, relay.addr.quic] }),
      during: async ({ t, lab, runDir, executor, relay }) => {
        assertNtlmStatus(t, await statusOf(lab, executor), relay.peerId)
        const log = executor.proc.stderr() + executor.proc.stdout()
        assert.ok(!log.includes(SECRET) && !log.includes(encodeURIComponent(SECRET)), 'no password in the executor\'s log')
        relayIp = relay.addr.ws.split('/')[2]
        await withoutCredentials(t, lab, runDir, [relay.addr.tcp, relay.addr.quic, relay.addr.ws], relay.addr.ws)
      },
      doctorExpect: (report) => {
        const c = proxyAuthCheck(report)
        t.diagnostic(`doctor with NTLM credentials: proxy-auth ${c.value}: ${c.detail}`)
        assert.equal(c.value, 'yes', `proxy-auth: ${c.detail}`)
        assert.match(c.detail, /offered NTLM\) and opened \d+ tunnel\(s\) after NTLM/)
      }
    })
    // squid writes a tunnel's access-log line when it closes: read it once squid has stopped
    const access = readFileSync(squid?.log ?? '', 'utf8')
    t.diagnostic(`squid access.log:\n${tail(access, 6)}`)
    assert.match(access, new RegExp(`TCP_DENIED/407 .*CONNECT ${relayIp.replaceAll('.', '\\.')}:443 `), 'squid asked for authentication')
    assert.match(access, new RegExp(`TCP_TUNNEL/200 .*CONNECT ${relayIp.replaceAll('.', '\\.')}:443 \\S*donor`), 'squid logged the NTLM-authenticated CONNECT to the relay\'s port 443')
  })
})
