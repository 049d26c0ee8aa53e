import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, it } from 'node:test'
import { runningTimeout } from '../../src/protocols/dispatch/dispatch.ts'

describe('the donor\'s guard on a task\'s run (dispatch)', () => {
  it('fires after its time when nothing was suspended, with a TimeoutError', async () => {
    const { signal, clear } = runningTimeout(100, () => 0)
    await sleep(250)
    assert.equal(signal.aborted, true)
    assert.equal((signal.reason as Error).name, 'TimeoutError')
    clear()
  })

  it('leaves suspended time out: 300 ms suspended push a 100 ms guard past 300 ms', async () => {
    // a running total that grows while suspended, as Executor.suspendedMs does
    let total = 0
    let since: number | undefined
    const { signal, clear } = runningTimeout(100, () => total + (since != null ? performance.now() - since : 0))
    // the donor's jobs are suspended from 20 ms to 320 ms
    await sleep(20)
    since = performance.now()
    await sleep(300)
    total += performance.now() - since
    since = undefined
    assert.equal(signal.aborted, false, 'the guard waits for the running time it was given')
    await sleep(250)
    assert.equal(signal.aborted, true)
    clear()
  })

  it('clear ends it before it fires', async () => {
    const { signal, clear } = runningTimeout(50, () => 0)
    clear()
    await sleep(120)
    assert.equal(signal.aborted, false)
  })

  it('aborts the controller it is given, and says whether it was the one that fired', async () => {
    const shared = new AbortController()
    const guard = runningTimeout(50, undefined, shared)
    assert.equal(guard.signal, shared.signal)
    await sleep(120)
    assert.equal(shared.signal.aborted, true)
    assert.equal(guard.expired(), true)
    guard.clear()
  })

  it('does not count as fired when the controller was aborted for another reason first', async () => {
    const shared = new AbortController()
    const guard = runningTimeout(50, undefined, shared)
    shared.abort(new Error('the service stopped'))
    await sleep(120)
    assert.equal(guard.expired(), false)
    assert.equal((shared.signal.reason as Error).message, 'the service stopped')
    guard.clear()
  })
})
