import { randomBytes } from 'node:crypto'
import { createLogger, type Logger } from '../log/logger.ts'
import { DEFAULT_JOB_LIMITS, type ExecStatus, type JobLimits } from '../core/job.ts'
import type { JobFinal, JobRow, JobSpec, JobStore, TaskOutcome, TaskRow } from './job-store.ts'
import { SlotLedger } from './slot-ledger.ts'

/**
 * The broker: takes jobs from the local API, keeps them in the job store,
 * finds executors, offers and dispatches one task per replica (direct
 * connection when there is one, else the relay circuit), retries tasks that
 * fail for reasons that are not the job's fault on another executor, and
 * accepts a result when a strict majority of replicas agree on
 * (status, exitCode, outputCid, fuelUsed).
 */

export interface ExecutorInfo {
  peerId: string
  acceptsJobs: boolean
  /** free slots in its last capacity announcement */
  freeSlots: number
  /** all its job slots, when known */
  slots?: number
  /** when that announcement was heard (our clock), when known */
  updatedAt?: number
  maxLimits: JobLimits
}

export interface TaskToRun {
  jobId: string
  taskId: string
  moduleCid: string
  inputCid: string
  moduleName: string
  args: string[]
  env: string[]
  limits: Partial<JobLimits>
  module: Uint8Array
  input: Uint8Array
}

export interface TaskRunResult {
  path: 'direct' | 'relayed'
  outcome: TaskOutcome
  receipt: Uint8Array
  receiptSignature: Uint8Array
  stdout: Uint8Array
  stderr: Uint8Array
}

/** What the broker needs from the network; the daemon wires the libp2p protocols in. */
export interface TaskNetwork {
  executors: () => ExecutorInfo[]
  /** asks the executor to take the task; resolves false with a reason when it declines; `freeSlots`: what it has left */
  offer: (executor: string, task: TaskToRun, options: { signal: AbortSignal }) => Promise<{ accept: boolean, reason?: string, freeSlots?: number }>
  /** sends the task and waits for its verified result; throws for anything that is not the job's own outcome */
  dispatch: (executor: string, task: TaskToRun, options: { signal: AbortSignal }) => Promise<TaskRunResult>
  /** resolves when a new executor appears, or after `ms` */
  waitForExecutors: (ms: number, signal: AbortSignal) => Promise<void>
  /** calls `listener` whenever an executor appears or announces its capacity again; returns the unsubscribe */
  onExecutorsChanged?: (listener: () => void) => () => void
}

export interface BrokerInit {
  store: JobStore
  network: TaskNetwork
  /** this node's PeerId: a daemon does not dispatch to itself unless allowed */
  self: string
  /** allow the local donor to take tasks of its own jobs @default true */
  allowSelf?: boolean
  /** attempts per replica before the job errors @default 4 */
  maxAttemptsPerReplica?: number
  /**
   * how long a job may go with no executor it could wait for (none known, all
   * unreachable, or all refused it) before it errors; time queued behind busy
   * executors does not count @default 600000
   */
  unavailableAfterMs?: number
  /** an executor that failed a task of a job gets another of its tasks only after this @default 2000 */
  retryAfterMs?: number
  /**
   * while jobs wait for a slot, the first in line is woken this often to offer
   * even where no slot is expected (another broker's task may have ended
   * unannounced) @default 1000
   */
  probeIntervalMs?: number
  logger?: Logger
}

export class JobNotFoundError extends Error {
  readonly code = 'JOB_NOT_FOUND'
  constructor (jobId: string) {
    super(`no job ${jobId} on this daemon (\`worldcompute job list\` shows the jobs it knows)`)
    this.name = 'JobNotFoundError'
  }
}

export class JobRejectedError extends Error {
  readonly code = 'JOB_REJECTED'
  constructor (message: string) {
    super(message)
    this.name = 'JobRejectedError'
  }
}

export type JobEventListener = (jobId: string) => void

/** Why a waiting job woke up: it re-evaluates either way; 'probe' also lets it ask executors expected busy. */
type WakeReason = 'timeout' | 'slot' | 'probe' | 'task' | 'stop'

/** How many executors the probing job asks beyond its ledger's expectations. */
const PROBE_OFFERS = 3

export interface SubmitJob {
  module: Uint8Array
  moduleCid: string
  input: Uint8Array
  inputCid: string
  moduleName?: string
  args?: string[]
  env?: string[]
  limits?: Partial<JobLimits>
  replicas?: number
}

export class Broker {
  private readonly store: JobStore
  private readonly network: TaskNetwork
  private readonly log: Logger
  private readonly self: string
  private readonly allowSelf: boolean
  private readonly maxAttemptsPerReplica: number
  private readonly unavailableAfterMs: number
  private readonly retryAfterMs: number
  private controller?: AbortController
  private readonly running = new Map<string, Promise<void>>()
  private readonly wakers = new Map<string, (reason: WakeReason) => void>()
  private readonly listeners = new Set<JobEventListener>()
  private readonly probeIntervalMs: number
  private readonly ledger = new SlotLedger()
  /**
   * jobs waiting for a free slot, first come first served: a freed slot wakes
   * the first in line only, not every waiting job (each woken job sends offers)
   */
  private readonly queue: Array<{ jobId: string, seq: number }> = []
  private readonly queueSeq = new Map<string, number>()
  private nextSeq = 0
  private probeTimer?: NodeJS.Timeout
  private unsubscribe?: () => void

  constructor (init: BrokerInit) {
    this.store = init.store
    this.network = init.network
    this.self = init.self
    this.allowSelf = init.allowSelf ?? true
    this.maxAttemptsPerReplica = init.maxAttemptsPerReplica ?? 4
    this.unavailableAfterMs = init.unavailableAfterMs ?? 600_000
    this.retryAfterMs = init.retryAfterMs ?? 2_000
    this.probeIntervalMs = init.probeIntervalMs ?? 1_000
    this.log = init.logger ?? createLogger('broker')
  }

  /** Resumes every job the store holds that has no final answer yet. */
  start (): void {
    if (this.controller != null) return
    this.controller = new AbortController()
    this.unsubscribe = this.network.onExecutorsChanged?.(() => { this.pump() })
    const unfinished = this.store.unfinishedJobs()
    if (unfinished.length > 0) this.log.info(`resuming ${unfinished.length} unfinished job(s) from the job store`)
    for (const job of unfinished) this.launch(job.jobId)
  }

  async stop (): Promise<void> {
    if (this.controller == null) return
    this.controller.abort()
    this.unsubscribe?.()
    this.unsubscribe = undefined
    clearInterval(this.probeTimer)
    this.probeTimer = undefined
    for (const wake of [...this.wakers.values()]) wake('stop')
    await Promise.allSettled([...this.running.values()])
    this.queue.length = 0
    this.queueSeq.clear()
    this.controller = undefined
  }

  onJobEvent (listener: JobEventListener): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  submit (req: SubmitJob): JobRow {
    const replicas = req.replicas ?? 1
    if (!Number.isInteger(replicas) || replicas < 1 || replicas > 16) throw new JobRejectedError(`replicas must be 1–16, got ${replicas}`)
    const limits = req.limits ?? {}
    for (const [k, v] of Object.entries(limits)) {
      if (!(k in DEFAULT_JOB_LIMITS)) throw new JobRejectedError(`unknown limit "${k}"`)
      if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new JobRejectedError(`limit ${k} must be a positive number`)
    }
    const payload = req.module.length + req.input.length
    const payloadMax = limits.payloadBytes ?? DEFAULT_JOB_LIMITS.payloadBytes
    if (payload > payloadMax) throw new JobRejectedError(`module + input is ${payload} bytes, above the limit of ${payloadMax}`)
    const spec: JobSpec = {
      jobId: `job-${randomBytes(8).toString('hex')}`,
      moduleCid: req.moduleCid,
      inputCid: req.inputCid,
      moduleName: req.moduleName ?? 'main.wasm',
      args: req.args ?? [],
      env: req.env ?? [],
      // every limit explicit, so each replica runs under the same limits
      // whatever a donor's own defaults are (the output must not depend on who ran it)
      limits: { ...DEFAULT_JOB_LIMITS, ...limits },
      replicas
    }
    const job = this.store.createJob(spec, req.module, req.input)
    this.log.info(`accepted job ${job.jobId}: module ${job.moduleCid}, ${req.input.length} input bytes, ${replicas} replica(s)`, { job: job.jobId })
    this.launch(job.jobId)
    return job
  }

  getJob (jobId: string): { job: JobRow, tasks: TaskRow[] } {
    const job = this.store.getJob(jobId)
    if (job == null) throw new JobNotFoundError(jobId)
    return { job, tasks: this.store.tasksOf(jobId) }
  }

  listJobs (limit?: number): JobRow[] {
    return this.store.listJobs(limit)
  }

  private emit (jobId: string): void {
    for (const l of this.listeners) {
      try {
        l(jobId)
      } catch (err) {
        this.log.error(`job event listener threw: ${(err as Error).message}`)
      }
    }
  }

  private launch (jobId: string): void {
    const signal = this.controller?.signal
    if (signal == null || this.running.has(jobId)) return
    const run = this.runJob(jobId, signal)
      .catch((err: Error) => {
        if (signal.aborted) return
        // a bug, not a job outcome: record it on the job so it is never silently lost
        this.log.error(`job ${jobId} stopped on an internal error: ${err.stack ?? err.message}`, { job: jobId })
        this.store.finishJob(jobId, 'error', { status: 'unavailable', agreeing: 0, message: `internal error: ${err.message}` })
        this.emit(jobId)
      })
      .finally(() => { this.running.delete(jobId) })
    this.running.set(jobId, run)
  }

  private async sleep (jobId: string, ms: number, signal: AbortSignal): Promise<WakeReason> {
    return await new Promise<WakeReason>((resolve) => {
      const done = (reason: WakeReason): void => {
        clearTimeout(timer)
        this.wakers.delete(jobId)
        signal.removeEventListener('abort', onAbort)
        resolve(reason)
      }
      const onAbort = (): void => { done('stop') }
      const timer = setTimeout(() => { done('timeout') }, Math.max(0, ms))
      this.wakers.set(jobId, done)
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }

  /**
   * Waits in line for a free slot: woken by `pump()` when the ledger expects
   * one, by the probe timer when first in line, by a task of this job ending,
   * or after `ms`. The job keeps its place in line until it places a task.
   */
  private async waitForSlot (jobId: string, ms: number, signal: AbortSignal): Promise<WakeReason> {
    let seq = this.queueSeq.get(jobId)
    if (seq == null) {
      seq = this.nextSeq++
      this.queueSeq.set(jobId, seq)
    }
    const at = this.queue.findIndex(q => q.seq > (seq as number))
    if (at < 0) this.queue.push({ jobId, seq })
    else this.queue.splice(at, 0, { jobId, seq })
    this.probeTimer ??= setInterval(() => { this.probe() }, this.probeIntervalMs)
    try {
      return await this.sleep(jobId, ms, signal)
    } finally {
      const i = this.queue.findIndex(q => q.jobId === jobId)
      if (i >= 0) this.queue.splice(i, 1)
    }
  }

  /** Wakes as many waiting jobs, first in line first, as the ledger expects free slots. */
  private pump (): void {
    if (this.queue.length === 0) return
    let free = 0
    for (const e of this.network.executors()) {
      if (e.acceptsJobs && (this.allowSelf || e.peerId !== this.self)) free += this.ledger.free(e)
    }
    for (const { jobId } of [...this.queue]) {
      if (free <= 0) break
      const wake = this.wakers.get(jobId)
      if (wake == null) continue
      wake('slot')
      free--
    }
  }

  /** Every probe interval while jobs wait: refresh from announcements, and let the first in line ask even busy executors. */
  private probe (): void {
    if (this.queue.length === 0) {
      clearInterval(this.probeTimer)
      this.probeTimer = undefined
      return
    }
    this.ledger.retain(new Set(this.network.executors().map(e => e.peerId)))
    const head = this.queue[0]
    this.wakers.get(head.jobId)?.('probe')
    this.pump()
  }

  private async runJob (jobId: string, signal: AbortSignal): Promise<void> {
    const job = this.store.getJob(jobId)
    if (job == null) return
    const module = this.store.getBlob(job.moduleCid)
    const input = this.store.getBlob(job.inputCid)
    if (module == null || input == null) {
      this.store.finishJob(jobId, 'error', { status: 'unavailable', agreeing: 0, message: 'the job store lost the module or input bytes' })
      this.emit(jobId)
      return
    }
    const inflight = new Map<string, Promise<void>>()
    const started = Date.now()
    if (job.phase === 'queued') {
      this.store.setPhase(jobId, 'running')
      this.emit(jobId)
    }

    // tasks left running by a previous run of the daemon: ask the same executor
    // again with the same task ID; its dispatch is idempotent, so the task never
    // runs twice there and a finished result is simply returned
    for (const task of this.store.tasksOf(jobId)) {
      if (task.state === 'offered' || task.state === 'running') {
        this.log.info(`job ${jobId}: resuming task ${task.taskId} on ${task.executor}`, { job: jobId })
        // a freshly started daemon has not heard from its executors yet
        await this.waitForExecutor(task.executor, 15_000, signal)
        inflight.set(task.taskId, this.runTask(job, task, module, input, signal, inflight))
      }
    }

    // bounded: each replica gets at most maxAttemptsPerReplica tasks, and the
    // job errors after unavailableAfterMs without a task placed
    let wake: WakeReason = 'timeout'
    /** executors that declined this job for a reason other than being busy (its limits, its size): not asked again */
    const refusedBy = new Set<string>()
    /**
     * since when this job has had nobody to wait for: the unavailable clock.
     * Time queued behind busy executors that answer does not count — a large
     * burst on few slots waits its turn instead of erroring after 10 minutes.
     */
    let hopelessSince = started
    while (!signal.aborted) {
      const tasks = this.store.tasksOf(jobId)
      let verdict = this.decide(job, tasks)
      if (verdict != null) {
        // let replicas still running finish, so the answer says how many agree
        await Promise.allSettled([...inflight.values()])
        if (signal.aborted) return
        verdict = this.decide(job, this.store.tasksOf(jobId)) ?? verdict
        this.queueSeq.delete(jobId)
        this.store.finishJob(jobId, verdict.status === 'unavailable' ? 'error' : 'completed', verdict)
        this.log.info(`job ${jobId} finished: ${verdict.message}`, { job: jobId })
        this.emit(jobId)
        return
      }
      const active = tasks.filter(t => t.state === 'offered' || t.state === 'running')
      const done = tasks.filter(t => t.state === 'done')
      const needed = job.replicas - active.length - done.length
      if (needed > 0) {
        // replicas run on distinct executors; one that failed a task of this job
        // is tried again only after every executor that has not
        const busy = new Set(tasks.filter(t => t.state !== 'failed').map(t => t.executor))
        const failedBefore = new Set(tasks.filter(t => t.state === 'failed').map(t => t.executor))
        const coolingDown = new Set(tasks.filter(t => t.state === 'failed' && Date.now() - Date.parse(t.updatedAt) < this.retryAfterMs).map(t => t.executor))
        const eligible = this.network.executors()
          .filter(e => e.acceptsJobs && !busy.has(e.peerId) && !coolingDown.has(e.peerId) && !refusedBy.has(e.peerId) && !this.ledger.coolingDown(e.peerId) && (this.allowSelf || e.peerId !== this.self))
        // offer only where the ledger expects a free slot; the first job in
        // line, when the probe wakes it, also asks a few it expects busy
        const probing = wake === 'probe'
        const candidates = eligible
          .filter(e => probing || this.ledger.free(e) > 0)
          .sort((a, b) => Number(failedBefore.has(a.peerId)) - Number(failedBefore.has(b.peerId)) || this.ledger.free(b) - this.ledger.free(a))
          .slice(0, probing ? Math.max(needed, PROBE_OFFERS) : undefined)
        let placed = 0
        for (const executor of candidates) {
          if (placed >= needed || signal.aborted) break
          // a parallel job's offer may have taken the expected slot meanwhile
          if (!probing && this.ledger.free(executor) <= 0) continue
          const replica = this.nextReplica(job, tasks)
          if (replica == null) break
          const attempt = tasks.filter(t => t.replica === replica).length + 1
          const taskId = `${jobId}.r${replica}.a${attempt}`
          const toRun = this.taskToRun(job, taskId, module, input)
          let offer: { accept: boolean, reason?: string, freeSlots?: number }
          this.ledger.offering(executor.peerId)
          try {
            offer = await this.network.offer(executor.peerId, toRun, { signal: AbortSignal.any([signal, AbortSignal.timeout(10_000)]) })
          } catch (err) {
            this.ledger.answered(executor, undefined)
            this.log.warn(`job ${jobId}: offer to ${executor.peerId} failed: ${(err as Error).message}`, { job: jobId, peer: executor.peerId, phase: 'offer' })
            continue
          }
          this.ledger.answered(executor, offer.accept, offer.freeSlots)
          if (!offer.accept) {
            const busyNow = offer.freeSlots === 0 || /^busy\b/.test(offer.reason ?? '')
            if (!busyNow) refusedBy.add(executor.peerId)
            this.log.info(`job ${jobId}: ${executor.peerId} declined: ${offer.reason ?? 'no reason given'}${busyNow ? '' : ' (not asked again for this job)'}`, { job: jobId, peer: executor.peerId })
            continue
          }
          this.store.createTask({ taskId, jobId, replica, attempt, executor: executor.peerId })
          const row = this.store.getTask(taskId)
          if (row == null) throw new Error(`task ${taskId} vanished after insert`)
          inflight.set(taskId, this.runTask(job, row, module, input, signal, inflight))
          tasks.push(row)
          placed++
          this.emit(jobId)
        }
        if (placed > 0) this.queueSeq.delete(jobId)
        if (placed < needed && this.nextReplica(job, tasks) != null) {
          const idle = placed === 0 && active.length === 0 && inflight.size === 0
          // someone reachable that has not refused this job will free a slot: keep waiting in line
          if (!idle || eligible.some(e => this.ledger.reachable(e.peerId))) hopelessSince = Date.now()
          if (idle && Date.now() - hopelessSince > this.unavailableAfterMs) {
            const refusals = refusedBy.size > 0 ? ` (${refusedBy.size} refused it: see the broker log for their reasons)` : ''
            const verdict: JobFinal = { status: 'unavailable', agreeing: 0, message: `no executor accepted the job within ${Math.round(this.unavailableAfterMs / 1000)} s${refusals}` }
            this.queueSeq.delete(jobId)
            this.store.finishJob(jobId, 'error', verdict)
            this.log.warn(`job ${jobId}: ${verdict.message}`, { job: jobId })
            this.emit(jobId)
            return
          }
          const untilUnavailable = this.unavailableAfterMs - (Date.now() - hopelessSince) + 1
          if (eligible.length === 0) {
            // nobody to ask: wake on a new executor, or when one of our own tasks ends
            await Promise.race([this.network.waitForExecutors(Math.min(1_000, untilUnavailable), signal), this.sleep(jobId, Math.min(1_000, untilUnavailable), signal)])
            this.wakers.get(jobId)?.('stop')
            wake = 'timeout'
          } else {
            wake = await this.waitForSlot(jobId, Math.min(30_000, idle ? untilUnavailable : 30_000), signal)
          }
          continue
        }
      }
      // every replica placed: wait for a task of this job to end (its runTask wakes us)
      wake = await this.sleep(jobId, 1_000, signal)
    }
  }

  private async waitForExecutor (peerId: string, ms: number, signal: AbortSignal): Promise<void> {
    const deadline = Date.now() + ms
    while (!signal.aborted && Date.now() < deadline && !this.network.executors().some(e => e.peerId === peerId)) {
      await this.network.waitForExecutors(Math.min(1_000, deadline - Date.now()), signal)
    }
  }

  /** The replica that still needs a task, if it has attempts left. */
  private nextReplica (job: JobRow, tasks: TaskRow[]): number | undefined {
    for (let r = 0; r < job.replicas; r++) {
      const mine = tasks.filter(t => t.replica === r)
      if (mine.some(t => t.state !== 'failed')) continue
      if (mine.length >= this.maxAttemptsPerReplica) continue
      return r
    }
    return undefined
  }

  /** A final verdict when one is reachable, else undefined. */
  private decide (job: JobRow, tasks: TaskRow[]): JobFinal | undefined {
    const done = tasks.filter(t => t.state === 'done' && t.outcome != null)
    const groups = new Map<string, TaskRow[]>()
    for (const t of done) {
      const o = t.outcome as TaskOutcome
      const key = JSON.stringify([o.status, o.exitCode ?? null, o.outputCid, o.fuelUsed])
      groups.set(key, [...(groups.get(key) ?? []), t])
    }
    const majority = Math.floor(job.replicas / 2) + 1
    for (const group of groups.values()) {
      if (group.length >= majority) {
        const o = group[0].outcome as TaskOutcome
        return {
          status: o.status,
          exitCode: o.exitCode,
          error: o.error,
          outputCid: o.outputCid,
          fuelUsed: o.fuelUsed,
          agreeing: group.length,
          message: `${group.length}/${job.replicas} agree${group.every(t => t.outcome?.receiptVerified === true) ? ', receipts verified' : ''}: ${o.status}${o.exitCode != null ? ` (exit ${o.exitCode})` : ''}${o.error != null && o.error !== '' ? `: ${o.error}` : ''}`
        }
      }
    }
    // the most results this job can still get: one per replica that is done,
    // running, or has attempts left
    let potential = 0
    for (let r = 0; r < job.replicas; r++) {
      const mine = tasks.filter(t => t.replica === r)
      if (mine.some(t => t.state !== 'failed') || mine.length < this.maxAttemptsPerReplica) potential++
    }
    const best = Math.max(0, ...[...groups.values()].map(g => g.length))
    if (best + (potential - done.length) < majority) {
      if (done.length === 0) {
        const failures = tasks.filter(t => t.state === 'failed').map(t => `${t.executor}: ${t.failure ?? '?'}`)
        return { status: 'unavailable', agreeing: 0, message: `every attempt failed: ${failures.join('; ')}` }
      }
      const who = [...groups.values()].map(g => `${g.map(t => t.executor).join(', ')} said ${describeOutcome(g[0].outcome as TaskOutcome)}`)
      return { status: 'no_agreement', agreeing: best, message: `no majority of ${job.replicas}: ${who.join('; ')}` }
    }
    return undefined
  }

  private taskToRun (job: JobRow, taskId: string, module: Uint8Array, input: Uint8Array): TaskToRun {
    return {
      jobId: job.jobId,
      taskId,
      moduleCid: job.moduleCid,
      inputCid: job.inputCid,
      moduleName: job.moduleName,
      args: job.args,
      env: job.env,
      limits: job.limits,
      module,
      input
    }
  }

  private async runTask (job: JobRow, task: TaskRow, module: Uint8Array, input: Uint8Array, signal: AbortSignal, inflight: Map<string, Promise<void>>): Promise<void> {
    const toRun = this.taskToRun(job, task.taskId, module, input)
    const deadline = (job.limits.deadlineMs ?? DEFAULT_JOB_LIMITS.deadlineMs) + 60_000
    try {
      this.emit(job.jobId)
      const result = await this.network.dispatch(task.executor, toRun, { signal: AbortSignal.any([signal, AbortSignal.timeout(deadline)]) })
      if (result.outcome.status === 'failed' && (result.outcome.error ?? '').startsWith('executor crashed')) {
        // the donor's sandbox died under the task: not the job's fault, try elsewhere
        this.store.failTask(task.taskId, result.outcome.error ?? 'executor crashed')
        this.log.warn(`job ${job.jobId}: task ${task.taskId} on ${task.executor}: ${result.outcome.error ?? ''}; retrying on another executor`, { job: job.jobId, peer: task.executor })
      } else {
        this.store.completeTask(task.taskId, result)
        this.log.info(`job ${job.jobId}: task ${task.taskId} on ${task.executor} (${result.path}) → ${describeOutcome(result.outcome)}`, { job: job.jobId, peer: task.executor })
      }
    } catch (err) {
      if (signal.aborted) return // shutting down: the task stays 'running' and resumes at the next start
      const e = err as Error & { code?: string, phase?: string }
      this.store.failTask(task.taskId, `${e.code ?? e.name}: ${e.message}`)
      this.log.warn(`job ${job.jobId}: task ${task.taskId} on ${task.executor} failed${e.phase != null ? ` at ${e.phase}` : ''}: ${e.message}; retrying on another executor`, { job: job.jobId, peer: task.executor, phase: e.phase, code: e.code })
    } finally {
      inflight.delete(task.taskId)
      this.emit(job.jobId)
      // a finished task frees a slot on its executor: this job re-evaluates,
      // and the first job in line (not every waiting job) may place a task
      const view = this.network.executors().find(e => e.peerId === task.executor)
      if (view != null) this.ledger.released(view)
      this.wakers.get(job.jobId)?.('task')
      this.pump()
    }
  }
}

export function describeOutcome (o: TaskOutcome): string {
  const parts: string[] = [o.status]
  if (o.exitCode != null) parts.push(`exit ${o.exitCode}`)
  if (o.error != null && o.error !== '') parts.push(o.error)
  parts.push(`output ${o.outputCid.slice(0, 16)}…`, `fuel ${o.fuelUsed}`)
  return parts.join(', ')
}

export type { ExecStatus }
