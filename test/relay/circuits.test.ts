import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { multiaddr } from '@multiformats/multiaddr'
import { stopAfterEach } from '../helpers/cleanup.ts'
import { nodeTracker, reservingClient, startGuardedRelay, tryReserve } from './helpers.ts'

const track = stopAfterEach()
const keep = nodeTracker(track)

describe('circuits through a guarded relay', () => {
  it('are refused beyond the destination\'s per-peer circuit limit, counted from the relay\'s open streams', async () => {
    const relay = track(await startGuardedRelay({ maxCircuitsPerPeer: '1' }))
    const donor = keep(await reservingClient(relay.addr))
    assert.equal(await tryReserve(donor), 'granted')
    const target = multiaddr(`${relay.addr}/p2p-circuit/p2p/${donor.peerId.toString()}`)
    const first = keep(await reservingClient(relay.addr, { sourceIp: '127.0.0.6' }))
    await first.start()
    const conn = await first.dial(target)
    assert.ok(conn.remoteAddr.toString().includes('/p2p-circuit'))
    const second = keep(await reservingClient(relay.addr, { sourceIp: '127.0.0.7' }))
    await second.start()
    await assert.rejects(second.dial(target))
    assert.equal(relay.guard.refusalCounts()['circuits-per-peer'], 1)
    // the first circuit closes: its streams go, and the destination has room again
    await conn.close()
    await new Promise(resolve => setTimeout(resolve, 300))
    const again = await second.dial(target)
    assert.ok(again.remoteAddr.toString().includes('/p2p-circuit'))
  })
})
