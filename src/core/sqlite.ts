import type { DatabaseSync } from 'node:sqlite'

/**
 * Runs `writes` as one SQLite transaction on `db`: all of them or none. The
 * write lock is taken up front (IMMEDIATE), so a transaction never fails
 * half-way for want of it; an error rolls back and is thrown as it was.
 */
export function inTransaction<T> (db: DatabaseSync, writes: () => T): T {
  db.exec('BEGIN IMMEDIATE')
  try {
    const done = writes()
    db.exec('COMMIT')
    return done
  } catch (err) {
    // SQLite has already rolled back after some errors (a full disk, an I/O error): a ROLLBACK then would fail and hide the cause
    if (db.isTransaction) db.exec('ROLLBACK')
    throw err
  }
}
