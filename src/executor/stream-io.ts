/**
 * How a job's input streams into its worker and its stdout streams out while
 * the guest runs (protocol.ts says why they stream).
 *
 * Input: the parent writes it to the data socket (see FrameReader); the
 * sandbox's main thread copies each piece as it is read into a
 * SharedArrayBuffer the worker reads, and publishes how many bytes are there
 * in a second one. A guest read waits (Atomics.wait) until every byte it is
 * going to return is there, so a read returns exactly what it would with the
 * whole input at hand: what the guest sees, and the fuel it is charged, do not
 * depend on timing. Terminating the worker (deadline, cancel) ends the wait.
 *
 * Output: the shim hands stdout over in chunks (OutputSink) and keeps only
 * the part not handed over yet; the chunks go to the parent on the data
 * socket, which reads them one after the other into one growing buffer
 * (FrameInbox, ReceivedStdout) and puts that tail after them. A chunk's buffer,
 * once sent, goes back to the worker for a later chunk (OutputSink.spare).
 */

import { DataFrameError } from './errors.ts'

/**
 * Size of the stdout chunks the worker flushes: big enough that a chunk's
 * per-message cost is small against its copy, small enough that the first
 * one is on its way to the parent within a millisecond or two.
 */
export const STREAM_CHUNK_BYTES = 1024 * 1024

/**
 * Inputs smaller than this are not pooled: a fresh buffer of that size costs
 * little, and they would only crowd out the big ones that pay.
 */
export const POOLED_INPUT_MIN_BYTES = 64 * 1024

export interface InputPoolInit {
  /** the most bytes of idle input buffers kept for the next jobs (0: none) @default 33554432 */
  maxBytes?: number
}

/**
 * The shared buffers of finished jobs' inputs, kept for the next jobs. A
 * fresh SharedArrayBuffer's pages are mapped on first write, at a cost of
 * about 0.5 ms per MiB on this thread: a 16 MiB input paid more for that than
 * for its copy from the socket. A buffer goes back only once both its job and
 * its frame are over (StreamedInput.release), so no reader is left when the
 * next job's bytes overwrite it; what is read is bounded by the new job's own
 * count of arrived bytes, so nothing of the previous input shows through.
 */
export class InputPool {
  readonly maxBytes: number
  /** idle buffers, the least recently given back first */
  private readonly idle: SharedArrayBuffer[] = []
  private idleBytes = 0

  constructor (init: InputPoolInit = {}) {
    this.maxBytes = init.maxBytes ?? 32 * 1024 * 1024
    if (!Number.isSafeInteger(this.maxBytes) || this.maxBytes < 0) throw new RangeError(`the input pool's maxBytes must be a non-negative integer, got ${String(init.maxBytes)}`)
  }

  /** A buffer of at least `length` bytes: the smallest idle one that fits, or a new one. */
  take (length: number): SharedArrayBuffer {
    let best = -1
    for (let i = 0; i < this.idle.length; i++) {
      const size = this.idle[i].byteLength
      if (size >= length && (best < 0 || size < this.idle[best].byteLength)) best = i
    }
    if (length < POOLED_INPUT_MIN_BYTES || best < 0) return new SharedArrayBuffer(length)
    const [buffer] = this.idle.splice(best, 1)
    this.idleBytes -= buffer.byteLength
    return buffer
  }

  /** `buffer` is no longer read or written by anyone: kept if it is worth it and fits, the oldest idle ones going first. */
  give (buffer: SharedArrayBuffer): void {
    if (buffer.byteLength < POOLED_INPUT_MIN_BYTES || buffer.byteLength > this.maxBytes) return
    while (this.idleBytes + buffer.byteLength > this.maxBytes) this.idleBytes -= (this.idle.shift() as SharedArrayBuffer).byteLength
    this.idle.push(buffer)
    this.idleBytes += buffer.byteLength
  }

  /** Bytes held idle (diagnostics and tests). */
  get heldBytes (): number {
    return this.idleBytes
  }
}

/** A job's input as the sandbox holds it for the worker that runs the job. */
export interface JobInput {
  /** the whole input, filled from the start */
  readonly bytes: Uint8Array
  /** [0]: how many bytes of `bytes` are there; none when all of them are from the start */
  readonly arrived?: Int32Array
  /** its job is over (its worker done with it or gone) */
  release: () => void
}

/**
 * An input that came whole in its job's `run` message: nothing to wait for,
 * and its bytes (a buffer of their own) move to the worker. Throws a
 * DataFrameError when they are not the `length` the message announced.
 */
export function wholeInput (bytes: Uint8Array, length: number): JobInput {
  if (bytes.byteLength !== length) throw new DataFrameError(`an input of ${length} bytes announced, ${bytes.byteLength} in the message`)
  // nobody else holds it, and the worker's copy goes with the worker
  return { bytes, release: () => undefined }
}

/** A job's input as it arrives in the sandbox: shared with the worker that runs the job. */
export class StreamedInput implements JobInput {
  /** the whole input, filled from the start */
  readonly bytes: Uint8Array
  /** [0]: how many bytes of `bytes` are there */
  readonly arrived: Int32Array
  private readonly pool?: InputPool
  /** who still uses the buffer: the job, and the reading of its frame */
  private users = 2

  constructor (length: number, pool?: InputPool) {
    // 2^31 - 1 is above any payload the limits allow, and the most an Int32Array element holds
    if (!Number.isSafeInteger(length) || length < 0 || length > 2 ** 31 - 1) throw new RangeError(`input length ${length} is out of range`)
    this.pool = pool
    this.bytes = new Uint8Array(pool?.take(length) ?? new SharedArrayBuffer(length), 0, length)
    this.arrived = new Int32Array(new SharedArrayBuffer(4))
  }

  /**
   * Its job is over (its worker done with it or gone), or its frame is all
   * read: each says so once, and after both the buffer goes back to the pool.
   */
  release (): void {
    this.users--
    if (this.users === 0) this.pool?.give(this.bytes.buffer as SharedArrayBuffer)
  }

  /** Appends `chunk` if it starts where the bytes there end; false otherwise (or past the end): the sender broke the order. */
  append (offset: number, chunk: Uint8Array): boolean {
    const at = Atomics.load(this.arrived, 0)
    if (offset !== at || at + chunk.byteLength > this.bytes.byteLength) return false
    this.bytes.set(chunk, at)
    this.commit(chunk.byteLength)
    return true
  }

  /** `n` more bytes were written in place, after those there (a read straight into `bytes`). */
  commit (n: number): void {
    const at = Atomics.load(this.arrived, 0)
    if (!Number.isSafeInteger(n) || n < 0 || at + n > this.bytes.byteLength) throw new RangeError(`${n} bytes more after ${at} would pass the input's end at ${this.bytes.byteLength}`)
    Atomics.store(this.arrived, 0, at + n)
    Atomics.notify(this.arrived, 0)
  }
}

/** A job's input on its way in: `claimed` once its `run` message came, `complete` once its frame is all read. */
interface Inbound {
  input: StreamedInput
  claimed: boolean
  complete: boolean
}

/**
 * The sandbox's side of the inputs on the data socket. The socket reads into
 * the buffer `next()` gives, which is where the bytes belong (a frame's
 * header, or the rest of its run's shared input), and reports with
 * `filled()`: nothing is allocated or copied per piece read. A frame and its
 * run's `run` message come on two channels, in either order: whichever comes
 * first makes the job's StreamedInput.
 */
export class InputInbox {
  private readonly header = new Uint8Array(FRAME_HEADER_BYTES)
  private headerFill = 0
  /** the run whose frame is being read, once its header is in */
  private reading?: { runId: number, entry: Inbound }
  private readonly inbound = new Map<number, Inbound>()
  private readonly pool?: InputPool

  /** `pool`: where the inputs' buffers come from and go back to (none: each input a fresh buffer) */
  constructor (pool?: InputPool) {
    this.pool = pool
  }

  /** The input of run `runId` (its `run` message came), filled as its frame is read. */
  claim (runId: number, length: number): StreamedInput {
    // an empty input has no frame
    if (length === 0) return new StreamedInput(0)
    const entry = this.entry(runId, length)
    entry.claimed = true
    if (entry.complete) this.inbound.delete(runId)
    return entry.input
  }

  /** Where the socket's next read goes: at most what the current header or payload still needs. */
  next (): Uint8Array {
    const reading = this.reading
    if (reading === undefined) return this.header.subarray(this.headerFill)
    const { bytes, arrived } = reading.entry.input
    return bytes.subarray(Atomics.load(arrived, 0))
  }

  /** The last read put `n` bytes into the buffer `next()` gave. */
  filled (n: number): void {
    const reading = this.reading
    if (reading === undefined) {
      this.headerFill += n
      if (this.headerFill === FRAME_HEADER_BYTES) this.startFrame()
      return
    }
    const { input } = reading.entry
    input.commit(n)
    if (Atomics.load(input.arrived, 0) < input.bytes.byteLength) return
    reading.entry.complete = true
    input.release()
    if (reading.entry.claimed) this.inbound.delete(reading.runId)
    this.reading = undefined
  }

  /** Inputs not yet both claimed and read (diagnostics and tests). */
  get pending (): number {
    return this.inbound.size
  }

  private startFrame (): void {
    const view = new DataView(this.header.buffer)
    const runId = view.getUint32(0, true)
    const length = view.getUint32(4, true)
    this.headerFill = 0
    if (length === 0) throw new DataFrameError(`run ${runId}: an empty input frame (an empty input has none)`)
    this.reading = { runId, entry: this.entry(runId, length) }
  }

  private entry (runId: number, length: number): Inbound {
    let entry = this.inbound.get(runId)
    if (entry === undefined) {
      entry = { input: new StreamedInput(length, this.pool), claimed: false, complete: false }
      this.inbound.set(runId, entry)
    } else if (entry.input.bytes.byteLength !== length) {
      throw new DataFrameError(`run ${runId}: an input of ${length} bytes announced, ${entry.input.bytes.byteLength} by the other channel`)
    }
    return entry
  }
}

/** Blocks this thread until the first `end` bytes are there (`arrived` of a StreamedInput). */
export function waitForInput (arrived: Int32Array, end: number): void {
  for (;;) {
    const there = Atomics.load(arrived, 0)
    if (there >= end) return
    Atomics.wait(arrived, 0, there)
  }
}

/**
 * The bulk bytes (inputs in, stdout out) go between the parent and the
 * sandbox on a socket of their own, apart from the IPC channel: written
 * straight from the caller's buffers and read as they arrive, they skip the
 * IPC serializer's copy, its buffer growth and the receiver's join of each
 * message, and the allocations (and the garbage collections) that come with
 * them. Each frame is a header, the run id and the payload's length (both
 * u32, little-endian), then the payload.
 */
export const FRAME_HEADER_BYTES = 8

/** The header of a frame of `length` bytes for run `runId`. */
export function frameHeader (runId: number, length: number): Uint8Array {
  if (!Number.isSafeInteger(runId) || runId < 0 || runId > 0xffffffff) throw new RangeError(`run id ${runId} does not fit a frame header`)
  if (!Number.isSafeInteger(length) || length < 0 || length > 0xffffffff) throw new RangeError(`frame length ${length} does not fit a frame header`)
  const header = new Uint8Array(FRAME_HEADER_BYTES)
  const view = new DataView(header.buffer)
  view.setUint32(0, runId, true)
  view.setUint32(4, length, true)
  return header
}

/** Where the frames a FrameInbox reads go. */
export interface FrameSink {
  /** a buffer of exactly `length` bytes for run `runId`'s frame, or undefined to read the frame and drop it */
  open: (runId: number, length: number) => Uint8Array | undefined
  /** the buffer `open` gave, now filled */
  filled: (runId: number, bytes: Uint8Array) => void
}

/** Frames that go nowhere are read into this much reused scratch at a time. */
const DROP_SCRATCH_BYTES = 64 * 1024

/**
 * The parent's side of the frames on the data socket. Like InputInbox, the
 * socket reads into the buffer `next()` gives: a frame's header, or the rest
 * of the buffer its sink opened for the payload (sized from the header). The
 * bytes of a 16 MiB stdout are then copied once, by the kernel, instead of
 * into a fresh buffer per read and again into their frame: that copy and the
 * garbage of the per-read buffers were half of the parent's CPU for such a job.
 */
export class FrameInbox {
  private readonly sink: FrameSink
  private readonly header = new Uint8Array(FRAME_HEADER_BYTES)
  private headerFill = 0
  private runId = 0
  /** the payload being read: its sink's buffer, or scratch for one dropped */
  private payload?: Uint8Array
  private payloadFill = 0
  /** bytes still to read of a dropped frame */
  private dropLeft = 0
  private scratch?: Uint8Array

  constructor (sink: FrameSink) {
    this.sink = sink
  }

  /** Where the socket's next read goes: at most what the current header or payload still needs. */
  next (): Uint8Array {
    if (this.dropLeft > 0) {
      this.scratch ??= new Uint8Array(DROP_SCRATCH_BYTES)
      return this.scratch.subarray(0, Math.min(this.dropLeft, DROP_SCRATCH_BYTES))
    }
    if (this.payload !== undefined) return this.payload.subarray(this.payloadFill)
    return this.header.subarray(this.headerFill)
  }

  /** The last read put `n` bytes into the buffer `next()` gave. */
  filled (n: number): void {
    if (this.dropLeft > 0) {
      this.dropLeft -= n
      return
    }
    const payload = this.payload
    if (payload === undefined) {
      this.headerFill += n
      if (this.headerFill === FRAME_HEADER_BYTES) this.startFrame()
      return
    }
    this.payloadFill += n
    if (this.payloadFill < payload.byteLength) return
    this.payload = undefined
    this.sink.filled(this.runId, payload)
  }

  private startFrame (): void {
    const view = new DataView(this.header.buffer)
    this.runId = view.getUint32(0, true)
    const length = view.getUint32(4, true)
    this.headerFill = 0
    // an empty frame carries nothing: the next header follows at once
    if (length === 0) return
    const payload = this.sink.open(this.runId, length)
    if (payload === undefined) {
      this.dropLeft = length
      return
    }
    if (payload.byteLength !== length) throw new DataFrameError(`run ${this.runId}: a buffer of ${payload.byteLength} bytes for a frame of ${length}`)
    this.payload = payload
    this.payloadFill = 0
  }
}

/** Where the shim hands stdout over, a chunk at a time, as the guest writes it. */
export interface OutputSink {
  /** hand over once this many bytes are waiting */
  chunkBytes: number
  /** takes the bytes (the shim keeps no reference to them) */
  flush: (bytes: Uint8Array) => void
  /**
   * a buffer of at least `capacity` bytes to write the next chunk into, if
   * one is at hand (one handed over before and given back once sent), so that
   * a long output does not fault in fresh pages for every chunk @default none: a new buffer
   */
  spare?: (capacity: number) => Uint8Array<ArrayBuffer> | undefined
}

/**
 * Capacity left unused at the end, as a fraction of the capacity, above which
 * ReceivedStdout copies the bytes into a buffer of their own size: a result
 * holds at most a third more memory than its bytes.
 */
const MAX_SPARE_FRACTION = 0.25

/**
 * A job's stdout as the parent receives it: each frame is read straight into
 * one buffer that grows (doubling, never past the job's output cap), so that
 * when the job ends its stdout is already in one piece. A join of per-frame
 * buffers at the end would copy the whole output after the guest is done, on
 * the path to the caller (about 3–5 ms for 16 MiB, plus a fresh 16 MiB
 * buffer); the copies of growing happen while frames still arrive, that is
 * while the guest runs, and add up to less than the output. With a good
 * `expected` size (the module's last stdout) there are none.
 */
export class ReceivedStdout {
  /** the job's output cap: no buffer grows past it */
  readonly cap: number
  private readonly expected: number
  private buffer = new Uint8Array(0)
  private length = 0

  /** `expected`: the size the buffer starts at, once a first frame comes @default 0 (the first frame's) */
  constructor (cap: number, expected = 0) {
    if (!Number.isSafeInteger(cap) || cap < 0) throw new RangeError(`the stdout cap must be a non-negative integer, got ${String(cap)}`)
    this.cap = cap
    this.expected = Number.isSafeInteger(expected) && expected > 0 ? expected : 0
  }

  /** Bytes received so far. */
  get size (): number {
    return this.length
  }

  /** Where the next `n` bytes are read: right after those received (commit them once read); undefined past the cap. */
  reserve (n: number): Uint8Array | undefined {
    const end = this.length + n
    if (end > this.cap) return undefined
    if (end > this.buffer.byteLength) this.grow(Math.min(this.cap, Math.max(end, this.expected, 2 * this.buffer.byteLength)))
    return this.buffer.subarray(this.length, end)
  }

  /** The `n` bytes `reserve` gave were read. */
  commit (n: number): void {
    if (!Number.isSafeInteger(n) || n < 0 || this.length + n > this.buffer.byteLength) throw new RangeError(`${n} bytes more after ${this.length} pass the ${this.buffer.byteLength} reserved`)
    this.length += n
  }

  /**
   * The whole stdout: what was received, then `tail` (what came with the
   * job's result). A view of the buffer the frames were read into, its spare
   * room zeroed, unless more than MAX_SPARE_FRACTION of it would be spare:
   * then a copy of its own size.
   */
  finish (tail: Uint8Array): Uint8Array {
    if (this.length === 0) return tail
    const total = this.length + tail.byteLength
    if (total > this.buffer.byteLength) this.grow(total)
    this.buffer.set(tail, this.length)
    this.length = total
    if (total < (1 - MAX_SPARE_FRACTION) * this.buffer.byteLength) return this.buffer.slice(0, total)
    this.buffer.fill(0, total)
    return this.buffer.subarray(0, total)
  }

  /**
   * Moves to a buffer of `capacity` bytes, not zeroed: every byte up to
   * `length` is written before it is read, and the rest is zeroed by
   * `finish()` or never leaves. Zeroing it here would touch every page of a
   * buffer that is mostly about to be overwritten.
   */
  private grow (capacity: number): void {
    const raw = Buffer.allocUnsafeSlow(capacity)
    const next = new Uint8Array(raw.buffer, raw.byteOffset, capacity)
    next.set(this.buffer.subarray(0, this.length))
    this.buffer = next
  }
}
