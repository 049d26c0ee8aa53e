/**
 * Network 7 of the traversal issue, lab matrix row "TLS-inspecting proxy ↔
 * open": the executor's site may reach nothing but a proxy on the internet,
 * and that proxy inspects TLS: a real squid (Debian's squid-openssl) with
 * `ssl_bump` peeks at the client hello, stares at the relay's certificate and
 * bumps, re-signing a mimicked certificate with a "corporate" CA made here by
 * openssl. The relay serves WSS on 443 with a certificate from the lab's own
 * CA, which squid (and only squid) trusts.
 *
 * The corporate CA reaches the executor as its *system store*, through
 * SSL_CERT_FILE, not NODE_EXTRA_CA_CERTS: that is how IT deploys an
 * inspection CA (into the OS store, which OpenSSL reads through SSL_CERT_FILE
 * / SSL_CERT_DIR on Linux), and it exercises the daemon's own "trust the
 * system store" start-up step; NODE_EXTRA_CA_CERTS would pass even without it.
 *
 *   npm run test:lab -- --only tls-inspecting
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { it } from 'node:test'
import { issueCert, makeCa } from '../helpers/dns-server.ts'
import { describeAttempt, dialsOf, startDonor, statusOf, tail, type DonorNode } from './processes.ts'
import { startBumpingSquid, type BumpingSquid } from './https-poll-squid.ts'
import { labSuite, pairScenario, scenarioKeys, TEST_TIMEOUT_MS } from './scenario.ts'
import { type Lab } from './topology.ts'
import type { DaemonStatus } from '../../src/core/types.ts'

const only = scenarioKeys(['tls-inspecting'] as const)

const PROXY = { name: 'proxy', ip: '198.51.100.30' }
const SQUID_PORT = 3128
const CORP_CA = 'Example Corp Inspection CA'
const RELAY_CA = 'WorldCompute Lab Relay CA'
/**
 * The relay's WSS address carries a name, as a production relay's does: squid
 * 5.7 writes an IP-literal CONNECT target into the generated certificate as a
 * DNS SAN (`DNS:198.51.100.10`), which no TLS client accepts for an IP. Only
 * squid resolves it (its own hosts file): the donor hands the name to the
 * proxy, and the lab has no DNS.
 */
const RELAY_NAME = 'relay.lab.test'

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

const SQUID = ['/usr/sbin/squid', '/usr/bin/squid'].find(p => existsSync(p))
const CERTGEN = ['/usr/lib/squid/security_file_certgen', '/usr/lib64/squid/security_file_certgen'].find(p => existsSync(p))

/** squid-openssl has ssl_bump; Debian's plain `squid` (GnuTLS) does not, and says so in `squid -v`. */
function squidMissing (): string | undefined {
  if (SQUID == null || CERTGEN == null) return 'squid with ssl-bump is not installed (apt-get install squid-openssl): skipped'
  const v = execFileSync(SQUID, ['-v']).toString()
  if (!v.includes('--with-openssl') || !v.includes('--enable-ssl-crtd')) return 'the installed squid has no OpenSSL ssl-bump (Debian squid is GnuTLS; install squid-openssl): skipped'
  return undefined
}

/** The relay's WSS address with its name instead of its IP. */
function byName (wss: string | undefined): string {
  if (wss == null) throw new Error('the relay has no WSS address')
  return wss.replace(/^\/ip4\/[^/]+\//, `/dns4/${RELAY_NAME}/`)
}

/** Polls a donor's status (bounded) until `match` holds. */
async function waitForStatus (lab: Lab, donor: DonorNode, what: string, match: (s: DaemonStatus) => boolean, timeoutMs = 30_000): Promise<DaemonStatus> {
  const deadline = Date.now() + timeoutMs
  let last: DaemonStatus | undefined
  while (Date.now() < deadline) {
    if (!donor.proc.running()) throw new Error(`${donor.name} exited: ${tail(donor.proc.stderr())}`)
    last = await statusOf(lab, donor).catch(() => undefined)
    if (last != null && match(last)) return last
    await sleep(300)
  }
  throw new Error(`${donor.name}: ${what} not seen within ${timeoutMs} ms; last status: ${JSON.stringify({ relays: last?.relays, bootstrap: last?.bootstrap })}\n${tail(donor.proc.stderr())}`)
}

labSuite('Network-namespace lab: a TLS-inspecting proxy', () => {
  it('A donor behind a TLS-inspecting proxy that re-signs with a corporate CA from its system store joins over wss, runs a job from an open site, and reports the interception by the CA\'s name; with --refuse-intercepted it stays undispatchable and says why', { skip: only('tls-inspecting') ?? squidMissing(), timeout: TEST_TIMEOUT_MS }, async (t) => {
    let corp: { caCert: string, caKey: string } | undefined
    let relayCa = ''
    let squid: BumpingSquid | undefined
    let relayIp = ''
    const proxyEnv = (): Record<string, string> => ({
      HTTPS_PROXY: `http://${PROXY.ip}:${SQUID_PORT}`,
      // the corporate CA as the OS store; nothing about the relay's own CA
      SSL_CERT_FILE: corp?.caCert ?? ''
    })
    await pairScenario(t, {
      key: 'tls-inspecting',
      submitter: { nat: 'none' },
      executor: { nat: 'cone', firewall: 'proxy-only', proxy: `${PROXY.ip}:${SQUID_PORT}` },
      services: [PROXY],
      relayTls: ({ lab, runDir, relay }) => {
        const pki = join(runDir, 'pki')
        mkdirSync(pki, { recursive: true })
        const ca = makeCa(pki, RELAY_CA)
        relayCa = ca.caCert
        const corpDir = join(runDir, 'corp-pki')
        mkdirSync(corpDir, { recursive: true })
        corp = makeCa(corpDir, CORP_CA)
        relayIp = lab.ip(relay.name)
        return issueCert(ca, relay.name, [`IP:${lab.ip(relay.name)}`, `DNS:${RELAY_NAME}`])
      },
      beforeDonors: async ({ t, lab, runDir }) => {
        if (corp == null) throw new Error('no corporate CA')
        // squid reads its CA key as user proxy: copies in its own folder
        const dir = join(runDir, 'squid-bump')
        mkdirSync(dir, { recursive: true })
        const caCert = join(dir, 'corp-ca.pem')
        const caKey = join(dir, 'corp-ca.key')
        writeFileSync(caCert, readFileSync(corp.caCert))
        writeFileSync(caKey, readFileSync(corp.caKey), { mode: 0o600 })
        const labCa = join(dir, 'relay-ca.pem')
        writeFileSync(labCa, readFileSync(relayCa))
        const hosts = join(dir, 'hosts')
        writeFileSync(hosts, `${relayIp} ${RELAY_NAME}\n`)
        squid = await startBumpingSquid(lab, runDir, { host: PROXY.name, ip: PROXY.ip, port: SQUID_PORT, corp: { caCert, caKey }, relayCa: labCa, hosts, passUpgrade: true, dirName: 'squid-bump' })
        t.diagnostic(`squid (ssl-bump) ready on ${PROXY.ip}:${SQUID_PORT} (pid ${squid.proc.pid}), files in ${squid.dir}`)
        return squid.stop
      },
      bootstrap: relays => relays.flatMap(r => [r.addr.tcp, r.addr.quic, r.addr.ws, byName(r.addr.wss)]),
      donorEnv: (name): Record<string, string> => name === 'executor' ? proxyEnv() : { NODE_EXTRA_CA_CERTS: relayCa },
      mustExplain: relay => ({ executor: [relay.addr.tcp, relay.addr.quic] }),
      // the doctor, run behind the same proxy, names the inspecting CA too (doctor issue)
      doctorExpect: (report) => {
        const check = report.checks.find(c => c.name === 'tls-intercepted')
        assert.equal(check?.value, 'yes', `doctor: tls-intercepted ${check?.value ?? 'missing'}: ${check?.detail ?? ''}`)
        assert.match(check?.detail ?? '', new RegExp(CORP_CA), 'the doctor names the interceptor by its CA')
        assert.equal(report.path?.viaProxy, true, 'the doctor\'s path goes through the proxy')
        assert.equal(report.checks.find(c => c.name === 'proxy')?.value, 'yes')
      },
      during: async ({ t, lab, runDir, executor, submitter, relay }) => {
        const s = await waitForStatus(lab, executor, 'the TLS interception verdict', st => st.relays[0]?.tlsIntercepted === 'yes' || st.relays[0]?.tlsCheck?.startsWith('not checked:') === true)
        const r = s.relays[0]
        t.diagnostic(`executor's relay path: ${r.transport} ${r.addr ?? ''}: tlsIntercepted=${r.tlsIntercepted ?? '?'} by '${r.tlsInterceptor ?? ''}': ${r.tlsCheck ?? ''}`)
        assert.equal(r.transport, 'wss', 'the executor reaches the relay over WSS through the proxy')
        assert.equal(r.tlsIntercepted, 'yes', r.tlsCheck)
        assert.equal(r.tlsInterceptor, CORP_CA)
        assert.ok(s.proxies?.some(p => p.inUse), `status shows the proxy in use: ${JSON.stringify(s.proxies)}`)
        assert.match(executor.proc.stderr(), new RegExp(` WARN .*TLS to relay ${relay.peerId} is intercepted by '${CORP_CA}'`), 'one WARN line names the interceptor')
        const sub = await statusOf(lab, submitter)
        t.diagnostic(`submitter's relay path: ${sub?.relays[0]?.transport ?? '?'}, tlsIntercepted=${sub?.relays[0]?.tlsIntercepted ?? '?'} (${sub?.relays[0]?.tlsCheck ?? ''})`)

        // the same site, the same proxy, refusing intercepted paths
        const refusing = startDonor(lab, executor.host, runDir, { name: 'refusing', bootstrap: [relay.addr.tcp, relay.addr.quic, relay.addr.ws, byName(relay.addr.wss)], noExecute: true, args: ['--refuse-intercepted'], env: proxyEnv() })
        try {
          const rs = await waitForStatus(lab, refusing, 'the refusal', st => /refused the path|every address is refused/.test(st.bootstrap[0]?.lastError ?? ''))
          t.diagnostic(`refusing donor: ${rs.bootstrap[0].lastError ?? ''}`)
          assert.equal(rs.relays.length, 0, 'not dispatchable: its only way out is intercepted')
          assert.equal(rs.bootstrap[0].tlsIntercepted, 'yes')
          assert.equal(rs.bootstrap[0].tlsInterceptor, CORP_CA)
          assert.match(refusing.proc.stderr(), new RegExp(`intercepted by '${CORP_CA}'.*refusing this path \\(--refuse-intercepted\\)`))
          const wssDials = (await dialsOf(lab, refusing)).attempts.filter(a => a.target === byName(relay.addr.wss))
          t.diagnostic(`refusing donor's wss dials:\n${wssDials.map(describeAttempt).join('\n')}`)
        } finally {
          await refusing.proc.stop(10_000)
        }
      }
    })
    // squid writes the bumped tunnel's access-log lines when it closes: read once it has stopped
    const access = readFileSync(squid?.log ?? '', 'utf8')
    t.diagnostic(`squid access.log:\n${tail(access, 8)}`)
    assert.match(access, new RegExp(`CONNECT ${RELAY_NAME.replaceAll('.', '\\.')}:443`), 'squid saw the CONNECT to the relay\'s 443')
    assert.match(access, new RegExp(`GET https://${RELAY_NAME.replaceAll('.', '\\.')}/`), 'squid bumped it: it logged the WebSocket upgrade request inside the TLS')
  })
})
