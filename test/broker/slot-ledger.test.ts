import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { SlotLedger, UNREACHABLE_BACKOFF_MS } from '../../src/broker/slot-ledger.ts'

describe('slot ledger', () => {
  it('starts from the announcement and counts offers in flight as taken', () => {
    const ledger = new SlotLedger(() => 1_000)
    const a = { peerId: 'A', freeSlots: 2, slots: 2, updatedAt: 500 }
    assert.equal(ledger.free(a), 2)
    ledger.offering('A')
    assert.equal(ledger.free(a), 1)
    ledger.offering('A')
    assert.equal(ledger.free(a), 0, 'two offers on the wire take both slots')
    ledger.answered(a, true, 1)
    assert.equal(ledger.free(a), 0, 'the answer says 1 left, one offer still out')
    ledger.answered(a, false, 0)
    assert.equal(ledger.free(a), 0, 'a decline saying 0 free')
  })

  it('a failed offer (unreachable) pauses offers to that executor, with backoff, for every job', () => {
    let now = 1_000
    const ledger = new SlotLedger(() => now)
    const a = { peerId: 'A', freeSlots: 1 }
    ledger.offering('A')
    assert.equal(ledger.free(a), 0)
    ledger.answered(a, undefined)
    assert.equal(ledger.coolingDown('A'), true)
    assert.equal(ledger.reachable('A'), false)
    assert.equal(ledger.free(a), 0, 'paused')
    now += UNREACHABLE_BACKOFF_MS.first
    assert.equal(ledger.free(a), 1, 'the pause is over; the announcement stands')
    ledger.offering('A')
    ledger.answered(a, undefined)
    now += UNREACHABLE_BACKOFF_MS.first
    assert.equal(ledger.coolingDown('A'), true, 'a second failure in a row pauses twice as long')
    now += UNREACHABLE_BACKOFF_MS.first
    assert.equal(ledger.coolingDown('A'), false)
    ledger.offering('A')
    ledger.answered(a, false, 0)
    assert.equal(ledger.reachable('A'), true, 'an answer, even a decline, clears it')
  })

  it('an executor that took a long wait to be found unreachable pauses at least that long, doubling from there', () => {
    let now = 1_000
    const ledger = new SlotLedger(() => now)
    ledger.unreachable('A', 10_000)
    now += 9_999
    assert.equal(ledger.coolingDown('A'), true, 'no job waits on the same failed look-up again within the wait it took')
    now += 1
    assert.equal(ledger.coolingDown('A'), false)
    ledger.unreachable('A', 10_000)
    now += 19_999
    assert.equal(ledger.coolingDown('A'), true, 'a second failure in a row pauses twice as long')
    now += 1
    assert.equal(ledger.coolingDown('A'), false)
  })

  it('an answer without freeSlots: accept takes one, decline means busy', () => {
    const ledger = new SlotLedger(() => 1_000)
    const a = { peerId: 'A', freeSlots: 3 }
    ledger.offering('A')
    ledger.answered(a, true)
    assert.equal(ledger.free(a), 2)
    ledger.offering('A')
    ledger.answered(a, false)
    assert.equal(ledger.free(a), 0)
  })

  it('a task of ours ending frees a slot, capped at the executor\'s slots', () => {
    const ledger = new SlotLedger(() => 1_000)
    const a = { peerId: 'A', freeSlots: 1, slots: 1, updatedAt: 10 }
    ledger.offering('A')
    ledger.answered(a, true, 0)
    assert.equal(ledger.free(a), 0)
    ledger.released(a)
    assert.equal(ledger.free(a), 1)
    ledger.released(a)
    assert.equal(ledger.free(a), 1, 'never above its slots')
  })

  it('the newest source wins: an announcement heard after our own answer replaces it', () => {
    let now = 1_000
    const ledger = new SlotLedger(() => now)
    ledger.offering('A')
    ledger.answered({ peerId: 'A', freeSlots: 4, updatedAt: 900 }, false, 0)
    assert.equal(ledger.free({ peerId: 'A', freeSlots: 4, updatedAt: 900 }), 0, 'older announcement: our answer stands')
    now = 2_000
    assert.equal(ledger.free({ peerId: 'A', freeSlots: 3, updatedAt: 1_500 }), 3, 'newer announcement replaces it')
  })

  it('retain forgets executors no longer in the mesh', () => {
    const ledger = new SlotLedger(() => 1_000)
    ledger.offering('A')
    ledger.answered({ peerId: 'A', freeSlots: 5 }, false, 0)
    ledger.retain(new Set(['B']))
    assert.equal(ledger.free({ peerId: 'A', freeSlots: 5 }), 5, 'back to what it announces')
  })
})
