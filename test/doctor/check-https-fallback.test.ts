/**
 * The doctor's `https-fallback` check from recorded observations: the HTTPS
 * long-polling rung as the lab's proxy-only site without WebSocket upgrades
 * shows it, and the rule that a check that could not run is `unknown`.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { multiaddr } from '@multiformats/multiaddr'
import { assess } from '../../src/doctor/assess.ts'
import { CHECK_NAMES } from '../../src/core/doctor.ts'
import { checkHttpsFallback } from '../../src/doctor/check-https-fallback.ts'
import { observeHttpsFallback, withHttpsFallbackTargets } from '../../src/doctor/probe-https-fallback.ts'
import type { DoctorObservations, RungObservation } from '../../src/core/doctor.ts'
import { doctorObservations } from '../helpers/doctor.ts'

const R = '12D3KooWQDkDvGNNGUoD3kFFaVSzTZ3udBbj3zMxiFHdb7aAmDgY'
const IP = '198.51.100.10'
const WSS = `/ip4/${IP}/tcp/443/tls/ws/p2p/${R}`
const POLL = `/ip4/${IP}/tcp/443/tls/http/http-path/wc-poll%2F1/p2p/${R}`
const PROXY = 'http://10.9.0.1:3128'

const wssRefused: RungObservation = { relay: R, addr: WSS, transport: 'wss', host: IP, port: 443, proxy: PROXY, outcome: 'failure', phase: 'ws-upgrade', code: 'WS_UPGRADE_FAILED', cause: 'the tunnel opened, but the WebSocket upgrade failed', durationMs: 120 }
const wssOk: RungObservation = { relay: R, addr: WSS, transport: 'wss', host: IP, port: 443, outcome: 'success', phase: 'protocol', durationMs: 30 }
const pollOk: RungObservation = { relay: R, addr: POLL, transport: 'https-poll', host: IP, port: 443, proxy: PROXY, outcome: 'success', phase: 'protocol', durationMs: 240 }
const pollFailed: RungObservation = { relay: R, addr: POLL, transport: 'https-poll', host: IP, port: 443, proxy: PROXY, outcome: 'failure', phase: 'http', code: 'POLL_NOT_SERVED', cause: 'the relay (or a proxy) answered the poll session request with HTTP 404', durationMs: 90 }

function observations (rungs: RungObservation[], over: Partial<DoctorObservations> = {}): DoctorObservations {
  return doctorObservations({
    bootstrap: [WSS],
    relays: [R],
    dns: [{ addr: WSS, via: 'literal', resolved: [WSS] }],
    rungs,
    reservationErrors: [{ relay: R, state: 'connecting' }],
    clock: { detail: 'not checked' },
    observedMs: 3000,
    httpsFallback: observeHttpsFallback(rungs, []),
    ...over
  })
}

describe('the https-fallback check', () => {
  it('says yes, and that only the fallback works, when WebSocket over TLS failed and polling connected', () => {
    const c = checkHttpsFallback(observations([wssRefused, pollOk]))
    assert.equal(c.value, 'yes')
    assert.match(c.detail, /only the HTTPS fallback works here/)
    assert.match(c.detail, new RegExp(`through proxy ${PROXY}`))
  })

  it('says yes without the warning when WebSocket over TLS works too', () => {
    const c = checkHttpsFallback(observations([wssOk, pollOk]))
    assert.equal(c.value, 'yes')
    assert.doesNotMatch(c.detail, /only the HTTPS fallback/)
  })

  it('says yes when the donor reserved over it, even if its own probe did not finish', () => {
    const pending: RungObservation = { ...pollOk, outcome: 'not-tried' }
    const obs = observations([wssRefused, pending], {})
    obs.httpsFallback = observeHttpsFallback(obs.rungs, [{ transport: 'https-poll' }])
    assert.equal(checkHttpsFallback(obs).value, 'yes')
  })

  it('says no with the phase and the code when it was tried and failed', () => {
    const c = checkHttpsFallback(observations([wssRefused, pollFailed]))
    assert.equal(c.value, 'no')
    assert.match(c.detail, /failed at http \(POLL_NOT_SERVED\)/)
  })

  it('is unknown when there was no /tls/ws address to derive it from, or no probe at all', () => {
    assert.equal(checkHttpsFallback(observations([])).value, 'unknown')
    const older = observations([wssRefused])
    delete older.httpsFallback
    assert.equal(checkHttpsFallback(older).value, 'unknown')
  })

  it('is in the report after the others, with a verdict sentence and an allowlist entry when only it works', () => {
    const report = assess(observations([wssRefused, pollOk]))
    assert.deepEqual(report.checks.map(c => c.name), [...CHECK_NAMES])
    assert.ok(CHECK_NAMES.indexOf('https-fallback') > CHECK_NAMES.indexOf('clock-skew'))
    assert.equal(report.checks.find(c => c.name === 'wss-443')?.value, 'no')
    assert.match(report.verdict, /Only the HTTPS fallback/)
    assert.ok(report.allowlist.some(a => a.startsWith(`WebSocket upgrades (HTTP Upgrade: websocket) to ${IP}:443`)), report.allowlist.join('\n'))
  })
})

describe('the https-fallback probe', () => {
  it('adds the poll address of each /tls/ws target and no other', () => {
    const targets = [{ relay: R, addr: multiaddr(WSS) }, { relay: R, addr: multiaddr(`/ip4/${IP}/tcp/4001/p2p/${R}`) }]
    assert.deepEqual(withHttpsFallbackTargets(targets).map(t => t.addr.toString()), [WSS, `/ip4/${IP}/tcp/4001/p2p/${R}`, POLL])
  })

  it('reads whether WebSocket over TLS was tried and reached', () => {
    assert.deepEqual(observeHttpsFallback([wssRefused, pollOk], []), { attempts: [pollOk], wssReached: false, wssTried: true, reservedOver: false })
  })
})
