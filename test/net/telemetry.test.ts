import { describe, it, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { DialTelemetry } from '../../src/net/telemetry.ts'
import { configureLogging, resetLogging } from '../../src/log/logger.ts'
import type { DialAttempt } from '../../src/core/types.ts'

const PEER = '12D3KooWCUxGstisocAwjyRccMAVqDFAksLECFj23zxN7fP231Wj'
const TARGET = `/ip4/127.0.0.1/tcp/4999/p2p/${PEER}`

function attempt (over: Partial<DialAttempt> = {}): DialAttempt {
  return {
    ts: '2025-01-01T00:00:00.000Z',
    target: TARGET,
    peerId: PEER,
    transport: 'tcp',
    phase: 'protocol',
    outcome: 'success',
    cause: 'connected',
    code: 'OK',
    duration_ms: 42,
    purpose: 'bootstrap',
    ...over
  }
}

function captureLines (spec?: string): string[] {
  const lines: string[] = []
  configureLogging({ sink: line => { lines.push(line) }, ...(spec != null ? { spec } : {}) })
  return lines
}

describe('DialTelemetry', () => {
  afterEach(() => { resetLogging() })

  it('keeps only the last N attempts, oldest first', () => {
    captureLines()
    const t = new DialTelemetry({ capacity: 3 })
    for (let i = 0; i < 5; i++) t.record(attempt({ code: `C${i}` }))
    assert.deepEqual(t.recent().map(a => a.code), ['C2', 'C3', 'C4'])
    assert.deepEqual(t.recent(2).map(a => a.code), ['C3', 'C4'])
  })

  it('counts every attempt, including those no longer kept', () => {
    captureLines()
    const t = new DialTelemetry({ capacity: 2 })
    assert.equal(t.count(), 0)
    for (let i = 0; i < 7; i++) t.record(attempt())
    assert.equal(t.count(), 7)
    assert.equal(t.recent().length, 2)
  })

  it('gives each recorded attempt to every listener until it unsubscribes', () => {
    captureLines()
    const t = new DialTelemetry()
    const seenA: DialAttempt[] = []
    const seenB: DialAttempt[] = []
    const offA = t.onAttempt(a => { seenA.push(a) })
    t.onAttempt(a => { seenB.push(a) })
    const first = attempt({ code: 'FIRST' })
    const second = attempt({ code: 'SECOND' })
    t.record(first)
    offA()
    t.record(second)
    assert.deepEqual(seenA, [first])
    assert.deepEqual(seenB, [first, second])
  })

  it('keeps recording and notifying when a listener throws, and logs the throw', () => {
    const lines = captureLines()
    const t = new DialTelemetry()
    const seen: string[] = []
    t.onAttempt(() => { throw new Error('listener broke') })
    t.onAttempt(a => { seen.push(a.code) })
    t.record(attempt({ code: 'X' }))
    assert.deepEqual(seen, ['X'])
    assert.equal(t.count(), 1)
    assert.ok(lines.some(l => l.includes('listener threw') && l.includes('listener broke')), lines.join('\n'))
  })

  it('logs a failure as one warn line at the default level naming target, transport, phase and cause', () => {
    const lines = captureLines()
    const t = new DialTelemetry()
    t.record(attempt({
      outcome: 'failure',
      phase: 'noise',
      transport: 'tcp',
      code: 'TIMEOUT',
      cause: 'no handshake reply within 10.0 s',
      duration_ms: 10_000
    }))
    assert.equal(lines.length, 1, lines.join('\n'))
    const line = lines[0]
    assert.ok(!line.includes('\n'))
    assert.match(line, /\bWARN\b/)
    assert.ok(line.includes('dial failed:'), line)
    assert.ok(line.includes(TARGET), line)
    assert.ok(line.includes('(tcp)'), line)
    assert.ok(line.includes('at noise'), line)
    assert.ok(line.includes('no handshake reply within 10.0 s'), line)
  })

  it('logs a success at info with "dial ok:"', () => {
    const lines = captureLines()
    const t = new DialTelemetry()
    t.record(attempt({ transport: 'quic', target: `/ip4/127.0.0.1/udp/4999/quic-v1/p2p/${PEER}` }))
    assert.equal(lines.length, 1)
    assert.match(lines[0], /\bINFO\b/)
    assert.ok(lines[0].includes('dial ok:'), lines[0])
    assert.ok(lines[0].includes('(quic)'), lines[0])
  })

  it('does not log a success when the level is warn', () => {
    const lines = captureLines('warn')
    new DialTelemetry().record(attempt())
    assert.deepEqual(lines, [])
  })

  it('keeps a cancellation out of the default log level', () => {
    const lines = captureLines()
    const t = new DialTelemetry()
    t.record(attempt({ outcome: 'cancelled', code: 'CANCELLED', cause: 'cancelled' }))
    assert.deepEqual(lines, [])
    assert.equal(t.count(), 1)
  })

  it('names a failed reservation as a reservation rather than a dial', () => {
    const lines = captureLines()
    new DialTelemetry().record(attempt({ outcome: 'failure', phase: 'reservation', purpose: 'reservation', cause: 'relay refused' }))
    assert.equal(lines.length, 1)
    assert.ok(lines[0].includes('reservation failed:'), lines[0])
  })
})
