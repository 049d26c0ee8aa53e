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
 * job must see the same bytes). The job's preopened directories live in an
 * in-memory overlay (wasi-fs.ts), served by wasi-files.ts; poll_oneoff never
 * waits (wasi-poll.ts). There is no network: the sock_* functions answer
 * ENOTSOCK on every descriptor there is, EBADF on others.
 */

import { createHash } from 'node:crypto'
import type { JobDir, JobFile } from '../core/job.ts'
import { ClockId, Errno, WASI_MODULE, WASI_SIGNATURES } from './wasi-abi.ts'
import { FdTable, type Stream } from './wasi-fds.ts'
import { WasiFiles } from './wasi-files.ts'
import { FsError, MemFs } from './wasi-fs.ts'
import { GuestMemory, GuestMemoryFault, HostFuel, type FuelCharge } from './wasi-memory.ts'
import { pollOneoff } from './wasi-poll.ts'
import type { OutputSink } from './stream-io.ts'

export { HostFuel, IOV_MAX, type FuelCharge } from './wasi-memory.ts'

/** Virtual realtime clock origin: 2024-01-01T00:00:00Z, in ns. */
export const VIRTUAL_EPOCH_NS = 1_704_067_200n * 1_000_000_000n
/** Each clock_time_get call advances the virtual clock by 1 ms, so time moves and never repeats. */
export const VIRTUAL_CLOCK_STEP_NS = 1_000_000n
/** Domain separation for the random stream, versioned like the meter: changing it changes job output. */
const RANDOM_DOMAIN = 'worldcompute/random_get/v1\0'
export interface WasiShimInit {
  /** argv, argv[0] included */
  args: readonly string[]
  /** `K=V` strings */
  env: readonly string[]
  stdin: Uint8Array
  /**
   * blocks until the first `end` bytes of `stdin` are there, for an input
   * still arriving while the guest runs; a read waits for all it will return
   * @default stdin is all there
   */
  stdinArrived?: (end: number) => void
  /** where stdout goes in chunks as it is written; `stdout` then holds only what has not gone yet @default kept whole */
  stdoutSink?: OutputSink
  /** cap on stdout + stderr together, bytes */
  outputLimit: number
  /** seeds random_get: the jobId */
  randomSeed: string
  /** directories to preopen, in order from fd 3; none: no filesystem */
  preopens?: readonly JobDir[]
  /**
   * cap on the overlay: file bytes plus FS_ENTRY_BYTES per entry, the
   * submitted ones included @default outputLimit
   */
  filesystemLimit?: number
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

const encoder = new TextEncoder()

type HostFunction = (...args: any[]) => number | undefined

export class WasiShim {
  private readonly args: Uint8Array[]
  private readonly env: Uint8Array[]
  private readonly stdin: Uint8Array
  private stdinPos = 0
  private readonly stdinArrived?: (end: number) => void
  private readonly stdoutSink?: OutputSink
  private readonly outputLimit: number
  private outputTotal = 0
  private readonly stdoutBuffer = new OutputBuffer()
  private readonly stderrBuffer = new OutputBuffer()
  private readonly mem = new GuestMemory()
  /** virtual time since the epoch of every clock, ns: clock readings and poll_oneoff sleeps move it */
  private elapsedNs = 0n
  /** what random_get's stream is seeded from; hashed at its first call (most jobs never make one) */
  private readonly randomSource: string
  private randomSeed?: Buffer
  private randomCounter = 0n
  private randomPool: Uint8Array = new Uint8Array(0)
  private readonly fs: MemFs | undefined
  private readonly fds: FdTable
  /** every preview1 function, by name */
  readonly functions: Readonly<Record<string, HostFunction>>

  constructor (init: WasiShimInit) {
    this.args = init.args.map(a => encoder.encode(a + '\0'))
    this.env = init.env.map(e => encoder.encode(e + '\0'))
    this.stdin = init.stdin
    this.stdinArrived = init.stdinArrived
    this.stdoutSink = init.stdoutSink
    this.outputLimit = init.outputLimit
    this.randomSource = init.randomSeed
    const preopens = init.preopens ?? []
    this.fs = preopens.length === 0
      ? undefined
      : new MemFs({ preopens, budgetBytes: init.filesystemLimit ?? init.outputLimit, now: () => VIRTUAL_EPOCH_NS + this.elapsedNs })
    this.fds = new FdTable({ stdin: this.stdinStream(), stdout: this.outputStream(this.stdoutBuffer, this.stdoutSink), stderr: this.outputStream(this.stderrBuffer) }, this.fs)
    this.functions = Object.freeze(this.buildFunctions())
  }

  /**
   * Gives the shim the guest's memory and the way to charge fuel for host
   * work; must be called after instantiation, before the guest runs.
   */
  attach (memory: WebAssembly.Memory, charge?: FuelCharge): void {
    this.mem.attach(memory, charge)
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

  /** stdout, or with a `stdoutSink` the part of it not handed over yet */
  get stdout (): Uint8Array {
    return this.stdoutBuffer.toBytes()
  }

  get stderr (): Uint8Array {
    return this.stderrBuffer.toBytes()
  }

  /** Bytes written to stdout and stderr so far. */
  get outputBytes (): number {
    return this.outputTotal
  }

  /** What the job changed under its preopens; undefined without preopens. */
  fileChanges (): { files: JobFile[], removedFiles: string[] } | undefined {
    return this.fs?.changes()
  }

  // -------------------------------------------------------------------------
  // the functions

  private buildFunctions (): Record<string, HostFunction> {
    const fns: Record<string, HostFunction> = {
      ...this.processFunctions(),
      ...new WasiFiles(this.mem, this.fds, this.fs).functions(),
      ...this.otherFunctions()
    }
    if (!tableChecked) checkTable(fns)
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
        this.mem.setU64(resultPtr, VIRTUAL_CLOCK_STEP_NS)
        return Errno.success
      },
      clock_time_get: (id: number, _precision: bigint, resultPtr: number) => {
        if (!isClockId(id)) return Errno.inval
        this.elapsedNs += VIRTUAL_CLOCK_STEP_NS
        this.mem.setU64(resultPtr, this.clockNow(id))
        return Errno.success
      },
      random_get: (bufPtr: number, bufLen: number) => {
        const target = this.mem.bytes(bufPtr, bufLen)
        this.mem.charge(target.length * HostFuel.perRandomByte)
        this.fillRandom(target)
        return Errno.success
      },
      proc_exit: (code: number) => {
        throw new WasiExit(code >>> 0)
      },
      sched_yield: () => Errno.success
    }
  }

  /** poll_oneoff, and what no job can do here: sockets and signals. */
  private otherFunctions (): Record<string, HostFunction> {
    /** there are no sockets: a descriptor that exists is not one */
    const notSocket = (fd: number): number => this.fds.has(fd) ? Errno.notsock : Errno.badf
    const clock = { peek: (id: number) => this.clockNow(id), advance: (ns: bigint) => { this.elapsedNs += ns } }
    return {
      poll_oneoff: (inPtr: number, outPtr: number, n: number, neventsPtr: number) => pollOneoff(this.mem, this.fds, clock, inPtr, outPtr, n, neventsPtr),
      proc_raise: () => Errno.nosys,
      sock_accept: notSocket,
      sock_recv: notSocket,
      sock_send: notSocket,
      sock_shutdown: notSocket
    }
  }

  private clockNow (id: number): bigint {
    return id === ClockId.realtime ? VIRTUAL_EPOCH_NS + this.elapsedNs : this.elapsedNs
  }

  private stdinStream (): Stream {
    return {
      read: (target) => {
        const n = Math.min(target.length, this.stdin.length - this.stdinPos)
        this.stdinArrived?.(this.stdinPos + n)
        target.set(this.stdin.subarray(this.stdinPos, this.stdinPos + n))
        this.stdinPos += n
        return n
      },
      readable: () => this.stdin.length - this.stdinPos
    }
  }

  private outputStream (out: OutputBuffer, sink?: OutputSink): Stream {
    return {
      write: (data) => {
        if (this.outputTotal + data.length > this.outputLimit) {
          // keep what fits, so the submitter sees the output up to the cap, then stop the run
          out.append(data.subarray(0, this.outputLimit - this.outputTotal))
          this.outputTotal = this.outputLimit
          throw new OutputLimitExceeded(this.outputLimit)
        }
        out.append(data)
        this.outputTotal += data.length
        // room for a chunk and a write past it, so a stream of writes does not grow the next buffer by doubling
        if (sink !== undefined && out.size >= sink.chunkBytes) sink.flush(out.take(2 * sink.chunkBytes, sink.spare))
      }
    }
  }

  private sizes (list: Uint8Array[], countPtr: number, bufSizePtr: number): number {
    this.mem.setU32(countPtr, list.length)
    this.mem.setU32(bufSizePtr, list.reduce((n, s) => n + s.length, 0))
    return Errno.success
  }

  private strings (list: Uint8Array[], ptrsPtr: number, bufPtr: number): number {
    this.mem.chargeCopy(list.reduce((n, s) => n + s.length, 0))
    let offset = bufPtr >>> 0
    const ptrs = this.mem.view(ptrsPtr, list.length * 4)
    list.forEach((s, i) => {
      ptrs.setUint32(i * 4, offset, true)
      this.mem.bytes(offset, s.length).set(s)
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
        this.randomSeed ??= createHash('sha256').update(RANDOM_DOMAIN).update(this.randomSource).digest()
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

/** The parameters guard() passes on: as many as the preview1 function that takes the most (path_open). */
const GUARDED_PARAMS = 9

/** checkTable passed: the same code builds the same table for every shim, so once per thread is enough */
let tableChecked = false

/** Every name in the preview1 table must be served, within the guard's parameters (a miss would be a bug here). */
function checkTable (fns: Record<string, HostFunction>): void {
  for (const [name, [params]] of Object.entries(WASI_SIGNATURES)) {
    if (fns[name] === undefined) throw new Error(`WasiShim has no implementation of ${name}`)
    if (params.length > GUARDED_PARAMS) throw new Error(`WasiShim's guard passes ${GUARDED_PARAMS} parameters, ${name} takes ${params.length}`)
  }
  tableChecked = true
}

/**
 * A guest pointer outside its memory is the guest's bug: answer EFAULT, as a
 * kernel would, instead of crashing the host. A filesystem error (FsError)
 * is the call's errno.
 */
function guard (fn: HostFunction): HostFunction {
  // nine fixed parameters (path_open has the most) rather than a rest parameter, which would
  // allocate an array on every host call: a guest that writes a byte at a time makes millions
  return (a, b, c, d, e, f, g, h, i) => {
    try {
      return fn(a, b, c, d, e, f, g, h, i)
    } catch (err) {
      if (err instanceof GuestMemoryFault) return Errno.fault
      if (err instanceof FsError) return err.errno
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

  get size (): number {
    return this.length
  }

  /** The bytes written (a view of the buffer), after which a buffer of `capacity` bytes (`spare`'s, or a new one) starts empty. */
  take (capacity: number, spare?: (capacity: number) => Uint8Array<ArrayBuffer> | undefined): Uint8Array {
    const bytes = this.buf.subarray(0, this.length)
    const given = spare?.(capacity)
    this.buf = given !== undefined && given.byteLength >= capacity ? given : new Uint8Array(capacity)
    this.length = 0
    return bytes
  }

  /**
   * The bytes written, as a view (no copy of up to the whole output): the
   * worker transfers its buffer, spare capacity and all, which costs nothing,
   * and the IPC channel's serializer writes only the view's bytes.
   */
  toBytes (): Uint8Array {
    return this.buf.subarray(0, this.length)
  }
}
