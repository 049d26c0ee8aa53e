/**
 * Messages between the executor (parent process), the sandbox process and its
 * worker threads. Parent ↔ sandbox goes over the fork IPC channel with
 * `serialization: 'advanced'` (structured clone: Uint8Array passes as bytes,
 * not as JSON arrays); sandbox ↔ worker over postMessage, which can also carry
 * a compiled WebAssembly.Module.
 */

import type { ExecErrorCode, JobLimits } from '../core/job.ts'
import type { RunOutcome, RunSpec } from './run-module.ts'

/** One job as the sandbox receives it: the request with its limits already resolved. */
export interface SandboxJob {
  runId: number
  jobId: string
  module: Uint8Array
  moduleCid: string
  input: Uint8Array
  args: string[]
  env: string[]
  moduleName?: string
  limits: JobLimits
}

export type ParentMessage =
  | { type: 'run', job: SandboxJob }
  /** the caller gave up on a job: stop its worker; no result is expected */
  | { type: 'cancel', runId: number }

/** A job's end as the sandbox reports it: the module's own outcome, or (with `errorCode`) the sandbox's failure under it. */
export interface SandboxOutcome extends RunOutcome {
  errorCode?: ExecErrorCode
}

export type SandboxMessage =
  | { type: 'ready', workers: number }
  | { type: 'result', runId: number, outcome: SandboxOutcome }

export interface WorkerRequest {
  runId: number
  module: WebAssembly.Module
  spec: RunSpec
}

export type WorkerMessage =
  /** the worker has loaded its code and listens: jobs sent from now on start at once */
  | { type: 'ready' }
  | { type: 'done', runId: number, outcome: RunOutcome }
