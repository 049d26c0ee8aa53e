import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { stopAfterEach } from '../helpers/cleanup.ts'
import { captureLogs } from '../protocols/helpers.ts'
import { nodeTracker, reservingClient, startGuardedRelay, tryReserve } from './helpers.ts'
import type { Libp2p } from 'libp2p'

const track = stopAfterEach()
const keep = nodeTracker(track)

/** Reserves from `sourceIp` with `count` fresh identities, one after another; the granted clients stay up. */
async function flood (relayAddr: string, sourceIp: string, count: number): Promise<{ granted: Libp2p[], refused: string[] }> {
  const granted: Libp2p[] = []
  const refused: string[] = []
  for (let i = 0; i < count; i++) {
    const client = await reservingClient(relayAddr, { sourceIp })
    const outcome = await tryReserve(client)
    if (outcome === 'granted') granted.push(keep(client))
    else refused.push(outcome)
  }
  return { granted, refused }
}

describe('a flood of identities from one IP', () => {
  it('is refused beyond the per-IP reservation limit while an honest peer from another IP reserves', async () => {
    const logs = captureLogs()
    try {
      const relay = track(await startGuardedRelay({ maxReservationsPerIp: '3', perIpExempt: ['none'] }))
      const { granted, refused } = await flood(relay.addr, '127.0.0.2', 6)
      assert.equal(granted.length, 3)
      assert.equal(refused.length, 3)
      const honest = keep(await reservingClient(relay.addr, { sourceIp: '127.0.0.3' }))
      assert.equal(await tryReserve(honest), 'granted')
      assert.equal(relay.service.reservationCount(), 4)
      assert.equal(relay.guard.refusalCounts()['reservations-per-ip'], 3)
      // one WARN line for the three refusals of one cause (rate-limited), naming the IP and the cause
      const warned = logs.lines.filter(l => l.includes('reservations-per-ip'))
      assert.equal(warned.length, 1, warned.join('\n'))
      assert.match(warned[0], /127\.0\.0\.2/)
    } finally {
      logs.restore()
    }
  })

  it('gives an IP its reservation slot back once a holder\'s reservation is freed after the grace', async () => {
    const relay = track(await startGuardedRelay({ maxReservationsPerIp: '2', perIpExempt: ['none'], reservationGrace: '100ms' }))
    const { granted } = await flood(relay.addr, '127.0.0.6', 2)
    assert.equal(granted.length, 2)
    assert.notEqual(await tryReserve(await reservingClient(relay.addr, { sourceIp: '127.0.0.6' })), 'granted', 'the IP holds its two')
    await granted[0].stop()
    const deadline = Date.now() + 5_000
    while (relay.service.reservationCount() > 1 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 50))
    assert.equal(relay.service.reservationCount(), 1, 'the leaver\'s reservation freed after the grace')
    assert.equal(await tryReserve(keep(await reservingClient(relay.addr, { sourceIp: '127.0.0.6' }))), 'granted')
  })

  it('leaves loopback alone by default: a local mesh has every donor on 127.0.0.1', async () => {
    const relay = track(await startGuardedRelay({ maxReservationsPerIp: '2' }))
    const { granted } = await flood(relay.addr, '127.0.0.2', 4)
    assert.equal(granted.length, 4)
    assert.equal(relay.guard.refusalCounts()['reservations-per-ip'], 0)
  })

  it('is refused beyond the per-IP connection limit', async () => {
    const relay = track(await startGuardedRelay({ maxConnectionsPerIp: '2', perIpExempt: ['none'] }))
    const { granted, refused } = await flood(relay.addr, '127.0.0.4', 3)
    assert.equal(granted.length, 2)
    assert.equal(refused.length, 1)
    assert.ok(relay.guard.refusalCounts()['connections-per-ip'] >= 1)
    const honest = keep(await reservingClient(relay.addr, { sourceIp: '127.0.0.5' }))
    assert.equal(await tryReserve(honest), 'granted')
  })
})
