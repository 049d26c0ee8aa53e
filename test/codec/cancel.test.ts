import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { decodeCancelRequest, decodeCancelResponse, encodeCancelRequest, encodeCancelResponse, MAX_CANCEL_TASKS } from '../../src/codec/cancel.ts'
import { MalformedMessageError } from '../../src/codec/errors.ts'
import { encodePlain } from '../../src/codec/validate.ts'

describe('cancel messages', () => {
  it('round-trip a request and a response', () => {
    assert.deepEqual(decodeCancelRequest(encodeCancelRequest({ taskIds: ['job-1.r0.a1', 'job-1.r1.a1'] })), { taskIds: ['job-1.r0.a1', 'job-1.r1.a1'] })
    const res = { stopped: ['a'], dropped: ['b'], unknown: [] }
    assert.deepEqual(decodeCancelResponse(encodeCancelResponse(res)), res)
  })

  it('refuse task IDs with spaces, too many IDs, and a missing list, naming the field', () => {
    assert.throws(() => decodeCancelRequest(encodePlain({ taskIds: ['a b'] })), (err: Error) => err instanceof MalformedMessageError && /taskIds/.test(err.message))
    assert.throws(() => encodeCancelRequest({ taskIds: Array.from({ length: MAX_CANCEL_TASKS + 1 }, (_, i) => `t${i}`) }), MalformedMessageError)
    assert.throws(() => decodeCancelResponse(encodePlain({ stopped: [], dropped: [] })), (err: Error) => err instanceof MalformedMessageError && /unknown/.test(err.message))
  })
})
