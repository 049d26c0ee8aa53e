/**
 * Captive portals in the namespace lab (issue 16, part 5): a hotel network
 * whose router sends every TCP 80/443 connection to a sign-in page (a 302 to
 * http://portal.lab.example/login; a self-signed certificate on 443) and drops
 * everything else, UDP included, until the guest signs in.
 *
 *  - the doctor on that network exits non-zero, says `captive-portal` yes with
 *    the sign-in URL (JSON and human report), and its verdict says so first;
 *  - a daemon started there shows `captivePortal.state = 'yes'` in status;
 *    once the test "signs in" (the router lets the host out by normal NAT), the
 *    daemon reserves by itself, without a restart, within 30 s, and a job from
 *    another site runs on it;
 *  - the same relay seen from an open network: `captive-portal` no.
 *
 *   npm run test:lab -- --only captive-portal     (keys: captive-portal, captive-open)
 */
import assert from 'node:assert/strict'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { it, type TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'
import { issueCert, makeCa, type TestCa } from '../helpers/dns-server.ts'
import { BIN, NODE, startDonor, startRelay, statusOf, tail, waitDispatchable, type DonorNode, type RelayNode } from './processes.ts'
import { labSuite, markFailed, RUN_ROOT, rows, runJobAcross, scenarioKeys, secs, TEST_TIMEOUT_MS, type Row } from './scenario.ts'
import { buildTopology, labEnv, namespacesWithPrefix, type Lab, type LabProcess, type RelaySpec } from './topology.ts'
import { PORTAL_HTTP_PORT, PORTAL_HTTPS_PORT, signIn } from './captive-rules.ts'
import type { DoctorReport } from '../../src/core/doctor.ts'
import type { CaptivePortalStatus } from '../../src/core/types.ts'

const only = scenarioKeys(['captive-portal', 'captive-open'] as const)

const RELAY: RelaySpec = { name: 'relay', ip: '198.51.100.10' }
const SIGN_IN = 'http://portal.lab.example/login'
const PORTAL_SERVER = fileURLToPath(new URL('./captive-portal-server.ts', import.meta.url))
/** from signing in to a reservation, without a restart */
const JOIN_AFTER_SIGN_IN_MS = 30_000

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

interface Doctored { code: number | null, ms: number, report?: DoctorReport, stdout: string, stderr: string }

/** `worldcompute doctor` in the host's namespace, as a user runs it. */
async function runDoctor (lab: Lab, host: string, runDir: string, bootstrap: string[], ca: TestCa, json: boolean): Promise<Doctored> {
  const argv = [BIN, 'doctor', '--data-dir', join(runDir, `doctor-${host}-${json ? 'json' : 'text'}`), ...(json ? ['--json'] : []), ...bootstrap.flatMap(a => ['--bootstrap', a])]
  const res = await lab.run(host, argv, { env: labEnv({ NODE_EXTRA_CA_CERTS: ca.caCert }), timeoutMs: 60_000 })
  let report: DoctorReport | undefined
  if (json) {
    try {
      report = JSON.parse(res.stdout) as DoctorReport
    } catch (err) {
      throw new Error(`doctor printed no JSON report (exit ${String(res.code)}): ${res.stdout}\n${res.stderr}`, { cause: err })
    }
  }
  return { code: res.code, ms: res.ms, ...(report != null ? { report } : {}), stdout: res.stdout, stderr: res.stderr }
}

function checkOf (r: DoctorReport, name: string): { value: string, detail: string } {
  const c = r.checks.find(x => x.name === name)
  assert.ok(c != null, `the report has a ${name} check`)
  return c
}

/** Polls `status --json` until `pick` accepts the captive portal view, bounded. */
async function waitPortal (lab: Lab, donor: DonorNode, pick: (p: CaptivePortalStatus) => boolean, timeoutMs: number, what: string): Promise<CaptivePortalStatus> {
  const deadline = Date.now() + timeoutMs
  let last: CaptivePortalStatus | undefined
  while (Date.now() < deadline) {
    if (!donor.proc.running()) throw new Error(`daemon ${donor.name} exited; stderr:\n${tail(donor.proc.stderr())}`)
    const s = await statusOf(lab, donor).catch(() => undefined)
    last = s?.captivePortal
    if (last != null && pick(last)) return last
    await sleep(250)
  }
  throw new Error(`${donor.name}: ${what} not seen within ${timeoutMs} ms; last captivePortal: ${JSON.stringify(last ?? null)}; stderr:\n${tail(donor.proc.stderr())}`)
}

async function startPortal (lab: Lab, router: string, runDir: string, cert: { cert: string, key: string }): Promise<LabProcess> {
  const proc = lab.exec(router, [NODE, PORTAL_SERVER, String(PORTAL_HTTP_PORT), String(PORTAL_HTTPS_PORT), cert.cert, cert.key, SIGN_IN], { env: labEnv(), logFile: join(runDir, 'portal.log') })
  const deadline = Date.now() + 20_000
  while (Date.now() < deadline) {
    if (proc.stdoutLines.some(l => l.includes('"ready":true'))) return proc
    if (!proc.running()) break
    await sleep(50)
  }
  throw new Error(`the portal web server did not start within 20 s (running: ${proc.running()}); stderr:\n${tail(proc.stderr())}`)
}

interface Started { lab: Lab, runDir: string, ca: TestCa, relay: RelayNode, bootstrap: string[], row: Row }

/** The topology, the relay (TCP/QUIC 4001, WS 80, WSS 443 with a certificate from a CA the donors trust), then `body`; everything torn down after. */
async function withLab (t: TestContext, key: string, sites: Parameters<typeof buildTopology>[0]['sites'], body: (s: Started) => Promise<void>): Promise<void> {
  const row: Row = { scenario: key, dispatchable: '-', time: '-', path: '-', job: '-', lab: '-' }
  rows.push(row)
  const runDir = join(RUN_ROOT, key)
  mkdirSync(runDir, { recursive: true })
  const lab = await buildTopology({ relays: [RELAY], sites })
  let relay: RelayNode | undefined
  let failure: unknown
  try {
    const pki = join(runDir, 'pki')
    mkdirSync(pki, { recursive: true })
    const ca = makeCa(pki, 'WorldCompute Lab Relay CA')
    relay = await startRelay(lab, RELAY.name, runDir, { tls: issueCert(ca, RELAY.name, [`IP:${lab.ip(RELAY.name)}`]) })
    // what a user copies from the relay's start-up output
    const bootstrap = [relay.addr.tcp, relay.addr.quic, relay.addr.ws, relay.addr.wss ?? '']
    await body({ lab, runDir, ca, relay, bootstrap, row })
  } catch (err) {
    failure = err
    markFailed()
  } finally {
    const code = await relay?.proc.stop(10_000)
    const report = await lab.teardown()
    row.lab = `${lab.setupMs} ms / ${report.ms} ms`
    t.diagnostic(`relay exit ${String(code)}; torn down in ${report.ms} ms (${report.killed} killed, ${report.strays} strays)`)
    if (failure != null && relay != null) t.diagnostic(`relay log:\n${tail(relay.proc.stderr(), 20)}`)
    assert.deepEqual(namespacesWithPrefix(lab.prefix), [], 'no namespace of this scenario is left')
  }
  if (failure != null) throw failure
}

/** Both doctor runs behind the portal: exit 1, `captive-portal` yes with the URL, the verdict saying so first. */
async function doctorBehindPortal (t: TestContext, s: Started): Promise<void> {
  const [json, text] = await Promise.all([
    runDoctor(s.lab, 'guest', s.runDir, s.bootstrap, s.ca, true),
    runDoctor(s.lab, 'guest', s.runDir, s.bootstrap, s.ca, false)
  ])
  const r = json.report
  assert.ok(r != null)
  const c = checkOf(r, 'captive-portal')
  s.row.doctor = `captive-portal ${c.value}, exit ${String(json.code)}`
  t.diagnostic(`doctor (json) exited ${String(json.code)} after ${json.ms} ms; verdict: ${r.verdict}\n  captive-portal  ${c.value}  ${c.detail}`)
  t.diagnostic(`doctor (human) exited ${String(text.code)}:\n${text.stdout}`)
  assert.equal(json.code, 1, 'the doctor exits non-zero behind a portal')
  assert.equal(text.code, 1, 'the doctor exits non-zero behind a portal (human report)')
  assert.equal(c.value, 'yes')
  assert.ok(c.detail.includes(SIGN_IN), c.detail)
  assert.equal(r.observations.captivePortal?.url, SIGN_IN)
  assert.equal(r.canDonate, false)
  assert.match(r.verdict, /^This network shows a sign-in page \(captive portal\): sign in at http:\/\/portal\.lab\.example\/login in a browser and run the doctor again\./)
  assert.match(text.stdout, /^This network shows a sign-in page \(captive portal\): sign in at http:\/\/portal\.lab\.example\/login/)
  assert.match(text.stdout, /\n {2}captive-portal +yes +this network shows a sign-in page \(captive portal\) at http:\/\/portal\.lab\.example\/login/)
}

labSuite('captive portals (namespace lab)', () => {
  it('Behind a hotel portal the doctor says sign in first and exits non-zero; a daemon started there says so in status, joins by itself within 30 s of signing in, and runs a job from another site', { skip: only('captive-portal'), timeout: TEST_TIMEOUT_MS * 2 }, async (t) => {
    await withLab(t, 'captive-portal', [
      { name: 'hotel', nat: 'cone', firewall: 'captive-portal', hosts: [{ name: 'guest' }] },
      { name: 'home', nat: 'cone', hosts: [{ name: 'submitter' }] }
    ], async (s) => {
      const { lab, runDir, row } = s
      const portalCa = makeCa(join(runDir, 'pki'), 'Hotel Portal CA')
      const portal = await startPortal(lab, 'router:hotel', runDir, issueCert(portalCa, 'portal', ['DNS:portal.lab.example']))
      try {
        await doctorBehindPortal(t, s)
        const env = { NODE_EXTRA_CA_CERTS: s.ca.caCert }
        const guest = startDonor(lab, 'guest', runDir, { bootstrap: s.bootstrap, env })
        const submitter = startDonor(lab, 'submitter', runDir, { bootstrap: s.bootstrap, noExecute: true, env })
        const seen = await waitPortal(lab, guest, p => p.state === 'yes', 30_000, 'captivePortal.state yes')
        assert.equal(seen.url, SIGN_IN)
        assert.ok(seen.since != null && seen.checkedAt != null, JSON.stringify(seen))
        const before = await statusOf(lab, guest)
        assert.equal(before?.relays.length, 0, 'no reservation through the portal')
        assert.match(guest.proc.stderr(), /this network shows a sign-in page \(captive portal\) at http:\/\/portal\.lab\.example\/login: open it in a browser and sign in; the donor joins by itself afterwards/)

        const signedInAt = Date.now()
        await signIn(lab, 'guest')
        const joined = await waitDispatchable(lab, guest, { timeoutMs: JOIN_AFTER_SIGN_IN_MS, after: signedInAt })
        row.dispatchable = 'yes'
        row.time = `${secs(joined.ms)} after sign-in (${joined.transport})`
        t.diagnostic(`guest reserved ${joined.ms} ms after signing in, over ${joined.transport}`)
        const cleared = await waitPortal(lab, guest, p => p.state === 'no', 90_000, 'captivePortal.state no after sign-in')
        assert.equal(cleared.url, undefined)
        assert.match(guest.proc.stderr(), /the captive portal lets this device out now/)
        await waitDispatchable(lab, submitter, { timeoutMs: 30_000 })
        await runJobAcross({ t, lab, runDir, relay: s.relay, relays: [s.relay], submitter, executor: guest, row })
      } finally {
        await portal.stop(5_000)
        t.diagnostic(`portal log:\n${tail(portal.stderr(), 10)}`)
      }
    })
  })

  it('On an open network the same relay answers the probe and the doctor says captive-portal no', { skip: only('captive-open'), timeout: TEST_TIMEOUT_MS }, async (t) => {
    await withLab(t, 'captive-open', [{ name: 'cafe', nat: 'cone', hosts: [{ name: 'guest' }] }], async (s) => {
      const res = await runDoctor(s.lab, 'guest', s.runDir, s.bootstrap, s.ca, true)
      const r = res.report
      assert.ok(r != null)
      const c = checkOf(r, 'captive-portal')
      s.row.doctor = `captive-portal ${c.value}, exit ${String(res.code)}`
      s.row.dispatchable = r.canDonate ? 'can donate' : 'cannot donate'
      t.diagnostic(`doctor exited ${String(res.code)} after ${res.ms} ms; verdict: ${r.verdict}\n  captive-portal  ${c.value}  ${c.detail}`)
      assert.equal(c.value, 'no', c.detail)
      assert.equal(res.code, 0)
      assert.doesNotMatch(r.verdict, /captive portal/)
      assert.deepEqual(r.observations.captivePortal?.answers.map(a => a.outcome), ['relay', 'relay'], 'the relay answered on 80 and on 443')
    })
  })
})
