/**
 * `job submit --dir HOST[::GUEST]` (wasmtime's spelling): which host
 * directory becomes which guest directory, and the reading of its tree.
 *
 * The tree is read once, into memory, and never written: regular files and
 * empty directories. A symbolic link, socket, FIFO or device anywhere in it
 * is refused with its path (following a link could leave the tree, and its
 * target could change between two submissions of the "same" directory). A file
 * that changes while it is read (its size or mtime before and after differ,
 * or it does not read back at its size) is refused with its path: the job
 * would otherwise run on a torn copy.
 */
import { lstat, open, readdir } from 'node:fs/promises'
import { join, relative, sep } from 'node:path'
import { errorWithCode } from '../core/errors.ts'
import { findNested, GuestPathError, normaliseGuestPath } from '../core/tree.ts'
import type { JobDir, JobFile } from '../core/job.ts'

/** A `--dir` value or the tree it names cannot be used; the message names the flag value or the file. */
export class DirArgError extends errorWithCode('DIR_INVALID') {}

export interface DirArg {
  /** the host directory as given */
  host: string
  /** the absolute, normalised guest path it is preopened at */
  guest: string
}

/**
 * Parses `HOST[::GUEST]`. GUEST defaults to HOST as given, made absolute
 * (`data` → `/data`, `/srv/in` → `/srv/in`); either way it must be absolute
 * after normalising and free of '..'.
 */
export function parseDirArg (value: string): DirArg {
  const at = value.indexOf('::')
  const host = at >= 0 ? value.slice(0, at) : value
  const guestGiven = at >= 0 ? value.slice(at + 2) : undefined
  if (host === '') throw new DirArgError(`--dir "${value}": the host directory is missing (HOST[::GUEST])`)
  if (guestGiven === '') throw new DirArgError(`--dir "${value}": the guest directory after "::" is missing`)
  if (guestGiven != null && !guestGiven.startsWith('/')) throw new DirArgError(`--dir "${value}": the guest directory must be absolute, got "${guestGiven}"`)
  const guestPath = guestGiven ?? '/' + host.split(sep).join('/')
  try {
    return { host, guest: normaliseGuestPath(guestPath) }
  } catch (err) {
    if (err instanceof GuestPathError) throw new DirArgError(`--dir "${value}": ${err.message}`, { cause: err })
    throw err
  }
}

export interface ReadTreeOptions {
  /** all files read together, bytes: the job's payload limit (files left for upload do not count) */
  maxBytes: number
  /**
   * Files over this size are not read: they are listed in `large` for the
   * caller to upload by CID, so the submit never holds them whole
   * @default Infinity (every file is read)
   */
  largeOverBytes?: number
  /** after a file's bytes are read and before they are checked (a test changes the file here) */
  afterRead?: (path: string) => Promise<void>
}

/** A file over `largeOverBytes`, left unread: where it is, and where it goes in the guest. */
export interface LargeFile {
  /** the guest directory it belongs to (a `JobDir`'s `guest`) */
  guest: string
  /** its guest path */
  path: string
  /** its host path */
  host: string
  size: number
}

/** Reads every `--dir` tree, refusing two at one guest path or one inside another. */
export async function readDirTrees (dirs: DirArg[], options: ReadTreeOptions): Promise<JobDir[]> {
  return (await readDirTreesLeavingLarge(dirs, options)).dirs
}

/** Reads every `--dir` tree as `readDirTrees` does, leaving the files over `largeOverBytes` unread and listed in `large`. */
export async function readDirTreesLeavingLarge (dirs: DirArg[], options: ReadTreeOptions): Promise<{ dirs: JobDir[], large: LargeFile[] }> {
  const budget: Budget = { left: options.maxBytes, max: options.maxBytes, afterRead: options.afterRead, largeOver: options.largeOverBytes ?? Infinity, large: [] }
  const out: JobDir[] = []
  const twice = dirs.find((d, i) => dirs.findIndex(e => e.guest === d.guest) !== i)
  if (twice !== undefined) throw new DirArgError(`--dir: two directories are preopened at ${twice.guest}`)
  const nested = findNested(dirs.map(d => d.guest), [])
  if (nested !== undefined) throw new DirArgError(`--dir: ${nested.inner} lies inside ${nested.outer}, which is preopened too: give the outer directory only (its tree holds the inner one), or guest paths that do not nest`)
  for (const dir of dirs) out.push(await readDirTree(dir, budget))
  return { dirs: out, large: budget.large }
}

interface Budget { left: number, max: number, afterRead?: (path: string) => Promise<void>, largeOver: number, large: LargeFile[] }

async function readDirTree (dir: DirArg, budget: Budget): Promise<JobDir> {
  const info = await lstat(dir.host).catch((err: NodeJS.ErrnoException) => {
    throw new DirArgError(`--dir ${dir.host}: ${err.code === 'ENOENT' ? 'no such directory' : `cannot read it (${err.code ?? err.message})`}`, { cause: err })
  })
  if (!info.isDirectory()) throw new DirArgError(`--dir ${dir.host}: not a directory${info.isSymbolicLink() ? ' (a symbolic link: give the directory it points to)' : ''}`)
  const files: JobFile[] = []
  const emptyDirs: string[] = []
  await walk(dir, dir.host, { files, emptyDirs }, budget)
  return { guest: dir.guest, files, ...(emptyDirs.length > 0 ? { emptyDirs } : {}) }
}

/** Reads one host directory into `into`; returns whether it held anything (else it is an empty directory). */
async function walk (dir: DirArg, hostDir: string, into: { files: JobFile[], emptyDirs: string[] }, budget: Budget): Promise<boolean> {
  const entries = await readdir(hostDir, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
    throw new DirArgError(`--dir ${dir.host}: cannot list ${hostDir} (${err.code ?? err.message})`, { cause: err })
  })
  for (const entry of entries.sort((a, b) => a.name < b.name ? -1 : 1)) {
    const hostPath = join(hostDir, entry.name)
    const guestPath = guestPathOf(dir, hostPath)
    if (entry.isDirectory()) {
      if (!await walk(dir, hostPath, into, budget)) into.emptyDirs.push(guestPath)
    } else if (entry.isFile()) {
      const size = await sizeOf(hostPath)
      if (size > budget.largeOver) budget.large.push({ guest: dir.guest, path: guestPath, host: hostPath, size })
      else into.files.push({ path: guestPath, data: await readStable(hostPath, budget) })
    } else {
      const kind = entry.isSymbolicLink() ? 'a symbolic link' : 'not a regular file or directory'
      throw new DirArgError(`--dir ${dir.host}: ${hostPath} is ${kind}; a job's directory holds only regular files and directories`)
    }
  }
  return entries.length > 0
}

function guestPathOf (dir: DirArg, hostPath: string): string {
  const rel = relative(dir.host, hostPath).split(sep).join('/')
  try {
    return normaliseGuestPath(`${dir.guest}/${rel}`)
  } catch (err) {
    if (err instanceof GuestPathError) throw new DirArgError(`--dir ${dir.host}: ${hostPath} has no usable guest path: ${err.message}`, { cause: err })
    throw err
  }
}

async function sizeOf (path: string): Promise<number> {
  const info = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    throw new DirArgError(`cannot read ${path} (${err.code ?? err.message})`, { cause: err })
  })
  return info.size
}

/** A file's bytes, refused when it changes while read (size or mtime before and after, or a short read). */
async function readStable (path: string, budget: Budget): Promise<Uint8Array> {
  const handle = await open(path, 'r').catch((err: NodeJS.ErrnoException) => {
    throw new DirArgError(`cannot read ${path} (${err.code ?? err.message})`, { cause: err })
  })
  try {
    const before = await handle.stat()
    if (before.size > budget.left) throw new DirArgError(`${path} (${before.size} bytes) takes the job's directories over the ${budget.max}-byte payload limit`)
    const data = await handle.readFile()
    await budget.afterRead?.(path)
    const after = await handle.stat()
    const nowAt = await lstat(path).catch(() => undefined)
    if (data.byteLength !== before.size || after.size !== before.size || after.mtimeMs !== before.mtimeMs || nowAt?.ino !== before.ino) {
      throw new DirArgError(`${path} changed while it was read (${before.size} → ${after.size} bytes); submit again once it is written`)
    }
    budget.left -= data.byteLength
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
  } catch (err) {
    if (err instanceof DirArgError) throw err
    throw new DirArgError(`cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { cause: err })
  } finally {
    await handle.close()
  }
}
