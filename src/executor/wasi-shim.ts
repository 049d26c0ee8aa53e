/**
 * Our own deterministic WASI preview1 host, instead of node:wasi: node:wasi is
 * not a sandbox (its docs say so) and hands the guest the real clock and real
 * randomness, which would make the replicas of one job disagree (their outputs
 * are compared to accept a result).
 *
 * Everything the guest can observe is a function of the job: stdin is the job
 * input, args and env come from the request, the clock is virtual (a fixed
 * epoch advanced by a fixed step per reading), random bytes come from SHA-256
 * in counter mode seeded with the jobId (not the taskId: the replicas of one
 * job must see the same bytes). There is no filesystem (no preopened
 * directories) and no network. Functions that make no sense here return ENOSYS,
 * or EBADF for a descriptor that does not exist.
 */

import { createHash } from 'node:crypto'
import { ClockId, Errno, FileType, Rights, WASI_MODULE, WASI_SIGNATURES } from './wasi-abi.ts'

/** Virtual realtime clock origin: 2024-01-01T00:00:00Z, in ns. */
export const VIRTUAL_EPOCH_NS = 1_704_067_200n * 1_000_000_000n
/** Each clock_time_get call advances the virtual clock by 1 ms, so time moves and never repeats. */
export const VIRTUAL_CLOCK_STEP_NS = 1_000_000n
/** Domain separation for the random stream, versioned like the meter: changing it changes job output. */
const RANDOM_DOMAIN = 'worldcompute/random_get/v1\0'
/** At most this many iovecs per fd_read/fd_write call, as POSIX's IOV_MAX on Linux; more is EINVAL. */
export const IOV_MAX = 1024

/**
 * Fuel of host calls (part of the cost rule named by METER_VERSION): a call
 * costs in proportion to the guest bytes it touches, so that a fuel budget
 * bounds host work as it bounds guest code. Copies cost 1 per 64 bytes (as
 * memory.copy does) plus 1 per iovec; random bytes cost 1 each, since each 32
 * of them take a SHA-256.
 */
export const HostFuel = {
  perIovec: 1,
  copyShift: 6,
  perRandomByte: 1
} as const

/** Charges `units` of fuel; throws (unwinding the guest) when the budget is spent. */
export type FuelCharge = (units: number) => void

export interface WasiShimInit {
  /** argv, argv[0] included */
  args: readonly string[]
  /** `K=V` strings */
  env: readonly string[]
  stdin: Uint8Array
  /** cap on stdout + stderr together, bytes */
  outputLimit: number
  /** seeds random_get: the jobId */
  randomSeed: string
}

/** Thrown by `proc_exit`: unwinds the guest, and the runner reports the exit code. */
export class WasiExit extends Error {
  readonly code: number
  constructor (code: number) {
    super(`guest called proc_exit(${code})`)
    this.name = 'WasiExit'
    this.code = code
  }
}

/** Thrown by `fd_write` when stdout + stderr would exceed the job's output cap. */
export class OutputLimitExceeded extends Error {
  readonly limit: number
  constructor (limit: number) {
    super(`stdout and stderr together exceeded the output cap of ${limit} bytes`)
    this.name = 'OutputLimitExceeded'
    this.limit = limit
  }
}

/** A pointer or length from the guest points outside its memory; the call returns EFAULT. */
class GuestMemoryFault extends Error {
  constructor (ptr: number, len: number, size: number) {
    super(`guest range ${ptr}+${len} is outside its ${size}-byte memory`)
    this.name = 'GuestMemoryFault'
  }
}

const encoder = new TextEncoder()

type HostFunction = (...args: any[]) => number | undefined

export class WasiShim {
  private readonly args: Uint8Array[]
  private readonly env: Uint8Array[]
  private readonly stdin: Uint8Array
  private stdinPos = 0
  private readonly outputLimit: number
  private outputTotal = 0
  private readonly stdoutBuffer = new OutputBuffer()
  private readonly stderrBuffer = new OutputBuffer()
  private charge: FuelCharge = () => {}
  private readonly closed = new Set<number>()
  private clockReadings = 0n
  private readonly randomSeed: Buffer
  private randomCounter = 0n
  private randomPool: Uint8Array = new Uint8Array(0)
  private memory?: WebAssembly.Memory
  /** every preview1 function, by name */
  readonly functions: Readonly<Record<string, HostFunction>>

  constructor (init: WasiShimInit) {
    this.args = init.args.map(a => encoder.encode(a + '\0'))
    this.env = init.env.map(e => encoder.encode(e + '\0'))
    this.stdin = init.stdin
    this.outputLimit = init.outputLimit
    this.randomSeed = createHash('sha256').update(RANDOM_DOMAIN).update(init.randomSeed).digest()
    this.functions = Object.freeze(this.buildFunctions())
  }

  /**
   * Gives the shim the guest's memory and the way to charge fuel for host
   * work; must be called after instantiation, before the guest runs.
   */
  attach (memory: WebAssembly.Memory, charge?: FuelCharge): void {
    this.memory = memory
    if (charge !== undefined) this.charge = charge
  }

  /**
   * The import object for `module`: every `wasi_snapshot_preview1` function it
   * imports, including names this shim does not know (an ENOSYS stub), so that
   * standard modules always link.
   */
  importsFor (module: WebAssembly.Module): WebAssembly.Imports {
    const ns: Record<string, HostFunction> = {}
    for (const imp of WebAssembly.Module.imports(module)) {
      if (imp.module === WASI_MODULE && imp.kind === 'function') ns[imp.name] = this.functions[imp.name] ?? (() => Errno.nosys)
    }
    return { [WASI_MODULE]: ns }
  }

  get stdout (): Uint8Array {
    return this.stdoutBuffer.toBytes()
  }

  get stderr (): Uint8Array {
    return this.stderrBuffer.toBytes()
  }

  // -------------------------------------------------------------------------
  // guest memory access

  private bytes (ptr: number, len: number): Uint8Array {
    if (this.memory === undefined) throw new Error('WasiShim.attach(memory) was not called before the guest ran')
    const buffer = this.memory.buffer
    const p = ptr >>> 0 // i32 arguments arrive signed
    const n = len >>> 0
    if (p + n > buffer.byteLength) throw new GuestMemoryFault(p, n, buffer.byteLength)
    return new Uint8Array(buffer, p, n)
  }

  private view (ptr: number, len: number): DataView {
    const b = this.bytes(ptr, len)
    return new DataView(b.buffer, b.byteOffset, b.byteLength)
  }

  private setU32 (ptr: number, value: number): void {
    this.view(ptr, 4).setUint32(0, value, true)
  }

  private setU64 (ptr: number, value: bigint): void {
    this.view(ptr, 8).setBigUint64(0, value, true)
  }

  /**
   * The iovec/ciovec array as a view (ptr at i * 8, len at i * 8 + 4), read in
   * place: no object per iovec. Undefined (EINVAL) above IOV_MAX entries; the
   * iovecs are charged here, before any is touched.
   */
  private iovecs (iovs: number, count: number): DataView | undefined {
    const n = count >>> 0
    if (n > IOV_MAX) return undefined
    const v = this.view(iovs, n * 8)
    this.charge(n * HostFuel.perIovec)
    return v
  }

  private chargeCopy (bytes: number): void {
    this.charge(bytes >>> HostFuel.copyShift)
  }

  private isStd (fd: number): boolean {
    return fd >= 0 && fd <= 2 && !this.closed.has(fd)
  }

  // -------------------------------------------------------------------------
  // the functions

  private buildFunctions (): Record<string, HostFunction> {
    const fns: Record<string, HostFunction> = {
      ...this.processFunctions(),
      ...this.streamFunctions(),
      ...this.unsupportedFunctions()
    }
    // every name in the preview1 table must be served (a missing one would be a bug here)
    for (const name of Object.keys(WASI_SIGNATURES)) {
      if (fns[name] === undefined) throw new Error(`WasiShim has no implementation of ${name}`)
    }
    const guarded: Record<string, HostFunction> = {}
    for (const [name, fn] of Object.entries(fns)) guarded[name] = guard(fn)
    return guarded
  }

  /** What the guest sees of its process: args, environment, the virtual clock, randomness, exit. */
  private processFunctions (): Record<string, HostFunction> {
    return {
      args_sizes_get: (argcPtr: number, bufSizePtr: number) => this.sizes(this.args, argcPtr, bufSizePtr),
      args_get: (argvPtr: number, bufPtr: number) => this.strings(this.args, argvPtr, bufPtr),
      environ_sizes_get: (countPtr: number, bufSizePtr: number) => this.sizes(this.env, countPtr, bufSizePtr),
      environ_get: (environPtr: number, bufPtr: number) => this.strings(this.env, environPtr, bufPtr),
      clock_res_get: (id: number, resultPtr: number) => {
        if (!isClockId(id)) return Errno.inval
        this.setU64(resultPtr, VIRTUAL_CLOCK_STEP_NS)
        return Errno.success
      },
      clock_time_get: (id: number, _precision: bigint, resultPtr: number) => {
        if (!isClockId(id)) return Errno.inval
        this.clockReadings++
        const elapsed = this.clockReadings * VIRTUAL_CLOCK_STEP_NS
        this.setU64(resultPtr, id === ClockId.realtime ? VIRTUAL_EPOCH_NS + elapsed : elapsed)
        return Errno.success
      },
      random_get: (bufPtr: number, bufLen: number) => {
        const target = this.bytes(bufPtr, bufLen)
        this.charge(target.length * HostFuel.perRandomByte)
        this.fillRandom(target)
        return Errno.success
      },
      proc_exit: (code: number) => {
        throw new WasiExit(code >>> 0)
      },
      sched_yield: () => Errno.success
    }
  }

  /** The three standard streams, the only descriptors there are. */
  private streamFunctions (): Record<string, HostFunction> {
    return {
      fd_read: (fd: number, iovs: number, iovsLen: number, nreadPtr: number) => this.readStdin(fd, iovs, iovsLen, nreadPtr),
      fd_write: (fd: number, iovs: number, iovsLen: number, nwrittenPtr: number) => this.writeOutput(fd, iovs, iovsLen, nwrittenPtr),
      fd_close: (fd: number) => {
        if (!this.isStd(fd)) return Errno.badf
        this.closed.add(fd)
        return Errno.success
      },
      fd_fdstat_get: (fd: number, statPtr: number) => {
        if (!this.isStd(fd)) return Errno.badf
        // struct fdstat { u8 filetype; u16 flags @2; u64 rights_base @8; u64 rights_inheriting @16 } (24 bytes)
        const v = this.characterDevice(statPtr, 24, 0)
        v.setBigUint64(8, (fd === 0 ? Rights.fdRead : Rights.fdWrite) | Rights.pollFdReadwrite, true)
        return Errno.success
      },
      fd_filestat_get: (fd: number, statPtr: number) => {
        if (!this.isStd(fd)) return Errno.badf
        // struct filestat: dev, ino, filetype @16, nlink, size, atim, mtim, ctim (64 bytes); a device with no times
        this.characterDevice(statPtr, 64, 16)
        return Errno.success
      }
    }
  }

  /** What a stream cannot do, what a missing descriptor answers, and no filesystem, sockets or signals. */
  private unsupportedFunctions (): Record<string, HostFunction> {
    const enosys = (): number => Errno.nosys
    /** for functions on an open descriptor that a stream cannot do */
    const stdOr = (onStd: number) => (fd: number): number => this.isStd(fd) ? onStd : Errno.badf
    /** for path_* functions: a standard stream is not a directory, and no directory is open */
    const dirFd = (fd: number): number => this.isStd(fd) ? Errno.notdir : Errno.badf
    return {
      fd_seek: stdOr(Errno.spipe),
      fd_tell: stdOr(Errno.spipe),
      fd_pread: stdOr(Errno.spipe),
      fd_pwrite: stdOr(Errno.spipe),
      fd_prestat_get: () => Errno.badf, // no preopened directories: wasi-libc stops scanning at the first EBADF
      fd_prestat_dir_name: () => Errno.badf,
      fd_advise: stdOr(Errno.nosys),
      fd_allocate: stdOr(Errno.nosys),
      fd_datasync: stdOr(Errno.nosys),
      fd_sync: stdOr(Errno.nosys),
      fd_fdstat_set_flags: stdOr(Errno.nosys),
      fd_fdstat_set_rights: stdOr(Errno.nosys),
      fd_filestat_set_size: stdOr(Errno.nosys),
      fd_filestat_set_times: stdOr(Errno.nosys),
      fd_readdir: dirFd,
      fd_renumber: (from: number, to: number) => this.isStd(from) && this.isStd(to) ? Errno.nosys : Errno.badf,

      path_create_directory: dirFd,
      path_filestat_get: dirFd,
      path_filestat_set_times: dirFd,
      path_link: dirFd,
      path_open: dirFd,
      path_readlink: dirFd,
      path_remove_directory: dirFd,
      path_rename: dirFd,
      path_symlink: (_oldPath: number, _oldLen: number, fd: number) => dirFd(fd),
      path_unlink_file: dirFd,

      poll_oneoff: enosys,
      proc_raise: enosys,
      sock_accept: stdOr(Errno.nosys),
      sock_recv: stdOr(Errno.nosys),
      sock_send: stdOr(Errno.nosys),
      sock_shutdown: stdOr(Errno.nosys)
    }
  }

  private readStdin (fd: number, iovs: number, iovsLen: number, nreadPtr: number): number {
    if (fd !== 0 || !this.isStd(fd)) return Errno.badf
    const v = this.iovecs(iovs, iovsLen)
    if (v === undefined) return Errno.inval
    let total = 0
    for (let at = 0; at < v.byteLength; at += 8) {
      if (this.stdinPos >= this.stdin.length) break
      // a zero-length iovec is skipped, not taken for end of input (musl's stdio puts one first for 1-byte reads)
      const n = Math.min(v.getUint32(at + 4, true), this.stdin.length - this.stdinPos)
      this.chargeCopy(n)
      this.bytes(v.getUint32(at, true), n).set(this.stdin.subarray(this.stdinPos, this.stdinPos + n))
      this.stdinPos += n
      total += n
    }
    this.setU32(nreadPtr, total)
    return Errno.success
  }

  private writeOutput (fd: number, iovs: number, iovsLen: number, nwrittenPtr: number): number {
    if ((fd !== 1 && fd !== 2) || !this.isStd(fd)) return Errno.badf
    const out = fd === 1 ? this.stdoutBuffer : this.stderrBuffer
    const v = this.iovecs(iovs, iovsLen)
    if (v === undefined) return Errno.inval
    let total = 0
    for (let at = 0; at < v.byteLength; at += 8) {
      const data = this.bytes(v.getUint32(at, true), v.getUint32(at + 4, true))
      this.chargeCopy(data.length)
      if (this.outputTotal + data.length > this.outputLimit) {
        // keep what fits, so the submitter sees the output up to the cap, then stop the run
        out.append(data.subarray(0, this.outputLimit - this.outputTotal))
        this.outputTotal = this.outputLimit
        throw new OutputLimitExceeded(this.outputLimit)
      }
      out.append(data)
      this.outputTotal += data.length
      total += data.length
    }
    this.setU32(nwrittenPtr, total)
    return Errno.success
  }

  /** Zeroes the `size`-byte stat struct at `ptr` and marks it a character device, its file type byte at `fileTypeAt`. */
  private characterDevice (ptr: number, size: number, fileTypeAt: number): DataView {
    const v = this.view(ptr, size)
    for (let i = 0; i < size; i++) v.setUint8(i, 0)
    v.setUint8(fileTypeAt, FileType.characterDevice)
    return v
  }

  private sizes (list: Uint8Array[], countPtr: number, bufSizePtr: number): number {
    this.setU32(countPtr, list.length)
    this.setU32(bufSizePtr, list.reduce((n, s) => n + s.length, 0))
    return Errno.success
  }

  private strings (list: Uint8Array[], ptrsPtr: number, bufPtr: number): number {
    this.chargeCopy(list.reduce((n, s) => n + s.length, 0))
    let offset = bufPtr >>> 0
    const ptrs = this.view(ptrsPtr, list.length * 4)
    list.forEach((s, i) => {
      ptrs.setUint32(i * 4, offset, true)
      this.bytes(offset, s.length).set(s)
      offset += s.length
    })
    return Errno.success
  }

  /** SHA-256 in counter mode: block i = sha256(seed || u64be(i)); a stream shared by all random_get calls. */
  private fillRandom (target: Uint8Array): void {
    let filled = 0
    while (filled < target.length) {
      if (this.randomPool.length === 0) {
        const counter = Buffer.alloc(8)
        counter.writeBigUInt64BE(this.randomCounter++)
        this.randomPool = createHash('sha256').update(this.randomSeed).update(counter).digest()
      }
      const n = Math.min(this.randomPool.length, target.length - filled)
      target.set(this.randomPool.subarray(0, n), filled)
      this.randomPool = this.randomPool.subarray(n)
      filled += n
    }
  }
}

function isClockId (id: number): boolean {
  return id === ClockId.realtime || id === ClockId.monotonic || id === ClockId.processCputime || id === ClockId.threadCputime
}

/** A guest pointer outside its memory is the guest's bug: answer EFAULT, as a kernel would, instead of crashing the host. */
function guard (fn: HostFunction): HostFunction {
  return (...args: any[]) => {
    try {
      return fn(...args)
    } catch (err) {
      if (err instanceof GuestMemoryFault) return Errno.fault
      throw err
    }
  }
}

/**
 * One growing buffer per stream: a write copies into it, so a flood of tiny
 * writes costs bytes, not an object per write (which exhausted the worker's
 * heap long before the output cap).
 */
class OutputBuffer {
  private buf = new Uint8Array(0)
  private length = 0

  append (data: Uint8Array): void {
    if (data.length === 0) return
    if (this.length + data.length > this.buf.length) {
      const next = new Uint8Array(Math.max(4096, this.buf.length * 2, this.length + data.length))
      next.set(this.buf.subarray(0, this.length))
      this.buf = next
    }
    this.buf.set(data, this.length)
    this.length += data.length
  }

  /** A copy of exactly the bytes written (a view would carry the whole spare capacity through postMessage). */
  toBytes (): Uint8Array {
    return this.buf.slice(0, this.length)
  }
}
