import { WorldComputeError, errorWithCode } from '../core/errors.ts'

/**
 * Why a start failed, as one line naming the cause and the fix. The
 * composition root passes every start failure through `startFailure`: a
 * named error (its class and code chosen where it happened) goes out as it
 * is; a file-system error of this machine (a full disk, a read-only mount)
 * becomes a `LocalStorageError`; anything else is left alone, so a bug still
 * shows its stack.
 */

/** A start step could not read or write this machine's disk. */
export class LocalStorageError extends WorldComputeError {
  /** the file or directory it was working on */
  readonly path: string
  constructor (message: string, code: string, path: string, options?: { cause?: unknown }) {
    super(message, code, options)
    this.path = path
  }
}

/** The relay listens on none of its listen addresses: it would run, reachable by nobody. */
export class RelayNotListeningError extends errorWithCode('RELAY_NOT_LISTENING') {
  readonly addrs: string[]
  constructor (addrs: string[]) {
    super(`the relay could not listen on any of its addresses (${addrs.join(', ')}): another process holds the port, or the address is not on this host; stop that process or choose others with --listen`)
    this.addrs = addrs
  }
}

/** Errno codes of a local disk that cannot take a write, with the code and the fix each is reported with. */
const STORAGE_ERRNOS: Record<string, { code: string, what: string, fix: string }> = {
  ENOSPC: { code: 'DISK_FULL', what: 'the disk is full', fix: 'free space on it and start again' },
  EDQUOT: { code: 'DISK_FULL', what: 'the disk quota is used up', fix: 'free space or raise the quota and start again' },
  EROFS: { code: 'STORAGE_READ_ONLY', what: 'the file system is read-only', fix: 'give a writable --data-dir' },
  EACCES: { code: 'STORAGE_DENIED', what: 'permission denied', fix: 'give this user access to it, or another --data-dir' },
  EPERM: { code: 'STORAGE_DENIED', what: 'operation not permitted', fix: 'give this user access to it, or another --data-dir' },
  EIO: { code: 'STORAGE_IO', what: 'an I/O error', fix: 'check the disk' }
}

/** A start failure as the error to report: see the module comment. */
export function startFailure (err: unknown): unknown {
  if (err instanceof WorldComputeError) return err
  const e = err as NodeJS.ErrnoException
  // a file-system error names its path; a socket's EACCES (a port below 1024) does not, and is not about the disk
  if (typeof e?.code !== 'string' || typeof e.path !== 'string') return err
  const known = STORAGE_ERRNOS[e.code]
  if (known == null) return err
  return new LocalStorageError(`cannot start: ${known.what} (${e.path}): ${known.fix}`, known.code, e.path, { cause: err })
}
