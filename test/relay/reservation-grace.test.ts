import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { stopAfterEach } from '../helpers/cleanup.ts'
import { waitFor } from '../helpers/wait.ts'
import { nodeTracker, reservingClient, startGuardedRelay, tryReserve } from './helpers.ts'

const track = stopAfterEach()
const keep = nodeTracker(track)

describe('a reservation whose holder left', () => {
  it('is freed within the grace after its connection closes, not kept for the TTL', async () => {
    const relay = track(await startGuardedRelay({ reservationGrace: '1s' }))
    const client = await reservingClient(relay.addr)
    assert.equal(await tryReserve(client), 'granted')
    assert.equal(relay.service.reservationCount(), 1)
    const closed = Date.now()
    await client.stop()
    await waitFor('the reservation to be freed', () => relay.service.reservationCount() === 0, 10_000)
    const freedAfter = Date.now() - closed
    assert.ok(freedAfter >= 900, `freed after ${freedAfter} ms: not before the 1 s grace`)
    assert.ok(freedAfter < 6_000, `freed after ${freedAfter} ms: within the grace (1 s) and the close being noticed`)
  })

  it('keeps its slot for a donor that reconnects within the grace, against a newcomer on a full table', async () => {
    const relay = track(await startGuardedRelay({ reservationGrace: '20s', maxReservations: '1' }))
    const key = await generateKeyPair('Ed25519')
    const first = await reservingClient(relay.addr, { privateKey: key })
    assert.equal(await tryReserve(first), 'granted')
    await first.stop()
    // the slot is still the donor's: a newcomer is refused on the full table
    const newcomer = await reservingClient(relay.addr, { sourceIp: '127.0.0.3' })
    assert.notEqual(await tryReserve(newcomer), 'granted')
    const again = keep(await reservingClient(relay.addr, { privateKey: key }))
    assert.equal(await tryReserve(again), 'granted', 'the same identity refreshes its own reservation')
    assert.equal(relay.service.reservationCount(), 1)
  })

  it('is kept while its holder is connected', async () => {
    const relay = track(await startGuardedRelay({ reservationGrace: '200ms' }))
    const client = keep(await reservingClient(relay.addr))
    assert.equal(await tryReserve(client), 'granted')
    await new Promise(resolve => setTimeout(resolve, 800))
    assert.equal(relay.service.reservationCount(), 1)
  })
})
