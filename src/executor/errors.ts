/**
 * Errors of the WebAssembly executor. Preparation errors carry the job status
 * they map to, so the runner turns them into an ExecuteResult without guessing
 * from message text.
 */

import { errorWithCode, WorldComputeError } from '../core/errors.ts'
import type { ExecStatus } from '../core/job.ts'

/**
 * The module bytes are not a usable WebAssembly module: they do not hash to the
 * claimed CID, do not validate, or cannot be parsed. The submitter must send
 * other bytes; running them elsewhere gives the same answer.
 */
export class InvalidModuleError extends WorldComputeError {
  readonly status: ExecStatus = 'invalid_module'
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, 'INVALID_MODULE', options)
  }
}

/**
 * The module is valid WebAssembly but this executor refuses to run it: a
 * forbidden import, opcode or memory kind, a missing `_start`/`memory` export,
 * or a memory larger than the job's cap.
 */
export class ModuleRejectedError extends WorldComputeError {
  readonly status: ExecStatus = 'rejected'
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, 'MODULE_REJECTED', options)
  }
}

/**
 * The binary parser met bytes it cannot decode. `offset` is the byte position in
 * the module, so the message can point at the culprit (as `wasm-objdump` would).
 */
export class WasmParseError extends WorldComputeError {
  readonly offset: number
  constructor (message: string, offset: number, options?: { cause?: unknown }) {
    super(`${message} at byte ${offset}`, 'WASM_PARSE', options)
    this.offset = offset
  }
}

/**
 * The instrumenter produced a module V8 does not accept. This is a bug in the
 * executor, not in the job; it is reported as `failed` with "executor error:".
 */
export class InstrumentationError extends WorldComputeError {
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, 'INSTRUMENTATION_FAILED', options)
  }
}

/** `execute()` was called before `start()` or after `stop()`. */
export class ExecutorNotRunningError extends WorldComputeError {
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, 'EXECUTOR_NOT_RUNNING', options)
  }
}

/** The sandbox process did not come up (spawn failed, or no `ready` in time). */
export class SandboxStartError extends WorldComputeError {
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, 'SANDBOX_START_FAILED', options)
  }
}

/** The caller aborted `execute()` through its AbortSignal; the job's worker is stopped. */
export class JobAbortedError extends WorldComputeError {
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, 'JOB_ABORTED', options)
    // AbortSignal users match on name === 'AbortError' (DOM convention, as js-libp2p does)
    this.name = 'AbortError'
  }
}

/**
 * The bytes on the data socket between the executor and its sandbox do not
 * add up (a frame's length disagrees with its run's input length): a bug on
 * the other side, so the sandbox stops rather than run a job on wrong bytes.
 */
export class DataFrameError extends errorWithCode('SANDBOX_DATA_FRAME') {}
