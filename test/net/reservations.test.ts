import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { peerIdFromString } from '@libp2p/peer-id'
import { disarmRefreshAfterStop } from '../../src/net/reservations.ts'

const RELAY = peerIdFromString('12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN')

/** The shape of circuit-relay-v2's store that the guard patches: a Map of reservations and a started flag. */
function fakeStore (started: boolean): { reservations: Map<unknown, { timeout?: ReturnType<typeof setTimeout> }>, isStarted: () => boolean, started: boolean } {
  const store = { reservations: new Map(), started, isStarted: () => store.started }
  return store
}

describe('relay reservation refresh timers', () => {
  it('a reservation recorded after the store stopped has its refresh timer cleared, and is still recorded', async () => {
    const store = fakeStore(false)
    disarmRefreshAfterStop(store)
    let fired = false
    store.reservations.set(RELAY, { timeout: setTimeout(() => { fired = true }, 20) })
    await new Promise(resolve => setTimeout(resolve, 60))
    assert.equal(fired, false)
    assert.equal(store.reservations.size, 1)
  })

  it('a reservation recorded while the store runs keeps its refresh timer', async () => {
    const store = fakeStore(true)
    disarmRefreshAfterStop(store)
    let fired = false
    store.reservations.set(RELAY, { timeout: setTimeout(() => { fired = true }, 20) })
    await new Promise(resolve => setTimeout(resolve, 60))
    assert.equal(fired, true)
  })

  it('leaves a store without the expected shape alone', () => {
    const reservations = new Map()
    const set = reservations.set
    disarmRefreshAfterStop({ reservations } as any)
    assert.equal(reservations.set, set)
  })
})
