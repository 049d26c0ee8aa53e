import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { DEFAULT_JOB_LIMITS } from '../../src/core/job.ts'
import { resolveJobLimits, resolveMaxLimits } from '../../src/executor/limits.ts'

describe('job limits', () => {
  const maxima = resolveMaxLimits({ memoryBytes: 64 * 1024 * 1024, deadlineMs: 5_000 })

  it('fills missing limits with the defaults, lowered to the donor maxima', () => {
    const check = resolveJobLimits({}, maxima)
    assert.ok(check.ok)
    assert.equal(check.limits.memoryBytes, 64 * 1024 * 1024)
    assert.equal(check.limits.deadlineMs, 5_000)
    assert.equal(check.limits.fuel, DEFAULT_JOB_LIMITS.fuel)
  })

  it('keeps requested limits within the maxima', () => {
    const check = resolveJobLimits({ fuel: 1000, maxCallDepth: 50 }, maxima)
    assert.ok(check.ok)
    assert.equal(check.limits.fuel, 1000)
    assert.equal(check.limits.maxCallDepth, 50)
  })

  it('refuses a limit above the donor maximum and names both numbers', () => {
    const check = resolveJobLimits({ deadlineMs: 10_000 }, maxima)
    assert.deepEqual(check, { ok: false, reason: 'limits.deadlineMs 10000 is above this donor\'s maximum of 5000; ask for at most 5000' })
  })

  it('refuses limits that are not non-negative integers', () => {
    for (const bad of [-1, 1.5, Number.NaN, '10' as unknown as number]) {
      const check = resolveJobLimits({ fuel: bad }, maxima)
      assert.equal(check.ok, false, `fuel ${String(bad)} should be refused`)
    }
  })

  it('refuses a call depth of zero, since _start itself is a call', () => {
    assert.equal(resolveJobLimits({ maxCallDepth: 0 }, maxima).ok, false)
  })

  it('refuses donor maxima beyond what the machinery can enforce', () => {
    assert.throws(() => resolveMaxLimits({ memoryBytes: 8 * 1024 ** 3 }), /maxLimits.memoryBytes must be an integer in 0..4294967296/)
    assert.throws(() => resolveMaxLimits({ fuel: 2 ** 60 }), /maxLimits.fuel/)
  })
})
