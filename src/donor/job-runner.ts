import { METER_VERSION, resolveJobLimits, type Executor } from '../executor/index.ts'
import { createLogger, type Logger } from '../log/logger.ts'
import { follow } from '../core/async.ts'
import { duration, shortPeerId } from '../core/format.ts'
import { TaskAbandonedError } from '../protocols/errors.ts'
import { TaskCancelledError } from './cancel.ts'
import type { ExecuteRequest, ExecuteResult, JobLimits } from '../core/job.ts'
import type { DonatedTask } from '../core/types.ts'
import type { OfferRequest, OfferResponse } from '../codec/messages.ts'
import type { CapacityInfo } from '../protocols/capacity/index.ts'
import type { Admission, AdmissionRequest, DispatchContext } from '../protocols/dispatch/index.ts'
import type { MeshComponents } from '../net/components.ts'
import type { PeerId } from '@libp2p/interface'

/**
 * How long an accepted offer holds its slot for the dispatch. The broker
 * dispatches as soon as the answer arrives, over the connection the offer
 * used, after at most a 3 s direct-dial attempt; a stream opens in a few
 * round trips even on a slow relayed path. 15 s covers that with room, and
 * a broker that offers and never dispatches pins a slot for no longer.
 */
export const OFFER_HOLD_MS = 15_000
/**
 * How long the tasks of a broker with no connection left keep their slots.
 * A broker whose relay died re-sends the same task through another path
 * within seconds (its backoff starts at 250 ms), and a submitting daemon
 * restarted by a supervisor connects again within tens of seconds; either
 * joins the run under way. Past this, nobody is left to take the result.
 */
export const BROKER_GRACE_MS = 30_000

export interface JobRunnerInit {
  /** the sandbox; `suspendedMs` (the donor controls' running total of suspended time) when it can be suspended */
  executor: Pick<Executor, 'execute'> & Partial<Pick<Executor, 'suspendedMs'>>
  maxLimits: JobLimits
  /** tasks run at once: every task held for any broker (offered, arriving, running) counts, so this is the total bound */
  maxConcurrent: number
  /**
   * tasks one broker may hold at once (offered, arriving, running); a donor
   * open to strangers sets it below `maxConcurrent` so that one submitter
   * cannot take every slot @default maxConcurrent
   */
  maxTasksPerBroker?: number
  /** memory all running and promised tasks together may claim, bytes @default unlimited */
  memoryBudgetBytes?: number
  /** how long an accepted offer waits for its dispatch @default 15000 */
  offerHoldMs?: number
  /** how long the tasks of a broker that disconnected keep running @default 30000 */
  brokerGraceMs?: number
  /** the donor's dialable addresses (circuit addresses included), for capacity announcements */
  addrs: () => string[]
  /** module cache lookup of the dispatch protocol */
  hasModule: (moduleCid: string) => boolean
  /** which directory blobs the dispatch protocol's content cache holds; absent: none (the broker sends them all) */
  hasFiles?: (cids: readonly string[]) => string[]
  /** the cost rule this donor's executor counts fuel by; an offer naming another is declined (`meter`) @default METER_VERSION */
  meter?: string
  /** this donor fetches big modules and inputs by CID (it has a content store): offers are answered `fetches` @default false */
  fetchesByCid?: boolean
  /** called when free slots change, so capacity is announced again */
  onChange?: () => void
  /** why the donor cannot run jobs right now (e.g. its sandbox failed to start), else undefined */
  unavailable?: () => string | undefined
  /** a task ran to a result (any status; metrics count them) */
  onExecuted?: (result: ExecuteResult) => void
  /** why the donor controls hold new tasks now (paused, outside run hours, a busy machine), else undefined @default never */
  paused?: () => string | undefined
  /** every task that reached the executor, once it ended: this donor's history */
  onTaskEnded?: (task: DonatedTask) => void
  logger?: Logger
}

/** What the runner watches to learn that a broker went away or came back. */
export type JobRunnerComponents = Pick<MeshComponents, 'events' | 'connections'>

/** A slot promised to a broker for one task: by an accepted offer, then by the dispatch that arrives for it. */
interface Hold {
  peer: string
  taskId: string
  memoryBytes: number
  /** when an unclaimed hold lapses */
  expires: number
  /** dispatch streams of this task being received: while any is, the hold does not lapse */
  streams: number
  /** a dispatch arrived for it: a task now, not only an offer, so it outlives its broker's disconnection for a while */
  dispatched: boolean
}

/** A task handed to the executor (waiting there or running). */
interface Run {
  peer: string
  taskId: string
  memoryBytes: number
  /** the executor's signal: aborted by the dispatch's own signal, or when the task is `abandoned` */
  stop: AbortController
  /** why its broker gave it up: it cancelled it, or stayed away past the grace period */
  abandoned?: Error
}

/**
 * The donor's side of the job pipeline: what it announces (capacity), which
 * offers it takes (within its maxima, a free slot, the memory budget and the
 * broker's share), which dispatches it admits (only one against an offer of
 * its own accepted for that broker and task), and running a task in the
 * sandboxed executor. A broker that goes away loses its offers at once and
 * its tasks after a grace period.
 */
export class JobRunner {
  private readonly init: JobRunnerInit
  private readonly log: Logger
  private readonly meter: string
  private readonly components?: JobRunnerComponents
  private readonly holds = new Map<string, Hold>()
  private readonly runs = new Map<string, Run>()
  /** brokers with no connection left, and the timer that abandons their tasks */
  private readonly gone = new Map<string, ReturnType<typeof setTimeout>>()
  /** runs ended whose bookkeeping waits for the answer to leave (`afterAnswer`); done at once on stop */
  private readonly endings = new Set<() => void>()
  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => { this.brokerLeft(evt.detail.toString()) }
  private readonly onConnect = (evt: CustomEvent<PeerId>): void => { this.brokerBack(evt.detail.toString()) }

  constructor (init: JobRunnerInit, components?: JobRunnerComponents) {
    this.init = init
    this.components = components
    this.log = init.logger ?? createLogger('donor.jobs')
    this.meter = init.meter ?? METER_VERSION
  }

  /** Watches brokers coming and going (with components only). */
  start (): void {
    this.components?.events.on('peer:disconnect', this.onDisconnect)
    this.components?.events.on('peer:connect', this.onConnect)
  }

  stop (): void {
    this.components?.events.off('peer:disconnect', this.onDisconnect)
    this.components?.events.off('peer:connect', this.onConnect)
    for (const timer of this.gone.values()) clearTimeout(timer)
    this.gone.clear()
    // a daemon stopping right after a task ended still records it before its history closes
    const endings = [...this.endings]
    this.endings.clear()
    for (const fn of endings) fn()
  }

  private get offerHoldMs (): number {
    return this.init.offerHoldMs ?? OFFER_HOLD_MS
  }

  private freeSlots (): number {
    const now = Date.now()
    for (const [key, hold] of this.holds) if (hold.streams === 0 && hold.expires < now) this.holds.delete(key)
    return Math.max(0, this.init.maxConcurrent - this.runs.size - this.holds.size)
  }

  /** Tasks this broker holds here now: offered, arriving or running. */
  private heldBy (peer: string): number {
    let n = 0
    for (const h of this.holds.values()) if (h.peer === peer) n++
    for (const r of this.runs.values()) if (r.peer === peer) n++
    return n
  }

  private claimedMemory (): number {
    let sum = 0
    for (const h of this.holds.values()) sum += h.memoryBytes
    for (const r of this.runs.values()) sum += r.memoryBytes
    return sum
  }

  /** Something outside the slots changed (the sandbox came back): announce capacity again. */
  changed (): void {
    this.init.onChange?.()
  }

  /** How long the executor's jobs have been suspended in all, ms (0 for one that cannot be suspended). */
  suspendedMs (): number {
    return this.init.executor.suspendedMs?.() ?? 0
  }

  /** Tasks handed to the executor (waiting there or running). */
  runningTasks (): number {
    return this.runs.size
  }

  capacity (): CapacityInfo {
    return {
      acceptsJobs: this.init.unavailable?.() == null,
      slots: this.init.maxConcurrent,
      // a paused donor still takes jobs, later: brokers keep it in line rather than give up on it
      freeSlots: this.init.paused?.() != null ? 0 : this.freeSlots(),
      maxLimits: this.init.maxLimits,
      addrs: this.init.addrs()
    }
  }

  /** The answer to an offer, saying which of its directory blobs this donor holds when it names any. */
  decideOffer (req: OfferRequest, context: { peer: string }): OfferResponse {
    const answer = { ...this.decide(req, context), ...(this.init.fetchesByCid === true ? { fetches: true } : {}) }
    return req.fileCids != null ? { ...answer, hasFiles: this.init.hasFiles?.(req.fileCids) ?? [] } : answer
  }

  private decide (req: OfferRequest, context: { peer: string }): OfferResponse {
    const hasModule = this.init.hasModule(req.moduleCid)
    const down = this.init.unavailable?.()
    if (down != null) {
      this.log.info(`declined task ${req.taskId} from ${context.peer}: ${down}`, { peer: context.peer, code: 'not-executing' })
      return { accept: false, reason: down, code: 'not-executing', hasModule, freeSlots: 0 }
    }
    const paused = this.init.paused?.()
    if (paused != null) {
      this.log.info(`declined task ${req.taskId} from ${context.peer}: ${paused}`, { peer: context.peer, code: 'paused' })
      return { accept: false, reason: paused, code: 'paused', hasModule, freeSlots: 0 }
    }
    if (req.meter != null && req.meter !== this.meter) {
      const reason = `this donor counts fuel by ${this.meter}, the broker's replicas by ${req.meter}: their fuel would not agree (one of the two runs another release)`
      this.log.info(`declined task ${req.taskId} from ${context.peer}: ${reason}`, { peer: context.peer, code: 'meter' })
      return { accept: false, reason, code: 'meter', hasModule, freeSlots: this.freeSlots() }
    }
    const check = resolveJobLimits(req.limits, this.init.maxLimits)
    if (!check.ok) {
      this.log.info(`declined task ${req.taskId} from ${context.peer}: ${check.reason}`, { peer: context.peer, code: 'limits' })
      return { accept: false, reason: check.reason, code: 'limits', hasModule, freeSlots: this.freeSlots() }
    }
    const payload = req.moduleSize + req.inputSize + (req.filesSize ?? 0)
    if (payload > this.init.maxLimits.payloadBytes) {
      const reason = `module + input${req.filesSize != null ? ' + directories' : ''} is ${payload} bytes, above this donor's maximum of ${this.init.maxLimits.payloadBytes}`
      return { accept: false, reason, code: 'payload-too-large', hasModule, freeSlots: this.freeSlots() }
    }
    const key = keyOf(context.peer, req.taskId)
    const held = this.holds.get(key)
    // the same task offered again (or already running) is not a second claim
    if (held != null || this.runs.has(key)) {
      if (held != null) held.expires = Math.max(held.expires, Date.now() + this.offerHoldMs)
      return { accept: true, hasModule, freeSlots: this.freeSlots() }
    }
    const busy = this.busyFor(context.peer, check.limits.memoryBytes)
    if (busy != null) return { ...busy, accept: false, hasModule }
    this.holds.set(key, { peer: context.peer, taskId: req.taskId, memoryBytes: check.limits.memoryBytes, expires: Date.now() + this.offerHoldMs, streams: 0, dispatched: false })
    this.init.onChange?.()
    return { accept: true, hasModule, freeSlots: this.freeSlots() }
  }

  /** Why a new task of this broker cannot be held now (no slot, its share taken, the memory budget), else undefined. */
  private busyFor (peer: string, memoryBytes: number): Pick<OfferResponse, 'reason' | 'code' | 'freeSlots'> | undefined {
    const free = this.freeSlots()
    if (free < 1) return { reason: `busy: all ${this.init.maxConcurrent} slot(s) in use`, code: 'busy', freeSlots: 0 }
    const share = this.init.maxTasksPerBroker ?? this.init.maxConcurrent
    if (this.heldBy(peer) >= share) {
      // free slots are kept for other brokers: to this one, none is free
      return { reason: `busy: this broker already holds ${share} task(s), this donor's limit per broker`, code: 'busy', freeSlots: 0 }
    }
    const budget = this.init.memoryBudgetBytes ?? Number.POSITIVE_INFINITY
    const claimed = this.claimedMemory()
    if (claimed + memoryBytes > budget) {
      return { reason: `busy: memory budget ${budget} bytes, ${claimed} claimed by running jobs, this one asks for ${memoryBytes}`, code: 'memory-budget', freeSlots: free }
    }
    return undefined
  }

  /**
   * A dispatch's header arrived: admitted against an offer this donor
   * accepted from the same broker for the same task, still held. A dispatch
   * that carries its own offer (`offered`: the broker sent a small task
   * without asking first, saving a round trip) and finds none held is
   * decided here as that offer, and refused with the decline code the offer
   * would have had. The hold then waits for the dispatch's payload; `release`
   * (the stream ended) puts a hold the run did not take back to lapse after
   * the hold time, so a re-send through another path finds it.
   */
  admit (req: AdmissionRequest, context: DispatchContext): Admission {
    const key = keyOf(context.peer, req.taskId)
    let hold = this.holds.get(key)
    if (hold != null && hold.streams === 0 && hold.expires < Date.now()) {
      this.holds.delete(key)
      hold = undefined
    }
    if (hold == null && req.offered === true) {
      const answer = this.decide({ jobId: req.jobId, taskId: req.taskId, moduleCid: req.moduleCid, moduleSize: req.moduleSize ?? 0, inputSize: req.inputSize ?? 0, limits: req.limits, ...(req.meter != null ? { meter: req.meter } : {}) }, context)
      hold = this.holds.get(key)
      if (!answer.accept) return { admitted: false, code: answer.code ?? 'other', reason: answer.reason ?? `task ${req.taskId} was declined` }
    }
    if (hold == null) {
      return { admitted: false, code: 'no-offer', reason: `no offer of task ${req.taskId} accepted from this broker is held here (never offered, lapsed after ${duration(this.offerHoldMs)}, or released when the broker disconnected)` }
    }
    hold.streams++
    hold.dispatched = true
    let released = false
    return {
      admitted: true,
      release: () => {
        if (released) return
        released = true
        if (this.holds.get(key) !== hold) return
        hold.streams--
        if (hold.streams === 0) hold.expires = Date.now() + this.offerHoldMs
      }
    }
  }

  /**
   * Runs an admitted task: its hold becomes a run, abandoned if its broker
   * stays away past the grace period. The task reaches the sandbox before
   * anything else is done for it, and what follows its end (the log line,
   * the history, metrics, the announcement of the freed slot) waits until
   * its answer has gone out (`afterAnswer`): the broker is waiting for that
   * answer, and none of these changes it.
   */
  async runTask (req: ExecuteRequest, options: { signal: AbortSignal } & DispatchContext): Promise<ExecuteResult> {
    const key = keyOf(options.peer, req.taskId)
    const hold = this.holds.get(key)
    if (hold == null) throw new TaskAbandonedError(req.taskId, `it was not admitted: no offer from ${options.peer} is held for it`)
    this.holds.delete(key)
    const run: Run = { peer: options.peer, taskId: req.taskId, memoryBytes: hold.memoryBytes, stop: new AbortController() }
    this.runs.set(key, run)
    const started = Date.now()
    // the dispatch's signal aborts the run's own controller: the executor listens to one plain signal
    const unfollow = follow(options.signal, run.stop)
    const executing = this.init.executor.execute(req, { signal: run.stop.signal })
    this.init.onChange?.()
    let outcome: ExecuteResult | 'abandoned' | 'aborted' = 'aborted'
    try {
      const result = await executing
      outcome = result
      return result
    } catch (err) {
      if (run.abandoned == null) throw err
      outcome = 'abandoned'
      throw new TaskAbandonedError(req.taskId, run.abandoned instanceof TaskCancelledError ? 'its broker cancelled it' : `its broker ${options.peer} left`, { cause: err })
    } finally {
      unfollow()
      // a cancel took the run out already (and announced the free slot)
      if (this.runs.get(key) === run) this.runs.delete(key)
      this.afterAnswer(() => { this.ended(req, options.peer, started, outcome) })
    }
  }

  /**
   * Runs `fn` after the answer has gone out and the I/O waiting by then has
   * been served: a small answer is signed, encoded and written to the socket
   * without waiting on I/O, all before the event loop's next poll, and `fn`
   * waits for the check phase after that poll (an immediate queued from an
   * immediate). So a task the broker sends right behind the answer is read
   * first, and a daemon that is also the task's broker (one event loop) reads
   * the answer first. A timer would not do: a 1 ms timer counts from the
   * loop's cached clock and often fires before that poll.
   */
  private afterAnswer (fn: () => void): void {
    this.endings.add(fn)
    setImmediate(() => {
      setImmediate(() => {
        if (this.endings.delete(fn)) fn()
      })
    })
  }

  /** A run ended: logged, recorded in the history, counted, and its slot announced as free. */
  private ended (req: ExecuteRequest, peer: string, started: number, outcome: ExecuteResult | 'abandoned' | 'aborted'): void {
    try {
      if (typeof outcome !== 'string') {
        this.log.info(`task ${req.taskId} → ${outcome.status}${outcome.exitCode != null ? ` (exit ${outcome.exitCode})` : ''}${outcome.error != null ? `: ${outcome.error}` : ''} in ${Date.now() - started} ms, fuel ${outcome.fuelUsed}`, { task: req.taskId, peer })
        this.record(req, peer, started, outcome)
        this.init.onExecuted?.(outcome)
      } else {
        this.record(req, peer, started, undefined, outcome)
      }
      this.init.onChange?.()
    } catch (err) {
      // outside the task's own call chain: a throw here would end the process, not the task
      this.log.error(`task ${req.taskId} ended, but what follows its end failed: ${(err as Error).stack ?? String(err)}`, { task: req.taskId, peer, code: (err as { code?: string }).code })
    }
  }

  /**
   * Its broker cancelled the task (donor/cancel.ts): a run is abandoned (the
   * executor stops it) and a hold dropped, so a dispatch that arrives for it
   * later is refused; either frees the slot at once. Keyed by the broker, so
   * nobody else's cancel can match.
   */
  cancelTask (peer: string, taskId: string): 'stopped' | 'dropped' | 'unknown' {
    const key = keyOf(peer, taskId)
    const run = this.runs.get(key)
    if (run != null) {
      abandonRun(run, new TaskCancelledError(taskId))
      this.runs.delete(key)
    } else if (!this.holds.delete(key)) {
      return 'unknown'
    }
    this.init.onChange?.()
    return run != null ? 'stopped' : 'dropped'
  }

  /** Hands the ended task to the history; a history that cannot write is logged, never the task's failure. */
  private record (req: ExecuteRequest, peer: string, started: number, result?: ExecuteResult, ended?: 'abandoned' | 'aborted'): void {
    const task: DonatedTask = {
      at: new Date().toISOString(),
      startedAt: new Date(started).toISOString(),
      broker: peer,
      jobId: req.jobId,
      taskId: req.taskId,
      status: result?.status ?? ended ?? 'aborted',
      ...(result?.cpuTimeMs != null ? { cpuTimeMs: result.cpuTimeMs } : {}),
      fuelUsed: result?.fuelUsed ?? 0,
      durationMs: result?.durationMs ?? Date.now() - started
    }
    try {
      this.init.onTaskEnded?.(task)
    } catch (err) {
      this.log.error(`task ${req.taskId} ran but could not be recorded in this donor's history: ${(err as Error).message}`, { task: req.taskId, peer, code: (err as { code?: string }).code })
    }
  }

  /** A broker's last connection closed: its offers go at once, its tasks after the grace period. */
  private brokerLeft (peer: string): void {
    if (this.components?.connections.isConnected(peer) === true) return
    let released = 0
    for (const [key, hold] of this.holds) {
      // a task whose dispatch arrived lapses by itself after its stream ends: a re-send through another path finds it meanwhile
      if (hold.peer === peer && !hold.dispatched) {
        this.holds.delete(key)
        released++
      }
    }
    const running = [...this.runs.values()].filter(r => r.peer === peer).length
    if (released > 0) {
      this.log.info(`broker ${shortPeerId(peer)} disconnected: released ${released} offered slot(s)`, { peer, released })
      this.init.onChange?.()
    }
    if (running === 0 || this.gone.has(peer)) return
    const graceMs = this.init.brokerGraceMs ?? BROKER_GRACE_MS
    this.gone.set(peer, setTimeout(() => { this.abandon(peer, graceMs) }, graceMs))
  }

  private brokerBack (peer: string): void {
    const timer = this.gone.get(peer)
    if (timer == null) return
    clearTimeout(timer)
    this.gone.delete(peer)
  }

  private abandon (peer: string, graceMs: number): void {
    this.gone.delete(peer)
    if (this.components?.connections.isConnected(peer) === true) return
    const runs = [...this.runs.values()].filter(r => r.peer === peer)
    if (runs.length === 0) return
    this.log.warn(`broker ${shortPeerId(peer)} has been gone for ${duration(graceMs)}: abandoning its ${runs.length} task(s) here`, { peer, code: 'TASK_ABANDONED', tasks: runs.length })
    for (const run of runs) abandonRun(run, new TaskAbandonedError(run.taskId, `its broker ${peer} left ${duration(graceMs)} ago`))
  }
}

/** Its broker gave the run up: the executor stops it, and the runner answers TaskAbandonedError, not the executor's error. */
function abandonRun (run: Run, reason: Error): void {
  run.abandoned ??= reason
  run.stop.abort(reason)
}

function keyOf (peer: string, taskId: string): string {
  return `${peer} ${taskId}`
}
