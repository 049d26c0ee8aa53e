/**
 * The executor: runs WebAssembly jobs in a separate, permission-fenced Node
 * process (sandbox-process.ts) with a pool of worker threads, and turns every
 * way a job can end into an ExecuteResult.
 *
 * `execute()` never throws for a job's own problems: bad limits, bad bytes,
 * traps, deadlines, even a sandbox crash all come back as a status. It throws
 * only for the caller's own actions: calling it when the executor is not
 * started, or aborting it through its signal.
 *
 * If the sandbox process dies or stops answering (a job's preparation budget,
 * its deadline and `hangGraceMs` pass without a word), it is killed, every job it was running
 * is reported `failed` with the code EXECUTOR_CRASHED (the error says what
 * happened), and a new sandbox is started for the queued jobs. No job is
 * silently lost.
 */

import { remember } from '../core/recent.ts'
import { fork, type ChildProcess } from 'node:child_process'
import type { Socket } from 'node:net'
import { availableParallelism } from 'node:os'
import { performance } from 'node:perf_hooks'
import type { ExecErrorCode, ExecStatus, ExecuteRequest, ExecuteResult, JobLimits } from '../core/job.ts'
import { ExecutorNotRunningError, JobAbortedError, SandboxStartError } from './errors.ts'
import { resolveJobLimits, resolveMaxLimits } from './limits.ts'
import { resolveModuleLimits, type ModuleLimits } from './module-limits.ts'
import { memoryPagesFor } from './prepare.ts'
import type { ParentMessage, SandboxConfig, SandboxJob, SandboxMessage, SandboxOutcome } from './protocol.ts'
import { SANDBOX_ENTRY, sandboxExecArgv } from './sandbox-launch.ts'
import { openDataChannel, type DataChannel } from './data-channel.ts'
import { FrameInbox, frameHeader, ReceivedStdout } from './stream-io.ts'
import { checkPreopens, preopenBytes } from './wasi-fs.ts'

export interface ExecutorInit {
  /** jobs run at the same time (worker threads in the sandbox) @default max(1, cores - 1) */
  maxConcurrent?: number
  /** the donor's maxima; a job asking for more is `rejected` @default DEFAULT_JOB_LIMITS */
  maxLimits?: Partial<JobLimits>
  /**
   * how long one job's preparation (CID check, validation, metering,
   * compilation, in the job's worker) may take; a module that takes longer is
   * `rejected` @default 30000
   */
  prepareTimeoutMs?: number
  /** what a module may declare (tables, counts, nesting, metered size); a module over a limit is `rejected` @default DEFAULT_MODULE_LIMITS */
  moduleLimits?: Partial<ModuleLimits>
  /**
   * how long past a job's preparation budget and deadline the sandbox may
   * stay silent before it is presumed hung, killed and restarted @default 10000
   */
  hangGraceMs?: number
  /** how long the sandbox process may take to start and report ready @default 15000 */
  startTimeoutMs?: number
  /**
   * `start()` spawns no sandbox: the first job does, and waits for it (a few
   * hundred ms). Why: an idle donor is then one process instead of two (the
   * sandbox is ~120 MB resident and wakes for its own timers) @default false
   */
  startOnDemand?: boolean
  /**
   * with `startOnDemand`: the sandbox is stopped after this long without a
   * job queued or running (0: never); the next job starts a new one.
   * @default 300000
   */
  idleStopMs?: number
  /**
   * the most bytes of finished jobs' input buffers the sandbox keeps for the
   * next jobs (0: none). Why: a fresh buffer's pages cost about 0.5 ms per MiB
   * on first write, more than the input's copy from the socket; the price is
   * this much memory held while the sandbox is up @default 33554432 (32 MiB)
   */
  inputPoolBytes?: number
  /**
   * inputs of at most this many bytes go in the job's message to the sandbox
   * rather than after it on the data socket: one message and one wake-up of
   * the sandbox instead of two; a big input streams, its copy overlapping the
   * guest's run @default 65536 (64 KiB)
   */
  inlineInputBytes?: number
}

export interface ExecuteOptions {
  /** aborting rejects the call with an AbortError and stops the job's worker */
  signal?: AbortSignal
}

export type ExecutorState = 'stopped' | 'starting' | 'running'

export interface ExecutorStatus {
  state: ExecutorState
  maxConcurrent: number
  queued: number
  running: number
  /** sandbox processes started after a crash or hang */
  restarts: number
  sandboxPid?: number
  /** the sandbox starts at the first job and stops after `idleStopMs` idle: 'stopped' then means "not needed yet" */
  onDemand: boolean
  /** why the last start of the sandbox failed, while it is not running */
  lastStartError?: string
  /** the owner's controls hold every job (the sandbox process is stopped) */
  suspended: boolean
}

/** One sandbox process and what we know about it. */
interface Sandbox {
  child: ChildProcess
  /** our end of the data socket: job inputs out, stdout in, in frames (stream-io.ts) */
  data: Socket
  /**
   * modules this sandbox prepared from checked bytes, by CID: the bytes the
   * caller gave then. A job with the same CID and the same bytes object goes
   * without its bytes (no copy over IPC, no hash in the sandbox). Weakly
   * held: this map never keeps a module in memory that its owner dropped.
   * Least recently used first; at most KEPT_MODULES.
   */
  keptModules: Map<string, WeakRef<Uint8Array>>
  ready: boolean
  /** last few KiB of its stderr, for crash reports */
  stderrTail: string
  /** why we killed it, when we did */
  killReason?: string
  closed: Promise<void>
  /** stopped with SIGSTOP (the donor controls suspend jobs) */
  stopped: boolean
  /** resolves the wait for its `suspended` answer */
  onSuspended?: () => void
}

interface Pending {
  runId: number
  req: ExecuteRequest
  limits: JobLimits
  resolve: (result: ExecuteResult) => void
  reject: (err: Error) => void
  signal?: AbortSignal
  onAbort?: () => void
  sandbox?: Sandbox
  startedAt?: number
  /** time suspended by then (`suspendedMs()`), subtracted from its duration */
  suspendedAtStart?: number
  hangTimer?: NodeJS.Timeout
  /** when the hang timer fires, and what it had left while jobs are suspended */
  hangDueAt?: number
  hangLeftMs?: number
  /** stdout that came ahead of the result, from its first frame on */
  stdout?: ReceivedStdout
  /** the result, held until the stdout it says went ahead has come in on the data socket (another channel) */
  held?: SandboxOutcome & { stdoutStreamed: number }
}

const STDERR_TAIL_BYTES = 4096
/** after an on-demand start failed, offers are declined this long before the next job may try again */
const ON_DEMAND_RETRY_MS = 30_000
/** restart attempts after a crash, and the pause before each */
const RESTART_DELAYS_MS = [0, 250, 1000]
/** how long a sandbox may take to hold its timers before it is stopped all the same */
const SUSPEND_ANSWER_MS = 2000
/** modules remembered per sandbox as kept (the sandbox's preparation cache holds 64 by default) */
const KEPT_MODULES = 64
/** modules whose last streamed stdout size is remembered, as the size a job's stdout buffer starts at */
const STDOUT_SIZE_HINTS = 64

export class Executor {
  readonly maxConcurrent: number
  readonly maxLimits: Readonly<JobLimits>
  readonly moduleLimits: Readonly<ModuleLimits>
  private readonly prepareTimeoutMs: number
  private readonly hangGraceMs: number
  private readonly startTimeoutMs: number
  private state: ExecutorState = 'stopped'
  private sandbox?: Sandbox
  private starting?: Promise<void>
  private restarting?: Promise<void>
  private readonly queue: Pending[] = []
  private readonly running = new Map<number, Pending>()
  private nextRunId = 1
  private restarts = 0
  /** bumped by stop(), so a restart in flight knows it is no longer wanted */
  private generation = 0
  private lastStartError?: Error
  /** when the last on-demand start failed (our clock), for `unavailable()` */
  private lastStartFailedAt = 0
  private readonly startOnDemand: boolean
  private readonly idleStopMs: number
  private readonly inputPoolBytes: number
  private readonly inlineInputBytes: number
  /** the owner called start() and not stop() since: jobs are taken (on demand, the sandbox may still be down) */
  private enabled = false
  private idleTimer?: NodeJS.Timeout
  /** the controls want every job held (setSuspended) */
  private wantSuspended = false
  private suspendedSince?: number
  private suspendedTotalMs = 0
  /** brings the sandbox to the wanted state, one step at a time */
  private converging?: Promise<void>
  /**
   * by module CID, the size of its last stdout that streamed (over one
   * chunk): a job of the same module starts its stdout buffer at that size,
   * so that it need not grow. Least recently used first.
   */
  private readonly stdoutSizes = new Map<string, number>()

  constructor (init: ExecutorInit = {}) {
    this.maxConcurrent = init.maxConcurrent ?? Math.max(1, availableParallelism() - 1)
    if (!Number.isSafeInteger(this.maxConcurrent) || this.maxConcurrent < 1) {
      throw new RangeError(`maxConcurrent must be a positive integer, got ${String(init.maxConcurrent)}`)
    }
    this.maxLimits = Object.freeze(resolveMaxLimits(init.maxLimits))
    this.moduleLimits = Object.freeze(resolveModuleLimits(init.moduleLimits))
    this.prepareTimeoutMs = init.prepareTimeoutMs ?? 30_000
    this.hangGraceMs = init.hangGraceMs ?? 10_000
    this.startTimeoutMs = init.startTimeoutMs ?? 15_000
    this.startOnDemand = init.startOnDemand ?? false
    this.idleStopMs = init.idleStopMs ?? 300_000
    this.inputPoolBytes = init.inputPoolBytes ?? 32 * 1024 * 1024
    this.inlineInputBytes = init.inlineInputBytes ?? 64 * 1024
    const times = [['prepareTimeoutMs', this.prepareTimeoutMs], ['hangGraceMs', this.hangGraceMs], ['startTimeoutMs', this.startTimeoutMs], ['idleStopMs', this.idleStopMs]] as const
    for (const [name, v] of times) {
      if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${name} must be a non-negative integer of milliseconds, got ${String(v)}`)
    }
    for (const [name, v] of [['inputPoolBytes', this.inputPoolBytes], ['inlineInputBytes', this.inlineInputBytes]] as const) {
      if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${name} must be a non-negative integer of bytes, got ${String(v)}`)
    }
  }

  /**
   * Takes jobs from now on: starts the sandbox process and waits until its
   * workers are up — or, with `startOnDemand`, leaves that to the first job.
   * Idempotent.
   */
  async start (): Promise<void> {
    this.enabled = true
    if (this.startOnDemand) return
    await this.launch()
  }

  /**
   * Why jobs should not be offered now, or undefined: with `startOnDemand`,
   * for a while after the sandbox failed to start for a job (the next job
   * after that tries again).
   */
  unavailable (): string | undefined {
    if (!this.startOnDemand || this.state === 'running' || this.lastStartError == null) return undefined
    if (Date.now() - this.lastStartFailedAt > ON_DEMAND_RETRY_MS) return undefined
    return `the executor sandbox did not start for the last job (${this.lastStartError.message}); trying again after ${ON_DEMAND_RETRY_MS / 1000} s`
  }

  /**
   * With `startOnDemand`: a job is coming (an offer was accepted), so the
   * sandbox starts now, overlapping its start with the job's transfer. Does
   * not wait; a start that fails is kept (`status().lastStartError`) and the
   * job, finding no sandbox, tries again and reports it.
   */
  warm (): void {
    if (!this.needsStartForJob()) return
    this.launch().then(() => { this.armIdleStop() }, (err: unknown) => {
      // launch() recorded the error; the job that follows starts again and ends EXECUTOR_CRASHED if that fails too
      this.lastStartError = err instanceof Error ? err : new Error(String(err))
    })
  }

  /** Spawns the sandbox process and waits until its workers are up; joins a start in flight. */
  private async launch (): Promise<void> {
    if (this.state === 'running') return
    if (this.starting !== undefined) return await this.starting
    this.state = 'starting'
    const generation = this.generation
    this.starting = (async () => {
      try {
        const sandbox = await this.spawnFor(generation, 'starting')
        if (sandbox === undefined) return
        this.sandbox = sandbox
        this.state = 'running'
        this.lastStartError = undefined
        this.converge()
      } catch (err) {
        this.state = 'stopped'
        this.lastStartError = err instanceof Error ? err : new Error(String(err))
        throw err
      } finally {
        this.starting = undefined
      }
    })()
    await this.starting
  }

  /**
   * Kills the sandbox process. Jobs still queued or running are reported
   * `failed` ("executor stopped …"). Idempotent; `start()` may be called again.
   */
  async stop (): Promise<void> {
    this.generation++
    this.enabled = false
    clearTimeout(this.idleTimer)
    this.state = 'stopped'
    const sandbox = this.sandbox
    this.sandbox = undefined
    for (const p of [...this.running.values()]) this.settle(p, failure('executor stopped before the job finished'))
    for (const p of this.queue.splice(0)) this.settle(p, failure('executor stopped before the job started'))
    if (sandbox !== undefined) await killSandbox(sandbox, 'executor stopped')
    // a start or restart in flight sees the new generation and kills what it spawned; wait for that
    if (this.starting !== undefined) await this.starting.catch((err: unknown) => { this.lastStartError = err instanceof Error ? err : new Error(String(err)) })
    if (this.restarting !== undefined) await this.restarting
  }

  status (): ExecutorStatus {
    return {
      state: this.state,
      maxConcurrent: this.maxConcurrent,
      queued: this.queue.length,
      running: this.running.size,
      restarts: this.restarts,
      sandboxPid: this.sandbox?.child.pid,
      onDemand: this.startOnDemand,
      ...(this.state !== 'running' && this.lastStartError != null ? { lastStartError: this.lastStartError.message } : {}),
      suspended: this.wantSuspended
    }
  }

  /** The sandbox process's pid, while one is up (diagnostics and tests). */
  get sandboxPid (): number | undefined {
    return this.sandbox?.child.pid
  }

  /**
   * Runs one job. Resolves with its result whatever the job does; queues while
   * all slots are busy. Rejects only if the executor is not running
   * (ExecutorNotRunningError) or the caller aborts (AbortError).
   */
  async execute (req: ExecuteRequest, options: ExecuteOptions = {}): Promise<ExecuteResult> {
    const t0 = performance.now()
    clearTimeout(this.idleTimer)
    // no await unless a start is needed: jobs given one after another are queued in that order, at once
    if (this.needsStartForJob()) {
      const failed = await this.startForJob(req)
      if (failed != null) return { ...failed, durationMs: performance.now() - t0 }
    }
    // the daemon joins the mesh while the sandbox is still starting: a job
    // accepted in that window waits for the start rather than failing
    if (this.state === 'starting' && this.starting !== undefined) {
      await this.starting.catch((err: unknown) => { this.lastStartError = err instanceof Error ? err : new Error(String(err)) })
    }
    if (this.state !== 'running') {
      throw new ExecutorNotRunningError(
        `the executor is ${this.state}; call start() first` +
        (this.lastStartError !== undefined ? ` (the last start failed: ${this.lastStartError.message})` : ''),
        { cause: this.lastStartError }
      )
    }
    const { signal } = options
    if (signal?.aborted === true) throw new JobAbortedError(`job ${String(req?.jobId)} was aborted before it was queued`, { cause: signal.reason })

    const problem = checkRequest(req)
    if (problem !== undefined) return { ...failure(problem, 'rejected'), durationMs: performance.now() - t0 }
    const checked = resolveJobLimits(req.limits, this.maxLimits)
    if (!checked.ok) return { ...failure(checked.reason, 'rejected'), durationMs: performance.now() - t0 }
    const payload = req.module.byteLength + req.input.byteLength + preopenBytes(req.preopens)
    if (payload > checked.limits.payloadBytes) {
      return { ...failure(`module + input + preopened files is ${payload} bytes, above limits.payloadBytes ${checked.limits.payloadBytes}`, 'rejected'), durationMs: performance.now() - t0 }
    }

    return await new Promise<ExecuteResult>((resolve, reject) => {
      const pending: Pending = { runId: this.nextRunId++, req, limits: checked.limits, resolve, reject, signal }
      if (signal !== undefined) {
        pending.onAbort = () => { this.abort(pending) }
        signal.addEventListener('abort', pending.onAbort, { once: true })
      }
      this.queue.push(pending)
      this.pump()
    })
  }

  // ---------------------------------------------------------------------------

  private needsStartForJob (): boolean {
    return this.startOnDemand && this.enabled && this.state !== 'running'
  }

  /**
   * With `startOnDemand`, a job that finds no sandbox starts one and waits
   * for it; a start that fails ends the job as EXECUTOR_CRASHED (this donor's
   * fault, not the job's: the broker tries elsewhere). Undefined: go on.
   */
  private async startForJob (req: ExecuteRequest): Promise<SandboxOutcome | undefined> {
    try {
      await this.launch()
      return undefined
    } catch (err) {
      this.lastStartFailedAt = Date.now()
      return failure(`executor crashed: the sandbox process did not start for job ${String(req?.jobId)}: ${(err as Error).message}`, 'failed', 'EXECUTOR_CRASHED')
    }
  }

  /**
   * With `startOnDemand`: once nothing is queued or running, the sandbox is
   * stopped after `idleStopMs`. One timer per executor, armed only between
   * jobs; unref'd, so it never holds the process open.
   */
  private armIdleStop (): void {
    if (!this.startOnDemand || this.idleStopMs === 0 || this.running.size > 0 || this.queue.length > 0 || this.state !== 'running') return
    clearTimeout(this.idleTimer)
    this.idleTimer = setTimeout(() => { void this.stopIdle() }, this.idleStopMs)
    this.idleTimer.unref()
  }

  private async stopIdle (): Promise<void> {
    const sandbox = this.sandbox
    if (sandbox === undefined || this.state !== 'running' || this.running.size > 0 || this.queue.length > 0) return
    // not a crash: the close handler sees a sandbox that is no longer ours and restarts nothing
    this.sandbox = undefined
    this.state = 'stopped'
    await killSandbox(sandbox, `idle for ${this.idleStopMs} ms: stopped until the next job`)
  }

  private pump (): void {
    const sandbox = this.sandbox
    while (sandbox?.ready === true && this.running.size < this.maxConcurrent && this.queue.length > 0) {
      this.dispatch(sandbox, this.queue.shift() as Pending)
    }
  }

  private dispatch (sandbox: Sandbox, p: Pending): void {
    const { req } = p
    const kept = keptModule(sandbox, req)
    const inline = req.input.byteLength <= this.inlineInputBytes
    const job: SandboxJob = {
      runId: p.runId,
      jobId: req.jobId,
      module: kept ? new Uint8Array(0) : req.module,
      moduleCid: req.moduleCid,
      ...(kept ? { moduleKept: true } : {}),
      inputLength: req.input.byteLength,
      ...(inline && req.input.byteLength > 0 ? { input: req.input } : {}),
      args: [...req.args],
      env: [...req.env],
      moduleName: req.moduleName,
      limits: p.limits,
      preopens: req.preopens?.map(d => ({ ...d, files: d.files.map(f => ({ path: f.path, data: f.data })) }))
    }
    p.sandbox = sandbox
    p.startedAt = performance.now()
    p.suspendedAtStart = this.suspendedMs()
    this.running.set(p.runId, p)
    p.hangLeftMs = this.prepareTimeoutMs + p.limits.deadlineMs + this.hangGraceMs
    if (!this.wantSuspended) this.armHang(p)
    this.sendTo(sandbox, { type: 'run', job })
    if (!inline && !sandbox.data.destroyed) {
      // written from the caller's buffer as the sandbox reads (no copy here): the caller does not change it meanwhile
      sandbox.data.cork()
      sandbox.data.write(frameHeader(p.runId, req.input.byteLength))
      sandbox.data.write(req.input)
      sandbox.data.uncork()
    }
  }

  /** The hang timer for the time `p` has left; held while jobs are suspended, as the sandbox holds their deadlines. */
  private armHang (p: Pending): void {
    const sandbox = p.sandbox
    const silentFor = this.prepareTimeoutMs + p.limits.deadlineMs + this.hangGraceMs
    const left = p.hangLeftMs ?? silentFor
    p.hangDueAt = performance.now() + left
    p.hangTimer = setTimeout(() => {
      if (this.running.get(p.runId) !== p || sandbox === undefined) return
      // the sandbox enforces deadlines itself; silence this long (suspended time aside) means it is wedged
      void killSandbox(sandbox, `the sandbox process did not answer within ${silentFor} ms for job ${p.req.jobId} (deadline ${p.limits.deadlineMs} ms, suspended time aside); it was killed`)
    }, left)
  }

  /**
   * Suspends (true) or resumes (false) every job: the sandbox process is
   * stopped with SIGSTOP after it holds its jobs' timers, and continued with
   * SIGCONT, so suspended time counts against no deadline. Fuel is unaffected.
   * Jobs queued meanwhile are sent and held; a sandbox started meanwhile is
   * suspended at once. Idempotent; never throws.
   */
  setSuspended (suspended: boolean): void {
    if (suspended === this.wantSuspended) return
    this.wantSuspended = suspended
    const now = performance.now()
    if (suspended) {
      this.suspendedSince = now
      for (const p of this.running.values()) {
        clearTimeout(p.hangTimer)
        p.hangLeftMs = Math.max(0, (p.hangDueAt ?? now) - now)
      }
    } else {
      this.suspendedTotalMs += now - (this.suspendedSince ?? now)
      this.suspendedSince = undefined
      for (const p of this.running.values()) this.armHang(p)
    }
    this.converge()
  }

  /** Milliseconds spent suspended since this executor was made: a running total, for guards that count running time only. */
  suspendedMs (): number {
    return this.suspendedTotalMs + (this.suspendedSince !== undefined ? performance.now() - this.suspendedSince : 0)
  }

  /** Starts bringing the sandbox to the wanted state unless that is already under way. */
  private converge (): void {
    this.converging ??= this.convergeSteps().finally(() => { this.converging = undefined })
  }

  private async convergeSteps (): Promise<void> {
    for (;;) {
      const sandbox = this.sandbox
      if (sandbox === undefined || sandbox.stopped === this.wantSuspended || sandbox.killReason !== undefined) return
      if (this.wantSuspended) {
        // the timers first: a stopped process's timers would all fire the moment it continues
        await this.askToHold(sandbox)
        if (this.sandbox !== sandbox || !this.wantSuspended) continue
        // a process that is gone takes no signal: its 'close' handler reports its jobs and a new one is brought here
        if (!signalSandbox(sandbox, 'SIGSTOP')) return
        sandbox.stopped = true
      } else {
        if (!signalSandbox(sandbox, 'SIGCONT')) return
        sandbox.stopped = false
        this.sendTo(sandbox, { type: 'resume' })
      }
    }
  }

  /** Asks the sandbox to hold its timers and waits for its answer (or SUSPEND_ANSWER_MS: a wedged one is stopped all the same). */
  private async askToHold (sandbox: Sandbox): Promise<void> {
    await new Promise<void>(resolve => {
      const timer = setTimeout(done, SUSPEND_ANSWER_MS)
      function done (): void {
        clearTimeout(timer)
        sandbox.onSuspended = undefined
        resolve()
      }
      sandbox.onSuspended = done
      this.sendTo(sandbox, { type: 'suspend' })
      void sandbox.closed.then(done)
    })
  }

  private sendTo (sandbox: Sandbox, message: ParentMessage): void {
    if (!sandbox.child.connected) return // its 'close' handler reports the jobs
    sandbox.child.send(message, (err) => {
      // the channel broke: the process is dying, and its 'close' handler reports the running jobs
      if (err != null && sandbox.killReason === undefined) sandbox.killReason = `could not send to the sandbox process: ${err.message}`
    })
  }

  private abort (p: Pending): void {
    const queued = this.queue.indexOf(p)
    if (queued >= 0) {
      this.queue.splice(queued, 1)
    } else if (this.running.get(p.runId) === p) {
      this.running.delete(p.runId)
      clearTimeout(p.hangTimer)
      if (p.sandbox !== undefined) this.sendTo(p.sandbox, { type: 'cancel', runId: p.runId })
      this.pump()
    } else {
      return // already settled
    }
    this.detachAbort(p)
    p.reject(new JobAbortedError(`job ${p.req.jobId} was aborted by the caller`, { cause: p.signal?.reason }))
    this.armIdleStop()
  }

  private detachAbort (p: Pending): void {
    if (p.onAbort !== undefined) p.signal?.removeEventListener('abort', p.onAbort)
  }

  private settle (p: Pending, outcome: SandboxOutcome): void {
    this.running.delete(p.runId)
    clearTimeout(p.hangTimer)
    this.detachAbort(p)
    const suspended = this.suspendedMs() - (p.suspendedAtStart ?? 0)
    const durationMs = p.startedAt === undefined ? 0 : Math.max(0, performance.now() - p.startedAt - suspended)
    p.resolve({ ...normaliseOutcome(outcome), durationMs })
    this.armIdleStop()
  }

  /** A new sandbox for the executor's `generation`; undefined (and the sandbox killed) when stop() came while it started. */
  private async spawnFor (generation: number, doing: 'starting' | 'restarting'): Promise<Sandbox | undefined> {
    const sandbox = await this.spawnSandbox()
    if (generation === this.generation) return sandbox
    await killSandbox(sandbox, `executor stopped while ${doing}`)
    return undefined
  }

  private async spawnSandbox (): Promise<Sandbox> {
    const config: SandboxConfig = { workers: this.maxConcurrent, prepareTimeoutMs: this.prepareTimeoutMs, moduleLimits: this.moduleLimits, inputPoolBytes: this.inputPoolBytes }
    let sandbox: Sandbox | undefined
    const frames = new FrameInbox({
      open: (runId, length) => sandbox === undefined ? undefined : this.openStdout(sandbox, runId, length),
      filled: (runId, bytes) => { if (sandbox !== undefined) this.takeStdout(sandbox, runId, bytes) }
    })
    const { ours: data, theirs } = await this.openData(frames, () => sandbox)
    const child = fork(SANDBOX_ENTRY, [JSON.stringify(config)], {
      execPath: process.execPath,
      execArgv: sandboxExecArgv({ maxMemoryPages: memoryPagesFor(this.maxLimits.memoryBytes), maxTableEntries: this.moduleLimits.maxTableEntries }),
      serialization: 'advanced',
      // the data socket last (SANDBOX_DATA_FD): one connected socket carries both ways
      stdio: ['ignore', 'ignore', 'pipe', 'ipc', theirs],
      // nothing from our environment (tokens, NODE_OPTIONS) reaches the sandbox
      env: {}
    })
    // the sandbox has its own copy of that end: ours would keep the socket open past its death
    theirs.destroy()
    let markClosed: () => void = () => {}
    sandbox = { child, data, keptModules: new Map(), ready: false, stopped: false, stderrTail: '', closed: new Promise<void>(resolve => { markClosed = resolve }) }
    return await this.awaitReady(sandbox, child, markClosed)
  }

  /** The data socket for a sandbox about to start: its reads go where `frames` says. */
  private async openData (frames: FrameInbox, current: () => Sandbox | undefined): Promise<DataChannel> {
    try {
      return await openDataChannel({
        buffer: () => frames.next(),
        callback: (n: number) => {
          try {
            frames.filled(n)
          } catch (err) {
            const sandbox = current()
            if (sandbox !== undefined) void killSandbox(sandbox, `the stdout frames from the sandbox process do not add up (${err instanceof Error ? err.message : String(err)}); it was killed`)
          }
          return true
        }
      })
    } catch (err) {
      throw new SandboxStartError(`the executor sandbox process did not start: its data socket could not be made: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
    }
  }

  private async awaitReady (sandbox: Sandbox, child: ChildProcess, markClosed: () => void): Promise<Sandbox> {
    const { data } = sandbox
    child.stderr?.setEncoding('utf8')
    child.stderr?.on('data', (chunk: string) => {
      sandbox.stderrTail = (sandbox.stderrTail + chunk).slice(-STDERR_TAIL_BYTES)
    })
    child.on('message', (msg: SandboxMessage) => { this.onSandboxMessage(sandbox, msg) })
    // the socket breaks when the process dies: its 'close' handler reports the running jobs
    data.on('error', (err) => { sandbox.killReason ??= `the data socket to the sandbox process failed: ${err.message}` })

    return await new Promise<Sandbox>((resolve, reject) => {
      let settled = false
      const fail = (why: string, cause?: unknown): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        void killSandbox(sandbox, why)
        reject(new SandboxStartError(`the executor sandbox process did not start: ${why}${stderrNote(sandbox)}`, { cause }))
      }
      const timer = setTimeout(() => { fail(`no "ready" within ${this.startTimeoutMs} ms`) }, this.startTimeoutMs)
      // 'error' also fires later if a kill or a send fails; without a listener it would throw in this process
      child.on('error', (err) => {
        if (!settled) fail(`spawn failed: ${err.message}`, err)
        else sandbox.killReason ??= `the sandbox process failed: ${err.message}`
      })
      // the data socket is ours, not child_process's: its last frames may still be read after the process is gone
      child.on('close', (code, signal) => { afterClose(data, () => {
        markClosed()
        if (!settled) {
          fail(describeExit(code, signal))
          return
        }
        this.onSandboxClosed(sandbox, code, signal)
      }) })
      child.on('message', (msg: SandboxMessage) => {
        if (msg.type !== 'ready' || settled) return
        settled = true
        clearTimeout(timer)
        sandbox.ready = true
        resolve(sandbox)
      })
    })
  }

  private onSandboxMessage (sandbox: Sandbox, msg: SandboxMessage): void {
    if (msg.type === 'suspended') sandbox.onSuspended?.()
    if (msg.type !== 'result' && msg.type !== 'module-wanted') return
    const p = this.running.get(msg.runId)
    if (p === undefined || p.sandbox !== sandbox) return // aborted, or from a sandbox we gave up on
    if (msg.type === 'module-wanted') {
      sandbox.keptModules.delete(p.req.moduleCid)
      this.sendTo(sandbox, { type: 'module', runId: p.runId, bytes: p.req.module })
      return
    }
    if (msg.prepared === true) keepModule(sandbox, p.req)
    const { stdoutStreamed } = msg.outcome
    if (stdoutStreamed !== undefined && stdoutStreamed > streamedSize(p)) {
      p.held = { ...msg.outcome, stdoutStreamed }
      return
    }
    this.finish(p, msg.outcome)
  }

  private finish (p: Pending, outcome: SandboxOutcome): void {
    this.settle(p, this.withStreamedStdout(p, outcome))
    this.pump()
  }

  /** Where a frame of a running job's stdout goes: the rest of its stdout so far; none (read and dropped) for a job no longer running. */
  private openStdout (sandbox: Sandbox, runId: number, length: number): Uint8Array | undefined {
    const p = this.running.get(runId)
    if (p === undefined || p.sandbox !== sandbox) return undefined // aborted, or from a sandbox we gave up on
    p.stdout ??= new ReceivedStdout(p.limits.outputBytes, this.stdoutSizes.get(p.req.moduleCid))
    const into = p.stdout.reserve(length)
    // the worker's shim stops at the cap: more than that means the sandbox is not the code we started
    if (into === undefined) void killSandbox(sandbox, `the sandbox process sent more stdout for job ${p.req.jobId} than its cap of ${p.limits.outputBytes} bytes; it was killed`)
    return into
  }

  /** A frame of a running job's stdout, all read; one for a job no longer running is dropped. */
  private takeStdout (sandbox: Sandbox, runId: number, bytes: Uint8Array): void {
    const p = this.running.get(runId)
    if (p?.stdout === undefined || p.sandbox !== sandbox) return // aborted while its frame was read
    p.stdout.commit(bytes.byteLength)
    if (p.held !== undefined && p.stdout.size >= p.held.stdoutStreamed) this.finish(p, p.held)
  }

  /** The outcome with the stdout that streamed ahead of it put back in front, if the job's own run sent it. */
  private withStreamedStdout (p: Pending, outcome: SandboxOutcome): SandboxOutcome {
    const { stdoutStreamed, ...rest } = outcome
    if (stdoutStreamed === undefined) return rest
    if (stdoutStreamed !== streamedSize(p)) {
      return failure(`executor crashed: the sandbox reported ${stdoutStreamed} bytes of stdout sent ahead of job ${p.req.jobId}'s result, ${streamedSize(p)} arrived`, 'failed', 'EXECUTOR_CRASHED')
    }
    const tail = plainBytes(rest.stdout)
    if (p.stdout === undefined) return { ...rest, stdout: tail }
    const stdout = p.stdout.finish(tail)
    remember(this.stdoutSizes, p.req.moduleCid, stdout.byteLength, STDOUT_SIZE_HINTS)
    return { ...rest, stdout }
  }

  private onSandboxClosed (sandbox: Sandbox, code: number | null, signal: NodeJS.Signals | null): void {
    const why = sandbox.killReason ?? `the sandbox process ${describeExit(code, signal)}`
    for (const p of [...this.running.values()]) {
      if (p.sandbox === sandbox) this.settle(p, failure(`executor crashed: ${why}${stderrNote(sandbox)}`, 'failed', 'EXECUTOR_CRASHED'))
    }
    if (this.sandbox !== sandbox) return // stopped or already replaced
    this.sandbox = undefined
    if (this.state === 'running') {
      this.restarting = this.restart().finally(() => { this.restarting = undefined })
    }
  }

  private async restart (): Promise<void> {
    const generation = this.generation
    let lastError: Error | undefined
    for (const delay of RESTART_DELAYS_MS) {
      if (delay > 0) await new Promise(resolve => setTimeout(resolve, delay))
      if (generation !== this.generation) return
      try {
        const sandbox = await this.spawnFor(generation, 'restarting')
        if (sandbox === undefined) return
        this.sandbox = sandbox
        this.restarts++
        this.converge()
        this.pump()
        this.armIdleStop()
        return
      } catch (err) {
        lastError = err instanceof Error ? err : new Error(String(err))
      }
    }
    // give up: nothing can run the queued jobs; report them and let the owner call start() again
    this.state = 'stopped'
    this.lastStartError = lastError
    for (const p of this.queue.splice(0)) {
      this.settle(p, failure(`executor crashed: the sandbox process could not be restarted: ${lastError?.message ?? 'unknown error'}`, 'failed', 'EXECUTOR_CRASHED'))
    }
  }
}

async function killSandbox (sandbox: Sandbox, reason: string): Promise<void> {
  if (sandbox.child.pid === undefined) return // never spawned: there is nothing to kill and no 'close' to wait for
  if (sandbox.child.exitCode === null && sandbox.child.signalCode === null) {
    sandbox.killReason ??= reason
    // SIGKILL: the sandbox holds no state worth a graceful shutdown, and a wedged one would ignore SIGTERM
    sandbox.child.kill('SIGKILL')
  }
  await sandbox.closed
}

/** Bytes of `p`'s stdout that came in frames so far. */
function streamedSize (p: Pending): number {
  return p.stdout?.size ?? 0
}

/** Whether `req`'s module may go without its bytes: the sandbox prepared its CID from these very bytes. */
function keptModule (sandbox: Sandbox, req: ExecuteRequest): boolean {
  const bytes = sandbox.keptModules.get(req.moduleCid)
  if (bytes?.deref() !== req.module) return false
  // most recently used last
  sandbox.keptModules.delete(req.moduleCid)
  sandbox.keptModules.set(req.moduleCid, bytes)
  return true
}

/**
 * The sandbox prepared `req`'s module from its bytes, checked against the CID.
 * The same bytes object given again is taken to hold the same bytes: callers
 * do not change a module after handing it over (the dispatch protocol hands
 * over its cached, checked copy).
 */
function keepModule (sandbox: Sandbox, req: ExecuteRequest): void {
  remember(sandbox.keptModules, req.moduleCid, new WeakRef(req.module), KEPT_MODULES)
}

/** Sends a stop or continue signal; false when the process is gone (its 'close' handler reports its jobs). */
function signalSandbox (sandbox: Sandbox, signal: 'SIGSTOP' | 'SIGCONT'): boolean {
  if (sandbox.child.exitCode !== null || sandbox.child.signalCode !== null) return false
  return sandbox.child.kill(signal)
}

/** Calls `then` once `socket` is closed (at once if it is); its peer has gone, so the rest of its bytes are read first. */
function afterClose (socket: Socket, then: () => void): void {
  if (socket.closed) then()
  else socket.once('close', then)
}

function describeExit (code: number | null, signal: NodeJS.Signals | null): string {
  return signal !== null ? `was killed by ${signal}` : `exited with code ${String(code)}`
}

/**
 * What the sandbox's stderr says about its death, fit for a result that leaves
 * this machine: the lines that name the error, without native stack traces,
 * heap statistics or the absolute paths of this install.
 */
function stderrNote (sandbox: Sandbox): string {
  const reason = crashReason(sandbox.stderrTail)
  return reason === '' ? '' : `; it reported: ${reason}`
}

export function crashReason (stderr: string): string {
  const lines = stderr.split('\n').map(l => l.trim())
  const cut = lines.findIndex(l => l.startsWith('----- Native stack trace'))
  const kept = (cut >= 0 ? lines.slice(0, cut) : lines)
    .filter(l => l !== '' && !/^at\s/.test(l) && !/^\d+:\s/.test(l) && !/^\[\d+:0x[0-9a-f]+\]/.test(l) && !/^(node:internal|file:\/\/|Node\.js v)/.test(l))
    .map(l => l.replace(/(file:\/\/)?(\/[^\s:'"()]+)+/g, '<path>'))
  return kept.slice(-3).join(' ').slice(-512)
}

function failure (error: string, status: ExecStatus = 'failed', errorCode?: ExecErrorCode): SandboxOutcome {
  return { status, error, ...(errorCode != null ? { errorCode } : {}), stdout: new Uint8Array(0), stderr: new Uint8Array(0), fuelUsed: 0 }
}

/** Plain Uint8Arrays (IPC may hand back Buffers) and no undefined keys. */
function normaliseOutcome (o: SandboxOutcome): Omit<ExecuteResult, 'durationMs'> {
  const out: Omit<ExecuteResult, 'durationMs'> = {
    status: o.status,
    stdout: plainBytes(o.stdout),
    stderr: plainBytes(o.stderr),
    fuelUsed: o.fuelUsed
  }
  if (o.exitCode !== undefined) out.exitCode = o.exitCode
  if (o.error !== undefined) out.error = o.error
  if (o.errorCode !== undefined) out.errorCode = o.errorCode
  if (o.files !== undefined) out.files = o.files.map(f => ({ path: f.path, data: plainBytes(f.data) }))
  if (o.removedFiles !== undefined) out.removedFiles = o.removedFiles
  if (o.cpuTimeMs !== undefined) out.cpuTimeMs = o.cpuTimeMs
  return out
}

function plainBytes (b: Uint8Array): Uint8Array {
  return b.constructor === Uint8Array ? b : new Uint8Array(b.buffer, b.byteOffset, b.byteLength)
}

/** A request whose shape is wrong is the submitter's problem: `rejected` with the reason. */
function checkRequest (req: ExecuteRequest): string | undefined {
  if (req === null || typeof req !== 'object') return 'the request is not an object'
  if (typeof req.jobId !== 'string' || req.jobId === '') return 'jobId must be a non-empty string'
  if (!(req.module instanceof Uint8Array)) return 'module must be a Uint8Array of WebAssembly bytes'
  if (typeof req.moduleCid !== 'string') return 'moduleCid must be a string (CIDv1 raw sha2-256, base32)'
  if (!(req.input instanceof Uint8Array)) return 'input must be a Uint8Array'
  if (!Array.isArray(req.args) || !req.args.every(a => typeof a === 'string' && !a.includes('\0'))) {
    return 'args must be an array of strings without NUL characters'
  }
  if (!Array.isArray(req.env) || !req.env.every(e => typeof e === 'string' && !e.includes('\0') && e.indexOf('=') > 0)) {
    return 'env must be an array of "KEY=value" strings without NUL characters'
  }
  if (req.moduleName !== undefined && (typeof req.moduleName !== 'string' || req.moduleName.includes('\0'))) {
    return 'moduleName must be a string without NUL characters'
  }
  if (req.limits !== undefined && (req.limits === null || typeof req.limits !== 'object')) return 'limits must be an object'
  if (req.preopens !== undefined) return checkPreopens(req.preopens)
  return undefined
}
