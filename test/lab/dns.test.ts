/**
 * Namespace-lab scenario for network 8 of the traversal issue: DNS filtered.
 * The executor's site drops every packet to port 53; the relay is known only
 * by name (/dns4 and /dnsaddr); a DNS host on the lab's internet answers plain
 * DNS on port 53 and DNS-over-HTTPS on 443, with TLS from a private CA made
 * here by openssl. Both donors' resolv.conf name that DNS host: the submitter
 * (open network) resolves with the OS resolver, the executor's OS resolver
 * gets no answer and falls back to DoH.
 *
 *   npm run test:lab -- --only dns-filtered
 */
import assert from 'node:assert/strict'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { it } from 'node:test'
import { issueCert, makeCa } from '../helpers/dns-server.ts'
import { NODE, statusOf, dialsOf, describeAttempt } from './processes.ts'
import { labSuite, pairScenario, scenarioKeys, TEST_TIMEOUT_MS } from './scenario.ts'
import type { LabProcess } from './topology.ts'

const only = scenarioKeys(['dns-filtered'] as const)
const DNS_SERVICE = new URL('./dns-service.ts', import.meta.url).pathname
const DNS_IP = '198.51.100.53'
const RELAY_NAME = 'relay.lab.test'
const DOH_URL = `https://${DNS_IP}/dns-query`

labSuite('Network-namespace lab: DNS filtered at the donor\'s site', () => {
  it('A donor whose site drops DNS resolves the relay\'s name over DNS-over-HTTPS, becomes dispatchable and runs a job from an open site', { skip: only('dns-filtered'), timeout: TEST_TIMEOUT_MS }, async (t) => {
    let caCert = ''
    let service: LabProcess | undefined
    await pairScenario(t, {
      key: 'dns-filtered',
      submitter: { nat: 'none' },
      executor: { nat: 'cone', firewall: 'dns-filtered' },
      services: [{ name: 'dns', ip: DNS_IP }],
      beforeDonors: async ({ lab, runDir, relays }) => {
        const relay = relays[0]
        const pki = join(runDir, 'pki')
        mkdirSync(pki, { recursive: true })
        const ca = makeCa(pki, 'WorldCompute Lab DNS CA')
        caCert = ca.caCert
        const cert = issueCert(ca, 'doh', [`IP:${DNS_IP}`])
        const zone = {
          [RELAY_NAME]: { A: [lab.ip(relay.host)] },
          // the WebSocket rung comes only through /dnsaddr, itself a name to resolve
          [`_dnsaddr.${RELAY_NAME}`]: { TXT: [`dnsaddr=/dns4/${RELAY_NAME}/tcp/443/ws/p2p/${relay.peerId}`] }
        }
        const zoneFile = join(runDir, 'zone.json')
        writeFileSync(zoneFile, JSON.stringify(zone))
        service = lab.exec('dns', [NODE, DNS_SERVICE, DNS_IP, zoneFile, cert.cert, cert.key], { logFile: join(runDir, 'dns.log') })
        const deadline = Date.now() + 15_000
        while (!service.stdoutLines.includes('ready') && service.running() && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 50))
        assert.ok(service.stdoutLines.includes('ready'), `the DNS service is ready within 15 s; stderr: ${service.stderr()}`)
        // both donors' OS resolver asks the lab's DNS host (glibc defaults: 5 s timeout, 2 attempts);
        // `ip netns exec` bind-mounts this over /etc/resolv.conf when the daemons start
        for (const host of ['submitter', 'executor']) {
          writeFileSync(join('/etc/netns', lab.ns(host), 'resolv.conf'), `nameserver ${DNS_IP}\n`)
        }
        return async () => { await service?.stop(5_000) }
      },
      bootstrap: (relays) => {
        const id = relays[0].peerId
        return [`/dns4/${RELAY_NAME}/tcp/4001/p2p/${id}`, `/dns4/${RELAY_NAME}/udp/4001/quic-v1/p2p/${id}`, `/dnsaddr/${RELAY_NAME}/p2p/${id}`]
      },
      donorArgs: () => ['--doh', DOH_URL],
      donorEnv: () => ({ NODE_EXTRA_CA_CERTS: caCert }),
      during: async ({ t, lab, submitter, executor, relay }) => {
        const [se, ex] = [await statusOf(lab, submitter), await statusOf(lab, executor)]
        const sb = se?.bootstrap.find(b => b.peerId === relay.peerId)
        const eb = ex?.bootstrap.find(b => b.peerId === relay.peerId)
        t.diagnostic(`submitter resolution: ${sb?.resolvedVia ?? '?'} ${JSON.stringify(sb?.resolution)}`)
        t.diagnostic(`executor resolution: ${eb?.resolvedVia ?? '?'} ${JSON.stringify(eb?.resolution)}`)
        assert.equal(sb?.resolvedVia, 'os', 'the open site resolves the relay with its OS resolver')
        assert.equal(eb?.resolvedVia, 'doh', 'the DNS-filtered site resolves the relay over DoH')
        const viaDoh = eb?.resolution?.filter(r => r.via === 'doh') ?? []
        assert.equal(viaDoh.length, 3, 'every bootstrap name of the executor was resolved over DoH')
        for (const r of viaDoh) {
          assert.equal(r.endpoint, DOH_URL)
          assert.match(r.osError ?? '', /no answer within|EAI_AGAIN|ETIMEOUT/, `the OS resolver's failure is kept: ${r.osError ?? ''}`)
          assert.ok(r.resolved.every(a => a.startsWith(`/ip4/${lab.ip(relay.host)}/`)), `resolved to the relay's IP: ${r.resolved.join(' ')}`)
        }
        // every fallback at the default log level: name, OS error, endpoint, result
        const fallbacks = executor.proc.stderr().split('\n').filter(l => l.includes('DNS fallback'))
        t.diagnostic(`executor's fallback lines:\n${fallbacks.join('\n')}`)
        assert.ok(fallbacks.some(l => l.includes(RELAY_NAME) && l.includes(DOH_URL) && l.includes(lab.ip(relay.host))), 'the executor logged the fallback with name, endpoint and answer')
        assert.ok(fallbacks.some(l => l.includes(`_dnsaddr.${RELAY_NAME}`)), 'the /dnsaddr lookup fell back too')
        assert.equal(submitter.proc.stderr().split('\n').filter(l => l.includes('DNS fallback')).length, 0, 'the submitter needed no fallback')
        const dials = (await dialsOf(lab, executor)).attempts.filter(a => a.purpose === 'bootstrap')
        t.diagnostic(`executor's bootstrap dials:\n${dials.map(describeAttempt).join('\n')}`)
        assert.ok(dials.every(a => !/\/dns(4|6|addr)?\//.test(a.target) || a.phase === 'dns'), 'the ladder dialled IP addresses, not names')
        if (service != null) t.diagnostic(`DNS host's query log:\n${service.stderr().trim()}`)
      }
    })
  })
})
