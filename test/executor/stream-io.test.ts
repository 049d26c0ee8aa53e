import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Worker } from 'node:worker_threads'
import { cidForBytes } from '../../src/executor/cid.ts'
import { DataFrameError } from '../../src/executor/errors.ts'
import { prepareModule } from '../../src/executor/prepare.ts'
import { runModule, type RunSpec } from '../../src/executor/run-module.ts'
import { FRAME_HEADER_BYTES, FrameInbox, frameHeader, InputInbox, InputPool, POOLED_INPUT_MIN_BYTES, ReceivedStdout, StreamedInput, waitForInput, wholeInput } from '../../src/executor/stream-io.ts'
import { fixture } from './helpers/fixtures.ts'

/** `length` bytes of lower-case text whose every 4 KiB block differs, so a chunk out of place would show. */
function text (length: number): Uint8Array {
  const out = new Uint8Array(length)
  for (let i = 0; i < length; i++) out[i] = 0x61 + ((i + Math.floor(i / 4096)) % 26)
  return out
}

function upperCased (bytes: Uint8Array): Uint8Array {
  return bytes.map(b => (b >= 0x61 && b <= 0x7a ? b - 32 : b))
}

function upperSpec (input: Uint8Array, outputBytes = 64 * 1024 * 1024): RunSpec {
  return { jobId: 'job-stream', input, args: [], env: [], fuel: 2 ** 40, outputBytes, maxCallDepth: 10_000 }
}

const upper = (): WebAssembly.Module => {
  const bytes = fixture('upper')
  return prepareModule(bytes, cidForBytes(bytes), { memoryBytes: 64 * 1024 * 1024, maxCallDepth: 10_000 }).module
}

describe('wholeInput', () => {
  it('holds an input that came whole: its bytes, nothing to wait for', () => {
    const input = wholeInput(Uint8Array.of(1, 2, 3), 3)
    assert.deepEqual([...input.bytes], [1, 2, 3])
    assert.equal(input.arrived, undefined)
    input.release()
  })

  it('refuses bytes that are not the length announced with them, with a DataFrameError', () => {
    assert.throws(() => wholeInput(Uint8Array.of(1, 2), 3), (err: unknown) => err instanceof DataFrameError && err.code === 'SANDBOX_DATA_FRAME')
  })
})

describe('StreamedInput', () => {
  it('takes chunks in order and publishes how many bytes are there', () => {
    const input = new StreamedInput(10)
    assert.ok(input.bytes.buffer instanceof SharedArrayBuffer)
    assert.equal(input.append(0, Uint8Array.of(1, 2, 3)), true)
    assert.equal(input.append(3, Uint8Array.of(4, 5, 6, 7, 8, 9, 10)), true)
    assert.equal(Atomics.load(input.arrived, 0), 10)
    assert.deepEqual([...input.bytes], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
  })

  it('refuses a chunk that does not start where the bytes end, or runs past the end', () => {
    const input = new StreamedInput(4)
    assert.equal(input.append(1, Uint8Array.of(1)), false)
    assert.equal(input.append(0, Uint8Array.of(1, 2, 3, 4, 5)), false)
    assert.equal(Atomics.load(input.arrived, 0), 0)
  })

  it('refuses a length an Int32Array cannot count', () => {
    assert.throws(() => new StreamedInput(2 ** 31), RangeError)
  })

  it('lets another thread wait (waitForInput) until the bytes it needs are there, and not longer', async () => {
    const input = new StreamedInput(8)
    // the waiter says when it starts to wait for the first 6 bytes, then what it saw when the wait returned
    const waiter = new Worker(`
      const { workerData, parentPort } = require('node:worker_threads')
      import(workerData.module).then(({ waitForInput }) => {
        parentPort.postMessage('waiting')
        waitForInput(workerData.arrived, 6)
        parentPort.postMessage(Atomics.load(workerData.arrived, 0))
      })
    `, { eval: true, workerData: { arrived: input.arrived, module: new URL('../../src/executor/stream-io.ts', import.meta.url).href } })
    try {
      const seen: number[] = []
      const waiting = new Promise<void>(resolve => waiter.once('message', () => { resolve() }))
      const returned = new Promise<void>(resolve => waiter.on('message', (m) => { if (typeof m === 'number') { seen.push(m); resolve() } }))
      await waiting
      input.append(0, Uint8Array.of(1, 2, 3, 4))
      await new Promise(resolve => setTimeout(resolve, 100))
      assert.deepEqual(seen, [], 'still waiting with 4 of the 6 bytes there')
      input.append(4, Uint8Array.of(5, 6, 7))
      await returned
      assert.deepEqual(seen, [7])
    } finally {
      // terminating the thread ends a wait that never returned, as the sandbox does at a deadline
      await waiter.terminate()
    }
  })

  it('waitForInput returns at once when the bytes are there', () => {
    const input = new StreamedInput(3)
    input.append(0, Uint8Array.of(1, 2, 3))
    waitForInput(input.arrived, 3)
    waitForInput(input.arrived, 0)
  })
})

/** The chunks and then the tail, in one buffer: what a streamed output adds up to. */
function joinChunks (chunks: readonly Uint8Array[], tail: Uint8Array): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, tail.byteLength))
  let at = 0
  for (const c of [...chunks, tail]) {
    out.set(c, at)
    at += c.byteLength
  }
  return out
}

/** The frames of `payloads` ([runId, bytes]) as one byte stream. */
function frameStream (payloads: Array<[number, Uint8Array]>): Uint8Array {
  return joinChunks(payloads.flatMap(([runId, bytes]) => [frameHeader(runId, bytes.byteLength), bytes]), new Uint8Array(0))
}

/**
 * What a FrameInbox gives its sink for `stream` read at most `pieceBytes` at a
 * time, as a socket with `onread` would: each read into the buffer `next()` gives.
 * `drop`: run ids whose frames the sink does not take.
 */
function readFrames (stream: Uint8Array, pieceBytes: number, drop: readonly number[] = []): { runs: Map<number, Uint8Array[]>, opened: Array<[number, number]> } {
  const runs = new Map<number, Uint8Array[]>()
  const opened: Array<[number, number]> = []
  const inbox = new FrameInbox({
    open: (runId, length) => {
      opened.push([runId, length])
      return drop.includes(runId) ? undefined : new Uint8Array(length)
    },
    filled: (runId, bytes) => { runs.set(runId, [...(runs.get(runId) ?? []), bytes]) }
  })
  let at = 0
  while (at < stream.byteLength) {
    const into = inbox.next()
    const n = Math.min(pieceBytes, into.byteLength, stream.byteLength - at)
    into.set(stream.subarray(at, at + n))
    at += n
    inbox.filled(n)
  }
  return { runs, opened }
}

describe('FrameInbox', () => {
  const payloads: Array<[number, Uint8Array]> = [[1, text(1000)], [7, new Uint8Array(0)], [2, text(33)], [0xffffffff, text(5)], [1, text(70)]]

  for (const pieceBytes of [1, 3, FRAME_HEADER_BYTES, 64, 100_000]) {
    it(`fills a buffer of each frame's length and gives it to its run, in order, when the stream is read ${pieceBytes} bytes at a time`, () => {
      const { runs, opened } = readFrames(frameStream(payloads), pieceBytes)
      assert.deepEqual(opened, [[1, 1000], [2, 33], [0xffffffff, 5], [1, 70]], 'an empty frame opens nothing')
      assert.deepEqual(runs.get(1), [payloads[0][1], payloads[4][1]])
      assert.deepEqual(runs.get(2), [payloads[2][1]])
      assert.deepEqual(runs.get(0xffffffff), [payloads[3][1]])
    })
  }

  it('reads a frame its sink does not take and drops it, and the frames after it still arrive whole', () => {
    const big = text(200_000)
    const { runs, opened } = readFrames(frameStream([[5, big], [6, text(10)], [5, text(3)]]), 100_000, [5])
    assert.deepEqual(opened, [[5, 200_000], [6, 10], [5, 3]])
    assert.deepEqual([...runs.keys()], [6])
    assert.deepEqual(runs.get(6), [text(10)])
  })

  it('never asks for a read past the current header or payload', () => {
    const stream = frameStream([[3, text(50)], [4, text(20)]])
    const sizes: number[] = []
    const inbox = new FrameInbox({ open: (_runId, length) => new Uint8Array(length), filled: () => {} })
    for (let at = 0; at < stream.byteLength;) {
      const into = inbox.next()
      sizes.push(into.byteLength)
      into.set(stream.subarray(at, at + into.byteLength))
      at += into.byteLength
      inbox.filled(into.byteLength)
    }
    assert.deepEqual(sizes, [FRAME_HEADER_BYTES, 50, FRAME_HEADER_BYTES, 20])
  })

  it('refuses a sink buffer that is not the frame\'s length', () => {
    const inbox = new FrameInbox({ open: (_runId, length) => new Uint8Array(length + 1), filled: () => {} })
    const header = frameHeader(9, 4)
    inbox.next().set(header)
    assert.throws(() => { inbox.filled(header.byteLength) }, (err: unknown) => err instanceof DataFrameError && err.code === 'SANDBOX_DATA_FRAME')
  })

  it('refuses a header for a run id or length that does not fit 32 bits', () => {
    assert.throws(() => frameHeader(2 ** 32, 1), RangeError)
    assert.throws(() => frameHeader(1, -1), RangeError)
  })
})

/** Reads `frames` into `stdout` as the executor's FrameInbox sink does: reserve a frame's length, fill it, commit it. */
function receive (stdout: ReceivedStdout, frames: readonly Uint8Array[]): Uint8Array[] {
  return frames.map(frame => {
    const into = stdout.reserve(frame.byteLength)
    assert.ok(into !== undefined, 'within the cap')
    assert.equal(into.byteLength, frame.byteLength)
    into.set(frame)
    stdout.commit(frame.byteLength)
    return into
  })
}

describe('ReceivedStdout', () => {
  const whole = text(10_000)
  const frames = [whole.subarray(0, 1000), whole.subarray(1000, 2000), whole.subarray(2000, 3500), whole.subarray(3500, 9000)]

  for (const expected of [0, 100, 9000, 10_000, 20_000]) {
    it(`puts the frames and the tail together in order, starting at an expected size of ${expected}`, () => {
      const stdout = new ReceivedStdout(64 * 1024, expected)
      receive(stdout, frames)
      assert.equal(stdout.size, 9000)
      assert.deepEqual(stdout.finish(whole.subarray(9000)), whole)
    })
  }

  it('reads each frame into the buffer the result is a view of, with no copy at the end when the expected size was right', () => {
    const stdout = new ReceivedStdout(64 * 1024, 10_000)
    const [first] = receive(stdout, frames)
    const out = stdout.finish(whole.subarray(9000))
    assert.equal(out.buffer, first.buffer)
    assert.equal(out.byteOffset, 0)
    assert.equal(out.byteLength, 10_000)
  })

  it('zeroes the spare room of a buffer it hands on, and copies the bytes out when more than a quarter would be spare', () => {
    const roomy = new ReceivedStdout(64 * 1024, 12_000)
    receive(roomy, frames)
    const view = roomy.finish(whole.subarray(9000))
    assert.equal(view.buffer.byteLength, 12_000)
    assert.deepEqual(new Uint8Array(view.buffer, 10_000), new Uint8Array(2000), 'nothing but zeros past the stdout')
    const oversized = new ReceivedStdout(64 * 1024, 40_000)
    receive(oversized, frames)
    const copy = oversized.finish(whole.subarray(9000))
    assert.deepEqual(copy, whole)
    assert.equal(copy.buffer.byteLength, 10_000)
  })

  it('gives no room past its cap, and never grows a buffer past it', () => {
    const stdout = new ReceivedStdout(2500)
    receive(stdout, frames.slice(0, 2))
    assert.equal(stdout.reserve(1500), undefined)
    const last = receive(stdout, [whole.subarray(2000, 2500)])[0]
    assert.equal(last.buffer.byteLength, 2500)
    assert.deepEqual(stdout.finish(new Uint8Array(0)), whole.subarray(0, 2500))
  })

  it('gives the tail itself when no frame came, and refuses a commit past what was reserved', () => {
    const tail = Uint8Array.of(1, 2, 3)
    assert.equal(new ReceivedStdout(100).finish(tail), tail)
    const stdout = new ReceivedStdout(100)
    stdout.reserve(10)
    assert.throws(() => { stdout.commit(11) }, RangeError)
    assert.throws(() => new ReceivedStdout(-1), RangeError)
  })
})

describe('runModule with a streamed input and output', () => {
  it('hands stdout over in chunks that with the tail make the whole output, for the same fuel as kept whole', () => {
    const module = upper()
    const input = text(300_000)
    const whole = runModule(module, upperSpec(input))
    const chunks: Uint8Array[] = []
    const streamed = runModule(module, upperSpec(input), { stdoutSink: { chunkBytes: 64 * 1024, flush: (b) => { chunks.push(b) } } })
    assert.equal(streamed.status, 'succeeded')
    assert.ok(chunks.length >= 4, `${chunks.length} chunks`)
    assert.ok(chunks.every(c => c.byteLength >= 64 * 1024))
    assert.deepEqual(joinChunks(chunks, streamed.stdout), upperCased(input))
    assert.deepEqual(whole.stdout, upperCased(input))
    assert.equal(streamed.fuelUsed, whole.fuelUsed)
  })

  it('writes later chunks into the buffers given back (spare), dirty as they are, with the same output and fuel', () => {
    const module = upper()
    const input = text(1_000_000)
    const whole = runModule(module, upperSpec(input))
    const copies: Uint8Array[] = []
    const given: Array<Uint8Array<ArrayBuffer>> = []
    let reused = 0
    const streamed = runModule(module, upperSpec(input), {
      stdoutSink: {
        chunkBytes: 64 * 1024,
        // each chunk is copied, then its buffer scribbled over and given back, as the sandbox does once it is sent
        flush: (b) => {
          copies.push(b.slice())
          given.push(new Uint8Array(b.buffer as ArrayBuffer).fill(0xff))
        },
        spare: (capacity) => {
          const b = given.shift()
          if (b === undefined) return undefined
          if (b.byteLength >= capacity) reused++
          return b
        }
      }
    })
    assert.equal(streamed.status, 'succeeded')
    assert.ok(copies.length >= 8 && reused >= copies.length - 2, `${reused} of ${copies.length} buffers written again`)
    assert.deepEqual(joinChunks(copies, streamed.stdout), upperCased(input))
    assert.equal(streamed.fuelUsed, whole.fuelUsed)
    // a spare too small for a chunk is not used
    const small: Uint8Array[] = []
    const out = runModule(module, upperSpec(input), { stdoutSink: { chunkBytes: 64 * 1024, flush: (b) => { small.push(b.slice()) }, spare: () => new Uint8Array(10) } })
    assert.deepEqual(joinChunks(small, out.stdout), upperCased(input))
  })

  it('stops at the output cap with what fits, part of it streamed ahead', () => {
    const chunks: Uint8Array[] = []
    const out = runModule(upper(), upperSpec(text(300_000), 200_000), { stdoutSink: { chunkBytes: 64 * 1024, flush: (b) => { chunks.push(b) } } })
    assert.equal(out.status, 'output_too_large')
    assert.ok(chunks.length > 0)
    assert.deepEqual(joinChunks(chunks, out.stdout), upperCased(text(300_000)).subarray(0, 200_000))
  })

  it('reads an input that is all there through inputArrived with the same output and fuel as a plain one', () => {
    const module = upper()
    const input = new StreamedInput(100_000)
    input.append(0, text(100_000))
    const plain = runModule(module, upperSpec(text(100_000)))
    const shared = runModule(module, { ...upperSpec(input.bytes), inputArrived: input.arrived })
    assert.deepEqual(shared.stdout, plain.stdout)
    assert.equal(shared.fuelUsed, plain.fuelUsed)
  })
})

/** Feeds `stream` to `inbox` as a socket with `onread` would: each read fills at most what next() gave, and at most `readBytes`. */
function feed (inbox: InputInbox, stream: Uint8Array, readBytes: number): void {
  let at = 0
  while (at < stream.byteLength) {
    const into = inbox.next()
    const n = Math.min(into.byteLength, readBytes, stream.byteLength - at)
    into.set(stream.subarray(at, at + n))
    inbox.filled(n)
    at += n
  }
}

describe('InputInbox', () => {
  for (const readBytes of [1, 5, 4096, 1_000_000]) {
    it(`reads each frame into its run's input, whether the frame or the claim comes first (${readBytes}-byte reads)`, () => {
      const inbox = new InputInbox()
      const early = text(10_000)
      const late = text(777)
      const claimedFirst = inbox.claim(2, late.byteLength)
      feed(inbox, frameStream([[1, early], [2, late]]), readBytes)
      const claimedAfter = inbox.claim(1, early.byteLength)
      assert.deepEqual(claimedAfter.bytes, early)
      assert.equal(Atomics.load(claimedAfter.arrived, 0), early.byteLength)
      assert.deepEqual(claimedFirst.bytes, late)
      assert.equal(inbox.pending, 0, 'nothing kept once claimed and read')
    })
  }

  it('reads into the shared input itself, and publishes each read as it lands', () => {
    const inbox = new InputInbox()
    const input = inbox.claim(5, 100)
    feed(inbox, frameHeader(5, 100), 8)
    const into = inbox.next()
    assert.equal(into.buffer, input.bytes.buffer, 'a view of the shared input')
    into.set(text(40).subarray(0, 30))
    inbox.filled(30)
    assert.equal(Atomics.load(input.arrived, 0), 30)
    assert.equal(inbox.next().byteLength, 70, 'never more than the frame still needs')
  })

  it('gives an empty input at once, with no frame to wait for', () => {
    const input = new InputInbox().claim(9, 0)
    assert.equal(input.bytes.byteLength, 0)
  })

  it('throws a DataFrameError when a frame and its run disagree on the length, or a frame is empty', () => {
    const inbox = new InputInbox()
    inbox.claim(3, 10)
    assert.throws(() => { feed(inbox, frameHeader(3, 11), 8) }, (err: unknown) => err instanceof DataFrameError && err.code === 'SANDBOX_DATA_FRAME')
    assert.throws(() => { feed(new InputInbox(), frameHeader(4, 0), 8) }, DataFrameError)
  })
})

describe('InputPool', () => {
  const big = POOLED_INPUT_MIN_BYTES * 4

  it('gives back the smallest idle buffer that fits, and a new one when none does', () => {
    const pool = new InputPool({ maxBytes: 16 * big })
    const small = new SharedArrayBuffer(big)
    const large = new SharedArrayBuffer(2 * big)
    pool.give(large)
    pool.give(small)
    assert.equal(pool.heldBytes, 3 * big)
    assert.equal(pool.take(big - 1), small)
    assert.equal(pool.take(big), large)
    const fresh = pool.take(big)
    assert.ok(fresh !== small && fresh !== large)
    assert.equal(pool.heldBytes, 0)
  })

  it('keeps no buffer under the pooled minimum, and none for a small input', () => {
    const pool = new InputPool({ maxBytes: 16 * big })
    pool.give(new SharedArrayBuffer(POOLED_INPUT_MIN_BYTES - 1))
    assert.equal(pool.heldBytes, 0)
    const idle = new SharedArrayBuffer(big)
    pool.give(idle)
    assert.notEqual(pool.take(100), idle, 'a 100-byte input gets a fresh buffer')
    assert.equal(pool.heldBytes, big)
  })

  it('holds at most maxBytes, dropping the buffers given back longest ago', () => {
    const pool = new InputPool({ maxBytes: 2 * big })
    const first = new SharedArrayBuffer(big)
    const second = new SharedArrayBuffer(big)
    const third = new SharedArrayBuffer(big)
    for (const b of [first, second, third]) pool.give(b)
    assert.equal(pool.heldBytes, 2 * big)
    assert.equal(pool.take(big), second)
    assert.equal(pool.take(big), third)
    const none = new InputPool({ maxBytes: 0 })
    none.give(new SharedArrayBuffer(big))
    assert.equal(none.heldBytes, 0)
    assert.throws(() => new InputPool({ maxBytes: -1 }), RangeError)
  })

  it('takes an input buffer back only once both its job and its frame are over, and the next input sees only its own bytes', () => {
    const pool = new InputPool({ maxBytes: 4 * big })
    const inbox = new InputInbox(pool)
    const first = text(big)
    const input = inbox.claim(1, first.byteLength)
    feed(inbox, frameStream([[1, first]]), 65_536)
    assert.deepEqual(input.bytes, first)
    assert.equal(pool.heldBytes, 0, 'the job still reads it')
    input.release()
    assert.equal(pool.heldBytes, big)

    const second = text(big - 1000).map(b => b ^ 0x20)
    const next = inbox.claim(2, second.byteLength)
    assert.equal(next.bytes.buffer, input.bytes.buffer, 'the same buffer again')
    assert.equal(next.bytes.byteLength, second.byteLength)
    assert.equal(Atomics.load(next.arrived, 0), 0, 'nothing of it counted as arrived')
    next.release()
    assert.equal(pool.heldBytes, 0, 'its frame is still to be read')
    feed(inbox, frameStream([[2, second]]), 4096)
    assert.deepEqual(next.bytes, second)
    assert.equal(pool.heldBytes, big)
  })
})
