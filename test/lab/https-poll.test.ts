/**
 * Part 1 of traversal II, lab row "inspecting proxy without WebSocket
 * upgrades ↔ open": the executor's site reaches nothing but a squid that
 * bumps TLS (re-signing with a corporate CA from the executor's system
 * store) and, like commercial gateways, drops the WebSocket `Upgrade`. WSS
 * fails at `ws-upgrade`; the donor reaches the relay over the last rung,
 * HTTPS long polling derived from the relay's `/tls/ws` bootstrap address
 * (no new configuration), reserves, becomes dispatchable and runs a job from
 * the open site; the doctor says `https-fallback` yes and `wss-443` no.
 *
 *   WC_LAB_ONLY=https-poll node --test test/lab/https-poll.test.ts
 */
import assert from 'node:assert/strict'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { it } from 'node:test'
import { issueCert, makeCa } from '../helpers/dns-server.ts'
import { describeAttempt, dialsOf, statusOf } from './processes.ts'
import { labSuite, pairScenario, scenarioKeys, TEST_TIMEOUT_MS } from './scenario.ts'
import { squidProblem, startUpgradeStrippingSquid, type BumpingSquid } from './https-poll-squid.ts'

const only = scenarioKeys(['https-poll'] as const)

const PROXY = { name: 'proxy', ip: '198.51.100.30' }
const SQUID_PORT = 3128
const CORP_CA = 'Example Corp Inspection CA'
/** a name for the relay's 443, as in the tls scenario: squid writes an IP-literal target as a DNS SAN no client accepts */
const RELAY_NAME = 'relay.lab.test'

function byName (wss: string | undefined): string {
  if (wss == null) throw new Error('the relay has no WSS address')
  return wss.replace(/^\/ip4\/[^/]+\//, `/dns4/${RELAY_NAME}/`)
}

labSuite('Network-namespace lab: an inspecting proxy that passes no WebSocket upgrade', () => {
  it('A donor behind a TLS-inspecting proxy that drops WebSocket upgrades reserves over HTTPS long polling derived from the relay\'s /tls/ws address, runs a job from an open site, and the doctor says only the HTTPS fallback works', { skip: only('https-poll'), timeout: TEST_TIMEOUT_MS }, async (t) => {
    const missing = squidProblem()
    if (missing != null) assert.fail(missing)
    let corp: { caCert: string, caKey: string } | undefined
    let relayCa = ''
    let relayIp = ''
    let squid: BumpingSquid | undefined
    await pairScenario(t, {
      key: 'https-poll',
      submitter: { nat: 'none' },
      executor: { nat: 'cone', firewall: 'proxy-only', proxy: `${PROXY.ip}:${SQUID_PORT}` },
      services: [PROXY],
      relayTls: ({ lab, runDir, relay }) => {
        const pki = join(runDir, 'pki')
        mkdirSync(pki, { recursive: true })
        const ca = makeCa(pki, 'WorldCompute Lab Relay CA')
        relayCa = ca.caCert
        const corpDir = join(runDir, 'corp-pki')
        mkdirSync(corpDir, { recursive: true })
        corp = makeCa(corpDir, CORP_CA)
        relayIp = lab.ip(relay.name)
        return issueCert(ca, relay.name, [`IP:${relayIp}`, `DNS:${RELAY_NAME}`])
      },
      beforeDonors: async ({ t, lab, runDir }) => {
        if (corp == null) throw new Error('no corporate CA')
        // the folder the squid helper hands to user proxy before it starts
        const dir = join(runDir, 'squid-no-upgrade')
        mkdirSync(dir, { recursive: true })
        const caCert = join(dir, 'corp-ca.pem')
        const caKey = join(dir, 'corp-ca.key')
        writeFileSync(caCert, readFileSync(corp.caCert))
        writeFileSync(caKey, readFileSync(corp.caKey), { mode: 0o600 })
        const labCa = join(dir, 'relay-ca.pem')
        writeFileSync(labCa, readFileSync(relayCa))
        const hosts = join(dir, 'hosts')
        writeFileSync(hosts, `${relayIp} ${RELAY_NAME}\n`)
        squid = await startUpgradeStrippingSquid(lab, runDir, { host: PROXY.name, ip: PROXY.ip, port: SQUID_PORT, corp: { caCert, caKey }, relayCa: labCa, hosts })
        t.diagnostic(`squid (ssl-bump, no WebSocket upgrades) ready on ${PROXY.ip}:${SQUID_PORT} (pid ${squid.proc.pid})`)
        return squid.stop
      },
      // the bootstrap list a user copies today: no poll address in it
      bootstrap: relays => relays.flatMap(r => [r.addr.tcp, r.addr.quic, byName(r.addr.wss)]),
      donorEnv: (name): Record<string, string> => name === 'executor'
        ? { HTTPS_PROXY: `http://${PROXY.ip}:${SQUID_PORT}`, SSL_CERT_FILE: corp?.caCert ?? '' }
        : { NODE_EXTRA_CA_CERTS: relayCa },
      dispatchTimeoutMs: 60_000,
      mustExplain: relay => ({ executor: [relay.addr.tcp, relay.addr.quic, byName(relay.addr.wss)] }),
      doctorExpect: (report) => {
        const fallback = report.checks.find(c => c.name === 'https-fallback')
        const wss = report.checks.find(c => c.name === 'wss-443')
        assert.equal(wss?.value, 'no', `doctor: wss-443 ${wss?.value ?? 'missing'}: ${wss?.detail ?? ''}`)
        assert.equal(fallback?.value, 'yes', `doctor: https-fallback ${fallback?.value ?? 'missing'}: ${fallback?.detail ?? ''}`)
        assert.match(fallback?.detail ?? '', /only the HTTPS fallback works here/)
        // the poll path crosses the same re-signing proxy as WSS would: the TLS check runs on it too
        const tls = report.checks.find(c => c.name === 'tls-intercepted')
        assert.equal(tls?.value, 'yes', `doctor: tls-intercepted ${tls?.value ?? 'missing'}: ${tls?.detail ?? ''}`)
        assert.match(tls?.detail ?? '', new RegExp(CORP_CA))
      },
      during: async ({ t, lab, executor, relay }) => {
        const s = await statusOf(lab, executor)
        const r = s?.relays[0]
        t.diagnostic(`executor's relay path: ${r?.transport ?? '?'} ${r?.addr ?? ''} (${r?.reason ?? ''})`)
        assert.equal(r?.transport, 'https-poll', 'the executor reaches the relay over HTTPS long polling')
        const attempts = (await dialsOf(lab, executor)).attempts
        const wss = attempts.filter(a => a.target === byName(relay.addr.wss) && a.outcome === 'failure')
        t.diagnostic(`executor's wss dials:\n${wss.slice(0, 3).map(describeAttempt).join('\n')}`)
        assert.ok(wss.some(a => a.phase === 'ws-upgrade'), 'WSS failed at the WebSocket upgrade')
        const poll = attempts.filter(a => a.transport === 'https-poll')
        t.diagnostic(`executor's https-poll dials:\n${poll.slice(0, 3).map(describeAttempt).join('\n')}`)
        assert.ok(poll.some(a => a.outcome === 'success'), 'a poll dial succeeded')
      }
    })
    const access = readFileSync(squid?.log ?? '', 'utf8')
    assert.match(access, new RegExp(`POST https://${RELAY_NAME.replaceAll('.', '\\.')}/wc-poll/1/`), 'squid bumped the poll requests: it logged them inside the TLS')
  })
})
