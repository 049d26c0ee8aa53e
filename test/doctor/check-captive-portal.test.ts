/**
 * The doctor's `captive-portal` check from recorded observations: a portal
 * is a bad `yes` that the verdict names first and that makes the doctor
 * exit non-zero; our relay's 204 is `no`; silence is `unknown`.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { assess } from '../../src/doctor/assess.ts'
import { checkCaptivePortal } from '../../src/doctor/check-captive-portal.ts'
import { renderDoctor } from '../../src/daemon/commands/render-doctor.ts'
import type { CaptivePortalObservation, DoctorObservations, DoctorReport } from '../../src/core/doctor.ts'

const R = '12D3KooWQDkDvGNNGUoD3kFFaVSzTZ3udBbj3zMxiFHdb7aAmDgY'
const IP = '198.51.100.10'
const WS = `/ip4/${IP}/tcp/80/ws/p2p/${R}`
const WSS = `/ip4/${IP}/tcp/443/tls/ws/p2p/${R}`
const URLS = [`http://${IP}:80/generate_204`, `https://${IP}:443/generate_204`]
const SIGN_IN = 'http://portal.lab.example/login'
const AT = '2026-12-06T18:00:00.000Z'

const PORTAL: CaptivePortalObservation = {
  state: 'yes',
  url: SIGN_IN,
  urls: URLS,
  answers: [
    { url: URLS[0], outcome: 'portal', status: 302, signInUrl: SIGN_IN, detail: `302 redirect to ${SIGN_IN}` },
    { url: URLS[1], outcome: 'portal', status: 302, signInUrl: SIGN_IN, certIssuer: 'Hotel Portal', certTrusted: false, detail: `302 redirect to ${SIGN_IN}, certificate issued by Hotel Portal (not trusted here)` }
  ],
  detail: 'a sign-in page answered in place of the relay',
  checkedAt: AT
}

const OPEN: CaptivePortalObservation = {
  state: 'no',
  urls: URLS,
  answers: [{ url: URLS[0], outcome: 'relay', status: 204, detail: `204 from relay ${R}` }, { url: URLS[1], outcome: 'relay', status: 204, detail: `204 from relay ${R}` }],
  detail: '',
  checkedAt: AT
}

const SILENT: CaptivePortalObservation = {
  state: 'unknown',
  urls: URLS,
  answers: URLS.map(url => ({ url, outcome: 'silent' as const, detail: 'no answer within 3000 ms' })),
  detail: 'no sign-in page and no relay answered',
  checkedAt: AT
}

function observations (captivePortal: CaptivePortalObservation | undefined, reserved = false): DoctorObservations {
  return {
    bootstrap: [WS, WSS],
    relays: [R],
    dns: [WS, WSS].map(addr => ({ addr, via: 'literal' as const, resolved: [addr] })),
    doh: [],
    dohEndpoints: [],
    rungs: [
      { relay: R, addr: WS, transport: 'ws', host: IP, port: 80, outcome: reserved ? 'success' : 'failure', phase: 'ws-upgrade', ...(reserved ? {} : { cause: 'Unexpected server response: 302', code: 'ERR_WEBSOCKET' }) },
      { relay: R, addr: WSS, transport: 'wss', host: IP, port: 443, outcome: 'failure', phase: 'tls', cause: 'self-signed certificate', code: 'DEPTH_ZERO_SELF_SIGNED_CERT' }
    ],
    proxies: [],
    nat: { mapping: 'unknown', filtering: 'unknown', udp: 'unknown', reason: 'no relay connection to ask', servers: [] },
    reachability: { value: 'unknown', reason: 'no relay' },
    reservations: reserved ? [{ peerId: R, circuitAddr: `${WS}/p2p-circuit`, transport: 'ws', since: AT, addr: WS }] : [],
    reservationErrors: [{ relay: R, state: reserved ? 'reserved' : 'backing-off', ...(reserved ? {} : { error: 'Unexpected server response: 302' }) }],
    tls: [],
    clock: { detail: 'not checked' },
    webrtcTransport: true,
    ...(captivePortal != null ? { captivePortal } : {}),
    observedMs: 5000
  }
}

describe('the captive-portal check', () => {
  it('says yes with the sign-in URL in plain words when a portal answered', () => {
    const c = checkCaptivePortal(observations(PORTAL))
    assert.equal(c.value, 'yes')
    assert.match(c.detail, /sign-in page \(captive portal\) at http:\/\/portal\.lab\.example\/login/)
    assert.match(c.detail, /sign in, and run the doctor again/)
    assert.match(c.detail, /Hotel Portal/)
  })

  it('says no when the relay answered the probe', () => {
    const c = checkCaptivePortal(observations(OPEN, true))
    assert.equal(c.value, 'no')
    assert.match(c.detail, /the relay answered the probe/)
  })

  it('says unknown when nothing answered, and when it did not run', () => {
    assert.equal(checkCaptivePortal(observations(SILENT)).value, 'unknown')
    assert.equal(checkCaptivePortal(observations(undefined)).value, 'unknown')
    assert.equal(checkCaptivePortal(observations({ ...SILENT, urls: [], answers: [] })).value, 'unknown')
  })
})

describe('a doctor report behind a captive portal', () => {
  it('says so first in the verdict and cannot donate, even with a reservation', () => {
    const a = assess(observations(PORTAL))
    assert.equal(a.canDonate, false)
    assert.match(a.verdict, /^This network shows a sign-in page \(captive portal\): sign in at http:\/\/portal\.lab\.example\/login in a browser and run the doctor again\./)
    assert.equal(assess(observations(PORTAL, true)).canDonate, false, 'a path that works around the portal is not dependable until someone signs in')
  })

  it('is unchanged by a check that found no portal', () => {
    const a = assess(observations(OPEN, true))
    assert.equal(a.canDonate, true)
    assert.doesNotMatch(a.verdict, /captive portal/)
    assert.equal(assess(observations(SILENT, true)).canDonate, true)
  })

  it('reads right in the human report', () => {
    const a = assess(observations(PORTAL))
    const report: DoctorReport = { ...a, startedAt: AT, endedAt: AT, version: 'test', observations: observations(PORTAL) }
    const out: string[] = []
    renderDoctor({ out: (s) => { out.push(s) }, err: () => {} }, report)
    assert.match(out[0], /^This network shows a sign-in page/)
    assert.ok(out.some(l => /^ {2}captive-portal +yes +this network shows a sign-in page \(captive portal\) at http:\/\/portal\.lab\.example\/login/.test(l)), out.join('\n'))
  })
})
