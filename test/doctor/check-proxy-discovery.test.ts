/**
 * The `proxy-discovery` check from recorded observations: yes with the PAC's
 * source, URL and what it named for the relays; no with where it looked;
 * unknown when a proxy is configured, direct dials worked, or discovery did
 * not finish. And the check is in the doctor's assessment.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { checkProxyDiscovery } from '../../src/doctor/check-proxy-discovery.ts'
import { assess } from '../../src/doctor/assess.ts'
import { CHECK_NAMES, type DoctorObservations, type ProxyDiscoveryObservation } from '../../src/core/doctor.ts'
import type { ProxyStatus } from '../../src/core/types.ts'
import { doctorObservations } from '../helpers/doctor.ts'

const RELAY = '12D3KooWCUxGstisocAwjyRccMAVqDFAksLECFj23zxN7fP231Wj'

function observations (over: Partial<DoctorObservations> = {}): DoctorObservations {
  return doctorObservations({ bootstrap: [`/ip4/198.51.100.10/tcp/443/tls/ws/p2p/${RELAY}`], relays: [RELAY], reachability: { value: 'private', reason: '' }, ...over })
}

function discovery (over: Partial<ProxyDiscoveryObservation>): ProxyDiscoveryObservation {
  return { state: 'not-needed', looked: [], answers: [], ...over }
}

const FOUND = discovery({
  state: 'found',
  source: 'wpad-dns',
  url: 'http://wpad.corp.lab.example/wpad.dat',
  looked: ['/etc/resolv.conf: search corp.lab.example', 'http://wpad.corp.lab.example/wpad.dat: a PAC'],
  answers: [{ url: 'https://198.51.100.10:443/', answer: 'PROXY 10.20.0.1:3128' }]
})

describe('checkProxyDiscovery', () => {
  it('says yes with the source, the URL and what the PAC named for the relays', () => {
    const c = checkProxyDiscovery(observations({ proxyDiscovery: FOUND }))
    assert.equal(c.name, 'proxy-discovery')
    assert.equal(c.value, 'yes')
    assert.match(c.detail, /http:\/\/wpad\.corp\.lab\.example\/wpad\.dat/)
    assert.match(c.detail, /WPAD by DNS/)
    assert.match(c.detail, /PROXY 10\.20\.0\.1:3128 for https:\/\/198\.51\.100\.10:443\//)
  })

  it('names --proxy-pac as the source of an operator\'s PAC', () => {
    const c = checkProxyDiscovery(observations({ proxyDiscovery: { ...FOUND, source: 'flag', url: 'http://10.0.0.5/p.pac' } }))
    assert.equal(c.value, 'yes')
    assert.match(c.detail, /--proxy-pac/)
  })

  it('says no, with every place looked at, when discovery ran and found nothing', () => {
    const looked = ['/var/lib/dhcp: ENOENT', '/etc/resolv.conf: search corp.example', 'http://wpad.corp.example/wpad.dat: fetch failed (ENOTFOUND)']
    const c = checkProxyDiscovery(observations({ proxyDiscovery: discovery({ state: 'not-found', looked, detail: 'no PAC found by DHCP (option 252) or DNS (wpad.<search domain>)' }) }))
    assert.equal(c.value, 'no')
    for (const place of looked) assert.ok(c.detail.includes(place), place)
  })

  it('says no when the PAC found cannot be used', () => {
    const c = checkProxyDiscovery(observations({ proxyDiscovery: discovery({ state: 'failed', source: 'wpad-dns', url: 'http://wpad.x/wpad.dat', detail: 'the PAC http://wpad.x/wpad.dat (wpad-dns) cannot be used: PAC_SCRIPT_INVALID: …' }) }))
    assert.equal(c.value, 'no')
    assert.match(c.detail, /PAC_SCRIPT_INVALID/)
  })

  it('is unknown when a proxy is configured, naming it', () => {
    const proxy: ProxyStatus = { url: 'http://10.0.0.1:3128', kind: 'http', source: 'HTTPS_PROXY', usedFor: ['wss'], noProxyRules: 0, inUse: true, relays: [RELAY], tunnels: 1 }
    const c = checkProxyDiscovery(observations({ proxies: [proxy], proxyDiscovery: discovery({}) }))
    assert.equal(c.value, 'unknown')
    assert.match(c.detail, /HTTPS_PROXY/)
  })

  it('says yes when the only proxies in use are the ones the PAC named', () => {
    const proxy: ProxyStatus = { url: 'http://10.20.0.1:3128', kind: 'http', source: 'PAC http://wpad.corp.lab.example/wpad.dat', usedFor: ['tcp'], noProxyRules: 0, inUse: true, relays: [RELAY], tunnels: 1 }
    assert.equal(checkProxyDiscovery(observations({ proxies: [proxy], proxyDiscovery: FOUND })).value, 'yes')
  })

  it('is unknown when direct dials worked and discovery was not needed', () => {
    const c = checkProxyDiscovery(observations({ proxyDiscovery: discovery({ state: 'not-needed' }) }))
    assert.equal(c.value, 'unknown')
    assert.match(c.detail, /direct dials/)
  })

  it('is unknown when discovery had not finished, or was not observed', () => {
    assert.equal(checkProxyDiscovery(observations({ proxyDiscovery: discovery({ state: 'running' }) })).value, 'unknown')
    assert.equal(checkProxyDiscovery(observations()).value, 'unknown')
  })
})

describe('the doctor assessment', () => {
  it('lists proxy-discovery after the first-lab checks and includes its value', () => {
    assert.ok(CHECK_NAMES.indexOf('proxy-discovery') > CHECK_NAMES.indexOf('clock-skew'))
    const checks = assess(observations({ proxyDiscovery: FOUND })).checks
    assert.equal(checks.find(c => c.name === 'proxy-discovery')?.value, 'yes')
  })

  it('says in the verdict that the proxy came from the network\'s PAC, or that none was found when nothing worked', () => {
    assert.match(assess(observations({ proxyDiscovery: FOUND })).verdict, /named by the network's PAC file \(WPAD\) http:\/\/wpad\.corp\.lab\.example\/wpad\.dat/)
    assert.match(assess(observations({ proxyDiscovery: { ...FOUND, source: 'flag', url: 'http://10.0.0.5/p.pac' } })).verdict, /named by the PAC file given http:\/\/10\.0\.0\.5\/p\.pac\./)
    const none = assess(observations({ proxyDiscovery: discovery({ state: 'not-found', looked: ['/etc/resolv.conf: no search domain'] }) }))
    assert.equal(none.canDonate, false)
    assert.match(none.verdict, /names no usable proxy .* --proxy-pac URL or HTTPS_PROXY/)
  })
})
