/**
 * The descriptor table of the WASI shim: the three standard streams and the
 * preopened directories with everything opened under them. A descriptor
 * carries its rights (preview1's capabilities): an operation the rights do
 * not allow is ENOTCAPABLE, and a file opened from a directory gets at most
 * the directory's inheritable rights.
 */

import { Errno, FdFlags, Rights } from './wasi-abi.ts'
import { FsError, type DirNode, type FileNode, type MemFs } from './wasi-fs.ts'

/** A standard stream: stdin reads from the job input, stdout and stderr write to the captured output. */
export interface Stream {
  /** copies up to `target.length` bytes into `target`; returns how many (0 at end of input) */
  read?: (target: Uint8Array) => number
  /** bytes still to read, for poll_oneoff */
  readable?: () => number
  write?: (data: Uint8Array) => void
}

export interface Descriptor {
  /** a standard stream; undefined for a file or directory */
  stream?: Stream
  node?: FileNode | DirNode
  /** the guest path of a preopened directory (fd_prestat_*) */
  preopen?: string
  /** file offset, bytes */
  pos: number
  flags: number
  base: bigint
  inheriting: bigint
  /** the low 32 bits of `base` as a number, for the read/write path (BigInt arithmetic allocates) */
  low: number
}

/** A descriptor with `low` derived from its base rights; set `low` again whenever `base` changes. */
export function descriptor (d: Omit<Descriptor, 'low'>): Descriptor {
  return { ...d, low: lowRights(d.base) }
}

export function lowRights (base: bigint): number {
  return Number(base & 0xffffffffn)
}

/** fd_read, fd_write and fd_seek as bits of `Descriptor.low` */
export const LowRights = { fdRead: Number(Rights.fdRead), fdWrite: Number(Rights.fdWrite), fdSeek: Number(Rights.fdSeek) } as const

/** Rights that make sense on a regular file. */
export const FILE_RIGHTS = Rights.fdDatasync | Rights.fdRead | Rights.fdSeek | Rights.fdFdstatSetFlags | Rights.fdSync |
  Rights.fdTell | Rights.fdWrite | Rights.fdAdvise | Rights.fdAllocate | Rights.fdFilestatGet | Rights.fdFilestatSetSize |
  Rights.fdFilestatSetTimes | Rights.pollFdReadwrite

/** Rights that make sense on a directory. */
export const DIR_RIGHTS = Rights.fdFdstatSetFlags | Rights.fdSync | Rights.fdDatasync | Rights.fdAdvise |
  Rights.pathCreateDirectory | Rights.pathCreateFile | Rights.pathLinkSource | Rights.pathLinkTarget | Rights.pathOpen |
  Rights.fdReaddir | Rights.pathReadlink | Rights.pathRenameSource | Rights.pathRenameTarget | Rights.pathFilestatGet |
  Rights.pathFilestatSetSize | Rights.pathFilestatSetTimes | Rights.fdFilestatGet | Rights.fdFilestatSetTimes |
  Rights.pathSymlink | Rights.pathRemoveDirectory | Rights.pathUnlinkFile

const STDIN_RIGHTS = Rights.fdRead | Rights.fdFdstatSetFlags | Rights.fdFilestatGet | Rights.pollFdReadwrite
const STDOUT_RIGHTS = Rights.fdWrite | Rights.fdFdstatSetFlags | Rights.fdFilestatGet | Rights.pollFdReadwrite

/** The flags fd_fdstat_set_flags may change; the others are fixed at open. */
export const SETTABLE_FDFLAGS = FdFlags.append | FdFlags.nonblock

/** Open descriptors a job may hold at once, as Linux's default RLIMIT_NOFILE; one more is EMFILE. */
export const MAX_OPEN_FDS = 1024

export class FdTable {
  /** by number; an array, not a Map: fd_read/fd_write look descriptors up on every call */
  private readonly fds: Array<Descriptor | undefined> = []
  private open = 0

  constructor (streams: { stdin: Stream, stdout: Stream, stderr: Stream }, fs: MemFs | undefined) {
    this.add(descriptor({ stream: streams.stdin, pos: 0, flags: 0, base: STDIN_RIGHTS, inheriting: 0n }))
    this.add(descriptor({ stream: streams.stdout, pos: 0, flags: 0, base: STDOUT_RIGHTS, inheriting: 0n }))
    this.add(descriptor({ stream: streams.stderr, pos: 0, flags: 0, base: STDOUT_RIGHTS, inheriting: 0n }))
    for (const root of fs?.roots ?? []) {
      this.add(descriptor({ node: root.dir, preopen: root.guest, pos: 0, flags: 0, base: DIR_RIGHTS, inheriting: DIR_RIGHTS | FILE_RIGHTS }))
    }
  }

  has (fd: number): boolean {
    return this.fds[fd] !== undefined
  }

  /** The descriptor `fd`, or EBADF. */
  get (fd: number): Descriptor {
    const d = fd >= 0 ? this.fds[fd] : undefined
    if (d === undefined) throw new FsError(Errno.badf)
    return d
  }

  /** The descriptor `fd` if it holds `rights`; EBADF without it, ENOTCAPABLE without the rights. */
  with (fd: number, rights: bigint): Descriptor {
    const d = this.get(fd)
    if ((d.base & rights) !== rights) throw new FsError(Errno.notcapable)
    return d
  }

  /** A directory descriptor with `rights` (ENOTDIR for anything else). */
  dir (fd: number, rights: bigint): DirNode {
    const d = this.get(fd)
    if (d.node?.kind !== 'dir') throw new FsError(Errno.notdir)
    if ((d.base & rights) !== rights) throw new FsError(Errno.notcapable)
    return d.node
  }

  /** A regular file descriptor with `rights`: ESPIPE for a stream, EISDIR for a directory. */
  file (fd: number, rights: bigint): { d: Descriptor, file: FileNode } {
    if (this.get(fd).node === undefined) throw new FsError(Errno.spipe)
    const d = this.with(fd, rights)
    if (d.node === undefined) throw new FsError(Errno.spipe)
    if (d.node.kind !== 'file') throw new FsError(Errno.isdir)
    return { d, file: d.node }
  }

  /** Adds `d` at the lowest free number, as POSIX open does; EMFILE past MAX_OPEN_FDS. */
  add (d: Descriptor): number {
    if (this.open >= MAX_OPEN_FDS) throw new FsError(Errno.mfile)
    let fd = 0
    while (this.fds[fd] !== undefined) fd++
    this.fds[fd] = d
    this.open++
    return fd
  }

  close (fd: number): void {
    this.get(fd)
    this.fds[fd] = undefined
    this.open--
  }

  /** fd_renumber: `from` takes the place of `to`, which is closed. */
  renumber (from: number, to: number): void {
    const d = this.get(from)
    this.get(to)
    if (from === to) return
    this.fds[to] = d
    this.fds[from] = undefined
    this.open--
  }
}
