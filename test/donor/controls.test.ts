import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ControlsStateError, DonorControls, nextBusy, type ControlsClock, type DonorControlsInit } from '../../src/donor/controls.ts'
import type { CpuSample, CpuSampler } from '../../src/donor/cpu-sampler.ts'
import { parsePidStat, parseProcStat } from '../../src/donor/cpu-sampler.ts'
import { parseRunHours, withinRunHours } from '../../src/config/run-hours.ts'
import { ConfigError } from '../../src/core/errors.ts'
import type { Logger } from '../../src/log/logger.ts'

/** A clock whose timers fire only when the test advances it. */
class FakeClock implements ControlsClock {
  time: number
  private timers: Array<{ at: number, fn: () => void, id: number }> = []
  private nextId = 1
  constructor (start: Date) { this.time = start.getTime() }
  now = (): number => this.time
  setTimeout = (fn: () => void, ms: number): unknown => {
    const id = this.nextId++
    this.timers.push({ at: this.time + ms, fn, id })
    return id
  }

  clearTimeout = (handle: unknown): void => { this.timers = this.timers.filter(t => t.id !== handle) }
  get pending (): number { return this.timers.length }
  advance (ms: number): void {
    const end = this.time + ms
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at)
      const next = this.timers[0]
      if (next == null || next.at > end) break
      this.timers.shift()
      this.time = next.at
      next.fn()
    }
    this.time = end
  }
}

/** Records what the controls asked of the sandbox, and for how long it ran. */
class FakeTarget {
  suspended = false
  calls: boolean[] = []
  setSuspended = (s: boolean): void => { this.suspended = s; this.calls.push(s) }
}

/** Other programs' CPU as the test sets it, over a 1-core machine ticking 100 a second. */
class FakeSampler implements CpuSampler {
  otherPercent = 0
  private last: CpuSample = { totalTicks: 0, idleTicks: 0, ownTicks: 0 }
  private readonly clock: FakeClock
  private lastAt: number
  constructor (clock: FakeClock) { this.clock = clock; this.lastAt = clock.now() }
  sample = (): CpuSample => {
    const ticks = (this.clock.now() - this.lastAt) / 10
    this.lastAt = this.clock.now()
    const busy = ticks * this.otherPercent / 100
    this.last = { totalTicks: this.last.totalTicks + ticks, idleTicks: this.last.idleTicks + ticks - busy, ownTicks: this.last.ownTicks }
    return this.last
  }
}

function controls (init: Partial<DonorControlsInit> & { clock: FakeClock }, target = new FakeTarget()): { c: DonorControls, target: FakeTarget } {
  return { c: new DonorControls({ target, ...init }), target }
}

const NOON = new Date(2026, 5, 1, 12, 0, 0)

describe('donor controls', () => {
  it('a pause suspends running jobs, declines new ones and lasts until resume', () => {
    const clock = new FakeClock(NOON)
    const { c, target } = controls({ clock })
    c.setJobs(1)
    assert.equal(c.pausedBy(), null)
    const view = c.pause()
    assert.equal(view.paused, true)
    assert.equal(view.pausedBy, 'user')
    assert.equal(target.suspended, true)
    assert.ok(c.declineReason() != null)
    clock.advance(60_000)
    assert.equal(target.suspended, true)
    assert.equal(c.resume().pausedBy, null)
    assert.equal(target.suspended, false)
    assert.equal(c.declineReason(), undefined)
  })

  it('the pause is kept in the state file and applies again at the next start', () => {
    const dir = mkdtempSync(join(tmpdir(), 'wc-controls-'))
    try {
      const statePath = join(dir, 'state', 'controls.json')
      const first = controls({ clock: new FakeClock(NOON), statePath })
      first.c.pause()
      const second = controls({ clock: new FakeClock(NOON), statePath })
      assert.equal(second.c.view().paused, true)
      assert.equal(second.target.suspended, true)
      second.c.resume()
      assert.equal(JSON.parse(readFileSync(statePath, 'utf8')).paused, false)
      assert.equal(controls({ clock: new FakeClock(NOON), statePath }).c.view().paused, false)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('a damaged state file leaves the donor paused rather than running against its owner\'s wish', () => {
    const dir = mkdtempSync(join(tmpdir(), 'wc-controls-'))
    try {
      const statePath = join(dir, 'controls.json')
      writeFileSync(statePath, '{ not json')
      assert.equal(controls({ clock: new FakeClock(NOON), statePath }).c.view().paused, true)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('a pause that cannot be written is refused with a ControlsStateError and changes nothing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'wc-controls-'))
    try {
      writeFileSync(join(dir, 'file'), '')
      const { c, target } = controls({ clock: new FakeClock(NOON), statePath: join(dir, 'file', 'controls.json') })
      assert.throws(() => c.pause(), ControlsStateError)
      assert.equal(c.view().paused, false)
      assert.equal(target.suspended, false)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('a cpu limit runs one job for that share of each period and stops it for the rest', () => {
    const clock = new FakeClock(NOON)
    const { c, target } = controls({ clock, cpuLimit: 25, periodMs: 1000 })
    c.setJobs(1)
    let running = 0
    for (let ms = 0; ms < 10_000; ms += 10) {
      if (!target.suspended) running += 10
      clock.advance(10)
    }
    assert.ok(Math.abs(running - 2500) <= 50, `ran ${running} ms of 10000`)
    assert.equal(c.declineReason(), undefined, 'a cpu limit slows tasks down but takes them')
  })

  it('a cpu limit is shared by the jobs running at once', () => {
    const clock = new FakeClock(NOON)
    const { c, target } = controls({ clock, cpuLimit: 50, periodMs: 1000 })
    c.setJobs(2)
    let running = 0
    for (let ms = 0; ms < 10_000; ms += 10) {
      if (!target.suspended) running += 10
      clock.advance(10)
    }
    // two jobs for a quarter of the time each: half of one core
    assert.ok(Math.abs(running - 2500) <= 50, `ran ${running} ms of 10000`)
  })

  it('holds no timer while no job runs, and lets the sandbox run when the last job ends', () => {
    const clock = new FakeClock(NOON)
    const sampler = new FakeSampler(clock)
    const { c, target } = controls({ clock, cpuLimit: 10, suspendWhenBusy: 50, sampler, runHours: parseRunHours('8-20', 'test') })
    assert.equal(clock.pending, 0)
    c.setJobs(1)
    assert.ok(clock.pending > 0)
    clock.advance(950)
    assert.equal(target.suspended, true)
    c.setJobs(0)
    assert.equal(clock.pending, 0)
    assert.equal(target.suspended, false)
  })

  it('suspends while other programs are busy and resumes only once they fall clearly below the threshold', () => {
    const clock = new FakeClock(NOON)
    const sampler = new FakeSampler(clock)
    const { c, target } = controls({ clock, suspendWhenBusy: 50, sampler, busySampleMs: 3000 })
    c.setJobs(1)
    sampler.otherPercent = 80
    clock.advance(6000)
    assert.equal(c.pausedBy(), 'busy')
    assert.equal(target.suspended, true)
    assert.ok(c.declineReason() != null, 'a busy machine takes no new task')
    sampler.otherPercent = 45
    clock.advance(6000)
    assert.equal(c.pausedBy(), 'busy', '45% is under the threshold but inside the hysteresis band')
    sampler.otherPercent = 30
    clock.advance(6000)
    assert.equal(c.pausedBy(), null)
    assert.equal(target.suspended, false)
    assert.equal(c.view().otherCpuPercent, 30)
  })

  it('busy hysteresis: over the threshold to suspend, ten points (at most half) under it to resume', () => {
    assert.equal(nextBusy(false, 51, 50), true)
    assert.equal(nextBusy(false, 50, 50), false)
    assert.equal(nextBusy(true, 41, 50), true)
    assert.equal(nextBusy(true, 39, 50), false)
    assert.equal(nextBusy(true, 6, 10), true)
    assert.equal(nextBusy(true, 4, 10), false)
  })

  it('outside its run hours a donor suspends its jobs at the window\'s edge and declines new ones', () => {
    const clock = new FakeClock(new Date(2026, 5, 1, 7, 59, 30))
    const { c, target } = controls({ clock, runHours: parseRunHours('18-08', '--run-hours') })
    c.setJobs(1)
    assert.equal(c.pausedBy(), null)
    clock.advance(60_000)
    assert.equal(c.pausedBy(), 'run-hours')
    assert.equal(target.suspended, true)
    assert.ok(c.declineReason() != null)
    clock.advance(10 * 60 * 60_000)
    assert.equal(c.pausedBy(), null, 'the window opens again at 18:00')
    assert.equal(target.suspended, false)
  })
})

describe('run hours', () => {
  const at = (h: number, m = 0): number => h * 60 + m
  it('a window that ends before it starts wraps past midnight', () => {
    const w = parseRunHours('18-08', 'x')
    assert.equal(withinRunHours(w, at(18)), true)
    assert.equal(withinRunHours(w, at(23, 59)), true)
    assert.equal(withinRunHours(w, at(0)), true)
    assert.equal(withinRunHours(w, at(7, 59)), true)
    assert.equal(withinRunHours(w, at(8)), false)
    assert.equal(withinRunHours(w, at(12)), false)
  })

  it('0-24 is always, and HH:MM is accepted', () => {
    const always = parseRunHours('0-24', 'x')
    for (const m of [0, at(12), at(23, 59)]) assert.equal(withinRunHours(always, m), true)
    const w = parseRunHours('09:30-17:00', 'x')
    assert.equal(withinRunHours(w, at(9, 29)), false)
    assert.equal(withinRunHours(w, at(9, 30)), true)
    assert.equal(withinRunHours(w, at(17)), false)
  })

  it('anything else is a ConfigError naming the source', () => {
    for (const bad of ['18', '25-08', '8-8', 'a-b', '18-08-09', '10:75-12', '']) {
      assert.throws(() => parseRunHours(bad, '--run-hours'), (err: unknown) => err instanceof ConfigError && err.message.includes('--run-hours'), bad)
    }
  })
})

describe('CPU counters', () => {
  it('reads the machine\'s busy and idle ticks from /proc/stat', () => {
    const s = parseProcStat('cpu  100 5 50 800 20 1 2 3 0 0\ncpu0 1 2 3 4\n')
    assert.deepEqual(s, { totalTicks: 981, idleTicks: 820 })
  })

  it('reads a process\'s user and system ticks even when its name holds spaces and parentheses', () => {
    const line = '4242 (node (sandbox) x) S 1 4242 4242 0 -1 4194560 500 0 0 0 37 12 0 0 20 0 11 0 100 0 0'
    assert.equal(parsePidStat(line), 49)
  })
})

describe('donor controls without CPU counters', () => {
  it('a sampler that cannot read the machine warns once and never suspends for busy', () => {
    const clock = new FakeClock(NOON)
    let calls = 0
    const warnings: string[] = []
    const logger = { warn: (m: string) => { warnings.push(m) } }
    const { c, target } = controls({
      clock,
      suspendWhenBusy: 10,
      sampler: { sample: () => { calls++; throw new Error('ENOENT: /proc/stat') } },
      logger: { ...silentLogger(), ...logger }
    })
    c.setJobs(1)
    clock.advance(30_000)
    assert.ok(calls >= 9, `sampled ${calls} times`)
    assert.equal(warnings.length, 1)
    assert.equal(target.suspended, false)
  })
})

function silentLogger (): Logger {
  const noop = (): void => {}
  const logger: Logger = { component: 'test', error: noop, warn: noop, info: noop, debug: noop, trace: noop, enabled: () => false, child: () => logger }
  return logger
}
