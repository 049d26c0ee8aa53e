import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { checkPortMapping } from '../../src/doctor/check-port-mapping.ts'
import { portMappingSettled } from '../../src/doctor/probe-port-mapping.ts'
import type { PortMappingObservation } from '../../src/core/doctor.ts'
import type { PortMappingLease, PortMappingStatus } from '../../src/core/types.ts'

const LEASE: PortMappingLease = { transport: 'tcp', internal: '10.1.0.2:40123', external: '203.0.113.11:40123', lifetimeSeconds: 3600, expiresAt: '2026-01-01T01:00:00.000Z', renewedAt: '2026-01-01T00:00:00.000Z', confirmed: true }

function observed (status: Partial<PortMappingStatus>, waitedMs = 4000): { portMapping: PortMappingObservation } {
  return { portMapping: { status: { state: 'mapped', reason: '', mappings: [], failures: [], ...status }, waitedMs, timedOut: false } }
}

const failure = (code: string, protocol: 'pcp' | 'natpmp' | 'upnp', cause: string): PortMappingStatus['failures'][number] =>
  ({ protocol, gateway: '10.1.0.1', phase: 'map', code, cause, at: '2026-01-01T00:00:00.000Z' })

describe('the doctor\'s port-mapping check', () => {
  it('yes when a mapping was obtained and AutoNAT v2 confirmed it, naming the protocol and the external address', () => {
    const c = checkPortMapping(observed({ protocol: 'natpmp', gateway: '10.1.0.1', mappings: [LEASE] }))
    assert.equal(c.name, 'port-mapping')
    assert.equal(c.value, 'yes')
    assert.match(c.detail, /^NATPMP at 10\.1\.0\.1 mapped tcp 203\.0\.113\.11:40123 → 10\.1\.0\.2:40123; AutoNAT v2 confirmed 203\.0\.113\.11:40123/)
  })

  it('no when a mapping was granted that AutoNAT v2 could not confirm', () => {
    const c = checkPortMapping(observed({ protocol: 'upnp', gateway: '10.1.0.1', mappings: [{ ...LEASE, confirmed: false }] }, 15_000))
    assert.equal(c.value, 'no')
    assert.match(c.detail, /did not confirm it within 15\.0 s/)
  })

  it('no when a gateway answered and refused', () => {
    const c = checkPortMapping(observed({ state: 'failed', gateway: '10.1.0.1', failures: [failure('PORT_MAPPING_NO_ANSWER', 'pcp', 'no answer'), failure('PORT_MAPPING_REFUSED', 'natpmp', 'the gateway refused: NOT_AUTHORIZED')] }))
    assert.equal(c.value, 'no')
    assert.match(c.detail, /10\.1\.0\.1 answered and refused a mapping \(natpmp: the gateway refused: NOT_AUTHORIZED\)/)
  })

  it('unknown when no gateway answered, with the last cause', () => {
    const c = checkPortMapping(observed({ state: 'failed', gateway: '10.1.0.1', failures: [failure('PORT_MAPPING_NO_ANSWER', 'upnp', 'no SSDP answer')] }))
    assert.equal(c.value, 'unknown')
    assert.match(c.detail, /no gateway answered PCP, NAT-PMP or UPnP at 10\.1\.0\.1 \(last: upnp map: no SSDP answer\)/)
  })

  it('unknown when not applicable or switched off, saying which', () => {
    const na = checkPortMapping(observed({ state: 'not-applicable', reason: 'no TCP or QUIC listener on 10.1.0.2 (listening on relays only)' }))
    assert.equal(na.value, 'unknown')
    assert.match(na.detail, /^not applicable: no TCP or QUIC listener/)
    const off = checkPortMapping(observed({ state: 'off', reason: 'switched off (--no-port-mapping or "portMapping": false)' }))
    assert.equal(off.value, 'unknown')
    assert.match(off.detail, /^switched off/)
    assert.equal(checkPortMapping({}).value, 'unknown')
  })

  it('unknown while the gateway is still being asked when the doctor stops waiting', () => {
    const c = checkPortMapping(observed({ state: 'discovering', gateway: '10.1.0.1' }, 15_000))
    assert.equal(c.value, 'unknown')
    assert.match(c.detail, /did not answer within 15\.0 s/)
  })

  it('a mapping has settled once confirmed, or once asking is over; not while unconfirmed', () => {
    const base: PortMappingStatus = { state: 'mapped', reason: '', mappings: [{ ...LEASE, confirmed: false }], failures: [] }
    assert.equal(portMappingSettled(base), false)
    assert.equal(portMappingSettled({ ...base, mappings: [LEASE] }), true)
    assert.equal(portMappingSettled({ ...base, state: 'discovering' }), false)
    assert.equal(portMappingSettled({ ...base, state: 'failed' }), true)
  })
})
