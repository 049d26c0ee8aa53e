/**
 * The doctor's `ipv6` check from recorded observations: yes when a relay
 * answered over IPv6 (which, over which rung), no only when the host has
 * IPv6 and every IPv6 dial to a relay failed, unknown when nothing could be
 * tried. Also the probe's reading of interfaces and the routing table.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { assess } from '../../src/doctor/assess.ts'
import { CHECK_NAMES } from '../../src/core/doctor.ts'
import { checkIpv6 } from '../../src/doctor/check-ipv6.ts'
import { probeIpv6 } from '../../src/doctor/probe-ipv6.ts'
import type { DoctorObservations, Ipv6Observation, RungObservation } from '../../src/core/doctor.ts'
import type { NetworkInterfaceInfo } from 'node:os'
import { doctorObservations } from '../helpers/doctor.ts'

const R = '12D3KooWQDkDvGNNGUoD3kFFaVSzTZ3udBbj3zMxiFHdb7aAmDgY'
const V6 = '2001:db8:100::10'
const TCP6 = `/ip6/${V6}/tcp/4001/p2p/${R}`
const QUIC6 = `/ip6/${V6}/udp/4001/quic-v1/p2p/${R}`
const TCP4 = `/ip4/198.51.100.10/tcp/4001/p2p/${R}`
const NAT64_TCP = `/ip6/64:ff9b::c633:640a/tcp/4001/p2p/${R}`

function rung (addr: string, transport: RungObservation['transport'], outcome: RungObservation['outcome'], more: Partial<RungObservation> = {}): RungObservation {
  return { relay: R, addr, transport, outcome, ...(outcome === 'success' ? { phase: 'protocol', durationMs: 14 } : {}), ...more }
}

const DUAL: Ipv6Observation = { globalAddrs: ['2001:db8:1::2'], defaultRoute: true, ipv4: true }
const V6_ONLY: Ipv6Observation = { globalAddrs: ['2001:db8:1::2'], defaultRoute: true, ipv4: false, nat64Prefix: '64:ff9b::/96' }
const NO_V6: Ipv6Observation = { globalAddrs: [], defaultRoute: false, ipv4: true }

function observations (over: Partial<DoctorObservations>): DoctorObservations {
  return doctorObservations({ bootstrap: [TCP6, QUIC6, TCP4], relays: [R], ...over })
}

describe('doctor check ipv6', () => {
  it('says yes, with the relay and the rung, when a relay answered over IPv6', () => {
    const c = checkIpv6(observations({ ipv6: DUAL, rungs: [rung(QUIC6, 'quic', 'success'), rung(TCP4, 'tcp', 'success')] }))
    assert.equal(c.value, 'yes')
    assert.match(c.detail, /^relay 12D3KooW…aAmDgY reached over IPv6: quic \[2001:db8:100::10\] connected in 14 ms$/)
  })

  it('says yes through NAT64 and names it', () => {
    const c = checkIpv6(observations({ ipv6: V6_ONLY, rungs: [rung(NAT64_TCP, 'tcp', 'success')] }))
    assert.equal(c.value, 'yes')
    assert.match(c.detail, /through the network's NAT64 64:ff9b::\/96/)
  })

  it('says yes when the donor\'s reservation is held over IPv6 although the doctor\'s own rungs did not run', () => {
    const c = checkIpv6(observations({ ipv6: DUAL, reservations: [{ peerId: R, circuitAddr: `${TCP6}/p2p-circuit`, transport: 'tcp', since: '2026-12-06T18:00:00.000Z', addr: TCP6 }] }))
    assert.equal(c.value, 'yes')
    assert.match(c.detail, /reservation on relay .* is held over IPv6: tcp \[2001:db8:100::10\]/)
  })

  it('says no with each cause when the host has IPv6 and every IPv6 dial failed', () => {
    const obs = observations({
      ipv6: V6_ONLY,
      rungs: [
        rung(TCP6, 'tcp', 'failure', { phase: 'tcp-connect', code: 'TIMEOUT', timedOut: true, durationMs: 2500, cause: 'TCP connect timed out (SYN dropped?)' }),
        rung(QUIC6, 'quic', 'failure', { phase: 'tls', code: 'TIMEOUT', timedOut: true, durationMs: 3000, cause: 'no QUIC handshake reply within 3.0 s' })
      ]
    })
    const c = checkIpv6(obs)
    assert.equal(c.value, 'no')
    assert.match(c.detail, /every IPv6 dial to a relay failed: tcp \[2001:db8:100::10\]: TCP connect timed out \(SYN dropped\?\) \(TIMEOUT\); quic \[2001:db8:100::10\]: no QUIC handshake reply within 3\.0 s \(TIMEOUT\)/)
    assert.match(assess(obs).verdict, /This host has only IPv6, and IPv6 to the relays fails/)
  })

  it('is unknown on a host without IPv6, whatever the relays offer', () => {
    const c = checkIpv6(observations({ ipv6: NO_V6, rungs: [rung(TCP6, 'tcp', 'failure', { code: 'ENETUNREACH', cause: 'no route' })] }))
    assert.equal(c.value, 'unknown')
    assert.match(c.detail, /no IPv6 \(no global address, no default route\)/)
  })

  it('is unknown when no relay has an IPv6 address', () => {
    const c = checkIpv6(observations({ ipv6: DUAL, rungs: [rung(TCP4, 'tcp', 'success')] }))
    assert.equal(c.value, 'unknown')
    assert.match(c.detail, /no bootstrap relay has an IPv6 address: not tested/)
  })

  it('is unknown when IPv6 was not looked at, and when its dials were only cancelled', () => {
    assert.equal(checkIpv6(observations({})).value, 'unknown')
    assert.equal(checkIpv6(observations({ ipv6: DUAL, rungs: [rung(TCP6, 'tcp', 'cancelled', { phase: 'tcp-connect' })] })).value, 'unknown')
  })

  it('is in the report\'s checks in CHECK_NAMES order', () => {
    const checks = assess(observations({ ipv6: DUAL, rungs: [rung(TCP6, 'tcp', 'success')] })).checks
    assert.deepEqual(checks.map(c => c.name), [...CHECK_NAMES])
    assert.equal(checks.find(c => c.name === 'ipv6')?.value, 'yes')
  })
})

function iface (address: string, family: 'IPv4' | 'IPv6', internal = false): NetworkInterfaceInfo {
  return family === 'IPv4'
    ? { address, family, internal, netmask: '255.255.255.0', mac: '00:00:00:00:00:00', cidr: `${address}/24` }
    : { address, family, internal, netmask: 'ffff:ffff:ffff:ffff::', mac: '00:00:00:00:00:00', cidr: `${address}/64`, scopeid: 0 }
}

const ROUTES_WITH_DEFAULT = [
  '20010db8000100000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0',
  '00000000000000000000000000000000 00 00000000000000000000000000000000 00 20010db8000100000000000000000001 00000400 00000003 00000000 00000003     eth0'
].join('\n')
const ROUTES_UNREACHABLE_DEFAULT = '00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo'

describe('probeIpv6', () => {
  const noNat64 = { nat64Prefix: async () => undefined }

  it('finds global addresses and the default route, and leaves ULA, link-local and loopback out', async () => {
    const o = await probeIpv6({
      resolver: noNat64,
      interfaces: () => ({ lo: [iface('::1', 'IPv6', true)], eth0: [iface('192.0.2.2', 'IPv4'), iface('fd00::2', 'IPv6'), iface('fe80::1', 'IPv6'), iface('2001:db8:1::2', 'IPv6')] }),
      routes: () => ROUTES_WITH_DEFAULT
    })
    assert.deepEqual(o, { globalAddrs: ['2001:db8:1::2'], ipv4: true, defaultRoute: true })
  })

  it('asks for the NAT64 prefix on an IPv6-only host, and ignores an unreachable default route on lo', async () => {
    const o = await probeIpv6({
      resolver: { nat64Prefix: async () => Uint8Array.from([0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0]) },
      interfaces: () => ({ eth0: [iface('2001:db8:1::2', 'IPv6')] }),
      routes: () => ROUTES_UNREACHABLE_DEFAULT
    })
    assert.deepEqual(o, { globalAddrs: ['2001:db8:1::2'], ipv4: false, defaultRoute: false, nat64Prefix: '64:ff9b::/96' })
  })

  it('leaves the route unknown when the routing table cannot be read', async () => {
    const o = await probeIpv6({ resolver: noNat64, interfaces: () => ({}), routes: () => { throw new Error('ENOENT') } })
    assert.equal(o.defaultRoute, undefined)
  })
})
