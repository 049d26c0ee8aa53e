/**
 * Namespace-lab scenario for network 5 of the traversal issue: a
 * protocol-inspecting firewall (the seed's hypothesis "SYN allowed, upgrade
 * blocked"). The executor's site router lets TCP connect on any port, drops
 * UDP, and drops every packet carrying `/multistream/1.0.0` in either
 * direction (iptables xt_string). libp2p over TCP connects and then hears
 * nothing; plain WebSocket hides the client's frames (masked) but not the
 * relay's replies, so it stalls too; WebSocket over TLS carries nothing the
 * firewall can read. The relay serves WSS on 443 with a certificate from a
 * private CA made here by openssl (donors get it via NODE_EXTRA_CA_CERTS).
 *
 *   npm run test:lab -- --only inspecting-firewall
 */
import assert from 'node:assert/strict'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { it } from 'node:test'
import { issueCert, makeCa } from '../helpers/dns-server.ts'
import { dialsOf, describeAttempt, startDonor, statusOf, tail } from './processes.ts'
import type { DialAttempt } from '../../src/core/types.ts'
import { labSuite, pairScenario, scenarioKeys, TEST_TIMEOUT_MS } from './scenario.ts'

const only = scenarioKeys(['inspecting-firewall'] as const)

const PAST_TCP_CONNECT = new Set(['tls', 'ws-upgrade', 'noise', 'muxer', 'protocol'])

labSuite('Network-namespace lab: a protocol-inspecting firewall at the donor\'s site', () => {
  it('A donor behind a firewall that drops libp2p\'s cleartext negotiation joins over WebSocket-over-TLS and runs a job from an open site, and its dial log says the TCP handshake stalled after connecting', { skip: only('inspecting-firewall'), timeout: TEST_TIMEOUT_MS }, async (t) => {
    let caCert = ''
    await pairScenario(t, {
      key: 'inspecting-firewall',
      submitter: { nat: 'none' },
      executor: { nat: 'cone', firewall: 'inspect-multistream' },
      relayTls: ({ lab, runDir, relay }) => {
        const pki = join(runDir, 'pki')
        mkdirSync(pki, { recursive: true })
        const ca = makeCa(pki, 'WorldCompute Lab Relay CA')
        caCert = ca.caCert
        return issueCert(ca, relay.name, [`IP:${lab.ip(relay.name)}`])
      },
      // what a user copies from the relay's start-up output: TCP, QUIC, WebSocket, WebSocket over TLS
      bootstrap: relays => relays.flatMap(r => [r.addr.tcp, r.addr.quic, r.addr.ws, ...(r.addr.wss != null ? [r.addr.wss] : [])]),
      donorEnv: () => ({ NODE_EXTRA_CA_CERTS: caCert }),
      // "the log explains each failed rung": the readable rungs must leave a record
      mustExplain: relay => ({ executor: [relay.addr.tcp, relay.addr.quic] }),
      during: async (ctx) => {
        const { t, lab, executor, relay } = ctx
        const s = await statusOf(lab, executor)
        const reserved = s?.relays.find(r => r.peerId === relay.peerId)
        t.diagnostic(`executor's relay path: ${reserved?.transport ?? '?'}: ${reserved?.reason ?? '?'}`)
        assert.equal(reserved?.transport, 'wss', 'the executor reaches the relay over WebSocket-over-TLS, the one rung the firewall cannot read')
        assert.match(reserved?.reason ?? '', /tcp: (cancelled|stalled) at (noise|muxer) after [^;]*TCP connected/, 'the path\'s reason (status, and the INFO line) says TCP connected and the handshake went unanswered')
        const dials = (await dialsOf(lab, executor)).attempts.filter(a => a.purpose === 'bootstrap')
        t.diagnostic(`executor's bootstrap dials:\n${dials.map(describeAttempt).join('\n')}`)
        const tcp = dials.filter(a => a.target === relay.addr.tcp && a.outcome !== 'success')
        assert.ok(tcp.length > 0, 'the TCP rung left a record')
        for (const a of tcp) {
          assert.ok(PAST_TCP_CONNECT.has(a.phase), `the TCP rung got past tcp-connect before it stalled (phase ${a.phase}): ${describeAttempt(a)}`)
          assert.match(a.cause, /TCP connected/, `the cause says TCP connected and the handshake got no answer: ${a.cause}`)
        }
        assert.equal(dials.filter(a => a.target === relay.addr.tcp && a.outcome === 'success').length, 0, 'TCP never got through the inspecting firewall')

        // The same site without the WSS address: nothing else gets through, and
        // each rung fails at its own timeout with the cause at the default level.
        const probe = startDonor(lab, executor.host, ctx.runDir, { name: 'nowss', bootstrap: [relay.addr.tcp, relay.addr.quic, relay.addr.ws], noExecute: true, env: { NODE_EXTRA_CA_CERTS: caCert } })
        try {
          const deadline = Date.now() + 30_000
          let failed: DialAttempt[] = []
          while (Date.now() < deadline) {
            const all = await dialsOf(lab, probe).then(r => r.attempts, () => [] as DialAttempt[])
            failed = all.filter(a => a.outcome === 'failure' && a.purpose === 'bootstrap')
            if ([relay.addr.tcp, relay.addr.ws, relay.addr.quic].every(addr => failed.some(a => a.target === addr))) break
            assert.ok(probe.proc.running(), `the probe daemon exited: ${tail(probe.proc.stderr())}`)
            await new Promise(resolve => setTimeout(resolve, 500))
          }
          t.diagnostic(`without WSS, the executor's site gives:\n${failed.map(describeAttempt).join('\n')}`)
          const of = (addr: string): DialAttempt | undefined => failed.find(a => a.target === addr)
          const tcpFail = of(relay.addr.tcp)
          const wsFail = of(relay.addr.ws)
          const quicFail = of(relay.addr.quic)
          assert.ok(tcpFail != null && wsFail != null && quicFail != null, 'TCP, WebSocket and QUIC each failed and were recorded')
          assert.ok(PAST_TCP_CONNECT.has(tcpFail.phase), `TCP failed past tcp-connect: ${describeAttempt(tcpFail)}`)
          assert.match(tcpFail.cause, /TCP connected but the libp2p handshake got no answer.*protocol-inspecting firewall/)
          // the relay's replies are not masked: the firewall reads them and plain WebSocket stalls too
          assert.ok(PAST_TCP_CONNECT.has(wsFail.phase), `WebSocket failed past tcp-connect: ${describeAttempt(wsFail)}`)
          assert.match(wsFail.cause, /TCP connected but the libp2p handshake got no answer/)
          assert.equal(quicFail.phase, 'tls', 'QUIC (UDP dropped) never got a handshake reply')
          const warns = probe.proc.stderr().split('\n').filter(l => /WARN/.test(l) && l.includes(relay.addr.tcp))
          t.diagnostic(`the probe daemon's WARN line for TCP:\n${warns.join('\n')}`)
          assert.ok(warns.some(l => l.includes('TCP connected but the libp2p handshake got no answer')), 'the TCP failure is one WARN line at the default level, with its cause')
        } finally {
          await probe.proc.stop(10_000)
        }
      }
    })
  })
})
