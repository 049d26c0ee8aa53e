/**
 * The pure parts of the lab-mesh benchmarks (bench/lib/lab-mesh.ts,
 * bench/lib/cli-burst.ts): the spawn order, the log clock and the
 * exactly-once verdict from the executors' records.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { interleave, logTime } from '../../bench/lib/lab-mesh.ts'
import { classifyRuns } from '../../bench/lib/cli-burst.ts'

describe('lab mesh benchmarks', () => {
  it('spawns hosts with the sites interleaved, each host once, a shorter site dropping out when it runs out', () => {
    const order = interleave([
      { name: 'cone', nat: 'cone', hosts: [{ name: 'a1' }, { name: 'a2' }, { name: 'a3' }] },
      { name: 'sym', nat: 'symmetric', hosts: [{ name: 'b1' }] },
      { name: 'fw', nat: 'cone', hosts: [{ name: 'c1' }, { name: 'c2' }] }
    ])
    assert.deepEqual(order.map(h => h.host), ['a1', 'b1', 'c1', 'a2', 'c2', 'a3'])
    assert.deepEqual(order.find(h => h.host === 'b1'), { host: 'b1', site: 'sym', nat: 'symmetric' })
  })

  it('reads a log line\'s UTC clock on the day of the spawn, and on the next day when the line is from just after midnight', () => {
    const spawn = Date.UTC(2026, 11, 6, 21, 0, 0)
    assert.equal(logTime('21:00:05.250', spawn), spawn + 5_250)
    assert.equal(logTime('00:00:01.000', Date.UTC(2026, 11, 6, 23, 59, 58)), Date.UTC(2026, 11, 7, 0, 0, 1))
  })

  it('counts a job as run exactly once only with one recorded run that succeeded, and names the jobs run twice, never, or not successfully', () => {
    const runs = new Map([
      ['job-ok', [{ donor: 'd01', status: 'succeeded' }]],
      ['job-twice', [{ donor: 'd01', status: 'succeeded' }, { donor: 'd02', status: 'succeeded' }]],
      ['job-failed', [{ donor: 'd03', status: 'failed' }]]
    ])
    const verdict = classifyRuns(['job-ok', 'job-twice', 'job-failed', 'job-lost'], runs)
    assert.equal(verdict.once, 1)
    assert.deepEqual(verdict.twice, [{ jobId: 'job-twice', runs: runs.get('job-twice') }])
    assert.deepEqual(verdict.never, ['job-lost'])
    assert.deepEqual(verdict.notOk, ['job-failed'])
  })
})
