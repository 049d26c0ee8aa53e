import { mkdirSync, chmodSync, linkSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs'
import { errorWithCode } from '../core/errors.ts'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'

/** Files kept in a data directory. One place names them all. */
export interface DataDirPaths {
  root: string
  /** Ed25519 private key, protobuf-encoded, mode 0600 */
  identityKey: string
  /** optional JSON config file: `{ "bootstrap": [...], "listen": [...], "apiPort": N }` */
  configFile: string
  /** bearer token for the local API, mode 0600 */
  apiToken: string
  /** JSON `{ "port", "pid", "startedAt" }` written by the running daemon */
  apiEndpoint: string
  /** remembered facts about the network (used by later issues: the winning dial rung, …) */
  stateDir: string
  /** the PID of the process running a node on this directory, held while it runs (`lockDataDir`) */
  lock: string
}

export const DATA_DIR_ENV = 'WORLDCOMPUTE_DATA_DIR'

/** `--data-dir` > `WORLDCOMPUTE_DATA_DIR` > `~/.worldcompute`. */
export function resolveDataDir (flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (flag != null && flag !== '') return resolve(flag)
  const fromEnv = env[DATA_DIR_ENV]
  if (fromEnv != null && fromEnv !== '') return resolve(fromEnv)
  return join(homedir(), '.worldcompute')
}

export function dataDirPaths (root: string): DataDirPaths {
  return {
    root,
    identityKey: join(root, 'identity.key'),
    configFile: join(root, 'config.json'),
    apiToken: join(root, 'api-token'),
    apiEndpoint: join(root, 'api-endpoint.json'),
    stateDir: join(root, 'state'),
    lock: join(root, 'daemon.lock')
  }
}

/** Creates the directory (mode 0700: it holds a private key and a token). */
export function ensureDataDir (root: string): DataDirPaths {
  mkdirSync(root, { recursive: true, mode: 0o700 })
  try {
    chmodSync(root, 0o700)
  } catch (err) {
    // a directory we do not own (e.g. a shared mount) keeps its mode; the key file itself is still 0600
    process.emitWarning(`could not set mode 0700 on ${root}: ${(err as Error).message}`)
  }
  return dataDirPaths(root)
}

/** Another live process holds the data directory: two nodes on it would share one PeerId and one job store. */
export class DataDirLockedError extends errorWithCode('DATA_DIR_LOCKED') {
  readonly pid: number
  readonly lockFile: string
  constructor (root: string, lockFile: string, pid: number) {
    super(`the data directory ${root} is in use by another worldcompute process (PID ${pid}): stop that one first, or give this one its own --data-dir`)
    this.pid = pid
    this.lockFile = lockFile
  }
}

/** The lock file could not be taken for a reason other than another holder (a read-only or full disk, permissions). */
export class DataDirLockError extends errorWithCode('DATA_DIR_LOCK_FAILED') {}

/** The exclusive hold of a data directory by this process. */
export interface DataDirLock {
  /** the lock file */
  path: string
  /** a lock left by a process that did not stop cleanly, which this one took over: its PID, when the file named one */
  takenOver?: { pid?: number }
  /** removes the lock file; idempotent */
  release: () => void
}

/** What a lock file says: the PID in it, 'gone' when there is no file, 'invalid' when it names no PID. */
type LockHolder = number | 'gone' | 'invalid'

/** Lock files this process holds: its own PID in a lock file it does not hold is a stale lock (a PID reused, e.g. 1 in a container). */
const held = new Set<string>()

/**
 * Takes the data directory for this process, or throws
 * `DataDirLockedError` naming the live PID that holds it. The lock file is
 * written whole under a temporary name and hard-linked into place, which
 * fails if it exists: two starts never both succeed, and a reader never sees
 * a half-written PID. A lock whose PID is not alive is taken over.
 */
export function lockDataDir (paths: Pick<DataDirPaths, 'root' | 'lock'>): DataDirLock {
  const { root, lock } = paths
  const tmp = `${lock}.${process.pid}.tmp`
  try {
    writeLockFile(tmp, lock)
    let takenOver: DataDirLock['takenOver']
    // a second round only after a stale lock was moved aside; a third means another process raced us for it
    for (let round = 0; round < 3; round++) {
      if (tryLink(tmp, lock)) {
        held.add(lock)
        return { path: lock, takenOver, release: () => { releaseLock(lock) } }
      }
      const holder = readHolder(lock)
      if (holder === 'gone') continue
      if (typeof holder === 'number' && isAlive(holder) && (holder !== process.pid || held.has(lock))) throw new DataDirLockedError(root, lock, holder)
      if (moveStaleAside(lock, holder)) takenOver = { pid: typeof holder === 'number' ? holder : undefined }
    }
    throw new DataDirLockError(`could not take the lock ${lock}: other processes keep replacing it; start one node per data directory`)
  } finally {
    removeIfPresent(tmp)
  }
}

function writeLockFile (tmp: string, lock: string): void {
  try {
    writeFileSync(tmp, `${process.pid}\n`, { mode: 0o600 })
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    const why = code === 'ENOSPC' || code === 'EDQUOT' ? 'the disk is full: free space on it' : `${(err as Error).message}: check that the data directory is writable`
    throw new DataDirLockError(`cannot create the lock file ${lock}: ${why}`, { cause: err })
  }
}

function tryLink (tmp: string, lock: string): boolean {
  try {
    linkSync(tmp, lock)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw new DataDirLockError(`cannot create the lock file ${lock}: ${(err as Error).message}`, { cause: err })
  }
}

function readHolder (lock: string): LockHolder {
  let text: string
  try {
    text = readFileSync(lock, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'gone'
    throw new DataDirLockError(`cannot read the lock file ${lock}: ${(err as Error).message}`, { cause: err })
  }
  const pid = Number(text.trim())
  return Number.isSafeInteger(pid) && pid > 0 ? pid : 'invalid'
}

/** Whether a process with this PID exists (EPERM: it does, under another user). */
function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * Moves a stale lock aside; rename is atomic, so of two processes taking it
 * over, one moves it. When what was moved is not the stale lock we read but
 * a fresh one another process has just taken, it is put back. Returns
 * whether the stale lock was removed.
 */
function moveStaleAside (lock: string, stale: LockHolder): boolean {
  const aside = `${lock}.${process.pid}.stale`
  try {
    renameSync(lock, aside)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw new DataDirLockError(`cannot remove the stale lock file ${lock}: ${(err as Error).message}`, { cause: err })
  }
  const moved = readHolder(aside)
  if (moved !== stale) tryLink(aside, lock)
  removeIfPresent(aside)
  return moved === stale
}

function releaseLock (lock: string): void {
  if (!held.delete(lock)) return
  // only our own: a lock file that is not ours any more (removed by hand, then taken by another process) stays
  if (readHolder(lock) === process.pid) removeIfPresent(lock)
}

function removeIfPresent (path: string): void {
  try {
    unlinkSync(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
}
