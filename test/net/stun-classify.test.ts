/**
 * The STUN NAT classifier against recorded probe results. The fixtures in
 * test/fixtures/stun/ are recordings the real probe (src/net/stun/probe.ts)
 * made in the namespace lab (test/lab/nat-type.test.ts writes them with
 * WC_LAB_RECORD_STUN=DIR) behind each kind of site router; the inline ones
 * cover what the lab has no router for (address-dependent mapping, a second
 * relay IP, partial answers).
 */
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { classifyNat, sequentialStep, type StunObservation, type StunRecording } from '../../src/net/stun/classify.ts'

const FIXTURES = new URL('../fixtures/stun/', import.meta.url)

function fixture (name: string): StunRecording {
  return JSON.parse(readFileSync(new URL(`${name}.json`, FIXTURES), 'utf8')) as StunRecording
}

const relayA = '198.51.100.10'
const relayB = '198.51.100.20'

function mappingObs (localPort: number, server: [string, number], mapped?: [string, number]): StunObservation {
  return {
    socket: 'mapping',
    localPort,
    server: { address: server[0], port: server[1] },
    ...(mapped != null ? { answer: { mapped: { address: mapped[0], port: mapped[1] } } } : {})
  }
}

function filteringObs (localPort: number, server: [string, number], change: { changeIp: boolean, changePort: boolean } | undefined, answer: 'mapped' | 'none' | 'error'): StunObservation {
  return {
    socket: 'filtering',
    localPort,
    server: { address: server[0], port: server[1] },
    ...(change != null ? { change } : {}),
    ...(answer === 'mapped' ? { answer: { mapped: { address: '203.0.113.10', port: 40001 } } } : {}),
    ...(answer === 'error' ? { answer: { error: { code: 420, reason: 'Unknown Attribute' } } } : {})
  }
}

describe('STUN NAT classifier on recordings from the namespace lab', () => {
  it('classifies a cone-NAT site (MASQUERADE) as endpoint-independent mapping with address-and-port-dependent filtering', () => {
    const c = classifyNat(fixture('cone'))
    assert.equal(c.mapping, 'endpoint-independent', c.reason)
    assert.equal(c.filtering, 'address-and-port-dependent', c.reason)
    assert.equal(c.udp, 'yes')
    assert.match(c.mappedAddress ?? '', /^203\.0\.113\.\d+:\d+$/)
  })

  it('classifies a symmetric-NAT site (MASQUERADE --random-fully) as address-and-port-dependent mapping', () => {
    const c = classifyNat(fixture('symmetric'))
    assert.equal(c.mapping, 'address-and-port-dependent', c.reason)
    assert.equal(c.udp, 'yes')
  })

  it('classifies an open site with a public address as no NAT', () => {
    const c = classifyNat(fixture('open'))
    assert.equal(c.mapping, 'none', c.reason)
    assert.equal(c.udp, 'yes')
  })

  it('classifies a site that lets only TCP 80/443 out as no UDP', () => {
    const c = classifyNat(fixture('tcp-80-443-only'))
    assert.equal(c.mapping, 'no-udp', c.reason)
    assert.equal(c.udp, 'no')
    assert.equal(c.filtering, 'unknown')
  })

  it('has a recording for every lab site kind', () => {
    const names = readdirSync(FIXTURES).filter(f => f.endsWith('.json')).map(f => f.replace(/\.json$/, '')).sort()
    assert.deepEqual(names, ['cone', 'open', 'symmetric', 'tcp-80-443-only'])
  })
})

describe('STUN NAT classifier on constructed recordings', () => {
  it('says unknown, not "no UDP", when there was no STUN server to ask', () => {
    const c = classifyNat({ localAddresses: ['10.0.0.2'], observations: [] })
    assert.deepEqual([c.mapping, c.filtering, c.udp], ['unknown', 'unknown', 'unknown'])
  })

  it('names a local send error when UDP could not even leave the host', () => {
    const c = classifyNat({ localAddresses: ['10.0.0.2'], observations: [{ ...mappingObs(5000, [relayA, 3478]), sendError: 'EPERM' }] })
    assert.equal(c.mapping, 'no-udp')
    assert.match(c.reason, /could not be sent \(EPERM\)/)
  })

  it('tells address-dependent mapping from two relays on different IPs whose two ports agree', () => {
    const c = classifyNat({
      localAddresses: ['10.0.0.2'],
      observations: [
        mappingObs(5000, [relayA, 3478], ['203.0.113.10', 40001]),
        mappingObs(5000, [relayA, 3479], ['203.0.113.10', 40001]),
        mappingObs(5000, [relayB, 3478], ['203.0.113.10', 40002]),
        mappingObs(5000, [relayB, 3479], ['203.0.113.10', 40002])
      ]
    })
    assert.equal(c.mapping, 'address-dependent', c.reason)
  })

  it('reports address-and-port-dependent as soon as two ports of one relay see different mappings', () => {
    const c = classifyNat({
      localAddresses: ['10.0.0.2'],
      observations: [
        mappingObs(5000, [relayA, 3478], ['203.0.113.10', 40001]),
        mappingObs(5000, [relayA, 3479], ['203.0.113.10', 51234]),
        mappingObs(5000, [relayB, 3478], ['203.0.113.10', 60000])
      ]
    })
    assert.equal(c.mapping, 'address-and-port-dependent', c.reason)
    assert.match(c.reason, /198\.51\.100\.10:3478 saw 203\.0\.113\.10:40001/)
  })

  it('calls one mapping across two relays and two ports endpoint-independent', () => {
    const c = classifyNat({
      localAddresses: ['10.0.0.2'],
      observations: [
        mappingObs(5000, [relayA, 3478], ['203.0.113.10', 5000]),
        mappingObs(5000, [relayA, 3479], ['203.0.113.10', 5000]),
        mappingObs(5000, [relayB, 3478], ['203.0.113.10', 5000])
      ]
    })
    assert.equal(c.mapping, 'endpoint-independent', c.reason)
    assert.match(c.reason, /ports and addresses/)
  })

  it('does not guess a mapping behaviour from a single answer', () => {
    const c = classifyNat({
      localAddresses: ['10.0.0.2'],
      observations: [mappingObs(5000, [relayA, 3478], ['203.0.113.10', 5000]), mappingObs(5000, [relayA, 3479])]
    })
    assert.equal(c.mapping, 'unknown', c.reason)
    assert.equal(c.udp, 'yes')
  })

  it('sees no NAT only when the mapped port is the socket\'s own port too', () => {
    const rec = (port: number): StunRecording => ({
      localAddresses: ['192.0.2.18'],
      observations: [mappingObs(5000, [relayA, 3478], ['192.0.2.18', port]), mappingObs(5000, [relayA, 3479], ['192.0.2.18', port])]
    })
    assert.equal(classifyNat(rec(5000)).mapping, 'none')
    // same IP, other port: a NAT on the host itself (or a port-translating firewall)
    assert.equal(classifyNat(rec(61000)).mapping, 'endpoint-independent')
  })

  it('measures filtering with a fresh socket: endpoint-independent when an answer from another IP and port gets in', () => {
    const base = [mappingObs(5000, [relayA, 3478], ['203.0.113.10', 5000]), mappingObs(5000, [relayA, 3479], ['203.0.113.10', 5000])]
    const filtering = (port: 'mapped' | 'none', both: 'mapped' | 'none' | 'error' | undefined): StunObservation[] => [
      filteringObs(6000, [relayA, 3478], undefined, 'mapped'),
      filteringObs(6000, [relayA, 3478], { changeIp: false, changePort: true }, port),
      ...(both != null ? [filteringObs(6000, [relayA, 3478], { changeIp: true, changePort: true }, both)] : [])
    ]
    const classify = (port: 'mapped' | 'none', both?: 'mapped' | 'none' | 'error'): string =>
      classifyNat({ localAddresses: ['10.0.0.2'], observations: [...base, ...filtering(port, both)] }).filtering
    assert.equal(classify('mapped', 'mapped'), 'endpoint-independent')
    assert.equal(classify('mapped', 'none'), 'address-dependent')
    assert.equal(classify('none', 'none'), 'address-and-port-dependent')
    assert.equal(classify('none'), 'address-and-port-dependent')
    // one relay IP: not port-dependent, but EIF vs ADF cannot be told
    assert.equal(classify('mapped'), 'unknown')
    assert.equal(classify('mapped', 'error'), 'unknown')
  })

  it('leaves filtering unknown when the filtering control request itself was lost', () => {
    const c = classifyNat({
      localAddresses: ['10.0.0.2'],
      observations: [
        mappingObs(5000, [relayA, 3478], ['203.0.113.10', 5000]),
        mappingObs(5000, [relayA, 3479], ['203.0.113.10', 5000]),
        filteringObs(6000, [relayA, 3478], undefined, 'none'),
        filteringObs(6000, [relayA, 3478], { changeIp: false, changePort: true }, 'none')
      ]
    })
    assert.equal(c.filtering, 'unknown', c.reason)
  })
})

describe('STUN classifier: port prediction for a symmetric NAT', () => {
  it('reports the step of a symmetric NAT that gave consecutive flows consecutive ports', () => {
    const nat = '203.0.113.12'
    const res = classifyNat({
      localAddresses: ['10.3.0.2'],
      observations: [
        mappingObs(40000, [relayA, 3478], [nat, 20010]),
        mappingObs(40000, [relayA, 3479], [nat, 20011]),
        mappingObs(40000, [relayB, 3478], [nat, 20013]),
        mappingObs(40000, [relayB, 3479], [nat, 20014])
      ]
    })
    assert.equal(res.mapping, 'address-and-port-dependent')
    assert.equal(res.portDelta, 1, 'the smallest step: another flow took 20012 in between')
    assert.match(res.reason, /ports in sequence, step 1/)
  })

  it('reports no step for random ports, for a port going backwards, or with only one answer', () => {
    assert.equal(sequentialStep([20010]), undefined)
    assert.equal(sequentialStep([20010, 20011]), 1, 'one relay\'s two ports: the first probe')
    assert.equal(sequentialStep([41233, 7781, 60012, 12001]), undefined)
    assert.equal(sequentialStep([20010, 20011, 20009]), undefined)
    assert.equal(sequentialStep([20010, 20012, 20014]), 2)
    assert.equal(classifyNat(fixture('symmetric')).portDelta, undefined, 'the lab\'s --random-fully NAT recorded no sequence')
  })
})
