/**
 * The in-memory filesystem behind a job's preopens: a tree of directories,
 * regular files and symbolic links built from the request's JobDirs, which the
 * guest reads and writes as an overlay. The submitter's bytes are shared until
 * the first write to a file (copy-on-write), so they are never mutated.
 *
 * Everything the guest can observe is a function of the job, so that replicas
 * agree: inode numbers are handed out in creation order (the initial tree in
 * path order), directory listings are sorted by the bytes of the names, and
 * timestamps come from the shim's virtual clock.
 *
 * Bounded: every file byte and every entry counts against one budget (the
 * job's memory limit); growing past it answers ENOSPC, as a full disk does.
 */

import type { JobDir, JobFile } from '../core/job.ts'
import { findNested } from '../core/tree.ts'
import { Errno, FileType } from './wasi-abi.ts'

/** What one directory entry costs against the budget, in bytes, besides a file's contents. */
export const FS_ENTRY_BYTES = 256
/** Symbolic links followed in one lookup before ELOOP, as Linux's MAXSYMLINKS. */
export const MAX_SYMLINK_HOPS = 40
/** Longest path component, bytes; longer is ENAMETOOLONG (NAME_MAX). */
export const NAME_MAX = 255

interface NodeBase {
  readonly ino: bigint
  atim: bigint
  mtim: bigint
  ctim: bigint
}

export interface FileNode extends NodeBase {
  readonly kind: 'file'
  /** the bytes; `data.length` may exceed `size` (spare capacity) */
  data: Uint8Array
  size: number
  /** `data` is the submitter's buffer: copy before writing */
  shared: boolean
  nlink: number
}

export interface DirNode extends NodeBase {
  readonly kind: 'dir'
  readonly entries: Map<string, Node>
  /** undefined for a preopen's root */
  parent: DirNode | undefined
  /** its entry's name in `parent` ('' for a root), kept by rename, so that a path back up costs no search */
  name: string
}

export interface SymlinkNode extends NodeBase {
  readonly kind: 'symlink'
  readonly target: string
}

export type Node = FileNode | DirNode | SymlinkNode

/** A path resolved to its last component: the directory holding it, the name, and what is there (if anything). */
export interface Resolved {
  parent: DirNode
  name: string
  node: Node | undefined
  /** the path ended in '/': the entry must be a directory */
  mustBeDir: boolean
}

/** A failed lookup or update: the errno to answer. */
export class FsError extends Error {
  readonly errno: number
  constructor (errno: number) {
    super(`errno ${errno}`)
    this.name = 'FsError'
    this.errno = errno
  }
}

export interface MemFsInit {
  preopens: readonly JobDir[]
  /** bytes of file contents plus FS_ENTRY_BYTES per entry the tree may hold */
  budgetBytes: number
  /** the virtual clock's current reading, ns since the Unix epoch */
  now: () => bigint
}

const decoder = new TextDecoder('utf-8', { fatal: true })
const encoder = new TextEncoder()

export class MemFs {
  /** the preopens' roots, in request order, with their guest paths */
  readonly roots: ReadonlyArray<{ guest: string, dir: DirNode }>
  private readonly budgetBytes: number
  private used = 0
  private nextIno = 1n
  readonly now: () => bigint
  /** every submitted file by guest path, with its node and bytes, to tell what changed */
  private readonly original = new Map<string, { node: FileNode, data: Uint8Array }>()

  constructor (init: MemFsInit) {
    this.budgetBytes = init.budgetBytes
    this.now = init.now
    this.roots = init.preopens.map(p => ({ guest: p.guest, dir: this.buildPreopen(p) }))
  }

  /**
   * The tree of one preopen, in path order so that inode numbers do not
   * depend on the order the submitter listed the files in. The submitted
   * bytes count against the budget but are never refused by it: the payload
   * limit bounds them, and the job has not run yet.
   */
  private buildPreopen (p: JobDir): DirNode {
    const root: DirNode = { kind: 'dir', ...this.stamp(), entries: new Map(), parent: undefined, name: '' }
    this.used += FS_ENTRY_BYTES
    const paths = [...(p.emptyDirs ?? []).map(d => ({ path: d, data: undefined })), ...p.files]
    paths.sort((a, b) => compareBytes(a.path, b.path))
    for (const { path, data } of paths) {
      const rel = relativeTo(p.guest, path)
      let dir = root
      const parts = rel.split('/').filter(s => s !== '')
      const last = data === undefined ? undefined : parts.pop()
      for (const part of parts) dir = this.subdir(dir, part)
      if (last === undefined || data === undefined) continue
      const file: FileNode = { kind: 'file', ...this.stamp(), data, size: data.length, shared: true, nlink: 1 }
      this.used += FS_ENTRY_BYTES + data.length
      dir.entries.set(last, file)
      this.original.set(path, { node: file, data })
    }
    return root
  }

  private subdir (dir: DirNode, name: string): DirNode {
    const found = dir.entries.get(name)
    if (found?.kind === 'dir') return found
    // checkPreopens refuses a path that is both a file and a directory before a job gets here
    if (found !== undefined) throw new Error(`preopen path ${name} is both a file and a directory`)
    const made: DirNode = { kind: 'dir', ...this.stamp(), entries: new Map(), parent: dir, name }
    this.used += FS_ENTRY_BYTES
    dir.entries.set(name, made)
    return made
  }

  // -------------------------------------------------------------------------
  // nodes and the budget

  private stamp (): { ino: bigint, atim: bigint, mtim: bigint, ctim: bigint } {
    const t = this.now()
    return { ino: this.nextIno++, atim: t, mtim: t, ctim: t }
  }

  newDir (parent: DirNode, name: string): DirNode {
    this.reserve(FS_ENTRY_BYTES)
    return { kind: 'dir', ...this.stamp(), entries: new Map(), parent, name }
  }

  newFile (data: Uint8Array, shared: boolean): FileNode {
    this.reserve(FS_ENTRY_BYTES + data.length)
    return { kind: 'file', ...this.stamp(), data, size: data.length, shared, nlink: 1 }
  }

  newSymlink (target: string): SymlinkNode {
    this.reserve(FS_ENTRY_BYTES + target.length)
    return { kind: 'symlink', ...this.stamp(), target }
  }

  /** Takes `bytes` of the budget, or answers ENOSPC. */
  reserve (bytes: number): void {
    if (this.used + bytes > this.budgetBytes) throw new FsError(Errno.nospc)
    this.used += bytes
  }

  release (bytes: number): void {
    this.used -= bytes
  }

  /** Sets a file's size, zero-filling growth and charging or releasing the difference. */
  resize (file: FileNode, size: number): void {
    if (size > Number.MAX_SAFE_INTEGER) throw new FsError(Errno.fbig)
    if (size > file.size) this.reserve(size - file.size)
    else this.release(file.size - size)
    if (size > file.data.length || file.shared) {
      const next = new Uint8Array(size > file.data.length ? Math.max(size, Math.min(file.data.length * 2, this.budgetBytes)) : file.data.length)
      next.set(file.data.subarray(0, Math.min(file.size, size)))
      file.data = next
      file.shared = false
    } else if (size > file.size) {
      file.data.fill(0, file.size, size)
    }
    file.size = size
  }

  /** Writes `bytes` at `offset`, growing the file as needed. */
  write (file: FileNode, offset: number, bytes: Uint8Array): void {
    const end = offset + bytes.length
    if (end > file.size) this.resize(file, end)
    else if (file.shared) this.resize(file, file.size)
    file.data.set(bytes, offset)
    file.mtim = file.ctim = this.now()
  }

  /** Removes the entry `name` of `dir`, giving its bytes back once nothing links to it. */
  unlink (dir: DirNode, name: string): void {
    const node = dir.entries.get(name)
    if (node === undefined) return
    dir.entries.delete(name)
    if (node.kind === 'file' && --node.nlink > 0) {
      this.release(FS_ENTRY_BYTES)
      return
    }
    this.release(FS_ENTRY_BYTES + (node.kind === 'file' ? node.size : node.kind === 'symlink' ? node.target.length : 0))
    dir.mtim = dir.ctim = this.now()
  }

  // -------------------------------------------------------------------------
  // paths

  /**
   * Resolves `path` relative to `base` down to its last component, following
   * symbolic links on the way (and on the last component when `follow`). A
   * path that leaves `base` (absolute, '..' above it, or a link pointing
   * out) is ENOTCAPABLE: the descriptor is the capability.
   */
  resolve (base: DirNode, path: string, follow: boolean, hops = 0): Resolved {
    if (path === '') throw new FsError(Errno.noent)
    if (path.startsWith('/')) throw new FsError(Errno.notcapable)
    const parts = path.split('/')
    const mustBeDir = parts.length > 1 && parts[parts.length - 1] === ''
    const names = parts.filter(s => s !== '')
    const stack: DirNode[] = [base]
    for (let i = 0; i < names.length; i++) {
      const name = names[i]
      if (encoder.encode(name).length > NAME_MAX) throw new FsError(Errno.nametoolong)
      const dir = stack[stack.length - 1]
      const isLast = i === names.length - 1
      if (name === '.' || name === '..') {
        if (name === '..') {
          if (stack.length === 1) throw new FsError(Errno.notcapable)
          stack.pop()
        }
        if (isLast) return this.selfEntry(stack[stack.length - 1], stack)
        continue
      }
      const node = dir.entries.get(name)
      if (node?.kind === 'symlink' && (!isLast || follow || mustBeDir)) {
        if (++hops > MAX_SYMLINK_HOPS) throw new FsError(Errno.loop)
        const rest = names.slice(i + 1).join('/')
        const target = node.target + (rest !== '' ? '/' + rest : (mustBeDir ? '/' : ''))
        if (node.target.startsWith('/')) throw new FsError(Errno.notcapable)
        return this.resolveFrom(stack, target, follow, hops)
      }
      if (isLast) return { parent: dir, name, node, mustBeDir }
      if (node === undefined) throw new FsError(Errno.noent)
      if (node.kind !== 'dir') throw new FsError(Errno.notdir)
      stack.push(node)
    }
    // only '.'-like paths end here, e.g. '' segments: the base itself
    return this.selfEntry(stack[stack.length - 1], stack)
  }

  /**
   * Resolves `path` from the directory on top of `stack` (where a symbolic
   * link was met): it is re-expressed from the base, so that '..' in the
   * link can climb back up to the base but no further.
   */
  private resolveFrom (stack: DirNode[], path: string, follow: boolean, hops: number): Resolved {
    const prefix = this.pathFromBase(stack)
    return this.resolve(stack[0], prefix === '' ? path : `${prefix}/${path}`, follow, hops)
  }

  private pathFromBase (stack: DirNode[]): string {
    const names: string[] = []
    for (let i = 1; i < stack.length; i++) names.push(stack[i].name)
    return names.join('/')
  }

  /** A path naming a directory itself ('.', 'a/..'): no parent entry to edit; callers treat the name '.' as "this directory". */
  private selfEntry (dir: DirNode, stack: DirNode[]): Resolved {
    const parent = stack.length > 1 ? stack[stack.length - 2] : dir
    return { parent, name: stack.length > 1 ? dir.name : '.', node: dir, mustBeDir: true }
  }

  // -------------------------------------------------------------------------
  // the result

  /**
   * The files under every preopen that differ from what was submitted (new
   * or changed), sorted by path bytes, and the submitted paths that no longer
   * hold a regular file.
   */
  changes (): { files: JobFile[], removedFiles: string[] } {
    const files: JobFile[] = []
    const present = new Set<string>()
    for (const { guest, dir } of this.roots) {
      walkFiles(dir, guest === '/' ? '' : guest, (path, node) => {
        present.add(path)
        const before = this.original.get(path)
        // a submitted file never written to still shares the submitted bytes: unchanged without a comparison
        if (before?.node === node && node.shared && node.size === before.data.length) return
        const data = node.data.subarray(0, node.size)
        if (before !== undefined && equalBytes(before.data, data)) return
        files.push({ path, data: data.slice() })
      })
    }
    const removedFiles = [...this.original.keys()].filter(p => !present.has(p))
    files.sort((a, b) => compareBytes(a.path, b.path))
    removedFiles.sort(compareBytes)
    return { files, removedFiles }
  }
}

/** Regular files under `dir` (symlinks are not followed), with their guest paths. */
function walkFiles (dir: DirNode, prefix: string, visit: (path: string, node: FileNode) => void): void {
  for (const [name, node] of dir.entries) {
    const path = `${prefix}/${name}`
    if (node.kind === 'file') visit(path, node)
    else if (node.kind === 'dir') walkFiles(node, path, visit)
  }
}

/** `path` relative to the preopen `guest` ('' for the preopen itself). */
function relativeTo (guest: string, path: string): string {
  if (guest === '/') return path.slice(1)
  if (path === guest) return ''
  if (!path.startsWith(guest + '/')) throw new Error(`preopen file ${path} is not under ${guest}`)
  return path.slice(guest.length + 1)
}

/** A guest path as JobDir and JobFile spell it: absolute, '/'-separated, no '.', '..' or empty segment, no NUL. */
function isGuestPath (p: unknown): p is string {
  if (typeof p !== 'string' || !p.startsWith('/') || p.includes('\0')) return false
  if (p === '/') return true
  return p.slice(1).split('/').every(s => s !== '' && s !== '.' && s !== '..')
}

/**
 * Why a request's preopens cannot be served, or undefined when they can:
 * the shape, guest paths that are absolute and normalised, every file under
 * its preopen, no path twice, nothing under a path given as a file, no
 * preopen inside another (each preopen is a tree of its own: a job could
 * write the same guest path through both, and its result name it twice).
 */
export function checkPreopens (preopens: unknown): string | undefined {
  if (!Array.isArray(preopens)) return 'preopens must be an array of directories'
  const guests = new Set<string>()
  for (const dir of preopens as JobDir[]) {
    if (dir === null || typeof dir !== 'object' || !isGuestPath(dir.guest)) return 'every preopen needs an absolute, normalised guest path'
    if (guests.has(dir.guest)) return `preopen ${dir.guest} is given twice`
    guests.add(dir.guest)
    const prefix = dir.guest === '/' ? '/' : dir.guest + '/'
    if (!Array.isArray(dir.files) || (dir.emptyDirs !== undefined && !Array.isArray(dir.emptyDirs))) return `preopen ${dir.guest}: files and emptyDirs must be arrays`
    const seen = new Set<string>()
    for (const f of dir.files) {
      if (f === null || typeof f !== 'object' || !isGuestPath(f.path) || !f.path.startsWith(prefix)) return `preopen ${dir.guest}: file ${String(f?.path)} is not a normalised path under it`
      if (!(f.data instanceof Uint8Array)) return `preopen ${dir.guest}: file ${f.path} has no bytes`
      if (seen.has(f.path)) return `preopen ${dir.guest}: file ${f.path} is given twice`
      seen.add(f.path)
    }
    for (const d of dir.emptyDirs ?? []) {
      if (!isGuestPath(d) || !d.startsWith(prefix)) return `preopen ${dir.guest}: directory ${String(d)} is not a normalised path under it`
      if (seen.has(d)) return `preopen ${dir.guest}: ${d} is both a file and a directory`
    }
    const clash = findNested([...seen], dir.emptyDirs ?? [])
    if (clash !== undefined) return `preopen ${dir.guest}: ${clash.outer} is both a file and a directory (${clash.inner} is under it)`
  }
  const nested = findNested([...guests], [])
  if (nested !== undefined) return `preopen ${nested.inner} lies inside preopen ${nested.outer}: preopen the outer directory only`
  return undefined
}

/** The bytes of every file of `preopens`, counted with the module and input against payloadBytes. */
export function preopenBytes (preopens: readonly JobDir[] | undefined): number {
  let n = 0
  for (const dir of preopens ?? []) for (const f of dir.files) n += f.data.byteLength
  return n
}

/** Orders strings by the bytes of their UTF-8 encoding (code point order, unlike JavaScript's UTF-16 order). */
export function compareBytes (a: string, b: string): number {
  const x = encoder.encode(a)
  const y = encoder.encode(b)
  const n = Math.min(x.length, y.length)
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i] - y[i]
  return x.length - y.length
}

function equalBytes (a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** A guest path as text; invalid UTF-8 is EILSEQ. */
export function decodePath (bytes: Uint8Array): string {
  try {
    return decoder.decode(bytes)
  } catch {
    throw new FsError(Errno.ilseq)
  }
}

/** The `$filetype` of a node. */
export function fileTypeOf (node: Node): number {
  return node.kind === 'dir' ? FileType.directory : node.kind === 'file' ? FileType.regularFile : FileType.symbolicLink
}

/** A directory's entries in listing order: sorted by name bytes. */
export function sortedEntries (dir: DirNode): Array<[string, Node]> {
  // each name encoded once, not once per comparison
  const keyed = [...dir.entries].map(([name, node]) => ({ key: Buffer.from(name, 'utf8'), name, node }))
  keyed.sort((a, b) => Buffer.compare(a.key, b.key))
  return keyed.map(e => [e.name, e.node])
}
