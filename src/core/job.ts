/**
 * The job vocabulary, shared by executor, codec, protocols, broker, API and CLI.
 *
 * - A **job** is what a submitter asks for: one module, one input, args, env,
 *   limits, and how many replicas must agree.
 * - A **task** is one replica of a job sent to one executor (donor). Its ID
 *   makes dispatch idempotent.
 * - A **receipt** is the executor's signed statement of what a task produced.
 */

/** Final and intermediate states of an execution, as the submitter sees them. */
export const EXEC_STATUSES = [
  'succeeded', // exit code 0
  'failed', // non-zero exit (exitCode set) or a trap (error set)
  'deadline_exceeded',
  'out_of_fuel',
  'output_too_large',
  'invalid_module',
  'rejected' // policy: forbidden import/opcode, limits above the donor's maxima, donor not accepting
] as const
export type ExecStatus = typeof EXEC_STATUSES[number]

/**
 * Codes of a result that is not the job's own outcome. `EXECUTOR_CRASHED`:
 * the executor broke under the job (its sandbox process or a worker thread
 * died, or the sandbox could not be restarted). Such a result says nothing
 * about the job, so it is never counted or compared: the broker runs the task
 * on another executor.
 */
export const EXEC_ERROR_CODES = ['EXECUTOR_CRASHED'] as const
export type ExecErrorCode = typeof EXEC_ERROR_CODES[number]

/** Per-job limits; each is clamped to the donor's maxima, and a request above them is `rejected`. */
export interface JobLimits {
  /** wall-clock deadline for one run, ms */
  deadlineMs: number
  /** linear memory cap, bytes (rounded down to 64 KiB pages) */
  memoryBytes: number
  /** stdout + stderr + the files the job created or changed under its preopens, bytes */
  outputBytes: number
  /** module + input + the files of the preopens, bytes */
  payloadBytes: number
  /** deterministic instruction budget (metered per basic block) */
  fuel: number
  /** deterministic call depth limit */
  maxCallDepth: number
}

export const DEFAULT_JOB_LIMITS: Readonly<JobLimits> = Object.freeze({
  deadlineMs: 60_000,
  memoryBytes: 256 * 1024 * 1024,
  outputBytes: 16 * 1024 * 1024,
  payloadBytes: 64 * 1024 * 1024,
  // about a minute of simple loops at ~1e9 metered blocks/s would need far more;
  // 2^50 keeps the deadline the binding limit for honest programs
  fuel: 2 ** 50,
  // as deep as real recursive programs go (a Rust recursion V8 runs to ~13,900 frames on a main thread);
  // the sandbox's worker stack is sized so that this limit trips before V8's own stack does
  maxCallDepth: 50_000
})

/** What an executor runs: everything needed, bytes included. */
export interface ExecuteRequest {
  jobId: string
  taskId: string
  module: Uint8Array
  /** CIDv1 raw sha2-256 of `module`, as a string; checked before anything runs */
  moduleCid: string
  input: Uint8Array
  /** argv[1..]; argv[0] is the module name */
  args: string[]
  /** `K=V` strings */
  env: string[]
  /** requested limits; missing ones take the defaults */
  limits: Partial<JobLimits>
  /** argv[0] @default 'main.wasm' */
  moduleName?: string
  /**
   * Directories the module sees (`job submit --dir HOST::GUEST`), each
   * preopened at its guest path, readable and writable in an in-memory
   * overlay. Absent or empty: no filesystem (stdin/stdout only).
   */
  preopens?: JobDir[]
}

/**
 * One file of a job's filesystem. `path` is absolute in the guest, '/'-separated
 * and normalised (no '.', '..' or empty segments), e.g. '/data/in/a.txt'.
 */
export interface JobFile {
  path: string
  data: Uint8Array
}

/** A preopened directory: its guest path, its files (any depth), and its empty subdirectories. */
export interface JobDir {
  /** absolute guest path of the preopen, e.g. '/data' */
  guest: string
  /** every regular file under it, paths absolute in the guest and under `guest` */
  files: JobFile[]
  /** subdirectories with no file under them (others are implied by the files' paths) */
  emptyDirs?: string[]
}

export interface ExecuteResult {
  status: ExecStatus
  /** set for `succeeded` (0) and for `failed` by exit */
  exitCode?: number
  /** trap text, policy reason, or why the module is invalid */
  error?: string
  /** set (with status `failed`) when the result is not the job's own outcome; `error` then says what happened */
  errorCode?: ExecErrorCode
  stdout: Uint8Array
  stderr: Uint8Array
  /** metered units consumed (deterministic: equal on every donor for the same job) */
  fuelUsed: number
  durationMs: number
  /** CPU time of the worker thread that prepared and ran the job, ms (this donor's own record; not sent to brokers) */
  cpuTimeMs?: number
  /**
   * Files the job created or changed under any preopen, sorted by path
   * (byte order of the UTF-8 path); absent when the job had no preopens.
   * Their bytes count against `outputBytes` with stdout and stderr.
   */
  files?: JobFile[]
  /** guest paths of files from the job's preopens that the job removed, sorted */
  removedFiles?: string[]
}

/** The fields an executor signs. `executor` is its PeerId. */
export interface ReceiptBody {
  taskId: string
  moduleCid: string
  inputCid: string
  outputCid: string
  status: ExecStatus
  exitCode: number | null
  fuelUsed: number
  executor: string
}

export interface SignedReceipt {
  /** the dag-cbor bytes of the ReceiptBody, exactly as signed */
  body: Uint8Array
  /** Ed25519 signature of `body` by the executor's libp2p key */
  signature: Uint8Array
}

/** Job states the broker moves through; the last three are final. */
export const JOB_STATES = ['queued', 'dispatching', 'running', 'verifying', 'succeeded', 'failed', 'error'] as const
export type JobState = typeof JOB_STATES[number]

/** One replica's part in a job, as `job status` / `job submit --json` show it. */
export interface ReplicaView {
  executor: string
  taskId: string
  path: 'direct' | 'relayed' | null
  state: 'offered' | 'running' | 'done' | 'failed'
  status: ExecStatus | null
  exitCode: number | null
  outputCid: string | null
  fuelUsed: number | null
  receiptVerified: boolean
  failure: string | null
}

/**
 * A job as the API returns it. `status` is `queued`/`running` until the job
 * has a final answer, then the agreed ExecStatus, or `no_agreement` /
 * `unavailable`, or `cancelled` (`job cancel`: its replicas were stopped). Fields tools rely on (the `--json` contract): jobId, status,
 * exitCode, stdout, stderr, outputCid, fuelUsed, durationMs, replicas.
 */
export interface JobView {
  jobId: string
  status: ExecStatus | 'queued' | 'running' | 'no_agreement' | 'unavailable' | 'cancelled'
  final: boolean
  message: string
  exitCode: number | null
  /** trap text or policy reason, when the agreed result has one */
  error: string | null
  /** UTF-8 text of the agreed stdout (present with the full view) */
  stdout?: string
  stderr?: string
  /** present when stdout is not valid UTF-8 */
  stdoutBase64?: string
  stderrBase64?: string
  outputCid: string | null
  fuelUsed: number | null
  /** from acceptance to the final answer (or until now) */
  durationMs: number
  replicasWanted: number
  /** the only executors the job may run on (`--executor`); absent: any the broker finds */
  executors?: string[]
  replicas: ReplicaView[]
  moduleCid: string
  inputCid: string
  createdAt: string
  finishedAt: string | null
  /** CIDv1 dag-cbor of the job's tree manifest, when it was submitted with `--dir` */
  manifestCid?: string
  /**
   * With the full view of a job with `--dir` and an agreed result: the files
   * it created or changed (bytes through the `jobFiles` route), sorted by path
   */
  files?: JobFileView[]
  /** with `files`: guest paths of the files the job removed */
  removedFiles?: string[]
}

/** One output file of a job, as the API lists it. */
export interface JobFileView {
  /** absolute guest path, e.g. '/out/result.txt' */
  path: string
  size: number
  /** CIDv1 raw sha2-256 of its bytes */
  cid: string
}
