/**
 * The descriptor and path functions of WASI preview1 (fd_*, path_*) over the
 * shim's descriptor table and in-memory filesystem. Each function checks the
 * descriptor, then its rights, then the object, and answers the errno POSIX
 * and the WASI test suite expect; an FsError thrown anywhere below becomes
 * the call's errno.
 */

import { Errno, FdFlags, FileType, FstFlags, LookupFlags, OFlags, Rights, Whence } from './wasi-abi.ts'
import { DIR_RIGHTS, FILE_RIGHTS, LowRights, SETTABLE_FDFLAGS, descriptor, lowRights, type Descriptor, type FdTable } from './wasi-fds.ts'
import { FS_ENTRY_BYTES, FsError, decodePath, fileTypeOf, sortedEntries, type DirNode, type MemFs, type Node, type Resolved } from './wasi-fs.ts'
import { HostFuel, type GuestMemory } from './wasi-memory.ts'

type HostFunction = (...args: any[]) => number | undefined

/** The largest file offset: sizes and offsets stay exact in a JavaScript number. */
const MAX_OFFSET = Number.MAX_SAFE_INTEGER
const MAX_OFFSET_BIG = BigInt(MAX_OFFSET)
/** `$advice` values are 0..5. */
const MAX_ADVICE = 5
/** struct dirent: d_next u64, d_ino u64, d_namlen u32, d_type u8 (24 bytes), then the name */
const DIRENT_SIZE = 24

const encoder = new TextEncoder()

export class WasiFiles {
  private readonly mem: GuestMemory
  private readonly fds: FdTable
  private readonly fs: MemFs | undefined

  constructor (mem: GuestMemory, fds: FdTable, fs: MemFs | undefined) {
    this.mem = mem
    this.fds = fds
    this.fs = fs
  }

  /** Every fd_* and path_* function; they throw FsError for their errno, which the shim's guard answers. */
  functions (): Record<string, HostFunction> {
    return { ...this.streamFunctions(), ...this.fdFunctions(), ...this.pathFunctions(), ...this.linkFunctions() }
  }

  // -------------------------------------------------------------------------
  // reading and writing

  private streamFunctions (): Record<string, HostFunction> {
    return {
      fd_read: (fd: number, iovs: number, n: number, nreadPtr: number) => this.read(fd, iovs, n, nreadPtr, undefined),
      fd_pread: (fd: number, iovs: number, n: number, offset: bigint, nreadPtr: number) => this.read(fd, iovs, n, nreadPtr, offset),
      fd_write: (fd: number, iovs: number, n: number, nwrittenPtr: number) => this.write(fd, iovs, n, nwrittenPtr, undefined),
      fd_pwrite: (fd: number, iovs: number, n: number, offset: bigint, nwrittenPtr: number) => this.write(fd, iovs, n, nwrittenPtr, offset),
      fd_seek: (fd: number, delta: bigint, whence: number, newPtr: number) => {
        const { d, file } = this.fds.file(fd, delta === 0n && whence === Whence.cur ? Rights.fdTell : Rights.fdSeek)
        const from = whence === Whence.set ? 0n : whence === Whence.cur ? BigInt(d.pos) : whence === Whence.end ? BigInt(file.size) : -1n
        const to = from + delta
        if (from < 0n || to < 0n || to > MAX_OFFSET_BIG) return Errno.inval
        d.pos = Number(to)
        this.mem.setU64(newPtr, to)
        return Errno.success
      },
      fd_tell: (fd: number, posPtr: number) => {
        const { d } = this.fds.file(fd, Rights.fdTell)
        this.mem.setU64(posPtr, BigInt(d.pos))
        return Errno.success
      }
    }
  }

  /**
   * The iovecs of a read or write on `d` (`at`: the offset of a pread/pwrite),
   * or the errno that refuses it: EBADF without the right (as POSIX on a
   * descriptor not open for it), EISDIR, ESPIPE for an offset on a stream,
   * EINVAL for an offset past the largest or too many iovecs. Rights as
   * numbers: this is the hot path of every job's output.
   */
  private iovecsFor (d: Descriptor, right: number, at: bigint | undefined, iovs: number, count: number): { count: number } | number {
    const needed = at === undefined ? right : right | LowRights.fdSeek
    if ((d.low & needed) !== needed) return Errno.badf
    if (d.node?.kind === 'dir') return Errno.isdir
    if (at !== undefined && d.node === undefined) return Errno.spipe
    if (at !== undefined && at > MAX_OFFSET_BIG) return Errno.inval
    const n = this.mem.iovecs(iovs, count)
    return n === undefined ? Errno.inval : { count: n }
  }

  /** The guest bytes iovec `i` of the array at `iovs` names. */
  private iovec (iovs: number, i: number): Uint8Array {
    return this.mem.bytes(this.mem.getU32(iovs + i * 8), this.mem.getU32(iovs + i * 8 + 4))
  }

  private read (fd: number, iovs: number, count: number, nreadPtr: number, at: bigint | undefined): number {
    const d = this.fds.get(fd)
    const v = this.iovecsFor(d, LowRights.fdRead, at, iovs, count)
    if (typeof v === 'number') return v
    const file = d.node?.kind === 'file' ? d.node : undefined
    let pos = at === undefined ? d.pos : Number(at)
    let total = 0
    for (let i = 0; i < v.count; i++) {
      const target = this.iovec(iovs, i)
      let n: number
      if (file === undefined) {
        n = d.stream?.read?.(target) ?? 0
      } else {
        n = Math.max(0, Math.min(target.length, file.size - pos))
        target.set(file.data.subarray(pos, pos + n))
        pos += n
      }
      this.mem.chargeCopy(n)
      total += n
      // a zero-length iovec is skipped, not taken for end of input (musl's stdio puts one first for 1-byte reads)
      if (n < target.length) break
    }
    if (at === undefined && file !== undefined) d.pos = pos
    if (file !== undefined) file.atim = this.now()
    this.mem.setU32(nreadPtr, total)
    return Errno.success
  }

  private write (fd: number, iovs: number, count: number, nwrittenPtr: number, at: bigint | undefined): number {
    const d = this.fds.get(fd)
    const v = this.iovecsFor(d, LowRights.fdWrite, at, iovs, count)
    if (typeof v === 'number') return v
    const file = d.node?.kind === 'file' ? d.node : undefined
    // O_APPEND moves fd_write to the end; fd_pwrite writes at its offset (POSIX says so, Linux appends anyway)
    let pos = at !== undefined ? Number(at) : file !== undefined && (d.flags & FdFlags.append) !== 0 ? file.size : d.pos
    let total = 0
    for (let i = 0; i < v.count; i++) {
      const data = this.iovec(iovs, i)
      this.mem.chargeCopy(data.length)
      if (file === undefined) {
        d.stream?.write?.(data)
      } else {
        if (pos + data.length > MAX_OFFSET) return total === 0 ? Errno.fbig : this.wrote(nwrittenPtr, total)
        this.fs?.write(file, pos, data)
        pos += data.length
      }
      total += data.length
    }
    if (at === undefined && file !== undefined) d.pos = pos
    return this.wrote(nwrittenPtr, total)
  }

  private wrote (ptr: number, total: number): number {
    this.mem.setU32(ptr, total)
    return Errno.success
  }

  // -------------------------------------------------------------------------
  // descriptors

  private fdFunctions (): Record<string, HostFunction> {
    return {
      fd_close: (fd: number) => { this.fds.close(fd); return Errno.success },
      fd_renumber: (from: number, to: number) => { this.fds.renumber(from, to); return Errno.success },
      fd_fdstat_get: (fd: number, ptr: number) => {
        const d = this.fds.get(fd)
        const v = this.mem.struct(ptr, 24)
        v.setUint8(0, d.node === undefined ? FileType.characterDevice : fileTypeOf(d.node))
        v.setUint16(2, d.flags, true)
        v.setBigUint64(8, d.base, true)
        v.setBigUint64(16, d.inheriting, true)
        return Errno.success
      },
      fd_fdstat_set_flags: (fd: number, flags: number) => {
        const d = this.fds.with(fd, Rights.fdFdstatSetFlags)
        if ((flags & ~SETTABLE_FDFLAGS & 0xffff) !== 0) return Errno.inval
        d.flags = flags & SETTABLE_FDFLAGS
        return Errno.success
      },
      fd_fdstat_set_rights: (fd: number, base: bigint, inheriting: bigint) => {
        const d = this.fds.get(fd)
        if ((base & ~d.base) !== 0n || (inheriting & ~d.inheriting) !== 0n) return Errno.notcapable
        d.base = base
        d.low = lowRights(base)
        d.inheriting = inheriting
        return Errno.success
      },
      ...this.fileStatFunctions(),
      ...this.preopenFunctions()
    }
  }

  /** fd_filestat_*, and what a file descriptor can ask of its storage. */
  private fileStatFunctions (): Record<string, HostFunction> {
    return {
      fd_filestat_get: (fd: number, ptr: number) => {
        const d = this.fds.with(fd, Rights.fdFilestatGet)
        this.filestat(ptr, d.node)
        return Errno.success
      },
      fd_filestat_set_size: (fd: number, size: bigint) => {
        const { file } = this.fds.file(fd, Rights.fdFilestatSetSize)
        if (size > MAX_OFFSET_BIG) return Errno.fbig
        this.mem.chargeCopy(Math.max(0, Number(size) - file.size))
        this.fs?.resize(file, Number(size))
        file.mtim = file.ctim = this.now()
        return Errno.success
      },
      fd_filestat_set_times: (fd: number, atim: bigint, mtim: bigint, flags: number) => {
        const d = this.fds.with(fd, Rights.fdFilestatSetTimes)
        return d.node === undefined ? Errno.success : this.setTimes(d.node, atim, mtim, flags)
      },
      fd_allocate: (fd: number, offset: bigint, len: bigint) => {
        const { file } = this.fds.file(fd, Rights.fdAllocate)
        const end = offset + len
        if (end > MAX_OFFSET_BIG) return Errno.fbig
        if (Number(end) <= file.size) return Errno.success
        this.mem.chargeCopy(Number(end) - file.size)
        this.fs?.resize(file, Number(end))
        return Errno.success
      },
      fd_advise: (fd: number, _offset: bigint, _len: bigint, advice: number) => {
        this.fds.with(fd, Rights.fdAdvise)
        return advice < 0 || advice > MAX_ADVICE ? Errno.inval : Errno.success
      },
      fd_datasync: (fd: number) => { this.fds.with(fd, Rights.fdDatasync); return Errno.success },
      fd_sync: (fd: number) => { this.fds.with(fd, Rights.fdSync); return Errno.success }
    }
  }

  /** The preopened directories' names, and listing a directory. */
  private preopenFunctions (): Record<string, HostFunction> {
    return {
      fd_readdir: (fd: number, buf: number, len: number, cookie: bigint, usedPtr: number) => this.readdir(fd, buf, len, cookie, usedPtr),
      fd_prestat_get: (fd: number, ptr: number) => {
        const d = this.fds.get(fd)
        if (d.preopen === undefined) return Errno.badf
        const v = this.mem.struct(ptr, 8)
        v.setUint32(4, encoder.encode(d.preopen).length, true)
        return Errno.success
      },
      fd_prestat_dir_name: (fd: number, ptr: number, len: number) => {
        const d = this.fds.get(fd)
        if (d.preopen === undefined) return Errno.badf
        const name = encoder.encode(d.preopen)
        if ((len >>> 0) < name.length) return Errno.nametoolong
        this.mem.bytes(ptr, name.length).set(name)
        return Errno.success
      }
    }
  }

  /** Writes a struct filestat (64 bytes) for `node`; a stream is a character device with no times. */
  private filestat (ptr: number, node: Node | undefined): void {
    const v = this.mem.struct(ptr, 64)
    if (node === undefined) {
      v.setUint8(16, FileType.characterDevice)
      return
    }
    v.setBigUint64(0, 1n, true) // one device: every preopen is part of the job's filesystem
    v.setBigUint64(8, node.ino, true)
    v.setUint8(16, fileTypeOf(node))
    v.setBigUint64(24, BigInt(node.kind === 'file' ? node.nlink : 1), true)
    v.setBigUint64(32, BigInt(node.kind === 'file' ? node.size : node.kind === 'symlink' ? encoder.encode(node.target).length : 0), true)
    v.setBigUint64(40, node.atim, true)
    v.setBigUint64(48, node.mtim, true)
    v.setBigUint64(56, node.ctim, true)
  }

  private setTimes (node: Node, atim: bigint, mtim: bigint, flags: number): number {
    if ((flags & ~0xf) !== 0) return Errno.inval
    if ((flags & FstFlags.atim) !== 0 && (flags & FstFlags.atimNow) !== 0) return Errno.inval
    if ((flags & FstFlags.mtim) !== 0 && (flags & FstFlags.mtimNow) !== 0) return Errno.inval
    const now = this.now()
    if ((flags & FstFlags.atim) !== 0) node.atim = atim
    if ((flags & FstFlags.atimNow) !== 0) node.atim = now
    if ((flags & FstFlags.mtim) !== 0) node.mtim = mtim
    if ((flags & FstFlags.mtimNow) !== 0) node.mtim = now
    node.ctim = now
    return Errno.success
  }

  /** Entries '.', '..', then the rest by name bytes; the cookie of an entry is its index + 1. */
  private readdir (fd: number, buf: number, len: number, cookie: bigint, usedPtr: number): number {
    const dir = this.fds.dir(fd, Rights.fdReaddir)
    // listing sorts the whole directory, whatever the cookie: charged per entry
    this.mem.charge(dir.entries.size * HostFuel.perLookup)
    const entries: Array<[string, Node]> = [['.', dir], ['..', dir.parent ?? dir], ...sortedEntries(dir)]
    const out = this.mem.bytes(buf, len)
    let used = 0
    for (let i = Number(cookie < 0n ? 0n : cookie); i < entries.length && used < out.length; i++) {
      const [name, node] = entries[i]
      const nameBytes = encoder.encode(name)
      const entry = new Uint8Array(DIRENT_SIZE + nameBytes.length)
      const v = new DataView(entry.buffer)
      v.setBigUint64(0, BigInt(i + 1), true)
      v.setBigUint64(8, node.ino, true)
      v.setUint32(16, nameBytes.length, true)
      v.setUint8(20, fileTypeOf(node))
      entry.set(nameBytes, DIRENT_SIZE)
      // the last entry may be cut short: the caller sees a full buffer and asks again from its cookie
      const n = Math.min(entry.length, out.length - used)
      out.set(entry.subarray(0, n), used)
      used += n
    }
    this.mem.chargeCopy(used)
    this.mem.setU32(usedPtr, used)
    return Errno.success
  }

  // -------------------------------------------------------------------------
  // paths

  /** The path argument, charged one lookup per component besides the copy. */
  private path (ptr: number, len: number): string {
    const bytes = this.mem.bytes(ptr, len)
    this.mem.chargeCopy(bytes.length)
    let components = 1
    for (const b of bytes) if (b === 0x2f) components++
    this.mem.charge(components * HostFuel.perLookup)
    return decodePath(bytes)
  }

  private lookup (fd: number, rights: bigint, ptr: number, len: number, follow: boolean): Resolved {
    const dir = this.fds.dir(fd, rights)
    return this.requireFs().resolve(dir, this.path(ptr, len), follow)
  }

  private requireFs (): MemFs {
    if (this.fs === undefined) throw new FsError(Errno.badf)
    return this.fs
  }

  private pathFunctions (): Record<string, HostFunction> {
    return {
      path_open: (fd: number, lookup: number, ptr: number, len: number, oflags: number, base: bigint, inheriting: bigint, fdflags: number, fdPtr: number) =>
        this.open(fd, lookup, ptr, len, oflags, base, inheriting, fdflags, fdPtr),
      path_create_directory: (fd: number, ptr: number, len: number) => {
        const r = this.lookup(fd, Rights.pathCreateDirectory, ptr, len, false)
        if (r.node !== undefined || r.name === '.') return Errno.exist
        r.parent.entries.set(r.name, this.requireFs().newDir(r.parent, r.name))
        return this.touched(r.parent)
      },
      path_filestat_get: (fd: number, lookup: number, ptr: number, len: number, statPtr: number) => {
        const r = this.lookup(fd, Rights.pathFilestatGet, ptr, len, (lookup & LookupFlags.symlinkFollow) !== 0)
        this.filestat(statPtr, existing(r))
        return Errno.success
      },
      path_filestat_set_times: (fd: number, lookup: number, ptr: number, len: number, atim: bigint, mtim: bigint, flags: number) => {
        const r = this.lookup(fd, Rights.pathFilestatSetTimes, ptr, len, (lookup & LookupFlags.symlinkFollow) !== 0)
        return this.setTimes(existing(r), atim, mtim, flags)
      },
      path_readlink: (fd: number, ptr: number, len: number, buf: number, bufLen: number, usedPtr: number) => {
        const r = this.lookup(fd, Rights.pathReadlink, ptr, len, false)
        const node = existing(r)
        if (node.kind !== 'symlink') return Errno.inval
        const target = encoder.encode(node.target)
        const n = Math.min(target.length, bufLen >>> 0)
        this.mem.bytes(buf, n).set(target.subarray(0, n))
        this.mem.setU32(usedPtr, n)
        return Errno.success
      },
      path_remove_directory: (fd: number, ptr: number, len: number) => {
        const r = this.lookup(fd, Rights.pathRemoveDirectory, ptr, len, false)
        const node = existing(r)
        if (node.kind !== 'dir') return Errno.notdir
        if (r.name === '.' || r.parent === node) return Errno.inval
        if (node.entries.size > 0) return Errno.notempty
        this.requireFs().unlink(r.parent, r.name)
        return this.touched(r.parent)
      },
      path_unlink_file: (fd: number, ptr: number, len: number) => {
        const r = this.lookup(fd, Rights.pathUnlinkFile, ptr, len, false)
        const node = existing(r)
        if (node.kind === 'dir') return Errno.isdir
        if (r.mustBeDir) return Errno.notdir
        this.requireFs().unlink(r.parent, r.name)
        return this.touched(r.parent)
      }
    }
  }

  private open (fd: number, lookup: number, ptr: number, len: number, oflags: number, base: bigint, inheriting: bigint, fdflags: number, fdPtr: number): number {
    const from = this.fds.get(fd)
    let rights = Rights.pathOpen
    if ((oflags & OFlags.creat) !== 0) rights |= Rights.pathCreateFile
    if ((oflags & OFlags.trunc) !== 0) rights |= Rights.pathFilestatSetSize
    const r = this.lookup(fd, rights, ptr, len, (lookup & LookupFlags.symlinkFollow) !== 0)
    let node = r.node
    if (node?.kind === 'symlink') return (oflags & OFlags.directory) !== 0 ? Errno.notdir : Errno.loop
    if (node === undefined) {
      if ((oflags & OFlags.creat) === 0) return Errno.noent
      if ((oflags & OFlags.directory) !== 0 || r.mustBeDir) return Errno.isdir
      node = this.requireFs().newFile(new Uint8Array(0), false)
      r.parent.entries.set(r.name, node)
      this.touched(r.parent)
    } else if ((oflags & OFlags.creat) !== 0 && (oflags & OFlags.excl) !== 0) {
      return Errno.exist
    }
    if (node.kind === 'file' && ((oflags & OFlags.directory) !== 0 || r.mustBeDir)) return Errno.notdir
    if (node.kind === 'dir' && ((oflags & OFlags.trunc) !== 0 || (base & Rights.fdWrite) !== 0n)) return Errno.isdir
    if (node.kind === 'file' && (oflags & OFlags.trunc) !== 0) {
      this.requireFs().resize(node, 0)
      node.mtim = node.ctim = this.now()
    }
    const mask = node.kind === 'dir' ? DIR_RIGHTS : FILE_RIGHTS
    const d = descriptor({ node, pos: 0, flags: fdflags & 0x1f, base: base & from.inheriting & mask, inheriting: inheriting & from.inheriting })
    this.mem.setU32(fdPtr, this.fds.add(d))
    return Errno.success
  }

  private linkFunctions (): Record<string, HostFunction> {
    return {
      path_link: (oldFd: number, lookup: number, oldPtr: number, oldLen: number, newFd: number, newPtr: number, newLen: number) => {
        const from = this.lookup(oldFd, Rights.pathLinkSource, oldPtr, oldLen, (lookup & LookupFlags.symlinkFollow) !== 0)
        const to = this.lookup(newFd, Rights.pathLinkTarget, newPtr, newLen, false)
        const node = existing(from)
        if (node.kind === 'dir') return Errno.perm
        if (from.mustBeDir) return Errno.notdir
        if (to.node !== undefined) return Errno.exist
        if (to.mustBeDir) return Errno.noent
        const fs = this.requireFs()
        if (node.kind === 'file') {
          fs.reserve(FS_ENTRY_BYTES)
          node.nlink++
          node.ctim = this.now()
          to.parent.entries.set(to.name, node)
        } else {
          to.parent.entries.set(to.name, fs.newSymlink(node.target))
        }
        return this.touched(to.parent)
      },
      path_symlink: (oldPtr: number, oldLen: number, fd: number, newPtr: number, newLen: number) => {
        const target = this.path(oldPtr, oldLen)
        // a link out of the preopen would be a way around the capability: refuse it when made, not only when followed
        if (target.startsWith('/')) return Errno.notcapable
        const r = this.lookup(fd, Rights.pathSymlink, newPtr, newLen, false)
        if (r.node !== undefined || r.name === '.') return Errno.exist
        if (r.mustBeDir) return Errno.noent
        r.parent.entries.set(r.name, this.requireFs().newSymlink(target))
        return this.touched(r.parent)
      },
      path_rename: (oldFd: number, oldPtr: number, oldLen: number, newFd: number, newPtr: number, newLen: number) => {
        const from = this.lookup(oldFd, Rights.pathRenameSource, oldPtr, oldLen, false)
        const to = this.lookup(newFd, Rights.pathRenameTarget, newPtr, newLen, false)
        return this.rename(from, to)
      }
    }
  }

  private rename (from: Resolved, to: Resolved): number {
    const node = existing(from)
    if (from.name === '.' || to.name === '.') return Errno.busy
    if (node.kind !== 'dir' && (from.mustBeDir || to.mustBeDir)) return Errno.notdir
    const target = to.node
    if (target === node) return Errno.success
    if (target !== undefined) {
      if (node.kind === 'dir' && target.kind !== 'dir') return Errno.notdir
      if (node.kind !== 'dir' && target.kind === 'dir') return Errno.isdir
      if (target.kind === 'dir' && target.entries.size > 0) return Errno.notempty
    }
    if (node.kind === 'dir' && isWithin(to.parent, node)) return Errno.inval
    const fs = this.requireFs()
    if (target !== undefined) fs.unlink(to.parent, to.name)
    from.parent.entries.delete(from.name)
    to.parent.entries.set(to.name, node)
    if (node.kind === 'dir') {
      node.parent = to.parent
      node.name = to.name
    }
    node.ctim = this.now()
    this.touched(from.parent)
    return this.touched(to.parent)
  }

  private touched (dir: DirNode): number {
    dir.mtim = dir.ctim = this.now()
    return Errno.success
  }

  private now (): bigint {
    return this.fs?.now() ?? 0n
  }
}

/** The node a path names; ENOENT when there is none, ENOTDIR when a trailing '/' names a non-directory. */
function existing (r: Resolved): Node {
  if (r.node === undefined) throw new FsError(Errno.noent)
  if (r.mustBeDir && r.node.kind !== 'dir') throw new FsError(Errno.notdir)
  return r.node
}

/** Whether `dir` is `ancestor` or below it. */
function isWithin (dir: DirNode, ancestor: DirNode): boolean {
  for (let d: DirNode | undefined = dir; d !== undefined; d = d.parent) if (d === ancestor) return true
  return false
}
