import { closeSync, openSync } from 'node:fs'
import { DatabaseSync, type StatementSync } from 'node:sqlite'
import { errorWithCode } from '../core/errors.ts'
import { inTransaction } from '../core/sqlite.ts'
import type { DonatedTask } from '../core/types.ts'

/**
 * This donor's history: the tasks it ran for others (`worldcompute
 * donated`), in SQLite in the data directory like the broker's job store
 * (node:sqlite, WAL). Bounded: each insert prunes all but the newest
 * `maxEntries`, so a donor that runs for years keeps a file of a few MiB.
 */

/** The history database cannot be opened or written (a damaged file, a full disk, permissions). */
export class DonatedStoreError extends errorWithCode('DONATED_STORE_UNAVAILABLE') {}

export interface DonatedStoreInit {
  /** tasks kept, the newest first @default 10000 */
  maxEntries?: number
}

export const DEFAULT_DONATED_ENTRIES = 10_000

const SCHEMA = `
CREATE TABLE IF NOT EXISTS donated (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at TEXT NOT NULL,
  started_at TEXT NOT NULL,
  broker TEXT NOT NULL,
  job_id TEXT NOT NULL,
  task_id TEXT NOT NULL,
  status TEXT NOT NULL,
  cpu_time_ms REAL,
  fuel_used INTEGER NOT NULL,
  duration_ms REAL NOT NULL
);
`

const COLUMNS = `at, started_at AS startedAt, broker, job_id AS jobId, task_id AS taskId, status,
  cpu_time_ms AS cpuTimeMs, fuel_used AS fuelUsed, duration_ms AS durationMs`

export class DonatedStore {
  readonly path: string
  private readonly db: DatabaseSync
  private readonly insert: StatementSync
  private readonly prune: StatementSync
  private readonly recent: StatementSync
  private readonly maxEntries: number

  /** Opens (creating it, mode 0600) the database at `path`; throws a DonatedStoreError naming the file. */
  constructor (path: string, init: DonatedStoreInit = {}) {
    this.path = path
    this.maxEntries = init.maxEntries ?? DEFAULT_DONATED_ENTRIES
    if (!Number.isSafeInteger(this.maxEntries) || this.maxEntries < 1) throw new RangeError(`maxEntries must be a positive integer, got ${String(init.maxEntries)}`)
    let db: DatabaseSync | undefined
    try {
      closeSync(openSync(path, 'a', 0o600))
      db = new DatabaseSync(path)
      db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;')
      db.exec(SCHEMA)
      this.insert = db.prepare(`INSERT INTO donated (at, started_at, broker, job_id, task_id, status, cpu_time_ms, fuel_used, duration_ms)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
      this.prune = db.prepare('DELETE FROM donated WHERE id <= (SELECT MAX(id) FROM donated) - ?')
      this.recent = db.prepare(`SELECT ${COLUMNS} FROM donated ORDER BY id DESC LIMIT ?`)
      this.db = db
    } catch (err) {
      if (db?.isOpen === true) db.close()
      throw new DonatedStoreError(`cannot use the history of donated tasks ${path} (${(err as Error).message}): move it aside to start a new one`, { cause: err })
    }
  }

  /**
   * Records one task and prunes the oldest beyond maxEntries, in one
   * transaction: one commit (one write to the WAL) per task rather than one
   * per statement; throws a DonatedStoreError when it cannot write, and
   * then neither happened.
   */
  add (task: DonatedTask): void {
    try {
      inTransaction(this.db, () => {
        this.insert.run(task.at, task.startedAt, task.broker, task.jobId, task.taskId, task.status, task.cpuTimeMs ?? null, task.fuelUsed, task.durationMs)
        this.prune.run(this.maxEntries)
      })
    } catch (err) {
      throw new DonatedStoreError(`cannot record task ${task.taskId} in ${this.path} (${(err as Error).message})`, { cause: err })
    }
  }

  /** The newest `limit` tasks, the newest first. */
  list (limit: number): DonatedTask[] {
    const rows = this.recent.all(limit) as unknown as Array<DonatedTask & { cpuTimeMs: number | null }>
    return rows.map(({ cpuTimeMs, ...row }) => ({ ...row, ...(cpuTimeMs != null ? { cpuTimeMs } : {}) }))
  }

  close (): void {
    if (this.db.isOpen) this.db.close()
  }
}
