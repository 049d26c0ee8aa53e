/**
 * The doctor's verdict, checks and allowlist from recorded observations:
 * what each network of the traversal issue looks like to the doctor (shapes
 * taken from real lab runs), and the rule that a check that could not run
 * is `unknown`, never `no`.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { assess } from '../../src/doctor/assess.ts'
import { renderDoctor } from '../../src/daemon/commands/render-doctor.ts'
import type { CheckValue, DoctorObservations, DoctorReport, RungObservation } from '../../src/core/doctor.ts'
import type { NatReport, ProxyStatus } from '../../src/core/types.ts'

const R = '12D3KooWQDkDvGNNGUoD3kFFaVSzTZ3udBbj3zMxiFHdb7aAmDgY'
const IP = '198.51.100.10'
const TCP = `/ip4/${IP}/tcp/4001/p2p/${R}`
const QUIC = `/ip4/${IP}/udp/4001/quic-v1/p2p/${R}`
const WSS = `/ip4/${IP}/tcp/443/tls/ws/p2p/${R}`

function rung (transport: RungObservation['transport'], port: number, outcome: RungObservation['outcome'], more: Partial<RungObservation> = {}): RungObservation {
  const addr = transport === 'quic' ? `/ip4/${IP}/udp/${port}/quic-v1/p2p/${R}` : transport === 'wss' ? `/ip4/${IP}/tcp/${port}/tls/ws/p2p/${R}` : transport === 'ws' ? `/ip4/${IP}/tcp/${port}/ws/p2p/${R}` : `/ip4/${IP}/tcp/${port}/p2p/${R}`
  return { relay: R, addr, transport, host: IP, port, outcome, ...(outcome === 'success' ? { phase: 'protocol', durationMs: 20 } : {}), ...more }
}

const OK = {
  quic: rung('quic', 4001, 'success'),
  tcp: rung('tcp', 4001, 'success'),
  wss: rung('wss', 443, 'success')
}
const DROPPED = {
  quic: rung('quic', 4001, 'failure', { phase: 'tls', code: 'TIMEOUT', timedOut: true, durationMs: 3000, cause: 'no QUIC handshake reply within 3.0 s (UDP dropped, or nothing listens on that UDP port)' }),
  tcp: rung('tcp', 4001, 'failure', { phase: 'tcp-connect', code: 'TIMEOUT', timedOut: true, durationMs: 2500, cause: 'TCP connect timed out (SYN dropped?)' }),
  wss: rung('wss', 443, 'failure', { phase: 'tcp-connect', code: 'TIMEOUT', timedOut: true, durationMs: 4000, cause: 'TCP connect timed out' })
}

function nat (mapping: NatReport['mapping'], udp: NatReport['udp'], reason = 'measured'): NatReport {
  return { mapping, filtering: 'unknown', udp, reason, servers: udp === 'unknown' ? [] : [`${IP}:3478`, `${IP}:3479`], ...(udp !== 'unknown' ? { at: '2026-11-29T20:00:00.000Z' } : {}) }
}

function observations (over: Partial<DoctorObservations> = {}): DoctorObservations {
  return {
    bootstrap: [TCP, QUIC, WSS],
    relays: [R],
    dns: [TCP, QUIC, WSS].map(addr => ({ addr, via: 'literal' as const, resolved: [addr] })),
    doh: [],
    dohEndpoints: ['https://1.1.1.1/dns-query'],
    rungs: [OK.quic, OK.tcp, OK.wss],
    proxies: [],
    nat: nat('endpoint-independent', 'yes'),
    reachability: { value: 'private', reason: 'listening only through relays' },
    reservations: [{ peerId: R, circuitAddr: `${QUIC}/p2p-circuit`, transport: 'quic', since: '2026-11-29T20:00:00.000Z', addr: QUIC }],
    reservationErrors: [{ relay: R, state: 'reserved' }],
    tls: [{ addr: WSS, intercepted: false, issuer: 'WorldCompute Lab Relay CA', detail: 'the certificate seen (direct) is the relay\'s own' }],
    clock: { skewMs: 120, source: 'the HTTP Date header of https://198.51.100.10:443/', detail: '' },
    webrtcTransport: true,
    observedMs: 3000,
    ...over
  }
}

function values (obs: DoctorObservations): Record<string, CheckValue> {
  return Object.fromEntries(assess(obs).checks.map(c => [c.name, c.value]))
}

describe('doctor assessment', () => {
  it('an open network: can donate over QUIC, every tested check yes, nothing to ask for', () => {
    const a = assess(observations())
    assert.equal(a.canDonate, true)
    assert.deepEqual(a.path, { relay: R, transport: 'quic', viaProxy: false, addr: QUIC })
    assert.match(a.verdict, /^You can donate: reachable through relay 12D3KooW…aAmDgY over QUIC \(UDP\) on port 4001\./)
    assert.match(a.verdict, /Direct connections to other donors are possible/)
    const v = values(observations())
    for (const name of ['udp', 'nat', 'tcp-connect', 'libp2p-over-tcp', 'quic', 'wss-443', 'reservation', 'webrtc']) assert.equal(v[name], 'yes', name)
    assert.deepEqual([v['tls-intercepted'], v['clock-skew'], v.proxy], ['no', 'no', 'no'])
    // IP addresses only: DNS was not needed, so not tested
    assert.deepEqual([v.dns, v.doh], ['unknown', 'unknown'])
    assert.deepEqual(a.allowlist, [])
  })

  it('a 443-only network: WSS works, UDP and TCP 4001 are blocked, and the allowlist names exactly those', () => {
    const obs = observations({
      rungs: [DROPPED.quic, DROPPED.tcp, OK.wss],
      nat: nat('no-udp', 'no', `no answer over UDP from ${IP}:3478, ${IP}:3479: UDP is blocked on the way out (or back)`),
      reservations: [{ peerId: R, circuitAddr: `${WSS}/p2p-circuit`, transport: 'wss', since: '2026-11-29T20:00:00.000Z', addr: WSS }]
    })
    const a = assess(obs)
    const v = values(obs)
    assert.equal(a.canDonate, true)
    assert.match(a.verdict, /over WebSocket\/TLS on port 443\. UDP is blocked; TCP 4001 is blocked\./)
    assert.match(a.verdict, /Direct connections to other donors are not possible from this network \(no UDP\)/)
    assert.deepEqual([v.udp, v.quic, v['tcp-connect'], v['libp2p-over-tcp'], v['wss-443'], v.webrtc], ['no', 'no', 'no', 'unknown', 'yes', 'no'])
    assert.deepEqual(a.allowlist, [
      `outbound UDP to ${IP}:4001 (QUIC to relay 12D3KooW…aAmDgY)`,
      `outbound TCP to ${IP}:4001 (libp2p over TCP to relay 12D3KooW…aAmDgY)`,
      `outbound UDP to ${IP}:3478, ${IP}:3479 (STUN: NAT detection and direct donor-to-donor connections)`
    ])
  })

  it('a protocol-inspecting firewall: TCP connects, the handshake is dropped, and the verdict says so', () => {
    const stalled = rung('tcp', 4001, 'failure', { phase: 'noise', code: 'TIMEOUT', timedOut: true, durationMs: 2500, cause: 'TCP connected but the libp2p handshake got no answer (protocol-inspecting firewall?)' })
    const obs = observations({ rungs: [DROPPED.quic, stalled, OK.wss], nat: nat('no-udp', 'no', 'no answer over UDP'), reservations: [{ peerId: R, circuitAddr: 'x', transport: 'wss', since: '2026-11-29T20:00:00.000Z', addr: WSS }] })
    const a = assess(obs)
    const v = values(obs)
    assert.deepEqual([v['tcp-connect'], v['libp2p-over-tcp']], ['yes', 'no'])
    assert.match(a.verdict, /TCP 4001 connects but the libp2p handshake is dropped — likely a protocol-inspecting firewall/)
    assert.ok(a.allowlist.some(l => l.startsWith(`TCP to ${IP}:4001 without protocol inspection`)), a.allowlist.join('\n'))
    assert.ok(!a.allowlist.some(l => l.startsWith(`outbound TCP to ${IP}:4001`)), 'TCP itself is open: not asked for')
  })

  it('a symmetric NAT: relayed works, direct connections are not possible, and the allowlist asks for endpoint-independent mapping', () => {
    const obs = observations({ nat: nat('address-and-port-dependent', 'yes', 'symmetric NAT: a new mapping for each destination port') })
    const a = assess(obs)
    const v = values(obs)
    assert.deepEqual([v.nat, v.webrtc, v.udp], ['no', 'no', 'yes'])
    assert.equal(a.natMapping, 'address-and-port-dependent')
    assert.match(a.verdict, /Direct connections to other donors are not possible from this network \(symmetric NAT\)/)
    assert.ok(a.allowlist.some(l => l.startsWith('endpoint-independent UDP NAT mapping')), a.allowlist.join('\n'))
  })

  it('a proxy-only network: reachable only through the proxy, which is named (redacted); direct rungs are asked for', () => {
    const proxy: ProxyStatus = { url: 'http://***@198.51.100.30:3128', kind: 'http', source: 'HTTPS_PROXY', usedFor: ['wss', 'ws'], noProxyRules: 0, inUse: true, relays: [R], tunnels: 1 }
    const obs = observations({
      rungs: [DROPPED.quic, DROPPED.tcp, { ...OK.wss, proxy: proxy.url }],
      proxies: [proxy],
      nat: nat('no-udp', 'no', 'no answer'),
      reservations: [{ peerId: R, circuitAddr: 'x', transport: 'wss', since: '2026-11-29T20:00:00.000Z', addr: WSS }]
    })
    const a = assess(obs)
    const v = values(obs)
    assert.deepEqual(a.path, { relay: R, transport: 'wss', viaProxy: true, addr: WSS, proxy: proxy.url })
    assert.match(a.verdict, /^You can donate: reachable only through proxy http:\/\/\*\*\*@198\.51\.100\.30:3128, to relay/)
    assert.deepEqual([v.proxy, v['wss-443']], ['yes', 'yes'])
    assert.equal(v['clock-skew'], 'no')
    assert.deepEqual(a.allowlist.slice(0, 2), [`outbound UDP to ${IP}:4001 (QUIC to relay 12D3KooW…aAmDgY)`, `outbound TCP to ${IP}:4001 (libp2p over TCP to relay 12D3KooW…aAmDgY)`])
  })

  it('DNS filtered: the OS resolver fails, DoH answers; dns no, doh yes, nothing asked while DoH works', () => {
    const name = `/dns4/relay.lab.test/tcp/4001/p2p/${R}`
    const obs = observations({
      bootstrap: [name],
      dns: [{ addr: name, via: 'doh', endpoint: 'https://198.51.100.53/dns-query', osError: 'no answer within 1.5 s (port 53 filtered?)', resolved: [TCP] }],
      doh: [{ endpoint: 'https://198.51.100.53/dns-query', name: 'relay.lab.test', ok: true, detail: IP }],
      rungs: [OK.tcp]
    })
    const a = assess(obs)
    const v = values(obs)
    assert.deepEqual([v.dns, v.doh], ['no', 'yes'])
    assert.match(a.verdict, /the OS resolver cannot resolve the relays' names, but DNS-over-HTTPS can/i)
    assert.ok(!a.allowlist.some(l => l.includes('DNS')), 'DoH works: DNS is not asked for')
    // and when DoH fails too, both are asked for
    const worse = assess(observations({
      bootstrap: [name],
      dns: [{ addr: name, via: 'failed', resolved: [], note: 'cannot resolve relay.lab.test (A): os: no answer; https://198.51.100.53/dns-query: no answer within 3.0 s' }],
      doh: [{ endpoint: 'https://198.51.100.53/dns-query', name: 'relay.lab.test', ok: false, detail: 'no answer within 3.0 s' }],
      rungs: [],
      reservations: [],
      reservationErrors: [{ relay: R, state: 'backing-off', error: 'no address resolved' }]
    }))
    assert.equal(worse.canDonate, false)
    assert.deepEqual(worse.allowlist, ['DNS (UDP and TCP 53) to your resolver for relay.lab.test', 'HTTPS to https://198.51.100.53/dns-query (DNS-over-HTTPS)'])
  })

  it('a dead relay (every port refused): cannot donate, no false "no" for what its silence cannot tell, and nothing asked of IT', () => {
    const refused = (t: RungObservation['transport'], port: number): RungObservation => rung(t, port, 'failure', { phase: 'tcp-connect', code: 'ECONNREFUSED', durationMs: 2, cause: 'connection refused (nothing listens on that port, or a firewall rejects it)' })
    const obs = observations({
      rungs: [DROPPED.quic, refused('tcp', 4001), refused('wss', 443)],
      nat: nat('unknown', 'unknown', 'not measured yet'),
      reservations: [],
      reservationErrors: [{ relay: R, state: 'backing-off', error: 'all refused' }],
      tls: [],
      tlsNote: 'no WebSocket-over-TLS connection to a relay was made: nothing to check',
      clock: { detail: 'no direct HTTP(S) path' }
    })
    const a = assess(obs)
    const v = values(obs)
    assert.equal(a.canDonate, false)
    assert.equal(a.path, undefined)
    assert.match(a.verdict, /^You cannot donate right now: every bootstrap relay refused the connection/)
    // QUIC's silence from a dead relay proves nothing about UDP; nothing else ran
    for (const name of ['quic', 'udp', 'nat', 'webrtc', 'libp2p-over-tcp', 'tls-intercepted', 'clock-skew']) assert.equal(v[name], 'unknown', name)
    assert.equal(v.reservation, 'no')
    assert.deepEqual(a.allowlist, [])
  })

  it('no bootstrap relay at all: cannot donate, and the checks that need a relay are unknown', () => {
    const obs = observations({ bootstrap: [], relays: [], dns: [], rungs: [], reservations: [], reservationErrors: [], nat: nat('unknown', 'unknown', 'not measured yet'), tls: [], clock: { detail: 'none' } })
    const a = assess(obs)
    const v = values(obs)
    assert.equal(a.canDonate, false)
    assert.match(a.verdict, /no bootstrap relay is configured/)
    for (const name of ['dns', 'udp', 'nat', 'tcp-connect', 'libp2p-over-tcp', 'quic', 'ws', 'wss-443', 'reservation', 'webrtc']) assert.equal(v[name], 'unknown', name)
  })

  it('TLS intercepted: yes, by the issuer\'s name, in the verdict and the allowlist', () => {
    const obs = observations({ tls: [{ addr: WSS, intercepted: true, issuer: 'Example Corp Inspection CA', detail: 'a middlebox re-signed it' }] })
    const a = assess(obs)
    assert.equal(values(obs)['tls-intercepted'], 'yes')
    assert.match(a.verdict, /TLS to the relay is intercepted \(Example Corp Inspection CA\)/)
    assert.ok(a.allowlist.includes(`exempt ${IP} from TLS inspection (its certificate is re-signed by Example Corp Inspection CA)`), a.allowlist.join('\n'))
  })

  it('renders the verdict, one line per check and the allowlist', () => {
    const obs = observations({ rungs: [DROPPED.quic, OK.tcp, OK.wss], nat: nat('no-udp', 'no', 'no answer') })
    const report: DoctorReport = { ...assess(obs), startedAt: '2026-11-29T20:00:00.000Z', endedAt: '2026-11-29T20:00:03.000Z', version: '0.1.0', observations: obs }
    const lines: string[] = []
    renderDoctor({ out: l => { lines.push(l) }, err: () => {} }, report)
    assert.match(lines[0], /^You can donate/)
    assert.ok(lines.some(l => /^ {2}quic +no +198\.51\.100\.10:4001 failed at tls/.test(l)), lines.join('\n'))
    assert.ok(lines.includes('To improve this, ask your network administrators to allow:'))
    assert.ok(lines.some(l => l.startsWith('  - outbound UDP to 198.51.100.10:4001')))
  })
})
