import { test } from 'node:test'
import assert from 'node:assert/strict'
import { backoffDelay, delay, follow, pause, raceSignal, Waker } from '../../src/core/async.ts'
import { duration, portOf, shortPeerId } from '../../src/core/format.ts'

test('delay waits, and rejects with the signal reason when aborted', async () => {
  const t0 = Date.now()
  await delay(30)
  assert.ok(Date.now() - t0 >= 25)
  const c = new AbortController()
  setTimeout(() => { c.abort(new Error('stopped')) }, 10)
  await assert.rejects(delay(10_000, { signal: c.signal }), /stopped/)
  await assert.rejects(delay(10, { signal: AbortSignal.abort() }), { name: 'AbortError' })
})

test('pause says whether it was cut short and never rejects on abort', async () => {
  assert.equal(await pause(5), false)
  const c = new AbortController()
  setTimeout(() => { c.abort() }, 5)
  assert.equal(await pause(10_000, { signal: c.signal }), true)
})

test('raceSignal settles with the promise, or rejects when the signal fires first', async () => {
  assert.equal(await raceSignal(Promise.resolve(7)), 7)
  assert.equal(await raceSignal(Promise.resolve(8), new AbortController().signal), 8)
  const c = new AbortController()
  const never = new Promise<number>(() => {})
  setTimeout(() => { c.abort(new Error('gave up')) }, 5)
  await assert.rejects(raceSignal(never, c.signal), /gave up/)
  // a promise that rejects after the caller gave up is not an unhandled rejection
  await assert.rejects(raceSignal(Promise.reject(new Error('late')), AbortSignal.abort()), { name: 'AbortError' })
})

test('a Waker wakes its waiter, times out, and honours the signal', async () => {
  const w = new Waker()
  setTimeout(() => { w.wake() }, 5)
  assert.equal(await w.wait(10_000), 'woken')
  assert.equal(await w.wait(5), 'timeout')
  w.wake() // nobody waits, no latch: forgotten
  assert.equal(await w.wait(5), 'timeout')
  const latched = new Waker({ latch: true })
  latched.wake()
  assert.equal(await latched.wait(10_000), 'woken')
  const c = new AbortController()
  setTimeout(() => { c.abort() }, 5)
  await assert.rejects(w.wait(10_000, { signal: c.signal }), { name: 'AbortError' })
  assert.equal(w.waiting, false)
})

test('backoffDelay grows by the factor up to the cap, with jitter either side', () => {
  const p = { initialMs: 500, maxMs: 30_000 }
  assert.deepEqual([1, 2, 3, 7, 8, 100].map(n => backoffDelay(p, n)), [500, 1000, 2000, 30_000, 30_000, 30_000])
  const j = { ...p, jitter: 0.2 }
  assert.equal(backoffDelay(j, 1, () => 0), 400)
  assert.equal(backoffDelay(j, 1, () => 1), 600)
  assert.equal(backoffDelay({ initialMs: 100, maxMs: 10_000, factor: 3 }, 3), 900)
})

test('format helpers: durations, short PeerIds, ports', () => {
  assert.equal(duration(undefined), '?')
  assert.equal(duration(12.4), '12 ms')
  assert.equal(duration(1500), '1.5 s')
  assert.equal(shortPeerId('12D3KooWAbcdefghijklmnopqrstuvwxyz'), '12D3KooW…uvwxyz')
  assert.equal(shortPeerId('short'), 'short')
  assert.equal(portOf('/ip4/1.2.3.4/tcp/443/tls/ws'), 443)
  assert.equal(portOf('/ip4/1.2.3.4/udp/4001/quic-v1'), 4001)
  assert.equal(portOf('/p2p-circuit'), undefined)
})

test('follow aborts the controller with the parent\'s reason, and stops following when told', () => {
  const parent = new AbortController()
  const first = new AbortController()
  const unfollow = follow(parent.signal, first)
  const second = new AbortController()
  const unfollowSecond = follow(parent.signal, second)
  unfollowSecond()
  const reason = new Error('stopping')
  parent.abort(reason)
  assert.equal(first.signal.reason, reason)
  assert.equal(second.signal.aborted, false, 'a controller that stopped following is left alone')
  unfollow()
})

test('follow of a parent aborted already aborts at once, and of no parent does nothing', () => {
  const parent = new AbortController()
  parent.abort(new Error('gone'))
  const controller = new AbortController()
  follow(parent.signal, controller)()
  assert.equal((controller.signal.reason as Error).message, 'gone')
  const alone = new AbortController()
  follow(undefined, alone)()
  assert.equal(alone.signal.aborted, false)
})

