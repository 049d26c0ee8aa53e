/**
 * Which PAIRS of NATs a WebRTC upgrade is tried for (pairBlocker), and port
 * prediction for a symmetric NAT that hands out ports in sequence: the
 * predicted candidates (net/webrtc-runtime.ts) and when the direct upgrader
 * turns prediction on. The lab measures the same pairs for real
 * (bench/nat-matrix.ts, test/lab/nat-matrix.test.ts).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { DirectPaths, pairBlocker, type DirectPathsComponents } from '../../src/donor/direct-paths.ts'
import { predictedCandidate, type PortPrediction } from '../../src/net/webrtc-runtime.ts'
import { createLogger } from '../../src/log/logger.ts'
import { decodeNatInfo, encodeNatInfo } from '../../src/protocols/nat-info/index.ts'
import type { NatReport } from '../../src/core/types.ts'

type Nat = Parameters<typeof pairBlocker>[0]
const cone: Nat = { mapping: 'endpoint-independent', filtering: 'address-and-port-dependent', udp: 'yes' }
const fullCone: Nat = { mapping: 'endpoint-independent', filtering: 'endpoint-independent', udp: 'yes' }
const notPortFiltered: Nat = { mapping: 'endpoint-independent', filtering: 'unknown', udp: 'yes' }
const open: Nat = { mapping: 'none', filtering: 'unknown', udp: 'yes' }
const symmetric: Nat = { mapping: 'address-and-port-dependent', filtering: 'address-and-port-dependent', udp: 'yes' }
const sequential: Nat = { ...symmetric, portDelta: 1 }
const noUdp: Nat = { mapping: 'no-udp', filtering: 'unknown', udp: 'no' }

describe('WebRTC upgrades per pair of NATs', () => {
  it('tries every pair of endpoint-independent or open sides', () => {
    for (const [a, b] of [[cone, cone], [cone, open], [open, fullCone], [fullCone, cone]]) {
      assert.equal(pairBlocker(a, b).blocker, undefined)
    }
  })

  it('tries a symmetric side with a side that has no NAT or does not filter on the port, both ways round', () => {
    for (const easy of [open, fullCone, notPortFiltered]) {
      const ab = pairBlocker(symmetric, easy)
      const ba = pairBlocker(easy, symmetric)
      assert.equal(ab.blocker, undefined, JSON.stringify(easy))
      assert.equal(ba.blocker, undefined, JSON.stringify(easy))
      assert.match(ab.how ?? '', /new mapping/)
    }
  })

  it('tries a sequential symmetric side with a port-restricted cone through port prediction', () => {
    assert.match(pairBlocker(cone, sequential).how ?? '', /port prediction/)
    assert.match(pairBlocker(sequential, cone).how ?? '', /port prediction/)
  })

  it('skips a random symmetric side behind a port-restricted cone, two symmetric sides, and a side without UDP, naming the NAT', () => {
    assert.match(pairBlocker(cone, symmetric).blocker ?? '', /the peer is behind a symmetric NAT/)
    assert.match(pairBlocker(symmetric, cone).blocker ?? '', /this donor is behind a symmetric NAT/)
    assert.match(pairBlocker(symmetric, sequential).blocker ?? '', /symmetric NAT.*so is the peer/)
    assert.match(pairBlocker(cone, noUdp).blocker ?? '', /no UDP/)
    assert.match(pairBlocker(noUdp, fullCone).blocker ?? '', /this donor has no UDP/)
  })
})

describe('Port prediction', () => {
  const srflx = 'a=candidate:3 1 UDP 1686052607 203.0.113.11 20003 typ srflx raddr 0.0.0.0 rport 0'

  it('offers the next ports of a server-reflexive candidate, each with a lower priority and its own foundation', () => {
    assert.equal(predictedCandidate(srflx, 1, 1), 'a=candidate:3p1 1 UDP 1686052606 203.0.113.11 20004 typ srflx raddr 0.0.0.0 rport 0')
    assert.equal(predictedCandidate(srflx, 2, 3), 'a=candidate:3p3 1 UDP 1686052604 203.0.113.11 20009 typ srflx raddr 0.0.0.0 rport 0')
  })

  it('leaves host, relay and TCP candidates alone and never predicts a port beyond 65535', () => {
    assert.equal(predictedCandidate('a=candidate:1 1 UDP 2114977791 10.1.0.2 46766 typ host', 1, 1), undefined)
    assert.equal(predictedCandidate('a=candidate:4 1 TCP 1686052607 203.0.113.11 20003 typ srflx', 1, 1), undefined)
    assert.equal(predictedCandidate(srflx.replace('20003', '65535'), 1, 1), undefined)
  })

  it('travels in the nat-info answer as an optional step, and a peer that sends none or nonsense reads as no prediction', () => {
    const info = { mapping: 'address-and-port-dependent', filtering: 'address-and-port-dependent', udp: 'yes', webrtc: true } as const
    assert.equal(decodeNatInfo(encodeNatInfo({ ...info, portDelta: 2 })).portDelta, 2)
    assert.equal(decodeNatInfo(encodeNatInfo(info)).portDelta, undefined)
    assert.equal(decodeNatInfo(encodeNatInfo({ ...info, portDelta: -3 })).portDelta, undefined)
    assert.equal(decodeNatInfo(encodeNatInfo({ ...info, portDelta: 1.5 })).portDelta, undefined)
  })

  it('is turned on by the direct upgrader while its NAT is symmetric with ports in sequence, and off otherwise', () => {
    const calls: Array<PortPrediction | undefined> = []
    let nat: NatReport = { mapping: 'address-and-port-dependent', filtering: 'address-and-port-dependent', udp: 'yes', reason: 'test', servers: [], portDelta: 2 }
    // natChanged reads no component while no peer is tracked
    const mesh: DirectPathsComponents = new Proxy({} as DirectPathsComponents, { get: (_, key) => { throw new Error(`component ${String(key)} is not used here`) } })
    const direct = new DirectPaths(mesh, { nat: () => nat, predictedPorts: 4, predictPorts: p => { calls.push(p) }, logger: createLogger('test.direct') })
    direct.natChanged()
    nat = { ...nat, portDelta: undefined }
    direct.natChanged()
    nat = { ...nat, mapping: 'endpoint-independent', portDelta: 1 }
    direct.natChanged()
    assert.deepEqual(calls, [{ delta: 2, count: 4 }, undefined, undefined])
  })
})
