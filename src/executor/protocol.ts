/**
 * Messages between the executor (parent process), the sandbox process and its
 * worker threads. Parent ↔ sandbox goes over the fork IPC channel with
 * `serialization: 'advanced'` (structured clone: Uint8Array passes as bytes,
 * not as JSON arrays); sandbox ↔ worker over postMessage, which can also carry
 * a compiled WebAssembly.Module.
 *
 * A job's input and its stdout are not in these messages but for a small
 * input and stdout's last part: they stream on the data socket, in frames
 * (stream-io.ts), while the job runs, so that their copies through both
 * processes can overlap the guest's compute (on another core) instead of
 * coming before and after it.
 */

import type { MessagePort } from 'node:worker_threads'
import type { ExecErrorCode, JobDir, JobLimits } from '../core/job.ts'
import type { ModuleLimits } from './module-limits.ts'
import type { PrepareLimits, PreparedModule } from './prepare.ts'
import type { RunOutcome, RunSpec } from './run-module.ts'

/** What the sandbox process is told once, at its start (JSON in its argv). */
export interface SandboxConfig {
  /** worker threads, the number of jobs run at once */
  workers: number
  /** how long one job's preparation (CID check, validation, metering, compilation) may take */
  prepareTimeoutMs: number
  moduleLimits: ModuleLimits
  /** the most bytes of finished jobs' input buffers kept for the next jobs (InputPool) */
  inputPoolBytes: number
}

/** One job as the sandbox receives it: the request with its limits already resolved. */
export interface SandboxJob {
  runId: number
  jobId: string
  /** the module's bytes; empty when `moduleKept` */
  module: Uint8Array
  moduleCid: string
  /**
   * the bytes are not sent: this sandbox prepared the CID from checked bytes
   * before (its `result` said `prepared`), and the caller gave the same bytes.
   * If its cache no longer holds the preparation, it asks (`module-wanted`).
   */
  moduleKept?: boolean
  /** the input's length: its bytes follow on the data socket, in frames for this run, unless they are in `input` */
  inputLength: number
  /**
   * the input itself, when it is small (the executor's `inlineInputBytes`):
   * one message instead of a message and a frame on another channel
   */
  input?: Uint8Array
  args: string[]
  env: string[]
  moduleName?: string
  limits: JobLimits
  /** the request's preopened directories */
  preopens?: JobDir[]
}

export type ParentMessage =
  | { type: 'run', job: SandboxJob }
  /** the bytes of a `moduleKept` run's module, which the sandbox asked for */
  | { type: 'module', runId: number, bytes: Uint8Array }
  /** the caller gave up on a job: stop its worker; no result is expected */
  | { type: 'cancel', runId: number }
  /** the process is about to be stopped (SIGSTOP): hold every job's timers and answer `suspended` */
  | { type: 'suspend' }
  /** the process was continued (SIGCONT): every job's timers run again for the time they had left */
  | { type: 'resume' }

/** A job's end as the sandbox reports it: the module's own outcome, or (with `errorCode`) the sandbox's failure under it. */
export interface SandboxOutcome extends RunOutcome {
  errorCode?: ExecErrorCode
  /**
   * set by the job's own run: this many bytes of stdout went before on the
   * data socket and go ahead of `stdout` here; unset, any that came are
   * not part of the result (the job ended otherwise: deadline, cancel, crash)
   */
  stdoutStreamed?: number
}

export type SandboxMessage =
  | { type: 'ready', workers: number }
  /** `prepared`: the job's module passed its checks and its preparation is in the sandbox's cache */
  | { type: 'result', runId: number, outcome: SandboxOutcome, prepared?: boolean }
  /** a `moduleKept` run whose preparation is no longer cached: send its bytes (`module`) */
  | { type: 'module-wanted', runId: number }
  /** every job's timers are held: the parent may stop the process now */
  | { type: 'suspended' }

/**
 * One job for a worker: the worker checks the bytes against the CID, then
 * prepares them (or takes `cached`), then runs them. All of that happens off
 * the sandbox's main thread, which keeps every job's timers.
 */
export interface WorkerRequest {
  runId: number
  /** the module as submitted */
  bytes: Uint8Array
  moduleCid: string
  /** the sandbox's cached preparation for this CID under these limits, if it has one */
  cached?: PreparedModule
  /** `bytes` is empty: `cached` was prepared from bytes checked against the CID, and stands for them */
  moduleKept?: boolean
  /** set with `moduleKept` and `cached`: the run's deadline runs from this request, so no `prepared` comes before the result */
  runStarted?: boolean
  prepare: PrepareLimits
  spec: RunSpec
}

export type WorkerMessage =
  /** the worker has loaded its code and listens: jobs sent from now on start at once */
  | { type: 'ready', returns?: MessagePort }
  /** preparation is over and the run begins (its deadline with it); `fresh` is a new entry for the sandbox's cache; not sent for a `runStarted` request */
  | { type: 'prepared', runId: number, fresh?: PreparedModule }
  /** the next part of the job's stdout, flushed while it runs; `taken`: buffers this worker took back so far (`returns`) */
  | { type: 'stdout', runId: number, bytes: Uint8Array, taken?: number }
  /** `stdoutStreamed`: bytes of stdout that went ahead in `stdout` messages */
  | { type: 'done', runId: number, outcome: RunOutcome, stdoutStreamed?: number }
