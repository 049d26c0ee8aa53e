import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { errorWithCode } from '../core/errors.ts'
import type { DonorControlsView, SuspendReason } from '../core/types.ts'
import { localMinuteOfDay, msToNextRunHoursEdge, withinRunHours, type RunHours } from '../config/run-hours.ts'
import { createLogger, type Logger } from '../log/logger.ts'
import { procCpuSampler, type CpuSampler, type CpuSample } from './cpu-sampler.ts'

/** The pause could not be written to the data directory: it would not survive a restart, so it is not taken. */
export class ControlsStateError extends errorWithCode('CONTROLS_STATE_UNWRITABLE') {}

/** The daemon runs no jobs for others (--no-execute): there is nothing to pause or resume. */
export class NotExecutingError extends errorWithCode('NOT_EXECUTING') {}

/** What the controls suspend and resume: the executor's sandbox. */
export interface SuspendTarget {
  /** suspends (true) or resumes (false) every running job; idempotent, never throws */
  setSuspended: (suspended: boolean) => void
}

/** Time and timers, injectable so the state machine is tested on a fake clock. */
export interface ControlsClock {
  now: () => number
  setTimeout: (fn: () => void, ms: number) => unknown
  clearTimeout: (handle: unknown) => void
}

const realClock: ControlsClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => { clearTimeout(handle as NodeJS.Timeout) }
}

export interface DonorControlsInit {
  target: SuspendTarget
  /** share of one core the jobs together may use on average, percent 1–100 @default 100 (no limit) */
  cpuLimit?: number
  /** suspend jobs while other programs use more than this share of the machine, percent 1–100 @default undefined (off) */
  suspendWhenBusy?: number
  /** the local-time window jobs run in @default undefined (always) */
  runHours?: RunHours
  /** the file that keeps the owner's pause across restarts @default undefined (not kept) */
  statePath?: string
  /** the duty cycle's period under a cpu limit @default 1000 */
  periodMs?: number
  /** how often the machine's CPU is sampled while jobs run and suspendWhenBusy is set @default 3000 */
  busySampleMs?: number
  /** the machine's and our own CPU counters @default /proc/stat, process.cpuUsage and the sandbox's /proc entry */
  sampler?: CpuSampler
  /** the sandbox's pid, for the default sampler @default none */
  sandboxPid?: () => number | undefined
  clock?: ControlsClock
  /** called when offers would now be answered differently (paused, resumed), so capacity is announced again */
  onChange?: () => void
  logger?: Logger
}

/** Percentage points under the threshold other programs' use must fall to before suspended jobs resume. */
const BUSY_HYSTERESIS = 10

interface PauseFile { paused: boolean, pausedAt?: string }

/**
 * The donor controls: a small state machine that decides whether jobs run
 * or are suspended, from the owner's pause (kept in the data directory), the
 * local run-hours window, other programs' CPU use and the cpu-limit duty
 * cycle. It holds timers only while jobs run (`setJobs`): a duty-cycle timer
 * under a cpu limit, a CPU sample every few seconds with suspendWhenBusy, a
 * timer to the window's next edge with run-hours; idle, it costs nothing.
 */
export class DonorControls {
  private readonly init: DonorControlsInit
  private readonly clock: ControlsClock
  private readonly log: Logger
  private readonly sampler?: CpuSampler
  private readonly periodMs: number
  private readonly busySampleMs: number
  private paused = false
  private pausedAt?: string
  private jobs = 0
  /** in the stopped part of the duty cycle */
  private dutyOff = false
  private busy = false
  private otherPercent?: number
  private lastSample?: CpuSample
  private sampleFailing = false
  private applied: SuspendReason | null = null
  private dutyTimer?: unknown
  private sampleTimer?: unknown
  private hoursTimer?: unknown

  constructor (init: DonorControlsInit) {
    this.init = init
    this.clock = init.clock ?? realClock
    this.log = init.logger ?? createLogger('donor.controls')
    this.periodMs = init.periodMs ?? 1000
    this.busySampleMs = init.busySampleMs ?? 3000
    if (init.suspendWhenBusy != null) this.sampler = init.sampler ?? procCpuSampler(() => init.sandboxPid?.())
    this.loadPause()
    if (this.paused) this.log.info(`paused by its owner${this.pausedAt != null ? ` since ${this.pausedAt}` : ''} (kept in ${init.statePath ?? 'memory'}): no task is run for others until \`worldcompute resume\``, { code: 'DONOR_PAUSED' })
    this.applied = this.pausedBy()
    if (this.applied != null) this.init.target.setSuspended(true)
  }

  /** The owner pauses the donor: running jobs are suspended, offers declined, until `resume` (also after a restart). */
  pause (): DonorControlsView {
    if (!this.paused) {
      const pausedAt = new Date(this.clock.now()).toISOString()
      this.savePause({ paused: true, pausedAt })
      this.paused = true
      this.pausedAt = pausedAt
      this.log.info('paused by its owner: running jobs are suspended and no new task is accepted until `worldcompute resume`', { code: 'DONOR_PAUSED' })
      this.changed()
    }
    return this.view()
  }

  resume (): DonorControlsView {
    if (this.paused) {
      this.savePause({ paused: false })
      this.paused = false
      this.pausedAt = undefined
      this.log.info('resumed by its owner', { code: 'DONOR_RESUMED' })
      this.changed()
    }
    return this.view()
  }

  /** Tasks held by the job runner now: the controls' timers run only while there are any. */
  setJobs (count: number): void {
    if (count === this.jobs) return
    this.jobs = count
    if (count === 0) {
      // nothing to suspend: what the last samples said about the machine is stale by the next task
      this.busy = false
      this.lastSample = undefined
      this.dutyOff = false
    }
    this.update()
  }

  /** Why jobs are suspended now, or null when they run. */
  pausedBy (): SuspendReason | null {
    if (this.paused) return 'user'
    if (!this.inRunHours()) return 'run-hours'
    if (this.busy) return 'busy'
    if (this.dutyOff) return 'cpu-limit'
    return null
  }

  /** Why a new task is declined now, or undefined: the cpu limit only slows tasks down, it takes them. */
  declineReason (): string | undefined {
    const by = this.pausedBy()
    return by == null || by === 'cpu-limit' ? undefined : describe(by, this.init)
  }

  view (): DonorControlsView {
    const by = this.pausedBy()
    return {
      paused: this.paused,
      ...(this.pausedAt != null ? { pausedAt: this.pausedAt } : {}),
      pausedBy: by,
      cpuLimit: this.init.cpuLimit ?? 100,
      suspendWhenBusy: this.init.suspendWhenBusy ?? null,
      ...(this.otherPercent != null ? { otherCpuPercent: Math.round(this.otherPercent * 10) / 10 } : {}),
      runHours: this.init.runHours?.text ?? null,
      ...(by != null ? { reason: describe(by, this.init) } : {})
    }
  }

  /** Clears every timer (the daemon stops); jobs are left as they are, the executor's stop ends them. */
  stop (): void {
    this.jobs = 0
    this.stopTimers()
  }

  private inRunHours (): boolean {
    const hours = this.init.runHours
    return hours == null || withinRunHours(hours, localMinuteOfDay(new Date(this.clock.now())))
  }

  private changed (): void {
    this.update()
    this.init.onChange?.()
  }

  /** Applies the decision to the target and keeps exactly the timers the state needs. */
  private update (): void {
    const by = this.pausedBy()
    if (by !== this.applied) {
      const was = this.applied
      this.applied = by
      if ((by == null) !== (was == null)) this.init.target.setSuspended(by != null)
      // the duty cycle switches every period: worth a debug line, not an info line
      const quiet = by === 'cpu-limit' || (by == null && was === 'cpu-limit')
      const fields = { code: 'JOBS_SUSPENDED', pausedBy: by, was }
      if (quiet) this.log.debug(`jobs ${by == null ? 'run' : 'suspended'} (${describe(by ?? was ?? 'cpu-limit', this.init)})`, fields)
      else this.log.info(by == null ? `jobs resume (${describe(was ?? 'user', this.init)} no longer holds them)` : `jobs suspended: ${describe(by, this.init)}`, fields)
    }
    this.schedule()
  }

  private schedule (): void {
    const active = this.jobs > 0
    const fraction = (this.init.cpuLimit ?? 100) / 100 / Math.max(1, this.jobs)
    const otherReason = this.paused || !this.inRunHours() || this.busy
    if (!active || otherReason || fraction >= 1) this.stopDuty()
    else if (this.dutyTimer == null) this.runPhase()
    if (active && this.sampler != null && !this.paused) {
      this.sampleTimer ??= this.clock.setTimeout(() => { this.sampleTimer = undefined; this.sampleCpu() }, this.busySampleMs)
    } else {
      this.clearTimer('sampleTimer')
    }
    const hours = this.init.runHours
    if (active && hours != null && !(hours.startMinute === 0 && hours.endMinute === 1440)) {
      this.hoursTimer ??= this.clock.setTimeout(() => { this.hoursTimer = undefined; this.update() }, msToNextRunHoursEdge(hours, new Date(this.clock.now())))
    } else {
      this.clearTimer('hoursTimer')
    }
  }

  /** The running part of a duty-cycle period: cpuLimit% of it shared by the running jobs, then the stopped part. */
  private runPhase (): void {
    const fraction = Math.min(1, (this.init.cpuLimit ?? 100) / 100 / Math.max(1, this.jobs))
    const runMs = Math.max(1, Math.round(this.periodMs * fraction))
    this.dutyOff = false
    this.dutyTimer = this.clock.setTimeout(() => {
      this.dutyOff = true
      this.dutyTimer = this.clock.setTimeout(() => {
        this.dutyTimer = undefined
        this.dutyOff = false
        this.update()
      }, Math.max(1, this.periodMs - runMs))
      this.update()
    }, runMs)
    this.update()
  }

  private stopDuty (): void {
    this.clearTimer('dutyTimer')
    if (this.dutyOff) {
      this.dutyOff = false
      this.update()
    }
  }

  private sampleCpu (): void {
    let sample: CpuSample | undefined
    try {
      sample = this.sampler?.sample()
    } catch (err) {
      // once per failure streak: a machine without /proc would say the same thing every few seconds
      if (!this.sampleFailing) this.log.warn(`cannot read the machine's CPU use (${(err as Error).message}): --suspend-when-busy has no effect until it can`, { code: 'CPU_SAMPLE_FAILED' })
    }
    this.sampleFailing = sample == null
    const previous = this.lastSample
    this.lastSample = sample
    if (sample != null && previous != null && sample.totalTicks > previous.totalTicks) {
      const total = sample.totalTicks - previous.totalTicks
      const others = (total - (sample.idleTicks - previous.idleTicks)) - (sample.ownTicks - previous.ownTicks)
      this.otherPercent = Math.min(100, Math.max(0, (others / total) * 100))
      this.busy = nextBusy(this.busy, this.otherPercent, this.init.suspendWhenBusy ?? 100)
    }
    this.update()
  }

  private stopTimers (): void {
    this.clearTimer('dutyTimer')
    this.clearTimer('sampleTimer')
    this.clearTimer('hoursTimer')
  }

  private clearTimer (name: 'dutyTimer' | 'sampleTimer' | 'hoursTimer'): void {
    if (this[name] != null) this.clock.clearTimeout(this[name])
    this[name] = undefined
  }

  private loadPause (): void {
    const path = this.init.statePath
    if (path == null) return
    let text: string
    try {
      text = readFileSync(path, 'utf8')
    } catch (err) {
      // never written (a directory on its path cannot hold it either): the donor was never paused
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'ENOENT' || code === 'ENOTDIR') return
      this.paused = true
      this.log.error(`cannot read ${path} (${(err as Error).message}): staying paused, as its owner may have asked; \`worldcompute resume\` rewrites it`, { code: 'CONTROLS_STATE_UNREADABLE' })
      return
    }
    try {
      const file = JSON.parse(text) as PauseFile
      this.paused = file.paused === true
      if (this.paused) this.pausedAt = typeof file.pausedAt === 'string' ? file.pausedAt : undefined
    } catch (err) {
      this.paused = true
      this.log.error(`${path} is not valid JSON (${(err as Error).message}): staying paused, as its owner may have asked; \`worldcompute resume\` rewrites it`, { code: 'CONTROLS_STATE_UNREADABLE' })
    }
  }

  private savePause (file: PauseFile): void {
    const path = this.init.statePath
    if (path == null) return
    try {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
      const tmp = `${path}.${process.pid}.tmp`
      writeFileSync(tmp, JSON.stringify(file) + '\n', { mode: 0o600 })
      renameSync(tmp, path)
    } catch (err) {
      throw new ControlsStateError(`cannot write ${path} (${(err as Error).message}), so the ${file.paused ? 'pause' : 'resume'} would not survive a restart: nothing changed`, { cause: err })
    }
  }
}

/** Hysteresis: busy from above the threshold until other programs fall BUSY_HYSTERESIS points (at most half of it) below. */
export function nextBusy (busy: boolean, otherPercent: number, threshold: number): boolean {
  if (!busy) return otherPercent > threshold
  return otherPercent >= Math.max(threshold / 2, threshold - BUSY_HYSTERESIS)
}

function describe (by: SuspendReason, init: DonorControlsInit): string {
  switch (by) {
    case 'user': return 'paused by its owner (`worldcompute resume` resumes it)'
    case 'run-hours': return `outside its run hours ${init.runHours?.text ?? ''} (local time)`
    case 'busy': return `other programs use more than ${init.suspendWhenBusy ?? 100}% of this machine`
    case 'cpu-limit': return `the stopped part of the duty cycle of --cpu-limit ${init.cpuLimit ?? 100}%`
  }
}
