import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, it } from 'node:test'
import { PhaseTimer } from '../../src/protocols/timer.ts'

class PhaseOverError extends Error {}

describe('PhaseTimer', () => {
  it('aborts with the phase\'s named error when the phase runs out, and says so in expired', async () => {
    const timer = new PhaseTimer<'send'>((phase, ms) => new PhaseOverError(`${phase} ${ms}`))
    timer.enter('send', 30)
    await sleep(100)
    assert.ok(timer.signal.reason instanceof PhaseOverError)
    assert.equal(timer.expired, timer.signal.reason)
    timer.dispose()
  })

  it('aborts with the parent\'s reason while a phase runs, and that is not a timeout', () => {
    const parent = new AbortController()
    const timer = new PhaseTimer<'send'>((phase, ms) => new PhaseOverError(`${phase} ${ms}`), parent.signal)
    timer.enter('send', 10_000)
    const reason = new Error('stopping')
    parent.abort(reason)
    assert.equal(timer.signal.reason, reason)
    assert.equal(timer.expired, undefined)
    timer.dispose()
  })

  it('follows the parent again when a phase is entered after dispose, aborted already or not', () => {
    const parent = new AbortController()
    const timer = new PhaseTimer<'send' | 'receive'>((phase, ms) => new PhaseOverError(`${phase} ${ms}`), parent.signal)
    timer.enter('send', 10_000)
    timer.dispose()
    parent.abort(new Error('stopping'))
    assert.equal(timer.signal.aborted, false, 'nothing follows the parent between phases')
    timer.enter('receive', 10_000)
    assert.equal((timer.signal.reason as Error).message, 'stopping')
    timer.dispose()
  })

  it('starts aborted under a parent aborted already', () => {
    const parent = new AbortController()
    parent.abort(new Error('gone'))
    const timer = new PhaseTimer<'send'>((phase, ms) => new PhaseOverError(`${phase} ${ms}`), parent.signal)
    assert.equal((timer.signal.reason as Error).message, 'gone')
  })

  it('leaves no listener on the parent once disposed', () => {
    const parent = new AbortController()
    let added = 0
    let removed = 0
    const add = parent.signal.addEventListener.bind(parent.signal)
    const remove = parent.signal.removeEventListener.bind(parent.signal)
    parent.signal.addEventListener = (...args: Parameters<AbortSignal['addEventListener']>) => { added++; add(...args) }
    parent.signal.removeEventListener = (...args: Parameters<AbortSignal['removeEventListener']>) => { removed++; remove(...args) }
    for (let i = 0; i < 20; i++) {
      const timer = new PhaseTimer<'send'>((phase, ms) => new PhaseOverError(`${phase} ${ms}`), parent.signal)
      timer.enter('send', 10_000)
      timer.touch()
      timer.dispose()
    }
    assert.equal(added, 20)
    assert.equal(removed, 20)
  })
})
