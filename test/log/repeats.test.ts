import assert from 'node:assert/strict'
import { afterEach, describe, it } from 'node:test'
import { configureLogging, createLogger, resetLogging } from '../../src/log/logger.ts'
import { configureRepeats, moreLikeIt, RepeatLimiter, warnRepeated } from '../../src/log/repeats.ts'

interface Line { level: string, component: string, msg: string, peer?: string, code?: string, suppressed?: number }

/** JSON lines into objects, so the tests read fields rather than wording. */
function capture (): Line[] {
  const lines: Line[] = []
  configureLogging({ spec: 'info', format: 'json', sink: (line) => { lines.push(JSON.parse(line) as Line) } })
  return lines
}

function fakeClock (): { now: () => number, advance: (ms: number) => void } {
  let t = 1_000_000
  return { now: () => t, advance: (ms) => { t += ms } }
}

describe('RepeatLimiter', () => {
  afterEach(() => {
    configureRepeats()
    resetLogging()
  })

  it('writes the first line of a key at once and counts the repeats within the interval', () => {
    const lines = capture()
    const clock = fakeClock()
    const limiter = new RepeatLimiter({ now: clock.now, autoSweep: false })
    const log = createLogger('protocols.offer')
    for (let i = 0; i < 5000; i++) {
      limiter.warn(log, `offer dropped #${i}`, { peer: 'peerA', code: 'MALFORMED_MESSAGE' })
      clock.advance(10)
    }
    assert.equal(lines.length, 1)
    assert.equal(lines[0].level, 'warn')
    assert.equal(lines[0].peer, 'peerA')
    assert.equal(lines[0].code, 'MALFORMED_MESSAGE')
    assert.equal(lines[0].suppressed, undefined)
  })

  it('writes the count of suppressed repeats with the first line after the interval', () => {
    const lines = capture()
    const clock = fakeClock()
    const limiter = new RepeatLimiter({ intervalMs: 60_000, now: clock.now, autoSweep: false })
    const log = createLogger('protocols.dispatch')
    const fields = { peer: 'peerA', code: 'PROTOCOL_VIOLATION' }
    limiter.warn(log, 'first', fields)
    for (let i = 0; i < 4211; i++) limiter.warn(log, 'again', fields)
    clock.advance(60_000)
    limiter.warn(log, 'after the interval', fields)
    assert.equal(lines.length, 2)
    assert.equal(lines[1].suppressed, 4211)
    assert.equal(lines[1].code, 'PROTOCOL_VIOLATION')
    assert.ok(lines[1].msg.endsWith(moreLikeIt(4211, 60_000)))
    assert.equal(moreLikeIt(4211, 60_000), '… and 4,211 more like it in the last 60 s')
  })

  it('keeps one window per component, peer and cause code', () => {
    const lines = capture()
    const limiter = new RepeatLimiter({ now: fakeClock().now, autoSweep: false })
    const offer = createLogger('protocols.offer')
    const dispatch = createLogger('protocols.dispatch')
    for (let i = 0; i < 3; i++) {
      limiter.warn(offer, 'x', { peer: 'peerA', code: 'MALFORMED_MESSAGE' })
      limiter.warn(offer, 'x', { peer: 'peerB', code: 'MALFORMED_MESSAGE' })
      limiter.warn(offer, 'x', { peer: 'peerA', code: 'PROTOCOL_VIOLATION' })
      limiter.warn(dispatch, 'x', { peer: 'peerA', code: 'MALFORMED_MESSAGE' })
    }
    assert.deepEqual(lines.map(l => [l.component, l.peer, l.code]), [
      ['protocols.offer', 'peerA', 'MALFORMED_MESSAGE'],
      ['protocols.offer', 'peerB', 'MALFORMED_MESSAGE'],
      ['protocols.offer', 'peerA', 'PROTOCOL_VIOLATION'],
      ['protocols.dispatch', 'peerA', 'MALFORMED_MESSAGE']
    ])
  })

  it('writes the pending count on a sweep once the flood has stopped, then forgets the key', () => {
    const lines = capture()
    const clock = fakeClock()
    const limiter = new RepeatLimiter({ intervalMs: 60_000, now: clock.now, autoSweep: false })
    const log = createLogger('protocols.capacity')
    for (let i = 0; i < 10; i++) limiter.warn(log, 'ignored announcement', { peer: 'peerA', code: 'MALFORMED_MESSAGE' })
    clock.advance(30_000)
    limiter.sweep()
    assert.equal(lines.length, 1, 'a window still open is not swept')
    clock.advance(30_000)
    limiter.sweep()
    assert.equal(lines.length, 2)
    assert.equal(lines[1].suppressed, 9)
    assert.equal(limiter.size, 0)
    limiter.sweep()
    assert.equal(lines.length, 2, 'a count is written once')
  })

  it('folds new peers into one key per cause past maxKeys, so free identities cannot flood the log', () => {
    const lines = capture()
    const limiter = new RepeatLimiter({ maxKeys: 4, now: fakeClock().now, autoSweep: false })
    const log = createLogger('protocols.offer')
    for (let i = 0; i < 1000; i++) limiter.warn(log, 'offer dropped', { peer: `peer${i}`, code: 'MALFORMED_MESSAGE' })
    assert.equal(lines.length, 5)
    assert.ok(limiter.size <= 5)
  })

  it('writes the pending counts on flush and forgets every window', () => {
    const lines = capture()
    const limiter = new RepeatLimiter({ now: fakeClock().now, autoSweep: false })
    const log = createLogger('protocols.offer')
    for (let i = 0; i < 3; i++) limiter.warn(log, 'x', { peer: 'peerA', code: 'MALFORMED_MESSAGE' })
    limiter.flush()
    assert.deepEqual(lines.map(l => l.suppressed), [undefined, 2])
    assert.equal(limiter.size, 0)
  })

  it('sweeps on its own timer when autoSweep is on', async () => {
    const lines = capture()
    const limiter = new RepeatLimiter({ intervalMs: 20 })
    const log = createLogger('protocols.offer')
    for (let i = 0; i < 3; i++) limiter.warn(log, 'x', { peer: 'peerA', code: 'MALFORMED_MESSAGE' })
    await new Promise(resolve => setTimeout(resolve, 120))
    assert.deepEqual(lines.map(l => l.suppressed), [undefined, 2])
    assert.equal(limiter.size, 0)
  })

  it('routes warnRepeated through the limiter configureRepeats installed', () => {
    const lines = capture()
    configureRepeats({ now: fakeClock().now, autoSweep: false })
    const log = createLogger('protocols.nat-info')
    for (let i = 0; i < 100; i++) warnRepeated(log, 'NAT info not sent', { peer: 'peerA', code: 'ABORT_ERR' })
    assert.equal(lines.length, 1)
  })
})
