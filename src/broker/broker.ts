import { randomFillSync } from 'node:crypto'
import { peerIdFromString } from '@libp2p/peer-id'
import { backoffDelay, pause, Waker, type BackoffPolicy } from '../core/async.ts'
import { createLogger, type Logger } from '../log/logger.ts'
import { DEFAULT_JOB_LIMITS, type ExecStatus, type JobLimits } from '../core/job.ts'
import type { DeclineCode } from '../codec/messages.ts'
import { JobStoreError, ON_DISK, type JobFinal, type JobRow, type JobSpec, type JobStore, type TaskOutcome, type TaskResult, type TaskRow } from './job-store.ts'
import { SlotLedger } from './slot-ledger.ts'
import { JobTreeInvalidError, loadTree, submittedTree, treeBytes } from './job-tree.ts'
import type { AddressedTree, TreeDir } from '../codec/manifest.ts'
import { ExecutorRecords } from './executor-records.ts'
import { BlobNotFoundError, type BlobStore } from './blob-store.ts'
import type { Payload } from '../protocols/framing.ts'
import { ModuleCache } from '../protocols/dispatch/module-cache.ts'
import { BUSY_DECLINES, charged, misbehaved, MISBEHAVIOUR_CODES, OfferDeclinedError } from './attempts.ts'
import { DEFAULT_NETWORK_PREFIXES, networkOf, UNOBSERVED, type NetworkPrefixes } from './replica-networks.ts'

/**
 * The broker: takes jobs from the local API, keeps them in the job store,
 * finds executors, offers and dispatches one task per replica (direct
 * connection when there is one, else the relay circuit), retries tasks that
 * fail for reasons that are not the job's fault on another executor, and
 * accepts a result when a strict majority of replicas agree on
 * (status, exitCode, outputCid, fuelUsed).
 *
 * Identities cost nothing, so a vote is only worth something across
 * networks: the replicas of one job run in distinct networks as observed by
 * this broker or a relay (replica-networks.ts), executors are ranked by what
 * the broker has seen them do rather than by the slots they claim
 * (executor-records.ts), and a peer that answers with an invalid receipt is
 * excluded from the job without spending its attempts (attempts.ts).
 * docs/trust-model.md says what this guarantees and what it does not.
 *
 * Each job runs as a loop of three states: placing (offer its replicas where
 * the slot ledger expects a free slot), waiting (in line for a slot, for an
 * executor to appear, or for one of its tasks to end) and finishing (the
 * replicas agree, cannot agree any more, or nobody took the job in time).
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

/** One task as the network sends it: its job's spec (the replica count aside), its ID, and the bytes. */
export interface TaskToRun extends Omit<JobSpec, 'replicas'> {
  taskId: string
  /** bytes from the job store, or a blob file read in chunks as it is sent */
  module: Payload
  input: Payload
  /** the job's directories (`--dir`), addressed */
  tree?: AddressedTree
}

/** A task's result as its executor answered it, over the path it took. */
export interface TaskRunResult extends TaskResult {
  path: 'direct' | 'relayed'
}

/** An executor's answer to an offer. */
export interface OfferAnswer {
  accept: boolean
  /** why it declined, in words (for the log) */
  reason?: string
  /** why it declined, as a code; absent from executors that send none (a generic decline) */
  code?: DeclineCode
  /** what it has left after answering */
  freeSlots?: number
  /**
   * Not asked: the offer rides the task's dispatch (a small task, where
   * sending it unasked costs less than a round trip), and a decline comes
   * back from `dispatch` as OfferDeclinedError.
   */
  deferred?: boolean
}

/** An executor's answer to a cancel: each task in one list. */
export interface CancelAnswer {
  /** were running: stopped, their slots free */
  stopped: string[]
  /** offered or arriving, not started: dropped */
  dropped: string[]
  /** not known there (finished meanwhile, never arrived) */
  unknown: string[]
}

/** What `Broker.cancel` did. */
export interface CancelOutcome {
  outcome: 'cancelled' | 'already-cancelled' | 'already-finished'
  /** tasks the executors stopped or dropped */
  stopped: number
  /** executors that could not be told (unreachable, no answer in time): their tasks lapse there by themselves */
  unreached: string[]
}

/** The job store is pruned to `keepJobs` once per this many finished jobs: a delete per job would cost more than the rows. */
const PRUNE_EVERY = 100

/** How long a cancel waits for the executors' answers. */
const CANCEL_WAIT_MS = 5_000

/** How long placement waits to learn where an executor is (its relay's answer) before counting it unreachable. */
const LOCATE_TIMEOUT_MS = 10_000

/**
 * A module or input blob file up to this size is read whole for its job's
 * run: its tasks go out in one write each, as an inline one's do (a client
 * that submits by CID sends small modules that way too). The small-task bound
 * of the dispatch (`OFFER_IN_DISPATCH_BYTES`).
 */
const WHOLE_BLOB_BYTES = 64 * 1024

/** Memory for small modules and inputs kept by CID across jobs: 128 modules the size of a small program. */
const DEFAULT_PAYLOAD_CACHE_BYTES = 8 * 1024 * 1024

/** What the store says of a task its job's cancel stopped. */
export const CANCELLED_TASK = 'CANCELLED: the job was cancelled'

/** What the broker needs from the network; the daemon wires the libp2p protocols in. */
export interface TaskNetwork {
  executors: () => ExecutorInfo[]
  /**
   * asks the executor to take the task; a decline is an answer, not an
   * error. Bounds its own round trip (the broker passes only the job's stop)
   */
  offer: (executor: string, task: TaskToRun, options: { signal: AbortSignal }) => Promise<OfferAnswer>
  /**
   * sends the task and waits for its verified result; throws for anything
   * that is not the job's own outcome (the path broke, the executor crashed
   * under it, the answer does not verify)
   */
  dispatch: (executor: string, task: TaskToRun, options: { signal: AbortSignal }) => Promise<TaskRunResult>
  /**
   * the IP address the executor is observed at (our direct connection to it,
   * or what a relay saw its reservation come from), never the one it claims;
   * undefined when nobody observed it; throws when it cannot be reached
   */
  locate: (executor: string, options: { signal: AbortSignal }) => Promise<string | undefined>
  /** resolves when a new executor appears, or after `ms` */
  waitForExecutors: (ms: number, signal: AbortSignal) => Promise<void>
  /**
   * asks the executor to stop tasks this broker dispatched to it (`job
   * cancel`); resolves with what it did with each; throws when it cannot be
   * reached. Absent: a cancelled job's tasks lapse on their executors by themselves
   */
  cancel?: (executor: string, taskIds: string[], options: { signal: AbortSignal }) => Promise<CancelAnswer>
  /** calls `listener` whenever an executor appears or announces its capacity again; returns the unsubscribe */
  onExecutorsChanged?: (listener: () => void) => () => void
}

export interface BrokerInit {
  store: JobStore
  network: TaskNetwork
  /**
   * big modules and inputs, uploaded as blob files: a job names them by
   * CID, and retention deletes the files no kept job refers to. Without
   * it, a job's bytes are all in the job store.
   */
  blobs?: Pick<BlobStore, 'payload' | 'sweep'>
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
  /**
   * how much of an observed address names a network: no two replicas of a
   * job run in one IPv4 /ipv4 or IPv6 /ipv6 network @default { ipv4: 24, ipv6: 48 }
   */
  networkPrefixes?: NetworkPrefixes
  /**
   * finished jobs the store keeps, newest first; older ones are deleted with
   * their outputs, checked every PRUNE_EVERY finished jobs @default 10000
   */
  keepJobs?: number
  /**
   * bytes of small modules and inputs (each at most 64 KiB) kept in memory
   * by CID for the runs of the jobs that use them: a module submitted again
   * is not read from the store or its blob file per job @default 8388608
   */
  payloadCacheBytes?: number
  /**
   * how long a job waits before writing again to a job store that failed (a
   * full disk): the job is held, never ended or blamed on an executor
   * @default { initialMs: 1000, maxMs: 60000 }
   */
  storeRetry?: BackoffPolicy
  /** a job reached its final status, once written to the store (metrics count them) */
  onJobFinished?: (final: JobFinal) => void
  logger?: Logger
}

const DEFAULT_STORE_RETRY: BackoffPolicy = { initialMs: 1_000, maxMs: 60_000 }

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

/**
 * What changed in a job: it started running (`phase`), one of its tasks was
 * placed or ended (`task`: its rows say how), or it reached its final answer
 * (`final`, once the store holds it). A listener that only waits for the
 * answer reads nothing until `final`.
 */
export type JobChange = 'phase' | 'task' | 'final'

export type JobEventListener = (jobId: string, change: JobChange) => void

/** A job just accepted: its run starts from the row and bytes as written, not read back from the store. */
interface Fresh {
  job: JobRow
  /** the module's bytes as submitted; absent: a blob file, read as on resume */
  module?: Uint8Array
  input?: Uint8Array
}

/** Why a waiting job woke up: it re-evaluates either way; 'probe' also lets it ask executors expected busy. */
type WakeReason = 'timeout' | 'slot' | 'probe' | 'task' | 'stop'

/** How many executors the probing job asks beyond its ledger's expectations. */
const PROBE_OFFERS = 3


/** A waiting job's sleep, cut short by `wake` with the reason (a slot expected free, the probe, a task of its own ended). */
class JobWaker {
  private readonly waker = new Waker()
  private reason: WakeReason = 'timeout'

  /** Whether the job is waiting now (a wake-up while it is not is not kept: it re-evaluates before it waits again). */
  get waiting (): boolean {
    return this.waker.waiting
  }

  wake (reason: WakeReason): void {
    if (!this.waker.waiting) return
    this.reason = reason
    this.waker.wake()
  }

  /** Resolves with why the wait ended; 'stop' when `signal` aborts. */
  async wait (ms: number, signal: AbortSignal): Promise<WakeReason> {
    try {
      return await this.waker.wait(ms, { signal }) === 'woken' ? this.reason : 'timeout'
    } catch (err) {
      if (signal.aborted) return 'stop'
      throw err
    }
  }
}

/** One job's run: what its placing, waiting and finishing share. */
interface JobRun {
  job: JobRow
  module: Payload
  input: Payload
  tree?: AddressedTree
  signal: AbortSignal
  waker: JobWaker
  /** its tasks being dispatched now, by task ID */
  inflight: Map<string, Promise<void>>
  /** executors that declined this job for a reason other than being busy (its limits, its size): not asked again */
  refusedBy: Set<string>
  /**
   * since when this job has had nobody to wait for: the unavailable clock.
   * Time queued behind busy executors that answer does not count — a large
   * burst on few slots waits its turn instead of erroring after 10 minutes.
   */
  hopelessSince: number
  /** why it last woke */
  wake: WakeReason
  /** the network each of its placed tasks runs in, by task ID */
  networks: Map<string, string>
  /**
   * its task rows, kept as this run writes them (no other writer touches
   * them while it runs: a cancel stops the run first), so a turn reads none
   */
  rows: TaskRow[]
  /** the final answer, once stored with the result that decided it */
  final?: JobFinal
}

/** Who a job's next replicas may go to. */
interface Pool {
  /** executors it may ask now, network conflicts as far as known taken out */
  eligible: ExecutorInfo[]
  /** executors that failed a task of this job: asked after the others */
  failedBefore: Set<string>
}

/** One round of offers of one job. */
interface Round {
  run: JobRun
  tasks: TaskRow[]
  needed: number
  probing: boolean
  /** networks holding a replica of the job */
  taken: Set<string>
  placed: number
}

/** What one round of placing found and did. */
interface Placing {
  /** executors it could have asked */
  eligible: ExecutorInfo[]
  /** tasks placed this round */
  placed: number
}

export interface SubmitJob {
  /** bytes, or a blob the `blobs` store holds (`PUT /v1/blobs/{cid}`), read in chunks when sent */
  module: Payload
  moduleCid: string
  input: Payload
  inputCid: string
  moduleName?: string
  args?: string[]
  env?: string[]
  limits?: Partial<JobLimits>
  replicas?: number
  /** the only executors (PeerIds) the job may run on: trusted ones, in a private mesh */
  executors?: string[]
  /** directories preopened for the job (`--dir`); a file given with its CID is a blob file of `blobs`, not read */
  dirs?: TreeDir[]
}

/** At most this many executors may be named for one job. */
export const MAX_CHOSEN_EXECUTORS = 64

export class Broker {
  private readonly store: JobStore
  private readonly network: TaskNetwork
  private readonly log: Logger
  private readonly self: string
  private readonly allowSelf: boolean
  private readonly maxAttemptsPerReplica: number
  private readonly unavailableAfterMs: number
  private readonly retryAfterMs: number
  private readonly storeRetry: BackoffPolicy
  private readonly onJobFinished?: (final: JobFinal) => void
  private controller?: AbortController
  private readonly running = new Map<string, Promise<void>>()
  /** each running job's own stop, for `cancel` */
  private readonly jobStops = new Map<string, AbortController>()
  /** the waiting side of each running job */
  private readonly wakers = new Map<string, JobWaker>()
  private readonly listeners = new Set<JobEventListener>()
  private readonly probeIntervalMs: number
  private readonly ledger = new SlotLedger()
  private readonly records = new ExecutorRecords()
  /** look-ups of where an executor is, in flight, by PeerId */
  private readonly locating = new Map<string, Promise<string | undefined>>()
  private readonly prefixes: NetworkPrefixes
  /**
   * jobs waiting for a free slot, first come first served: a freed slot wakes
   * the first in line only, not every waiting job (each woken job sends offers)
   */
  private readonly queue: Array<{ jobId: string, seq: number }> = []
  private readonly queueSeq = new Map<string, number>()
  private nextSeq = 0
  private readonly keepJobs: number
  private readonly blobs: Pick<BlobStore, 'payload' | 'sweep'> | undefined
  /** small payloads by CID (bytes under a CID never change), least recently used evicted */
  private readonly smallPayloads: ModuleCache
  /** jobs finished since the store was last pruned */
  private finishedSincePrune = 0
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
    this.prefixes = init.networkPrefixes ?? DEFAULT_NETWORK_PREFIXES
    this.storeRetry = init.storeRetry ?? DEFAULT_STORE_RETRY
    this.onJobFinished = init.onJobFinished
    this.keepJobs = init.keepJobs ?? 10_000
    this.blobs = init.blobs
    this.smallPayloads = new ModuleCache(init.payloadCacheBytes ?? DEFAULT_PAYLOAD_CACHE_BYTES)
    this.log = init.logger ?? createLogger('broker')
  }

  /** Resumes every job the store holds that has no final answer yet. */
  start (): void {
    if (this.controller != null) return
    this.controller = new AbortController()
    this.unsubscribe = this.network.onExecutorsChanged?.(() => { this.pump() })
    this.sweepBlobs()
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
    // the abort ends every job's wait
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
    let tree: AddressedTree | undefined
    try {
      tree = submittedTree(req.dirs)
    } catch (err) {
      if (err instanceof JobTreeInvalidError) throw new JobRejectedError(err.message)
      throw err
    }
    const payload = req.module.byteLength + req.input.byteLength + treeBytes(tree)
    const payloadMax = limits.payloadBytes ?? DEFAULT_JOB_LIMITS.payloadBytes
    if (payload > payloadMax) throw new JobRejectedError(`module + input${tree != null ? ' + directories' : ''} is ${payload} bytes, above the limit of ${payloadMax}`)
    const executors = req.executors != null ? chosenExecutors(req.executors, replicas) : undefined
    const spec: JobSpec = {
      jobId: newJobId(),
      moduleCid: req.moduleCid,
      inputCid: req.inputCid,
      moduleName: req.moduleName ?? 'main.wasm',
      args: req.args ?? [],
      env: req.env ?? [],
      // every limit explicit, so each replica runs under the same limits
      // whatever a donor's own defaults are (the output must not depend on who ran it)
      limits: { ...DEFAULT_JOB_LIMITS, ...limits },
      replicas,
      ...(executors != null ? { executors } : {}),
      ...(tree != null ? { manifestCid: tree.manifestCid } : {})
    }
    let job: JobRow
    try {
      job = this.store.createJob(spec, storedBytes(req.module), storedBytes(req.input), tree)
    } catch (err) {
      // the submitter is told through the API; the operator of this node needs the line too
      if (err instanceof JobStoreError) this.logStoreFault(undefined, 'cannot accept a job', err)
      throw err
    }
    this.log.info(`accepted job ${job.jobId}: module ${job.moduleCid}, ${req.input.byteLength} input bytes, ${replicas} replica(s)${executors != null ? `, only on ${executors.length} chosen executor(s)` : ''}`, { job: job.jobId })
    this.launch(job.jobId, 0, { job, ...(req.module instanceof Uint8Array ? { module: req.module } : {}), ...(req.input instanceof Uint8Array ? { input: req.input } : {}) })
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

  /**
   * Cancels a job: its final answer becomes `cancelled` in the store first (a
   * restart does not resume it), its run stops placing and waiting, and every
   * executor holding one of its tasks is told to stop it. Idempotent; a job
   * that already had its final answer is left as it is.
   */
  async cancel (jobId: string, options: { signal?: AbortSignal } = {}): Promise<CancelOutcome> {
    const job = this.store.getJob(jobId)
    if (job == null) throw new JobNotFoundError(jobId)
    const final: JobFinal = { status: 'cancelled', agreeing: 0, message: 'cancelled by the submitter (job cancel)' }
    if (!this.store.finishIfOpen(jobId, final)) {
      const was = this.store.getJob(jobId)?.final?.status
      return { outcome: was === 'cancelled' ? 'already-cancelled' : 'already-finished', stopped: 0, unreached: [] }
    }
    this.onJobFinished?.(final)
    this.queueSeq.delete(jobId)
    const live = this.store.failLiveTasks(jobId, CANCELLED_TASK)
    this.jobStops.get(jobId)?.abort(new Error(`job ${jobId} was cancelled`))
    // the run ends at once on its signal; a task it was placing meanwhile is caught by the second look
    await this.running.get(jobId)
    live.push(...this.store.failLiveTasks(jobId, CANCELLED_TASK))
    this.log.info(`job ${jobId} cancelled: stopping ${live.length} task(s) on their executors`, { job: jobId, code: 'JOB_CANCELLED' })
    this.emit(jobId, 'final')
    this.ended()
    const told = await this.stopTasks(jobId, live, options.signal)
    return { outcome: 'cancelled', ...told }
  }

  /** Tells each executor to stop the tasks of a cancelled job it holds, in parallel, for at most CANCEL_WAIT_MS. */
  private async stopTasks (jobId: string, tasks: Array<{ taskId: string, executor: string }>, signal?: AbortSignal): Promise<Omit<CancelOutcome, 'outcome'>> {
    const byExecutor = new Map<string, string[]>()
    for (const t of tasks) byExecutor.set(t.executor, [...(byExecutor.get(t.executor) ?? []), t.taskId])
    const cancel = this.network.cancel?.bind(this.network)
    if (cancel == null) return { stopped: 0, unreached: [...byExecutor.keys()] }
    const wait = AbortSignal.any([AbortSignal.timeout(CANCEL_WAIT_MS), ...(signal != null ? [signal] : [])])
    let stopped = 0
    const unreached: string[] = []
    await Promise.all([...byExecutor].map(async ([executor, taskIds]) => {
      try {
        const answer = await cancel(executor, taskIds, { signal: wait })
        stopped += answer.stopped.length + answer.dropped.length
      } catch (err) {
        unreached.push(executor)
        this.log.warn(`job ${jobId}: could not tell ${executor} to stop ${taskIds.join(', ')}: ${(err as Error).message} (the task lapses there when its broker stops waiting)`, { job: jobId, peer: executor, phase: 'cancel', code: (err as { code?: string }).code })
      }
    }))
    return { stopped, unreached }
  }

  /** Deletes the blob files no job in the store refers to (through its on-disk rows): what a prune freed, and uploads no submit named in time. */
  private sweepBlobs (): void {
    const swept = this.blobs?.sweep(cid => this.store.blobOnDisk(cid)) ?? 0
    if (swept > 0) this.log.debug(`blob store: deleted ${swept} blob file(s) no kept job refers to`)
  }

  /** A job reached its final answer: every PRUNE_EVERY of them, the store drops the finished jobs beyond `keepJobs`. */
  private ended (): void {
    if (++this.finishedSincePrune < PRUNE_EVERY) return
    this.finishedSincePrune = 0
    try {
      const pruned = this.store.prune(this.keepJobs)
      if (pruned > 0) this.log.debug(`job store: deleted ${pruned} finished job(s) beyond the newest ${this.keepJobs}`)
      this.sweepBlobs()
    } catch (err) {
      // the jobs stay, and the next finished jobs try again
      if (!(err instanceof JobStoreError)) throw err
      this.logStoreFault(undefined, `cannot delete finished jobs beyond the newest ${this.keepJobs}`, err)
    }
  }

  private emit (jobId: string, change: JobChange): void {
    for (const l of this.listeners) {
      try {
        l(jobId, change)
      } catch (err) {
        this.log.error(`job event listener threw: ${(err as Error).message}`)
      }
    }
  }

  /** Runs the job; `storeFailures`: how many runs of it in a row the job store stopped; `fresh`: it was just accepted. */
  private launch (jobId: string, storeFailures = 0, fresh?: Fresh): void {
    const stopping = this.controller?.signal
    if (stopping == null || this.running.has(jobId)) return
    const jobStop = new AbortController()
    this.jobStops.set(jobId, jobStop)
    const signal = AbortSignal.any([stopping, jobStop.signal])
    let storeFailed = false
    const run = this.runJob(jobId, signal, fresh)
      .catch((err: Error) => {
        if (signal.aborted) return
        if (err instanceof JobStoreError) {
          // this node's disk, not the job: it stays unfinished in the store and runs again once the store works
          storeFailed = true
          this.logStoreFault(jobId, 'paused', err)
          return
        }
        this.internalError(jobId, err)
      })
      .finally(() => {
        this.running.delete(jobId)
        if (this.jobStops.get(jobId) === jobStop) this.jobStops.delete(jobId)
        if (storeFailed) this.relaunchLater(jobId, storeFailures + 1, signal)
      })
    this.running.set(jobId, run)
  }

  /** Writes a job's final status; told to `onJobFinished` once the store holds it. */
  private finishJob (jobId: string, phase: 'completed' | 'error', final: JobFinal): void {
    this.store.finishJob(jobId, phase, final)
    this.onJobFinished?.(final)
  }

  /** A bug, not a job outcome: recorded on the job so it is never silently lost. */
  private internalError (jobId: string, err: Error): void {
    this.log.error(`job ${jobId} stopped on an internal error: ${err.stack ?? err.message}`, { job: jobId })
    try {
      this.finishJob(jobId, 'error', { status: 'unavailable', agreeing: 0, message: `internal error: ${err.message}` })
    } catch (storeErr) {
      this.logStoreFault(jobId, 'cannot record its internal error', storeErr as Error)
    }
    this.emit(jobId, 'final')
  }

  private relaunchLater (jobId: string, storeFailures: number, signal: AbortSignal): void {
    void pause(backoffDelay(this.storeRetry, storeFailures), { signal }).then((stopped) => {
      if (!stopped) this.launch(jobId, storeFailures)
    })
  }

  /** The ERROR line of a local storage fault: what could not be done, and the store's own words (the disk is full, the file). */
  private logStoreFault (jobId: string | undefined, doing: string, err: Error): void {
    const code = (err as { code?: string }).code
    const path = err instanceof JobStoreError ? err.path : undefined
    this.log.error(`${jobId != null ? `job ${jobId}: ` : ''}${doing}: ${err.message}`, { job: jobId, code, path })
  }

  /**
   * One write to the job store, tried again while the store fails (a full
   * disk): a local fault holds the job until the write succeeds, never ends
   * it or counts against an executor. Resolves false when stopped first.
   */
  private async persist (jobId: string, what: string, write: () => void | Promise<void>, signal: AbortSignal): Promise<boolean> {
    for (let failures = 1; ; failures++) {
      try {
        await write()
        if (failures > 1) this.log.info(`job ${jobId}: the job store takes writes again; recorded ${what}`, { job: jobId })
        return true
      } catch (err) {
        if (!(err instanceof JobStoreError)) throw err
        if (failures === 1) this.logStoreFault(jobId, `cannot record ${what} (tried again until it can)`, err)
      }
      if (await pause(backoffDelay(this.storeRetry, failures), { signal })) return false
    }
  }

  /**
   * Waits in line for a free slot: woken by `pump()` when the ledger expects
   * one, by the probe timer when first in line, by a task of this job ending,
   * or after `ms`. The job keeps its place in line until it places a task.
   */
  private async waitForSlot (run: JobRun, ms: number): Promise<WakeReason> {
    const jobId = run.job.jobId
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
      return await run.waker.wait(ms, run.signal)
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
      const waker = this.wakers.get(jobId)
      if (waker?.waiting !== true) continue
      waker.wake('slot')
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
    this.wakers.get(head.jobId)?.wake('probe')
    this.pump()
  }

  /** A job from start to final answer: placing and waiting until it can finish. */
  private async runJob (jobId: string, signal: AbortSignal, fresh?: Fresh): Promise<void> {
    const run = this.openRun(jobId, signal, fresh)
    if (run == null) return
    this.wakers.set(jobId, run.waker)
    try {
      // a job just accepted has no tasks to resume
      if (fresh == null) await this.resumeTasks(run)
      while (!signal.aborted) {
        if (await this.step(run) === 'finished') return
      }
    } catch (err) {
      // a store failure ends this run, not the job: the tasks under way are recorded before the job runs again
      if (err instanceof JobStoreError) await Promise.allSettled([...run.inflight.values()])
      throw err
    } finally {
      this.wakers.delete(jobId)
    }
  }

  /** A job's module or input: from the cache of small ones, the job store, else its blob file (a small one read whole); undefined when none holds it. */
  private payloadOf (cid: string): Payload | undefined {
    const cached = this.smallPayloads.get(cid)
    if (cached != null) return cached
    const payload = this.storedPayload(cid)
    if (payload instanceof Uint8Array && payload.byteLength <= WHOLE_BLOB_BYTES) this.smallPayloads.put(cid, payload)
    return payload
  }

  /**
   * A payload a job was just submitted with, as `payloadOf` would have read
   * it back: the cached copy when there is one (the jobs of one module share
   * its bytes, not one copy per queued job), else the submitted bytes, kept
   * in the cache when small.
   */
  private submittedPayload (cid: string, bytes: Uint8Array): Payload {
    const cached = this.smallPayloads.get(cid)
    if (cached != null) return cached
    if (bytes.byteLength <= WHOLE_BLOB_BYTES) this.smallPayloads.put(cid, bytes)
    return bytes
  }

  private storedPayload (cid: string): Payload | undefined {
    const bytes = this.store.getBlob(cid)
    if (bytes != null || this.blobs == null || !this.store.blobOnDisk(cid)) return bytes
    try {
      return this.blobs.payload(cid, WHOLE_BLOB_BYTES)
    } catch (err) {
      if (err instanceof BlobNotFoundError) return undefined
      throw err
    }
  }

  /** The job with its bytes, marked running; undefined (the job ended as an error) when its bytes are gone. */
  private openRun (jobId: string, signal: AbortSignal, fresh?: Fresh): JobRun | undefined {
    const job = fresh?.job ?? this.store.getJob(jobId)
    if (job == null) return undefined
    const module = fresh?.module != null ? this.submittedPayload(job.moduleCid, fresh.module) : this.payloadOf(job.moduleCid)
    const input = fresh?.input != null ? this.submittedPayload(job.inputCid, fresh.input) : this.payloadOf(job.inputCid)
    const tree = job.manifestCid != null ? loadTree(this.store, job.manifestCid, cid => this.storedPayload(cid)) : undefined
    if (module == null || input == null || (job.manifestCid != null && tree == null)) {
      this.finishJob(jobId, 'error', { status: 'unavailable', agreeing: 0, message: 'the job store lost the module, input or directory bytes' })
      this.emit(jobId, 'final')
      return undefined
    }
    // it stays 'queued' until its first task is placed (createTask's startJob)
    return { job, module, input, ...(tree != null ? { tree } : {}), signal, waker: new JobWaker(), inflight: new Map(), refusedBy: new Set(), hopelessSince: Date.now(), wake: 'timeout', networks: new Map(), rows: [] }
  }

  /**
   * Tasks left running by a previous run of the daemon: asks the same
   * executor again with the same task ID; its dispatch is idempotent, so the
   * task never runs twice there and a finished result is simply returned.
   */
  private async resumeTasks (run: JobRun): Promise<void> {
    run.rows = this.store.tasksOf(run.job.jobId)
    for (const task of [...run.rows]) {
      if (task.state === 'failed') continue
      const live = task.state === 'offered' || task.state === 'running'
      if (live) {
        this.log.info(`job ${run.job.jobId}: resuming task ${task.taskId} on ${task.executor}`, { job: run.job.jobId })
        // a freshly started daemon has not heard from its executors yet
        await this.waitForExecutor(task.executor, 15_000, run.signal)
      }
      // the networks its replicas hold, so the rest go elsewhere
      const network = await this.networkFor(run, task.executor)
      if (network != null) run.networks.set(task.taskId, network)
      if (live) this.startTask(run, task)
    }
  }

  /**
   * One turn of the job's loop: finish when a verdict is reachable, else
   * place the replicas still needed, else wait. Bounded: each replica gets at
   * most maxAttemptsPerReplica tasks, and the job errors after
   * unavailableAfterMs with nobody to wait for.
   */
  private async step (run: JobRun): Promise<'finished' | 'continue'> {
    // this turn's copy: placing adds its rows to it, tasks ending meanwhile change only run.rows
    const tasks = [...run.rows]
    const verdict = this.decide(run.job, tasks)
    if (verdict != null) {
      await this.finish(run, verdict)
      return 'finished'
    }
    const active = tasks.filter(t => t.state === 'offered' || t.state === 'running').length
    const needed = run.job.replicas - active - tasks.filter(t => t.state === 'done').length
    if (needed > 0) {
      const placing = await this.place(run, tasks, needed)
      if (placing.placed < needed && this.nextReplica(run.job, tasks) != null) {
        return await this.waitToPlace(run, placing, placing.placed === 0 && active === 0 && run.inflight.size === 0)
      }
    }
    // every replica placed: wait for a task of this job to end (its runTask
    // wakes us), unless one ended while this turn was placing (that wake found nobody waiting)
    const ended = tasks.some(t => (t.state === 'offered' || t.state === 'running') && !run.inflight.has(t.taskId))
    run.wake = ended ? 'task' : await run.waker.wait(1_000, run.signal)
    return 'continue'
  }

  /**
   * Placing: offers the next replicas to the executors ranked best, one
   * replica per network; `tasks` gains the rows placed. Executors nobody
   * observed come last, and share one network between them.
   */
  private async place (run: JobRun, tasks: TaskRow[], needed: number): Promise<Placing> {
    const pool = this.poolFor(run, tasks)
    // offer only where the ledger expects a free slot; the first job in
    // line, when the probe wakes it, also asks a few it expects busy
    const probing = run.wake === 'probe'
    const candidates = pool.eligible
      .filter(e => probing || this.ledger.free(e) > 0)
      .sort((a, b) => Number(pool.failedBefore.has(a.peerId)) - Number(pool.failedBefore.has(b.peerId)) ||
        this.records.compare(a.peerId, b.peerId) || this.ledger.free(b) - this.ledger.free(a))
      .slice(0, probing ? Math.max(needed, PROBE_OFFERS) : undefined)
    const round: Round = { run, tasks, needed, probing, taken: this.takenNetworks(run, tasks), placed: 0 }
    const unobserved = await this.offerEach(round, candidates, false)
    await this.offerEach(round, unobserved, true)
    if (round.placed > 0) this.queueSeq.delete(run.job.jobId)
    return { eligible: pool.eligible.filter(e => !round.taken.has(this.records.network(e.peerId) ?? '')), placed: round.placed }
  }

  /**
   * Who may take the job's next replicas: not an executor holding one of its
   * replicas, nor one that misbehaved on it or refused it, nor one in a
   * network that holds a replica; one that failed a task of the job only when
   * no reachable executor is left that has not (attempts go to distinct
   * executors before any is retried, so one peer cannot spend them all).
   */
  private poolFor (run: JobRun, tasks: TaskRow[]): Pool {
    const holding = new Set(tasks.filter(t => t.state !== 'failed').map(t => t.executor))
    const failed = tasks.filter(t => t.state === 'failed')
    const excluded = new Set(failed.filter(misbehaved).map(t => t.executor))
    const failedBefore = new Set(failed.map(t => t.executor))
    const coolingDown = new Set(failed.filter(t => Date.now() - Date.parse(t.updatedAt) < this.retryAfterMs).map(t => t.executor))
    const taken = this.takenNetworks(run, tasks)
    const chosen = run.job.executors != null ? new Set(run.job.executors) : undefined
    const open = this.network.executors().filter(e => e.acceptsJobs && (this.allowSelf || e.peerId !== this.self) && (chosen?.has(e.peerId) ?? true) &&
      !holding.has(e.peerId) && !excluded.has(e.peerId) && !run.refusedBy.has(e.peerId) && !taken.has(this.records.network(e.peerId) ?? ''))
    const untried = open.some(e => !failedBefore.has(e.peerId) && this.ledger.reachable(e.peerId))
    const eligible = open.filter(e => !(untried && failedBefore.has(e.peerId)) && !coolingDown.has(e.peerId) && !this.ledger.coolingDown(e.peerId))
    return { eligible, failedBefore }
  }

  /** The networks holding a replica of the job (a task that did not fail); one not known counts as the unobserved one. */
  private takenNetworks (run: JobRun, tasks: TaskRow[]): Set<string> {
    return new Set(tasks.filter(t => t.state !== 'failed').map(t => run.networks.get(t.taskId) ?? this.records.network(t.executor) ?? UNOBSERVED))
  }

  /**
   * Offers the round's replicas to `executors` in order, each in a network
   * the job does not hold yet. Without `unobservedToo`, executors nobody
   * observed are handed back for a second pass instead.
   */
  private async offerEach (round: Round, executors: ExecutorInfo[], unobservedToo: boolean): Promise<ExecutorInfo[]> {
    const deferred: ExecutorInfo[] = []
    const { run, tasks } = round
    for (const executor of executors) {
      if (round.placed >= round.needed || run.signal.aborted) break
      // another job's failed look-up may have paused this executor while we offered to the ones before it
      if (this.ledger.coolingDown(executor.peerId)) continue
      const network = await this.networkFor(run, executor.peerId)
      if (network == null) continue
      // a parallel job's offer may have taken the expected slot meanwhile
      if (!round.probing && this.ledger.free(executor) <= 0) continue
      if (network === UNOBSERVED && !unobservedToo) {
        deferred.push(executor)
        continue
      }
      if (round.taken.has(network)) {
        this.log.debug(`job ${run.job.jobId}: not offering to ${executor.peerId}: network ${network} already runs a replica`, { job: run.job.jobId, peer: executor.peerId })
        continue
      }
      const replica = this.nextReplica(run.job, tasks)
      if (replica == null) break
      const row = await this.offerReplica(run, executor, replica, tasks.filter(t => t.replica === replica).length + 1)
      if (row == null) continue
      run.networks.set(row.taskId, network)
      round.taken.add(network)
      tasks.push(row)
      round.placed++
    }
    return deferred
  }

  /**
   * The network an executor is in, as observed (cached for a minute); each
   * chosen executor of a job that names them is its own. Undefined when it
   * cannot be reached: its offers pause like a failed offer's.
   */
  private async networkFor (run: JobRun, peerId: string): Promise<string | undefined> {
    if (run.job.executors != null) return `chosen:${peerId}`
    const known = this.records.network(peerId)
    if (known != null) return known
    // jobs placing at once share one look-up per executor
    let locating = this.locating.get(peerId)
    if (locating == null) {
      locating = this.network.locate(peerId, { signal: AbortSignal.any([run.signal, AbortSignal.timeout(LOCATE_TIMEOUT_MS)]) })
        .finally(() => { this.locating.delete(peerId) })
      this.locating.set(peerId, locating)
    }
    try {
      const network = networkOf(await locating, peerId, this.prefixes)
      this.records.located(peerId, network)
      return network
    } catch (err) {
      if (run.signal.aborted) return undefined
      // a lookup that failed took up to LOCATE_TIMEOUT_MS: pause at least that long before any job waits on it again
      this.ledger.unreachable(peerId, LOCATE_TIMEOUT_MS)
      this.records.silent(peerId)
      this.log.warn(`job ${run.job.jobId}: cannot tell where executor ${peerId} is: ${(err as Error).message}`, { job: run.job.jobId, peer: peerId, phase: 'locate', code: (err as { code?: string }).code })
      return undefined
    }
  }

  /** Offers one replica's next attempt to one executor; the task row when it accepted (its dispatch started). */
  private async offerReplica (run: JobRun, executor: ExecutorInfo, replica: number, attempt: number): Promise<TaskRow | undefined> {
    const jobId = run.job.jobId
    const taskId = `${jobId}.r${replica}.a${attempt}`
    let offer: OfferAnswer
    this.ledger.offering(executor.peerId)
    const asked = performance.now()
    try {
      offer = await this.network.offer(executor.peerId, this.taskToRun(run, taskId), { signal: run.signal })
    } catch (err) {
      this.ledger.answered(executor, undefined)
      if (!run.signal.aborted) this.records.silent(executor.peerId)
      this.log.warn(`job ${jobId}: offer to ${executor.peerId} failed: ${(err as Error).message}`, { job: jobId, peer: executor.peerId, phase: 'offer', code: (err as { code?: string }).code })
      return undefined
    }
    this.ledger.answered(executor, offer.accept, offer.freeSlots)
    // an offer that rides the dispatch took no round trip: nothing to learn of the executor's latency
    if (offer.deferred !== true) this.records.answered(executor.peerId, performance.now() - asked)
    if (!offer.accept) {
      // a decline without a code (an older executor) is a generic one: not asked again, unless it has no slot free
      const busyNow = offer.freeSlots === 0 || BUSY_DECLINES.has(offer.code)
      if (!busyNow) run.refusedBy.add(executor.peerId)
      this.log.info(`job ${jobId}: ${executor.peerId} declined: ${offer.reason ?? 'no reason given'}${busyNow ? '' : ' (not asked again for this job)'}`, { job: jobId, peer: executor.peerId, code: offer.code })
      return undefined
    }
    const starts = run.job.phase === 'queued'
    const row = this.store.createTask({ taskId, jobId, replica, attempt, executor: executor.peerId }, { startJob: starts })
    if (starts) {
      run.job = { ...run.job, phase: 'running' }
      this.emit(jobId, 'phase')
    }
    run.rows.push(row)
    // its run tells the listeners (runTask's first event)
    this.startTask(run, row)
    return row
  }

  /**
   * Waiting for a chance to place: in line for a slot when someone could
   * take the job, else for an executor to appear or a task of its own to
   * end; ends the job as unavailable once it has had nobody to wait for
   * for unavailableAfterMs.
   */
  private async waitToPlace (run: JobRun, placing: Placing, idle: boolean): Promise<'finished' | 'continue'> {
    // someone reachable that has not refused this job will free a slot: keep waiting in line
    if (!idle || placing.eligible.some(e => this.ledger.reachable(e.peerId))) run.hopelessSince = Date.now()
    if (idle && Date.now() - run.hopelessSince > this.unavailableAfterMs) {
      this.finishUnavailable(run)
      return 'finished'
    }
    const untilUnavailable = this.unavailableAfterMs - (Date.now() - run.hopelessSince) + 1
    if (placing.eligible.length === 0) {
      // nobody to ask: wake on a new executor, or when one of our own tasks ends
      const ms = Math.min(1_000, untilUnavailable)
      await Promise.race([this.network.waitForExecutors(ms, run.signal), run.waker.wait(ms, run.signal)])
      run.waker.wake('stop')
      run.wake = 'timeout'
    } else {
      run.wake = await this.waitForSlot(run, Math.min(30_000, idle ? untilUnavailable : 30_000))
    }
    return 'continue'
  }

  /**
   * Finishing with a verdict: lets replicas still running finish, so the
   * answer says how many agree (the run's rows are current once none of its
   * tasks is under way: each records its end before it leaves `inflight`).
   * Nothing to do when the deciding result was stored with the answer: its
   * task told.
   */
  private async finish (run: JobRun, reached: JobFinal): Promise<void> {
    const jobId = run.job.jobId
    await Promise.allSettled([...run.inflight.values()])
    if (run.signal.aborted || run.final != null) return
    const verdict = this.decide(run.job, run.rows) ?? reached
    if (!await this.persist(jobId, 'its final answer', () => { this.store.finishJob(jobId, endPhase(verdict), verdict) }, run.signal)) return
    this.tellFinal(run, verdict)
  }

  /** A final answer the store holds: votes recorded, and it told to the log, the metrics and the listeners. */
  private tellFinal (run: JobRun, verdict: JobFinal): void {
    const jobId = run.job.jobId
    this.recordVotes(run.rows, verdict)
    this.queueSeq.delete(jobId)
    this.onJobFinished?.(verdict)
    this.log.info(`job ${jobId} finished: ${verdict.message}`, { job: jobId })
    this.emit(jobId, 'final')
    this.ended()
  }

  /**
   * A verdict's voters: a result in the majority is an agreement, one outside
   * it a lost vote (down-ranked for later jobs). With no majority nobody can
   * tell who was wrong, so nothing is recorded.
   */
  private recordVotes (tasks: TaskRow[], verdict: JobFinal): void {
    if (verdict.status === 'no_agreement' || verdict.status === 'unavailable' || verdict.outputCid == null) return
    for (const t of tasks) {
      const o = t.outcome
      if (t.state !== 'done' || o == null) continue
      const agreed = o.status === verdict.status && (o.exitCode ?? null) === (verdict.exitCode ?? null) && o.outputCid === verdict.outputCid && o.fuelUsed === verdict.fuelUsed
      this.records.voted(t.executor, agreed)
      if (!agreed) this.log.warn(`job ${t.jobId}: ${t.executor} lost the vote (it said ${describeOutcome(o)}): ranked down for later jobs`, { job: t.jobId, peer: t.executor, code: 'LOST_VOTE' })
    }
  }

  /**
   * Finishing without enough takers within unavailableAfterMs: unavailable
   * when nobody ran it, no agreement when some replicas ran but no other
   * network took the rest (their results are not a majority).
   */
  private finishUnavailable (run: JobRun): void {
    // cancelled meanwhile: the cancel wrote its final answer
    if (run.signal.aborted) return
    const jobId = run.job.jobId
    const refusals = run.refusedBy.size > 0 ? ` (${run.refusedBy.size} refused it: see the broker log for their reasons)` : ''
    const within = `within ${Math.round(this.unavailableAfterMs / 1000)} s`
    const done = run.rows.filter(t => t.state === 'done' && t.outcome != null)
    const verdict: JobFinal = done.length === 0
      ? { status: 'unavailable', agreeing: 0, message: `no executor accepted the job ${within}${refusals}` }
      : { status: 'no_agreement', agreeing: 0, message: `no majority of ${run.job.replicas}: only ${done.length} replica(s) ran (${done.map(t => `${t.executor} said ${describeOutcome(t.outcome as TaskOutcome)}`).join('; ')}); no executor in another network took the rest ${within}${refusals}` }
    this.queueSeq.delete(jobId)
    this.finishJob(jobId, endPhase(verdict), verdict)
    this.log.warn(`job ${jobId}: ${verdict.message}`, { job: jobId })
    this.emit(jobId, 'final')
    this.ended()
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
      if (charged(mine) >= this.maxAttemptsPerReplica) continue
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
      if (mine.some(t => t.state !== 'failed') || charged(mine) < this.maxAttemptsPerReplica) potential++
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

  private taskToRun (run: JobRun, taskId: string): TaskToRun {
    const { job } = run
    return {
      jobId: job.jobId,
      taskId,
      moduleCid: job.moduleCid,
      inputCid: job.inputCid,
      moduleName: job.moduleName,
      args: job.args,
      env: job.env,
      limits: job.limits,
      module: run.module,
      input: run.input,
      ...(run.tree != null ? { tree: run.tree } : {})
    }
  }

  /** Dispatches a placed task in the background; the job's run tracks it until it ends. */
  private startTask (run: JobRun, task: TaskRow): void {
    run.inflight.set(task.taskId, this.runTask(run, task))
  }

  /** The task's executor declined the offer its dispatch carried: forgotten, as a declined offer is never recorded. */
  private async forgetDeclined (run: JobRun, task: TaskRow, err: OfferDeclinedError): Promise<void> {
    const jobId = run.job.jobId
    if (!await this.persist(jobId, `the decline of task ${task.taskId}`, () => { this.store.deleteTask(task.taskId) }, run.signal)) return
    run.rows = run.rows.filter(t => t.taskId !== task.taskId)
    const busy = busyDecline(err)
    if (!busy) run.refusedBy.add(task.executor)
    this.log.info(`job ${jobId}: ${task.executor} declined: ${err.reason}${busy ? '' : ' (not asked again for this job)'}`, { job: jobId, peer: task.executor, code: err.decline })
  }

  /**
   * Stores a task's result, with the job's final answer in the same
   * transaction when this result decides it and is the job's last word: no
   * other task of it live and every replica with a task that did not fail,
   * so nothing more is placed and the answer the loop reaches next is this
   * one (it then only tells). Resolves once committed: results of one turn
   * of the event loop share a commit. A crash before that commit loses the
   * result as one before it arrived would: the task is still live ('offered') in
   * the store, and the next start asks its executor again.
   */
  private async recordResult (run: JobRun, task: TaskRow, result: TaskResult): Promise<void> {
    const rows = run.rows.map(t => t.taskId === task.taskId ? { ...t, state: 'done' as const, outcome: result.outcome } : t)
    const last = !run.signal.aborted && run.inflight.size === 1 && rows.every(t => t.state === 'done' || t.state === 'failed') && everyReplicaHeld(run.job, rows)
    const final = last ? this.decide(run.job, rows) : undefined
    // committed with the other results that arrived in this turn of the event loop: one commit for all of them
    const written = await this.store.completeTaskInGroup(task, result, final != null ? { phase: endPhase(final), final } : undefined)
    replaceRow(run, written.task)
    if (written.finished) run.final = final
  }

  private async runTask (run: JobRun, task: TaskRow): Promise<void> {
    const { job, signal } = run
    const deadline = (job.limits.deadlineMs ?? DEFAULT_JOB_LIMITS.deadlineMs) + 60_000
    // a timer cleared when the task ends, not AbortSignal.timeout: that one lives out its whole
    // deadline (two minutes by default), and thousands of tiny jobs would keep thousands of them
    const overdue = new AbortController()
    const timer = setTimeout(() => { overdue.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError')) }, deadline)
    let declined: OfferDeclinedError | undefined
    try {
      this.emit(job.jobId, 'task')
      const result = await this.network.dispatch(task.executor, this.taskToRun(run, task.taskId), { signal: AbortSignal.any([signal, overdue.signal]) })
      // a result this node cannot store is not the executor's failure: it waits here for the disk
      if (!await this.persist(job.jobId, `the result of task ${task.taskId}`, async () => { await this.recordResult(run, task, result) }, signal)) return
      this.records.resulted(task.executor)
      this.log.info(`job ${job.jobId}: task ${task.taskId} on ${task.executor} (${result.path}) → ${describeOutcome(result.outcome)}`, { job: job.jobId, peer: task.executor })
    } catch (err) {
      if (signal.aborted) return // shutting down: the task stays live ('offered') and resumes at the next start
      if (err instanceof OfferDeclinedError) {
        declined = err
        await this.forgetDeclined(run, task, err)
        return
      }
      // not the job's own outcome (the path broke, the executor crashed under it, the answer did not verify): try elsewhere
      const e = err as Error & { code?: string, phase?: string }
      const code = e.code ?? e.name
      const bad = MISBEHAVIOUR_CODES.has(code)
      if (!await this.persist(job.jobId, `the failure of task ${task.taskId}`, () => { replaceRow(run, this.store.failTask(task, `${code}: ${e.message}`)) }, signal)) return
      // a refused dispatch ran nothing and proves nothing about the executor: offered again, not ranked down
      if (code !== 'DISPATCH_REFUSED') this.records.failed(task.executor, bad)
      this.log.warn(`job ${job.jobId}: task ${task.taskId} on ${task.executor} failed${e.phase != null ? ` at ${e.phase}` : ''}: ${e.message}; ${bad ? 'it gets no further attempt at this job and is ranked down' : 'retrying on another executor'}`, { job: job.jobId, peer: task.executor, phase: e.phase, code: e.code })
    } finally {
      clearTimeout(timer)
      run.inflight.delete(task.taskId)
      this.emit(job.jobId, 'task')
      // told here, stopping or not: the store holds the answer, so no restart resumes the job to tell it
      if (run.final != null) this.tellFinal(run, run.final)
      // a finished task frees a slot on its executor: this job re-evaluates,
      // and the first job in line (not every waiting job) may place a task
      const view = this.network.executors().find(e => e.peerId === task.executor)
      if (view != null && declined != null) this.ledger.declined(view, declined.freeSlots)
      else if (view != null) this.ledger.released(view)
      run.waker.wake('task')
      this.pump()
    }
  }
}

/** CSPRNG bytes for job IDs, taken 8 at a time: one call into the generator per 64 jobs rather than one per job. */
const idBytes = { pool: Buffer.alloc(512), used: 512 }

/** A new job ID: `job-` and 16 hex digits (64 random bits). */
function newJobId (): string {
  if (idBytes.used + 8 > idBytes.pool.length) {
    randomFillSync(idBytes.pool)
    idBytes.used = 0
  }
  const id = `job-${idBytes.pool.toString('hex', idBytes.used, idBytes.used + 8)}`
  idBytes.used += 8
  return id
}

/** The phase a job ends in with `final`: an error when nobody could run it. */
function endPhase (final: JobFinal): 'completed' | 'error' {
  return final.status === 'unavailable' ? 'error' : 'completed'
}

/** Whether each of the job's replicas has a task that did not fail (so none is placed again). */
function everyReplicaHeld (job: JobRow, rows: TaskRow[]): boolean {
  for (let r = 0; r < job.replicas; r++) {
    if (!rows.some(t => t.replica === r && t.state !== 'failed')) return false
  }
  return true
}

/** Puts a task's row as written in place of the one the run held. */
function replaceRow (run: JobRun, row: TaskRow): void {
  const i = run.rows.findIndex(t => t.taskId === row.taskId)
  if (i >= 0) run.rows[i] = row
  else run.rows.push(row)
}

/**
 * A declined offer that rode a dispatch leaves what a declined offer leaves:
 * no task, and the executor not asked again for this job unless it was only busy.
 */
function busyDecline (err: OfferDeclinedError): boolean {
  return err.freeSlots === 0 || BUSY_DECLINES.has(err.decline)
}

export function describeOutcome (o: TaskOutcome): string {
  const parts: string[] = [o.status]
  if (o.exitCode != null) parts.push(`exit ${o.exitCode}`)
  if (o.error != null && o.error !== '') parts.push(o.error)
  parts.push(`output ${o.outputCid.slice(0, 16)}…`, `fuel ${o.fuelUsed}`)
  return parts.join(', ')
}

export type { ExecStatus }

/**
 * The executors a job names (`--executor`), checked: PeerIds, no more than
 * MAX_CHOSEN_EXECUTORS, at least as many as its replicas (each replica runs on
 * a distinct executor), duplicates dropped.
 */
function chosenExecutors (named: string[], replicas: number): string[] {
  const unique = [...new Set(named)]
  if (unique.length === 0 || unique.length > MAX_CHOSEN_EXECUTORS) throw new JobRejectedError(`name 1–${MAX_CHOSEN_EXECUTORS} executors, got ${unique.length}`)
  for (const id of unique) {
    try {
      peerIdFromString(id)
    } catch (err) {
      throw new JobRejectedError(`executor "${id.slice(0, 80)}" is not a PeerId: ${(err as Error).message}`)
    }
  }
  if (unique.length < replicas) throw new JobRejectedError(`${replicas} replicas need ${replicas} distinct executors, but only ${unique.length} are named`)
  return unique
}

/** How the job store keeps a submitted module or input: its bytes, or a marker for a blob file. */
function storedBytes (payload: Payload): Uint8Array | typeof ON_DISK {
  return payload instanceof Uint8Array ? payload : ON_DISK
}
