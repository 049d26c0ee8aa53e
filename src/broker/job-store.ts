import { chmodSync, closeSync, openSync } from 'node:fs'
import { DatabaseSync, type StatementSync } from 'node:sqlite'
import { encodeOutputFiles } from '../codec/manifest.ts'
import { WorldComputeError } from '../core/errors.ts'
import { inTransaction } from '../core/sqlite.ts'
import type { AddressedTree, OutputFiles } from '../codec/manifest.ts'
import type { ExecStatus, JobLimits } from '../core/job.ts'

/**
 * Durable job state: every accepted job, its blobs and its tasks live in
 * SQLite in the data directory, written before anything is acknowledged, so a
 * killed daemon resumes every job it accepted (nothing lost, nothing run as
 * two different jobs). node:sqlite (built into Node 24) rather than a native
 * addon: nothing to compile, and WAL mode gives crash-safe commits.
 */

/**
 * A job's module, input or directory file held as a blob file
 * (broker/blob-store.ts) rather than in the blobs table: its row is a marker
 * with no bytes, so the job's references, and retention, work the same for
 * both.
 */
export const ON_DISK: unique symbol = Symbol('on disk')
export type StoredBytes = Uint8Array | typeof ON_DISK

export type JobPhase = 'queued' | 'running' | 'completed' | 'error'
/**
 * A task is 'offered' from its placement until its result or failure is
 * stored: its offer travels with its dispatch, and the executor answers only
 * with the result, so nothing marks the moment it starts to run. 'running'
 * is never written; it stays in the type, live like 'offered' wherever it is
 * read, because the replica state of `job status --json` names it.
 */
export type TaskState = 'offered' | 'running' | 'done' | 'failed'

export interface JobSpec {
  jobId: string
  moduleCid: string
  inputCid: string
  moduleName: string
  args: string[]
  env: string[]
  limits: Partial<JobLimits>
  replicas: number
  /** the only executors the job may run on (`--executor`); absent: any */
  executors?: string[]
  /** CIDv1 dag-cbor of the job's tree manifest (`--dir`), stored as a blob with the files' blobs; absent: no directories */
  manifestCid?: string
}

export interface TaskOutcome {
  status: ExecStatus
  exitCode?: number
  error?: string
  outputCid: string
  fuelUsed: number
  durationMs: number
  receiptVerified: boolean
  stdoutSize: number
  stderrSize: number
}

/** What an executor answered for a task, as the store records it. */
export interface TaskResult {
  path?: 'direct' | 'relayed'
  outcome: TaskOutcome
  receipt: Uint8Array
  receiptSignature: Uint8Array
  stdout: Uint8Array
  stderr: Uint8Array
  /** for a job with directories: the files it wrote and removed */
  files?: OutputFiles
}

/** A task's row as `completeTask` wrote it, and whether the job's final answer was written with it. */
export interface ResultWritten {
  task: TaskRow
  finished: boolean
}

/** A result waiting for its group's commit, and its caller's promise. */
interface GroupedResult {
  task: TaskRow
  result: TaskResult
  end?: JobEnd
  resolve: (written: ResultWritten) => void
  reject: (err: unknown) => void
}

/** A job's final answer and the phase it ends in. */
export interface JobEnd {
  phase: 'completed' | 'error'
  final: JobFinal
}

export interface TaskRow {
  taskId: string
  jobId: string
  replica: number
  attempt: number
  executor: string
  path: 'direct' | 'relayed' | null
  state: TaskState
  outcome: TaskOutcome | null
  failure: string | null
  receipt: Uint8Array | null
  receiptSignature: Uint8Array | null
  stdout: Uint8Array | null
  stderr: Uint8Array | null
  /** for a job with directories: the output files document (codec/manifest.ts `encodeOutputFiles`) */
  files: Uint8Array | null
  createdAt: string
  updatedAt: string
}

export interface JobFinal {
  status: ExecStatus | 'no_agreement' | 'unavailable' | 'cancelled'
  exitCode?: number
  /** trap text or policy reason of the agreed result */
  error?: string
  outputCid?: string
  fuelUsed?: number
  agreeing: number
  message: string
}

export interface JobRow extends JobSpec {
  phase: JobPhase
  final: JobFinal | null
  createdAt: string
  updatedAt: string
  finishedAt: string | null
}

/** A jobs row as selected with JOB_COLUMNS: the JSON columns still text. */
type RawJob = Omit<JobRow, 'args' | 'env' | 'limits' | 'final' | 'executors' | 'manifestCid'> & { args: string, env: string, limits: string, final: string | null, executors: string | null, manifestCid: string | null }

/** A tasks row as selected with TASK_COLUMNS: the outcome still JSON text. */
type RawTask = Omit<TaskRow, 'outcome'> & { outcome: string | null }

/** The columns under the names of the row types, so reading a row converts only its JSON and blob columns. */
const JOB_COLUMNS = `job_id AS jobId, module_cid AS moduleCid, input_cid AS inputCid, module_name AS moduleName, args, env, limits, replicas, executors, manifest_cid AS manifestCid,
  phase, final, created_at AS createdAt, updated_at AS updatedAt, finished_at AS finishedAt`
const TASK_COLUMNS = `task_id AS taskId, job_id AS jobId, replica, attempt, executor, path, state, outcome, failure, receipt,
  receipt_signature AS receiptSignature, stdout, stderr, files, created_at AS createdAt, updated_at AS updatedAt`

const SCHEMA = `
CREATE TABLE IF NOT EXISTS blobs (
  cid TEXT PRIMARY KEY,
  bytes BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
  job_id TEXT PRIMARY KEY,
  module_cid TEXT NOT NULL REFERENCES blobs(cid),
  input_cid TEXT NOT NULL REFERENCES blobs(cid),
  module_name TEXT NOT NULL,
  args TEXT NOT NULL,
  env TEXT NOT NULL,
  limits TEXT NOT NULL,
  replicas INTEGER NOT NULL,
  phase TEXT NOT NULL,
  final TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  finished_at TEXT
);
-- no index on phase: only a start-up reads by it (one scan of the kept jobs),
-- while each job's insert, start and finish would write its pages again
DROP INDEX IF EXISTS jobs_phase;
-- the blobs of a job's tree (its manifest and files): what retention must keep while the job is kept
CREATE TABLE IF NOT EXISTS job_tree_blobs (
  job_id TEXT NOT NULL,
  cid TEXT NOT NULL,
  PRIMARY KEY (job_id, cid)
);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs(finished_at);
CREATE TABLE IF NOT EXISTS tasks (
  task_id TEXT PRIMARY KEY,
  job_id TEXT NOT NULL REFERENCES jobs(job_id),
  replica INTEGER NOT NULL,
  attempt INTEGER NOT NULL,
  executor TEXT NOT NULL,
  path TEXT,
  state TEXT NOT NULL,
  outcome TEXT,
  failure TEXT,
  receipt BLOB,
  receipt_signature BLOB,
  stdout BLOB,
  stderr BLOB,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_job ON tasks(job_id);
`

function now (): string {
  return new Date().toISOString()
}

/**
 * The job store could not read or write its database: a fault of this node
 * (its disk, its file), never of a job or of an executor. `path` names the
 * database file.
 */
export class JobStoreError extends WorldComputeError {
  readonly path: string
  constructor (message: string, code: string, path: string, options?: { cause?: unknown }) {
    super(message, code, options)
    this.path = path
  }
}

/** The disk holding the job store is full (SQLITE_FULL, ENOSPC): writes succeed again once there is room. */
export class JobStoreFullError extends JobStoreError {
  constructor (path: string, options?: { cause?: unknown }) {
    super(`the disk holding the job store ${path} is full: free space on it (the store carries on by itself once it can write again)`, 'STORE_FULL', path, options)
  }
}

/** The file is not an SQLite database, or a damaged one. */
export class JobStoreCorruptError extends JobStoreError {
  constructor (path: string, options?: { cause?: unknown }) {
    super(`the job store ${path} is not a readable SQLite database (${causeText(options?.cause)}): move it aside, or restore it from a backup, and start again (the jobs in it are lost)`, 'STORE_CORRUPT', path, options)
  }
}

/** The database cannot be opened or written for another reason: a directory in its place, permissions, an I/O error. */
export class JobStoreUnavailableError extends JobStoreError {
  constructor (path: string, options?: { cause?: unknown }) {
    super(`cannot use the job store ${path} (${causeText(options?.cause)}): check that it is a regular file this user can read and write, on a disk that works`, 'STORE_UNAVAILABLE', path, options)
  }
}

function causeText (cause: unknown): string {
  return cause instanceof Error ? cause.message : String(cause)
}

/** SQLite's primary result codes (the low byte of an extended one) that the store names. */
const SQLITE_FULL = 13
const SQLITE_CORRUPT = 11
const SQLITE_NOTADB = 26

/** A node:sqlite or file-system error, as the job store error it means. */
export function jobStoreError (err: unknown, path: string): JobStoreError {
  if (err instanceof JobStoreError) return err
  const e = err as { errcode?: unknown, code?: unknown }
  const primary = typeof e.errcode === 'number' ? e.errcode & 0xff : undefined
  if (primary === SQLITE_FULL || e.code === 'ENOSPC' || e.code === 'EDQUOT') return new JobStoreFullError(path, { cause: err })
  if (primary === SQLITE_CORRUPT || primary === SQLITE_NOTADB) return new JobStoreCorruptError(path, { cause: err })
  return new JobStoreUnavailableError(path, { cause: err })
}

/**
 * Creates the database file readable by this user only before SQLite opens
 * it (it holds every submitted module and result); SQLite gives the -wal and
 * -shm files the database file's mode. Files made by an older version keep
 * theirs unless narrowed here.
 */
function createPrivate (path: string): void {
  closeSync(openSync(path, 'a', 0o600))
  for (const file of [path, `${path}-wal`, `${path}-shm`]) {
    try {
      chmodSync(file, 0o600)
    } catch (err) {
      // a file this user does not own keeps its mode (the data directory is 0700 all the same)
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') process.emitWarning(`could not set mode 0600 on ${file}: ${(err as Error).message}`)
    }
  }
}

export interface JobStoreInit {
  /** test seam: called with the open database before the schema is created (e.g. to cap its size with `PRAGMA max_page_count`) */
  onOpen?: (db: DatabaseSync) => void
}

export class JobStore {
  readonly path: string
  private readonly db: DatabaseSync
  private readonly stmts: Record<string, StatementSync>
  /** results waiting for their group's commit (completeTaskInGroup) */
  private readonly group: GroupedResult[] = []

  /** Opens (creating it, mode 0600) the database at `path`; throws a `JobStoreError` naming the fault and the fix. */
  constructor (path: string, init: JobStoreInit = {}) {
    this.path = path
    let db: DatabaseSync | undefined
    try {
      createPrivate(path)
      db = new DatabaseSync(path)
      // exclusive before the first WAL access: the daemon is the only process that opens its job store (the
      // data directory's lock sees to that), so SQLite keeps the WAL index in memory instead of a shared -shm
      // file and takes no file locks per transaction (a quarter of the store's CPU per job, measured)
      db.exec('PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;')
      init.onOpen?.(db)
      db.exec(SCHEMA)
      // a jobs table from before `--executor` lacks the column
      if (!(db.prepare('SELECT name FROM pragma_table_info(\'jobs\')').all() as Array<{ name: string }>).some(c => c.name === 'executors')) db.exec('ALTER TABLE jobs ADD COLUMN executors TEXT')
      addMissingColumns(db)
      this.db = db
      this.stmts = this.prepare()
    } catch (err) {
      if (db?.isOpen === true) db.close()
      throw jobStoreError(err, path)
    }
  }

  private prepare (): Record<string, StatementSync> {
    return {
      // bytes for a CID marked on-disk take its place: whoever reads the blob finds it in the table, and the file, no longer named, is swept
      putBlob: this.db.prepare('INSERT INTO blobs (cid, bytes) VALUES (?, ?) ON CONFLICT (cid) DO UPDATE SET bytes = excluded.bytes, on_disk = 0 WHERE on_disk = 1'),
      putBlobOnDisk: this.db.prepare("INSERT OR IGNORE INTO blobs (cid, bytes, on_disk) VALUES (?, x'', 1)"),
      insertTreeBlob: this.db.prepare('INSERT OR IGNORE INTO job_tree_blobs (job_id, cid) VALUES (?, ?)'),
      getBlob: this.db.prepare('SELECT bytes FROM blobs WHERE cid = ? AND on_disk = 0'),
      blobOnDisk: this.db.prepare('SELECT 1 AS yes FROM blobs WHERE cid = ? AND on_disk = 1'),
      insertJob: this.db.prepare(`INSERT INTO jobs (job_id, module_cid, input_cid, module_name, args, env, limits, replicas, executors, manifest_cid, phase, final, created_at, updated_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', NULL, ?, ?)`),
      getJob: this.db.prepare(`SELECT ${JOB_COLUMNS} FROM jobs WHERE job_id = ?`),
      listJobs: this.db.prepare(`SELECT ${JOB_COLUMNS} FROM jobs ORDER BY created_at DESC LIMIT ?`),
      unfinished: this.db.prepare(`SELECT ${JOB_COLUMNS} FROM jobs WHERE phase IN ('queued', 'running') ORDER BY created_at`),
      startJob: this.db.prepare("UPDATE jobs SET phase = 'running', updated_at = ? WHERE job_id = ? AND phase = 'queued'"),
      finish: this.db.prepare('UPDATE jobs SET phase = ?, final = ?, updated_at = ?, finished_at = ? WHERE job_id = ?'),
      finishIfOpen: this.db.prepare('UPDATE jobs SET phase = ?, final = ?, updated_at = ?, finished_at = ? WHERE job_id = ? AND final IS NULL'),
      insertTask: this.db.prepare(`INSERT INTO tasks (task_id, job_id, replica, attempt, executor, path, state, created_at, updated_at)
        VALUES (?, ?, ?, ?, ?, NULL, 'offered', ?, ?)`),
      taskDone: this.db.prepare(`UPDATE tasks SET state = 'done', path = COALESCE(?, path), outcome = ?, receipt = ?, receipt_signature = ?, stdout = ?, stderr = ?, files = ?, failure = NULL, updated_at = ?
        WHERE task_id = ?`),
      taskFailed: this.db.prepare("UPDATE tasks SET state = 'failed', failure = ?, updated_at = ? WHERE task_id = ?"),
      deleteTask: this.db.prepare("DELETE FROM tasks WHERE task_id = ? AND state = 'offered'"),
      failLiveTasks: this.db.prepare("UPDATE tasks SET state = 'failed', failure = ?, updated_at = ? WHERE job_id = ? AND state IN ('offered', 'running')"),
      tasksOf: this.db.prepare(`SELECT ${TASK_COLUMNS} FROM tasks WHERE job_id = ? ORDER BY replica, attempt`),
      getTask: this.db.prepare(`SELECT ${TASK_COLUMNS} FROM tasks WHERE task_id = ?`)
    }
  }

  /** Runs one read or write, turning a database failure into the `JobStoreError` it means. */
  private guard<T> (op: () => T): T {
    try {
      return op()
    } catch (err) {
      throw jobStoreError(err, this.path)
    }
  }

  /** Runs `writes` as one transaction (all of them or none), turning a database failure into the `JobStoreError` it means. */
  private transaction<T> (writes: () => T): T {
    return this.guard(() => inTransaction(this.db, writes))
  }

  close (): void {
    // results a caller is waiting on are stored, not dropped with the connection
    if (this.db.isOpen) this.commitGroup()
    this.db.close()
  }

  putBlob (cid: string, bytes: Uint8Array): void {
    this.guard(() => this.stmts.putBlob.run(cid, bytes))
  }

  getBlob (cid: string): Uint8Array | undefined {
    const row = this.guard(() => this.stmts.getBlob.get(cid)) as { bytes: Uint8Array } | undefined
    return row?.bytes
  }

  /** Whether the blob is one of the blob files (`ON_DISK`), which `getBlob` does not return; false for blobs in the table and unknown ones. */
  blobOnDisk (cid: string): boolean {
    return this.guard(() => this.stmts.blobOnDisk.get(cid)) != null
  }

  private putStored (cid: string, bytes: StoredBytes): void {
    if (bytes === ON_DISK) this.stmts.putBlobOnDisk.run(cid)
    else this.stmts.putBlob.run(cid, bytes)
  }

  /**
   * Stores the blobs (the tree's manifest and files too) and the job in one
   * transaction: either all of it is accepted, or none. A module or input
   * `ON_DISK`, or a tree file given as a source, is a blob file the caller
   * holds already.
   */
  createJob (spec: JobSpec, module: StoredBytes, input: StoredBytes, tree?: AddressedTree): JobRow {
    const t = now()
    if ((tree?.manifestCid ?? null) !== (spec.manifestCid ?? null)) throw new Error(`job ${spec.jobId}: its manifestCid and its tree differ`)
    const args = JSON.stringify(spec.args)
    const env = JSON.stringify(spec.env)
    const limits = JSON.stringify(spec.limits)
    const executors = spec.executors != null ? JSON.stringify(spec.executors) : null
    this.transaction(() => {
      this.putStored(spec.moduleCid, module)
      this.putStored(spec.inputCid, input)
      if (tree != null) {
        this.stmts.putBlob.run(tree.manifestCid, tree.manifestBytes)
        this.stmts.insertTreeBlob.run(spec.jobId, tree.manifestCid)
        // a file given as a source is a blob file the caller holds: a row without its bytes, as a module's
        for (const [cid, bytes] of tree.blobs) {
          this.putStored(cid, bytes instanceof Uint8Array ? bytes : ON_DISK)
          this.stmts.insertTreeBlob.run(spec.jobId, cid)
        }
      }
      this.stmts.insertJob.run(spec.jobId, spec.moduleCid, spec.inputCid, spec.moduleName, args, env, limits, spec.replicas, executors, spec.manifestCid ?? null, t, t)
    })
    // the row as committed, built from what was written rather than read back: one query fewer per submit
    return toJob({ ...spec, args, env, limits, executors, manifestCid: spec.manifestCid ?? null, phase: 'queued', final: null, createdAt: t, updatedAt: t, finishedAt: null })
  }

  getJob (jobId: string): JobRow | undefined {
    const raw = this.guard(() => this.stmts.getJob.get(jobId)) as RawJob | undefined
    return raw != null ? toJob(raw) : undefined
  }

  listJobs (limit = 100): JobRow[] {
    return (this.guard(() => this.stmts.listJobs.all(limit)) as unknown as RawJob[]).map(toJob)
  }

  unfinishedJobs (): JobRow[] {
    return (this.guard(() => this.stmts.unfinished.all()) as unknown as RawJob[]).map(toJob)
  }

  finishJob (jobId: string, phase: 'completed' | 'error', final: JobFinal): void {
    const t = now()
    this.guard(() => this.stmts.finish.run(phase, JSON.stringify(final), t, t, jobId))
  }

  /**
   * Gives a job its final answer unless it has one already, in one statement,
   * so a verdict reached at the same moment is never overwritten; whether it did.
   */
  finishIfOpen (jobId: string, final: JobFinal): boolean {
    const t = now()
    return this.guard(() => Number(this.stmts.finishIfOpen.run('completed', JSON.stringify(final), t, t, jobId).changes) > 0)
  }

  /**
   * Deletes the finished jobs beyond the newest `keep` (by when they
   * finished), their tasks (outputs and receipts) and the blobs no job left
   * refers to, in one transaction; how many jobs went. Jobs without a final
   * answer are never touched. SQLite reuses the freed pages, so the file
   * stops growing at the size `keep` jobs need.
   */
  prune (keep: number): number {
    return this.transaction(() => {
      this.db.prepare('CREATE TEMP TABLE IF NOT EXISTS pruned (job_id TEXT PRIMARY KEY)').run()
      this.db.prepare('DELETE FROM pruned').run()
      const n = Number(this.db.prepare('INSERT INTO pruned SELECT job_id FROM jobs WHERE final IS NOT NULL ORDER BY finished_at DESC LIMIT -1 OFFSET ?').run(keep).changes)
      if (n > 0) {
        this.db.prepare('DELETE FROM tasks WHERE job_id IN (SELECT job_id FROM pruned)').run()
        this.db.prepare('DELETE FROM jobs WHERE job_id IN (SELECT job_id FROM pruned)').run()
        this.db.prepare('DELETE FROM job_tree_blobs WHERE job_id IN (SELECT job_id FROM pruned)').run()
        this.db.prepare('DELETE FROM blobs WHERE cid NOT IN (SELECT module_cid FROM jobs UNION SELECT input_cid FROM jobs UNION SELECT cid FROM job_tree_blobs)').run()
      }
      return n
    })
  }

  /** Marks the job's tasks still offered or running failed with `failure`; their IDs and executors. */
  failLiveTasks (jobId: string, failure: string): Array<{ taskId: string, executor: string }> {
    const live = this.tasksOf(jobId).filter(t => t.state === 'offered' || t.state === 'running').map(t => ({ taskId: t.taskId, executor: t.executor }))
    if (live.length > 0) this.guard(() => this.stmts.failLiveTasks.run(failure, now(), jobId))
    return live
  }

  /**
   * Records a task offered to its executor; the row as inserted (built from
   * what was written, not read back). `startJob`: the job's first task, so
   * the job leaves 'queued' for 'running' in the same transaction (a job is
   * queued while it waits for an executor, however long that takes).
   */
  createTask (task: { taskId: string, jobId: string, replica: number, attempt: number, executor: string }, options: { startJob?: boolean } = {}): TaskRow {
    const t = now()
    this.transaction(() => {
      if (options.startJob === true) this.stmts.startJob.run(t, task.jobId)
      this.stmts.insertTask.run(task.taskId, task.jobId, task.replica, task.attempt, task.executor, t, t)
    })
    return {
      taskId: task.taskId,
      jobId: task.jobId,
      replica: task.replica,
      attempt: task.attempt,
      executor: task.executor,
      path: null,
      state: 'offered',
      outcome: null,
      failure: null,
      receipt: null,
      receiptSignature: null,
      stdout: null,
      stderr: null,
      files: null,
      createdAt: t,
      updatedAt: t
    }
  }

  /**
   * Records a task's result; with `end`, the job's final answer too, unless it
   * has one already (a cancel got there first), in the same transaction: a
   * result that decides its job costs one commit, not two. The task's row as
   * written, and whether the final answer was.
   */
  completeTask (task: TaskRow, result: TaskResult, end?: JobEnd): ResultWritten {
    return this.transaction(() => this.writeResult(task, result, end))
  }

  /**
   * Records a task's result as `completeTask` does, in one transaction with
   * every other result recorded this way in the same turn of the event loop,
   * committed once that turn's I/O callbacks have run (setImmediate): under
   * a burst several results arrive per turn, and each commit is a write to
   * the WAL. Resolves once committed, so nothing is told of a result before
   * the store holds it; a failed commit rejects every result of the group
   * (none of them is stored) with the `JobStoreError`, and each caller tries
   * again. `close` commits a group still waiting first.
   */
  async completeTaskInGroup (task: TaskRow, result: TaskResult, end?: JobEnd): Promise<ResultWritten> {
    return await new Promise((resolve, reject) => {
      this.group.push({ task, result, end, resolve, reject })
      if (this.group.length === 1) setImmediate(() => { this.commitGroup() })
    })
  }

  /** Commits the results waiting in the group, in one transaction, and tells each caller. */
  private commitGroup (): void {
    const group = this.group.splice(0)
    if (group.length === 0) return
    let written: ResultWritten[]
    try {
      written = this.transaction(() => group.map(g => this.writeResult(g.task, g.result, g.end)))
    } catch (err) {
      for (const g of group) g.reject(err)
      return
    }
    group.forEach((g, i) => { g.resolve(written[i]) })
  }

  /** A result's statements, in the caller's transaction; its row as written. */
  private writeResult (task: TaskRow, result: TaskResult, end?: JobEnd): ResultWritten {
    const t = now()
    const files = result.files != null ? encodeOutputFiles(result.files) : null
    const outcome = JSON.stringify(result.outcome)
    this.stmts.taskDone.run(result.path ?? null, outcome, result.receipt, result.receiptSignature, result.stdout, result.stderr, files, t, task.taskId)
    const finished = end != null && Number(this.stmts.finishIfOpen.run(end.phase, JSON.stringify(end.final), t, t, task.jobId).changes) > 0
    const row: TaskRow = { ...task, state: 'done', path: result.path ?? task.path, outcome: JSON.parse(outcome) as TaskOutcome, receipt: result.receipt, receiptSignature: result.receiptSignature, stdout: result.stdout, stderr: result.stderr, files, failure: null, updatedAt: t }
    return { task: row, finished }
  }

  /** Forgets a task that never ran (its executor declined the offer its dispatch carried): as if it had never been offered. */
  deleteTask (taskId: string): void {
    this.guard(() => this.stmts.deleteTask.run(taskId))
  }

  /** Records a task failed with `failure`; its row as written. */
  failTask (task: TaskRow, failure: string): TaskRow {
    const t = now()
    this.guard(() => this.stmts.taskFailed.run(failure, t, task.taskId))
    return { ...task, state: 'failed', failure, updatedAt: t }
  }

  tasksOf (jobId: string): TaskRow[] {
    return (this.guard(() => this.stmts.tasksOf.all(jobId)) as unknown as RawTask[]).map(toTask)
  }

  getTask (taskId: string): TaskRow | undefined {
    const raw = this.guard(() => this.stmts.getTask.get(taskId)) as RawTask | undefined
    return raw != null ? toTask(raw) : undefined
  }
}

function toJob (r: RawJob): JobRow {
  const { executors, manifestCid, ...rest } = r
  return {
    ...rest,
    ...(executors != null ? { executors: JSON.parse(executors) as string[] } : {}),
    ...(manifestCid != null ? { manifestCid } : {}),
    args: JSON.parse(r.args) as string[],
    env: JSON.parse(r.env) as string[],
    limits: JSON.parse(r.limits) as Partial<JobLimits>,
    final: r.final != null ? JSON.parse(r.final) as JobFinal : null
  }
}

/** Columns added after the first schema: a store from an older version gets them, empty. */
function addMissingColumns (db: DatabaseSync): void {
  const columns = (table: string): string[] => (db.prepare(`SELECT name FROM pragma_table_info('${table}')`).all() as Array<{ name: string }>).map(c => c.name)
  if (!columns('jobs').includes('manifest_cid')) db.exec('ALTER TABLE jobs ADD COLUMN manifest_cid TEXT')
  if (!columns('tasks').includes('files')) db.exec('ALTER TABLE tasks ADD COLUMN files BLOB')
  if (!columns('blobs').includes('on_disk')) db.exec('ALTER TABLE blobs ADD COLUMN on_disk INTEGER NOT NULL DEFAULT 0')
}

function toTask (r: RawTask): TaskRow {
  return {
    ...r,
    outcome: r.outcome != null ? JSON.parse(r.outcome) as TaskOutcome : null,
    // node:sqlite hands back Buffers; callers get plain Uint8Arrays
    receipt: plain(r.receipt),
    receiptSignature: plain(r.receiptSignature),
    stdout: plain(r.stdout),
    stderr: plain(r.stderr),
    files: plain(r.files)
  }
}

function plain (bytes: Uint8Array | null): Uint8Array | null {
  return bytes != null ? new Uint8Array(bytes) : null
}
