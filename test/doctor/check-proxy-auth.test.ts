/**
 * The doctor's `proxy-auth` check from recorded observations: a proxy that
 * asked and let us through (yes, with the scheme), one that asked and we
 * could not pass (no, with why and the schemes offered), and nothing to say
 * (unknown) when no proxy is configured or none asked.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { checkProxyAuth } from '../../src/doctor/check-proxy-auth.ts'
import { assess } from '../../src/doctor/assess.ts'
import { CHECK_NAMES } from '../../src/core/doctor.ts'
import { renderDoctor } from '../../src/daemon/commands/render-doctor.ts'
import type { DoctorObservations, DoctorReport, RungObservation } from '../../src/core/doctor.ts'
import type { ProxyAuthView, ProxyStatus } from '../../src/core/types.ts'
import { doctorObservations } from '../helpers/doctor.ts'

const R = '12D3KooWQDkDvGNNGUoD3kFFaVSzTZ3udBbj3zMxiFHdb7aAmDgY'
const WSS = `/ip4/198.51.100.10/tcp/443/tls/ws/p2p/${R}`
const PROXY = 'http://***@10.0.0.1:3128'

function proxy (auth?: ProxyAuthView): ProxyStatus {
  return { url: PROXY, kind: 'http', source: 'HTTPS_PROXY', usedFor: ['wss', 'ws'], noProxyRules: 0, inUse: auth?.passed != null && auth.passed > 0, relays: [], tunnels: 0, ...(auth != null ? { auth } : {}) }
}

function observations (proxies: ProxyStatus[], rungs: RungObservation[] = []): DoctorObservations {
  return doctorObservations({
    bootstrap: [WSS],
    relays: [R],
    dns: [{ addr: WSS, via: 'literal', resolved: [WSS] }],
    rungs,
    proxies,
    reservationErrors: [{ relay: R, state: 'backing-off' }],
    clock: { detail: 'not checked' },
    observedMs: 3000
  })
}

const AT = '2026-12-06T18:00:00.000Z'

describe('the proxy-auth check', () => {
  it('is yes, naming NTLM and the schemes offered, when the proxy asked and opened tunnels after NTLM', () => {
    const c = checkProxyAuth(observations([proxy({ offered: ['NTLM'], scheme: 'ntlm', passed: 2, refused: 0, last: 'passed', at: AT })]))
    assert.equal(c.value, 'yes')
    assert.match(c.detail, /offered NTLM\) and opened 2 tunnel\(s\) after NTLM/)
    assert.match(c.detail, /HTTPS_PROXY/)
  })

  it('is no with the code, the schemes offered and the cause when we had no credentials', () => {
    const detail = `proxy ${PROXY} (HTTPS_PROXY) requires authentication: 407 Proxy Authentication Required (it asks for NTLM); put them in HTTPS_PROXY as http://user:password@host:port`
    const c = checkProxyAuth(observations([proxy({ offered: ['NTLM'], passed: 0, refused: 3, last: 'required', code: 'PROXY_AUTH_REQUIRED', detail, at: AT })]))
    assert.equal(c.value, 'no')
    assert.match(c.detail, /offered NTLM\) and no credentials were given \[PROXY_AUTH_REQUIRED\]/)
  })

  it('is no for only schemes we cannot do, and for rejected credentials', () => {
    const unsupported = checkProxyAuth(observations([proxy({ offered: ['Negotiate'], scheme: 'negotiate', passed: 0, refused: 1, last: 'unsupported', code: 'PROXY_AUTH_UNSUPPORTED', detail: 'refused NTLM inside Negotiate', at: AT })]))
    assert.deepEqual([unsupported.value, /only schemes we cannot do/.test(unsupported.detail)], ['no', true])
    const failed = checkProxyAuth(observations([proxy({ offered: ['NTLM', 'Negotiate'], scheme: 'ntlm', passed: 0, refused: 1, last: 'failed', code: 'PROXY_AUTH_FAILED', detail: 'rejected the credentials of LAB\\donor with NTLM', at: AT })]))
    assert.deepEqual([failed.value, /rejected the credentials \[PROXY_AUTH_FAILED\]/.test(failed.detail)], ['no', true])
  })

  it('stays yes after a later refusal once a tunnel passed, and says so', () => {
    const c = checkProxyAuth(observations([proxy({ offered: ['NTLM'], scheme: 'ntlm', passed: 1, refused: 1, last: 'failed', code: 'PROXY_AUTH_FAILED', detail: 'x', at: AT })]))
    assert.equal(c.value, 'yes')
  })

  it('is no from a rung that failed with a PROXY_AUTH code when the proxy has no record', () => {
    const r: RungObservation = { relay: R, addr: WSS, transport: 'wss', outcome: 'failure', phase: 'proxy', code: 'PROXY_AUTH_REQUIRED', cause: 'requires authentication: 407', proxy: PROXY }
    const c = checkProxyAuth(observations([proxy()], [r]))
    assert.deepEqual([c.value, c.detail], ['no', `${PROXY} [PROXY_AUTH_REQUIRED]: requires authentication: 407`])
  })

  it('is unknown without a proxy, and when the proxy never asked', () => {
    assert.deepEqual(checkProxyAuth(observations([])).value, 'unknown')
    const c = checkProxyAuth(observations([proxy()]))
    assert.equal(c.value, 'unknown')
    assert.match(c.detail, /no proxy asked for authentication/)
  })

  it('is in the report, reads well, puts a sentence in the verdict and asks nothing of the allowlist when it is no', () => {
    const r: RungObservation = { relay: R, addr: WSS, transport: 'wss', host: '198.51.100.10', port: 443, outcome: 'failure', phase: 'proxy', code: 'PROXY_AUTH_REQUIRED', cause: 'requires authentication', proxy: PROXY }
    const obs = observations([proxy({ offered: ['NTLM'], passed: 0, refused: 1, last: 'required', code: 'PROXY_AUTH_REQUIRED', detail: 'requires authentication', at: AT })], [r])
    const a = assess(obs)
    assert.deepEqual(a.checks.map(c => c.name), [...CHECK_NAMES])
    assert.ok(CHECK_NAMES.indexOf('proxy-auth') > CHECK_NAMES.indexOf('clock-skew'))
    assert.match(a.verdict, /The proxy asks for authentication we could not give/)
    assert.ok(!a.allowlist.some(x => x.includes('CONNECT')), JSON.stringify(a.allowlist))
    const report: DoctorReport = { ...a, startedAt: AT, endedAt: AT, version: 'test', observations: obs }
    const lines: string[] = []
    renderDoctor({ out: l => { lines.push(l) }, err: () => {} }, report)
    assert.ok(lines.some(l => /^ {2}proxy-auth +no +http:\/\/\*\*\*@10\.0\.0\.1:3128 \(HTTPS_PROXY\) asked for authentication \(offered NTLM\) and no credentials were given/.test(l)), lines.join('\n'))
  })
})
