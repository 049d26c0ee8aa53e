import { resolveJobLimits, type Executor } from '../executor/index.ts'
import { createLogger, type Logger } from '../log/logger.ts'
import type { ExecuteRequest, ExecuteResult, JobLimits } from '../core/job.ts'
import type { OfferRequest, OfferResponse } from '../codec/messages.ts'
import type { CapacityInfo } from '../protocols/capacity/index.ts'

export interface JobRunnerInit {
  executor: Executor
  maxLimits: JobLimits
  maxConcurrent: number
  /** memory all running and promised tasks together may claim, bytes @default unlimited */
  memoryBudgetBytes?: number
  /** the donor's dialable addresses (circuit addresses included), for capacity announcements */
  addrs: () => string[]
  /** module cache lookup of the dispatch protocol */
  hasModule: (moduleCid: string) => boolean
  /** called when free slots change, so capacity is announced again */
  onChange?: () => void
  /** why the donor cannot run jobs right now (e.g. its sandbox failed to start), else undefined */
  unavailable?: () => string | undefined
  logger?: Logger
}

/**
 * The donor's side of the job pipeline: what it announces (capacity), which
 * offers it takes (within its maxima, while it has a free slot, counting
 * tasks it promised but has not yet received), and running a task in the
 * sandboxed executor.
 */
export class JobRunner {
  private readonly init: JobRunnerInit
  private readonly log: Logger
  private running = 0
  /** offers accepted whose dispatch has not arrived yet, by task ID: when the promise expires and the memory it holds */
  private readonly promised = new Map<string, { expires: number, memoryBytes: number }>()
  /** memory claimed by tasks running now, by task ID */
  private readonly runningMemory = new Map<string, number>()

  constructor (init: JobRunnerInit) {
    this.init = init
    this.log = init.logger ?? createLogger('donor.jobs')
  }

  private freeSlots (): number {
    const now = Date.now()
    for (const [taskId, p] of this.promised) if (p.expires < now) this.promised.delete(taskId)
    return Math.max(0, this.init.maxConcurrent - this.running - this.promised.size)
  }

  /** Something outside the slots changed (the sandbox came back): announce capacity again. */
  changed (): void {
    this.init.onChange?.()
  }

  capacity (): CapacityInfo {
    return {
      acceptsJobs: this.init.unavailable?.() == null,
      slots: this.init.maxConcurrent,
      freeSlots: this.freeSlots(),
      maxLimits: this.init.maxLimits,
      addrs: this.init.addrs()
    }
  }

  decideOffer (req: OfferRequest, context: { peer: string }): OfferResponse {
    const hasModule = this.init.hasModule(req.moduleCid)
    const down = this.init.unavailable?.()
    if (down != null) {
      this.log.info(`declined task ${req.taskId} from ${context.peer}: ${down}`, { peer: context.peer, code: 'not-executing' })
      return { accept: false, reason: down, code: 'not-executing', hasModule, freeSlots: 0 }
    }
    const check = resolveJobLimits(req.limits, this.init.maxLimits)
    if (!check.ok) {
      this.log.info(`declined task ${req.taskId} from ${context.peer}: ${check.reason}`, { peer: context.peer, code: 'limits' })
      return { accept: false, reason: check.reason, code: 'limits', hasModule, freeSlots: this.freeSlots() }
    }
    const payload = req.moduleSize + req.inputSize
    if (payload > this.init.maxLimits.payloadBytes) {
      const reason = `module + input is ${payload} bytes, above this donor's maximum of ${this.init.maxLimits.payloadBytes}`
      return { accept: false, reason, code: 'payload-too-large', hasModule, freeSlots: this.freeSlots() }
    }
    if (this.promised.has(req.taskId)) return { accept: true, hasModule, freeSlots: this.freeSlots() }
    if (this.freeSlots() < 1) {
      return { accept: false, reason: `busy: all ${this.init.maxConcurrent} slot(s) in use`, code: 'busy', hasModule, freeSlots: 0 }
    }
    const budget = this.init.memoryBudgetBytes ?? Number.POSITIVE_INFINITY
    const claimed = [...this.promised.values()].reduce((sum, p) => sum + p.memoryBytes, 0) + [...this.runningMemory.values()].reduce((a, b) => a + b, 0)
    if (claimed + check.limits.memoryBytes > budget) {
      const reason = `busy: memory budget ${budget} bytes, ${claimed} claimed by running jobs, this one asks for ${check.limits.memoryBytes}`
      return { accept: false, reason, code: 'memory-budget', hasModule, freeSlots: this.freeSlots() }
    }
    // hold the slot and the memory until the dispatch arrives (or 30 s pass)
    this.promised.set(req.taskId, { expires: Date.now() + 30_000, memoryBytes: check.limits.memoryBytes })
    this.init.onChange?.()
    return { accept: true, hasModule, freeSlots: this.freeSlots() }
  }

  async runTask (req: ExecuteRequest, options: { signal: AbortSignal }): Promise<ExecuteResult> {
    this.promised.delete(req.taskId)
    const check = resolveJobLimits(req.limits, this.init.maxLimits)
    this.runningMemory.set(req.taskId, check.ok ? check.limits.memoryBytes : 0)
    this.running++
    this.init.onChange?.()
    const started = Date.now()
    try {
      const result = await this.init.executor.execute(req, { signal: options.signal })
      this.log.info(`task ${req.taskId} → ${result.status}${result.exitCode != null ? ` (exit ${result.exitCode})` : ''}${result.error != null ? `: ${result.error}` : ''} in ${Date.now() - started} ms, fuel ${result.fuelUsed}`, { task: req.taskId })
      return result
    } finally {
      this.runningMemory.delete(req.taskId)
      this.running--
      this.init.onChange?.()
    }
  }
}
