/**
 * How a job's input streams into its worker and its stdout streams out while
 * the guest runs (protocol.ts says why they stream).
 *
 * Input: the sandbox's main thread copies each chunk the parent sends into a
 * SharedArrayBuffer the worker reads, and publishes how many bytes are there
 * in a second one. A guest read waits (Atomics.wait) until every byte it is
 * going to return is there, so a read returns exactly what it would with the
 * whole input at hand: what the guest sees, and the fuel it is charged, do not
 * depend on timing. Terminating the worker (deadline, cancel) ends the wait.
 *
 * Output: the shim hands stdout over in chunks (OutputSink) and keeps only
 * the part not handed over yet; the parent joins the chunks and that tail.
 */

/**
 * Size of the input chunks the parent sends and of the stdout chunks the
 * worker flushes: big enough that a chunk's per-message cost is small against
 * its copy, small enough that the first one reaches the guest within a
 * millisecond or two.
 */
export const STREAM_CHUNK_BYTES = 1024 * 1024

/** A job's input as it arrives in the sandbox: shared with the worker that runs the job. */
export class StreamedInput {
  /** the whole input, filled from the start */
  readonly bytes: Uint8Array
  /** [0]: how many bytes of `bytes` are there */
  readonly arrived: Int32Array

  constructor (length: number) {
    // 2^31 - 1 is above any payload the limits allow, and the most an Int32Array element holds
    if (!Number.isSafeInteger(length) || length < 0 || length > 2 ** 31 - 1) throw new RangeError(`input length ${length} is out of range`)
    this.bytes = new Uint8Array(new SharedArrayBuffer(length))
    this.arrived = new Int32Array(new SharedArrayBuffer(4))
  }

  /** Appends `chunk` if it starts where the bytes there end; false otherwise (or past the end): the sender broke the order. */
  append (offset: number, chunk: Uint8Array): boolean {
    const at = Atomics.load(this.arrived, 0)
    if (offset !== at || at + chunk.byteLength > this.bytes.byteLength) return false
    this.bytes.set(chunk, at)
    Atomics.store(this.arrived, 0, at + chunk.byteLength)
    Atomics.notify(this.arrived, 0)
    return true
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

/** `input` cut into chunks of `chunkBytes` (at least one, maybe empty): views, not copies. */
export function inputChunks (input: Uint8Array, chunkBytes = STREAM_CHUNK_BYTES): Uint8Array[] {
  const chunks = [input.subarray(0, chunkBytes)]
  for (let offset = chunkBytes; offset < input.byteLength; offset += chunkBytes) chunks.push(input.subarray(offset, offset + chunkBytes))
  return chunks
}

/** Where the shim hands stdout over, a chunk at a time, as the guest writes it. */
export interface OutputSink {
  /** hand over once this many bytes are waiting */
  chunkBytes: number
  /** takes the bytes (the shim keeps no reference to them) */
  flush: (bytes: Uint8Array) => void
}

/** Joins the streamed chunks and the tail into one buffer. */
export function joinChunks (chunks: readonly Uint8Array[], tail: Uint8Array): Uint8Array {
  if (chunks.length === 0) return tail
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, tail.byteLength))
  let at = 0
  for (const c of [...chunks, tail]) {
    out.set(c, at)
    at += c.byteLength
  }
  return out
}
