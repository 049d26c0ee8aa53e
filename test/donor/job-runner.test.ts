import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { DEFAULT_JOB_LIMITS } from '../../src/core/job.ts'
import { JobRunner } from '../../src/donor/job-runner.ts'
import { Executor } from '../../src/executor/index.ts'

const MiB = 1024 * 1024

function runner (opts: { slots?: number, budget?: number, unavailable?: () => string | undefined } = {}): JobRunner {
  return new JobRunner({
    unavailable: opts.unavailable,
    // not started: offers are decided without running anything
    executor: new Executor({ maxConcurrent: opts.slots ?? 2 }),
    maxLimits: { ...DEFAULT_JOB_LIMITS, memoryBytes: 128 * MiB, deadlineMs: 60_000 },
    maxConcurrent: opts.slots ?? 2,
    memoryBudgetBytes: opts.budget,
    addrs: () => ['/ip4/127.0.0.1/tcp/1/p2p/12D3KooWCUxGstisocAwjyRccMAVqDFAksLECFj23zxN7fP231Wj/p2p-circuit/p2p/x'],
    hasModule: (cid) => cid === 'bafkrei-cached'
  })
}

function offer (taskId: string, limits: Record<string, number> = {}, moduleCid = 'bafkrei-m'): Parameters<JobRunner['decideOffer']>[0] {
  return { jobId: 'job-1', taskId, moduleCid, moduleSize: 1000, inputSize: 10, limits }
}

describe('donor offer decisions', () => {
  it('declines limits above the donor maxima, naming the limit and the maximum', () => {
    const res = runner().decideOffer(offer('t1', { memoryBytes: 256 * MiB }), { peer: 'broker' })
    assert.equal(res.accept, false)
    assert.equal(res.code, 'limits')
    // the words name the limit and the maximum: they are what the broker's log shows the submitter
    assert.match(res.reason ?? '', /memoryBytes .* maximum of 134217728/)
  })

  it('holds a slot for each accepted offer and declines when every slot is promised', () => {
    const r = runner({ slots: 2 })
    assert.equal(r.decideOffer(offer('t1', { memoryBytes: MiB }), { peer: 'b' }).accept, true)
    assert.equal(r.decideOffer(offer('t2', { memoryBytes: MiB }), { peer: 'b' }).accept, true)
    const third = r.decideOffer(offer('t3', { memoryBytes: MiB }), { peer: 'b' })
    assert.equal(third.accept, false)
    assert.equal(third.code, 'busy')
    assert.equal(r.capacity().freeSlots, 0)
    // the same task offered again is not a second claim
    assert.equal(r.decideOffer(offer('t1', { memoryBytes: MiB }), { peer: 'b' }).accept, true)
  })

  it('declines when the memory budget would be exceeded', () => {
    const r = runner({ slots: 4, budget: 100 * MiB })
    assert.equal(r.decideOffer(offer('t1', { memoryBytes: 64 * MiB }), { peer: 'b' }).accept, true)
    const res = r.decideOffer(offer('t2', { memoryBytes: 64 * MiB }), { peer: 'b' })
    assert.equal(res.accept, false)
    assert.equal(res.code, 'memory-budget')
  })

  it('says whether it holds the module, so the broker can skip sending it', () => {
    const r = runner()
    assert.equal(r.decideOffer(offer('t1', {}, 'bafkrei-cached'), { peer: 'b' }).hasModule, true)
    assert.equal(r.decideOffer(offer('t2', {}, 'bafkrei-other'), { peer: 'b' }).hasModule, false)
  })

  it('while its sandbox is down the donor announces it takes no jobs and declines offers, saying why', () => {
    let down: string | undefined = 'SandboxStartError: no "ready" within 15000 ms'
    const r = runner({ unavailable: () => down != null ? `the executor sandbox is not running (${down})` : undefined })
    assert.equal(r.capacity().acceptsJobs, false)
    const no = r.decideOffer(offer('t-down'), { peer: 'p' })
    assert.equal(no.accept, false)
    assert.equal(no.code, 'not-executing')
    assert.match(no.reason ?? '', /executor sandbox is not running \(SandboxStartError/)
    assert.equal(no.freeSlots, 0)
    down = undefined
    assert.equal(r.capacity().acceptsJobs, true)
    assert.equal(r.decideOffer(offer('t-up'), { peer: 'p' }).accept, true)
  })
})
