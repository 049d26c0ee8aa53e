import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { charged, misbehaved, refused } from '../../src/broker/attempts.ts'

const failed = (failure: string): { state: 'failed', failure: string } => ({ state: 'failed', failure })

describe('attempt accounting', () => {
  it('charges failures that may be honest, never misbehaviour', () => {
    const tasks = [failed('DISPATCH_FAILED: stream reset'), failed('RECEIPT_INVALID: bad signature'), failed('EXECUTOR_CRASHED: worker died')]
    assert.equal(charged(tasks), 2)
    assert.equal(misbehaved(tasks[1]), true)
  })

  it('lets the first refused dispatch of a replica go free, and charges the ones after it', () => {
    const once = [failed('DISPATCH_REFUSED: no offer held')]
    assert.equal(refused(once[0]), true)
    assert.equal(charged(once), 0)
    const again = [...once, failed('DISPATCH_REFUSED: no offer held'), failed('DISPATCH_REFUSED: no offer held')]
    assert.equal(charged(again), 2, 'a peer that refuses every dispatch still runs the replica out of attempts')
    assert.equal(charged([...once, failed('DISPATCH_TIMEOUT: send')]), 1)
  })
})
