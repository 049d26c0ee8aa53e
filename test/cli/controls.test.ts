import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { renderControls } from '../../src/cli/commands/controls.ts'
import { renderDonated } from '../../src/cli/commands/donated.ts'
import { main } from '../../src/daemon/commands/index.ts'
import type { Output } from '../../src/cli/output.ts'
import { ApiClient } from '../../src/api/client.ts'
import { DaemonNotRunningError } from '../../src/core/errors.ts'

function capture (): Output & { lines: string[], errors: string[] } {
  const lines: string[] = []
  const errors: string[] = []
  return { lines, errors, out: (l) => { lines.push(l) }, err: (l) => { errors.push(l) } }
}

describe('pause, resume and donated on the command line', () => {
  it('shows why jobs are suspended and every limit', () => {
    const o = capture()
    renderControls(o, { paused: false, pausedBy: 'run-hours', reason: 'outside its run hours 18-08 (local time)', cpuLimit: 30, suspendWhenBusy: 60, otherCpuPercent: 12.5, runHours: '18-08' })
    const text = o.lines.join('\n')
    assert.match(text, /Jobs: +suspended: outside its run hours 18-08/)
    assert.match(text, /Paused: +no/)
    assert.match(text, /CPU limit: +30% of one core/)
    assert.match(text, /When busy: +suspend above 60% .*now 12\.5%/)
    assert.match(text, /Run hours: +18-08/)
  })

  it('lists donated tasks with their broker, status, CPU time and fuel, and says when there are none', () => {
    const o = capture()
    renderDonated(o, [{ at: '2026-06-01T12:00:00.000Z', startedAt: '2026-06-01T11:59:59.000Z', broker: '12D3KooWCUxGstisocAwjyRccMAVqDFAksLECFj23zxN7fP231Wj', jobId: 'j1', taskId: 'j1.r0.a1', status: 'succeeded', cpuTimeMs: 1234, fuelUsed: 987654, durationMs: 1500 }])
    assert.equal(o.lines.length, 2)
    assert.match(o.lines[1], /succeeded +1\.23 s +987654 +j1\.r0\.a1$/)
    const empty = capture()
    renderDonated(empty, [])
    assert.equal(empty.lines.length, 1)
  })

  it('a --limit out of range is a usage error (exit 2) before any daemon is asked', async () => {
    const o = capture()
    assert.equal(await main(['donated', '--limit', '0', '--data-dir', '/nonexistent-wc'], o), 2)
    assert.match(o.errors.join('\n'), /--limit/)
  })

  it('with no daemon running, pause fails with exit 1 in one line (DaemonNotRunningError)', async () => {
    const o = capture()
    assert.equal(await main(['pause', '--data-dir', '/nonexistent-wc'], o), 1)
    assert.equal(o.errors.length, 1, 'one line, no stack')
    await assert.rejects(new ApiClient({ dataDir: '/nonexistent-wc' }).call('pause', {}), DaemonNotRunningError)
  })
})
