/**
 * Length-prefixed framing shared by the protocols of this folder: a varint length then
 * that many bytes (the wire format of libp2p's `lpStream`), each frame at most `maxFrameBytes`.
 *
 * A message is one frame. A payload (module, input, stdout, stderr) is a run
 * of non-empty frames closed by an empty frame, so the receiver can tell "the
 * peer sent more than it announced" (cut off at once) from "the peer stopped
 * early", and never has to trust the announced size to allocate memory.
 */
import { StreamBufferError } from '@libp2p/interface'
import { byteStream, InvalidDataLengthError, InvalidDataLengthLengthError, InvalidMessageLengthError, UnexpectedEOFError } from '@libp2p/utils'
import { varint } from 'multiformats'
import { errorWithCode } from '../core/errors.ts'
import { PayloadTooLargeError, ProtocolViolationError, StreamEndedEarlyError } from './errors.ts'
import type { BlobSource } from '../codec/manifest.ts'
import type { AbortOptions, Stream } from '@libp2p/interface'
import type { ByteStream } from '@libp2p/utils'

export interface FramedStreamInit {
  /** largest frame accepted or sent */
  maxFrameBytes: number
  /**
   * Bytes buffered between the muxer and the reader; more aborts the stream.
   * Frames are consumed as they arrive, so this is only reached by a peer
   * that keeps sending when it should wait (e.g. during execution).
   */
  maxBufferBytes: number
}

export interface PayloadOptions extends AbortOptions {
  /** after each frame, with the bytes so far: progress events and stall timers hang off this */
  onFrame?: (bytes: number) => void
}

/**
 * A payload read in chunks from where it is kept (a blob file of the
 * broker's store) rather than held whole in memory: a big module or input
 * is sent frame by frame from disk, never materialised in the sender. The
 * codec's type, so that a job's directory files (codec/manifest.ts) can be
 * sources too without a second definition of the same thing.
 */
export type PayloadSource = BlobSource

/** What a payload may be sent from: bytes in memory, or a source read in chunks. */
export type Payload = Uint8Array | PayloadSource

/** A source that yielded a size other than the one it stated: the file under it changed, or was cut short. */
export class PayloadSourceChangedError extends errorWithCode('PAYLOAD_SOURCE_CHANGED') {}

const EMPTY = new Uint8Array(0)

/** A frame up to this size is copied behind its length prefix and sent as one muxer message. */
const COPY_FRAME_BYTES = 64 * 1024

/** What the byte stream's reads return: a list of the chunks that arrived. */
type ReadBytes = NonNullable<Awaited<ReturnType<ByteStream<Stream>['read']>>>

export class FramedStream {
  readonly stream: Stream
  private readonly bytes: ByteStream<Stream>
  private readonly maxFrameBytes: number
  private readonly maxBufferBytes: number
  /** the longest length prefix a frame within the limit has */
  private readonly maxPrefixBytes: number
  /** bytes read from the stream and not yet handed out as frames (the byte stream's own list type) */
  private pending?: ReadBytes

  constructor (stream: Stream, init: FramedStreamInit) {
    this.stream = stream
    this.maxFrameBytes = init.maxFrameBytes
    this.maxBufferBytes = init.maxBufferBytes
    this.maxPrefixBytes = lengthPrefix(init.maxFrameBytes).byteLength
    this.bytes = byteStream(stream, { maxBufferSize: init.maxBufferBytes })
  }

  /** One frame; `what` names it in errors ("dispatch header", "input"). */
  async readFrame (what: string, options: AbortOptions): Promise<Uint8Array> {
    try {
      return await this.nextFrame(options)
    } catch (err) {
      throw translateReadError(err, what, this.maxFrameBytes)
    }
  }

  /**
   * The next frame: cut from what was read already when it is all there,
   * else after reading everything the stream has buffered. A small message
   * arrives as one muxer frame holding all its frames (`writeFrames`): they
   * are parsed from memory, one read of the stream for all of them, where
   * `lpStream` awaits a read per length byte and per frame.
   */
  private async nextFrame (options: AbortOptions): Promise<Uint8Array> {
    while (true) {
      const frame = this.takeFrame()
      if (frame != null) return frame
      const chunk = await this.bytes.read(options)
      if (chunk == null) throw new UnexpectedEOFError(`Unexpected EOF - the stream ended with ${this.pending?.byteLength ?? 0} byte(s) of a frame read`)
      if (this.pending == null) this.pending = chunk
      else this.pending.append(chunk)
      if (this.pending.byteLength > this.maxBufferBytes) throw new StreamBufferError(`Read buffer overflow - ${this.pending.byteLength} > ${this.maxBufferBytes}`)
    }
  }

  /**
   * A whole frame off the front of `pending`, or undefined while it is not all
   * there. The length prefix is read here byte by byte rather than with
   * multiformats' varint decoder: that one needs the bytes in one piece (they
   * may span chunks of the list) and throws alike for a prefix not all read
   * yet and one too long, which must be told apart.
   */
  private takeFrame (): Uint8Array | undefined {
    const pending = this.pending
    if (pending == null) return undefined
    let length = 0
    for (let i = 0; i < pending.byteLength; i++) {
      const byte = pending.get(i)
      length += (byte & 0x7f) * 2 ** (7 * i)
      if ((byte & 0x80) !== 0) {
        if (i + 1 >= this.maxPrefixBytes) throw new InvalidDataLengthLengthError(`Message length length too long - over ${this.maxPrefixBytes} bytes`)
        continue
      }
      if (length > this.maxFrameBytes) throw new InvalidDataLengthError(`Message length too long - ${length} > ${this.maxFrameBytes}`)
      const end = i + 1 + length
      if (pending.byteLength < end) return undefined
      const frame = pending.subarray(i + 1, end)
      pending.consume(end)
      return frame
    }
    return undefined
  }

  /** One frame decoded as a message; decoders throw MalformedMessageError naming the field. */
  async readMessage<T> (decode: (bytes: Uint8Array) => T, what: string, options: AbortOptions): Promise<T> {
    return decode(await this.readFrame(what, options))
  }

  async writeFrame (bytes: Uint8Array, options: AbortOptions): Promise<void> {
    if (bytes.byteLength > this.maxFrameBytes) {
      // our own bug if it happens: the peer would reset the stream with a less helpful message
      throw new PayloadTooLargeError(`refusing to send a ${bytes.byteLength}-byte frame: the limit is ${this.maxFrameBytes}`, this.maxFrameBytes)
    }
    const prefix = lengthPrefix(bytes.byteLength)
    if (bytes.byteLength > COPY_FRAME_BYTES) {
      // a big frame is not copied behind its prefix: two muxer messages, the second carrying the bytes where they are
      await this.bytes.write(prefix, options)
      await this.bytes.write(bytes, options)
      return
    }
    await this.bytes.write(Buffer.concat([prefix, bytes]), options)
  }

  /**
   * Several frames in one write to the stream: one muxer frame, one
   * encryption and one socket write for a whole small message instead of one
   * per frame. The frames are copied into one buffer: for small messages
   * only. Build payloads with `payloadFrames`.
   */
  async writeFrames (frames: readonly Uint8Array[], options: AbortOptions): Promise<void> {
    for (const frame of frames) {
      if (frame.byteLength > this.maxFrameBytes) {
        throw new PayloadTooLargeError(`refusing to send a ${frame.byteLength}-byte frame: the limit is ${this.maxFrameBytes}`, this.maxFrameBytes)
      }
    }
    await this.bytes.write(Buffer.concat(frames.flatMap(frame => [lengthPrefix(frame.byteLength), frame])), options)
  }

  /** `bytes` as the frames `writePayload` sends (views of it, closed by the empty frame), for `writeFrames`. */
  payloadFrames (bytes: Uint8Array): Uint8Array[] {
    const frames: Uint8Array[] = []
    for (let offset = 0; offset < bytes.byteLength; offset += this.maxFrameBytes) {
      frames.push(bytes.subarray(offset, Math.min(offset + this.maxFrameBytes, bytes.byteLength)))
    }
    frames.push(EMPTY)
    return frames
  }


  /** Sends `payload` as frames of at most `maxFrameBytes`, then the empty terminator frame. */
  async writePayload (payload: Payload, options: PayloadOptions): Promise<void> {
    if (payload instanceof Uint8Array) {
      await this.writeChunk(payload, 0, options)
    } else {
      let sent = 0
      // the receiver was told the size: a source that changed under us must not end in a short or long payload it would take as sent
      const changed = (): Error => new PayloadSourceChangedError(`a payload of ${payload.byteLength} bytes yielded another size (${sent} bytes before it ended or overran): its file changed while it was sent`)
      for await (const chunk of payload.chunks(options)) {
        if (sent + chunk.byteLength > payload.byteLength) throw changed()
        sent = await this.writeChunk(chunk, sent, options)
      }
      if (sent !== payload.byteLength) throw changed()
    }
    await this.bytes.write(lengthPrefix(0), options)
  }

  /** Frames of one chunk; `sent` bytes went before it: the bytes sent after it. */
  private async writeChunk (bytes: Uint8Array, sent: number, options: PayloadOptions): Promise<number> {
    for (let offset = 0; offset < bytes.byteLength; offset += this.maxFrameBytes) {
      const end = Math.min(offset + this.maxFrameBytes, bytes.byteLength)
      await this.writeFrame(bytes.subarray(offset, end), options)
      options.onFrame?.(sent + end)
    }
    return sent + bytes.byteLength
  }

  /**
   * Reads a payload of exactly `announced` bytes. Cut off with
   * PayloadTooLargeError as soon as the peer sends one byte more; a
   * ProtocolViolationError when the terminator comes early.
   */
  async readPayload (announced: number, what: string, options: PayloadOptions): Promise<Uint8Array> {
    // one buffer of the announced size, filled frame by frame: a big payload is held once, not as frames and then a copy.
    // Callers bound `announced` (their payload and output limits) before reading, and a peer that sends more is cut off
    // below; the zeroed pages of a large buffer are committed as they are written, so a size announced and never sent
    // costs address space, not memory
    const out = new Uint8Array(announced)
    let offset = 0
    await this.eachPayloadFrame(announced, what, options, (frame) => {
      out.set(frame, offset)
      offset += frame.byteLength
    })
    return out
  }

  /**
   * Reads a payload as `readPayload` does, with the same checks, and keeps
   * none of it: for a request refused before its payload, so the peer's
   * send completes and it reads the answer.
   */
  async skipPayload (announced: number, what: string, options: PayloadOptions): Promise<void> {
    await this.eachPayloadFrame(announced, what, options, () => {})
  }

  private async eachPayloadFrame (announced: number, what: string, options: PayloadOptions, onData: (frame: Uint8Array) => void): Promise<number> {
    let received = 0
    while (true) {
      const frame = await this.readFrame(what, options)
      if (frame.byteLength === 0) break
      received += frame.byteLength
      if (received > announced) {
        throw new PayloadTooLargeError(`${what}: the peer announced ${announced} bytes and sent more (${received} so far); cut off`, announced)
      }
      onData(frame)
      options.onFrame?.(received)
    }
    if (received !== announced) {
      throw new ProtocolViolationError(`${what}: the peer announced ${announced} bytes but sent ${received}`)
    }
    return received
  }
}

/** The unsigned varint of `n` that prefixes a frame of `n` bytes. */
function lengthPrefix (n: number): Uint8Array {
  const out = new Uint8Array(varint.encodingLength(n))
  varint.encodeTo(n, out, 0)
  return out
}

function translateReadError (err: unknown, what: string, maxFrameBytes: number): unknown {
  if (err instanceof InvalidDataLengthError) {
    return new PayloadTooLargeError(`${what}: a frame is over the ${maxFrameBytes}-byte frame limit`, maxFrameBytes, { cause: err })
  }
  if (err instanceof InvalidDataLengthLengthError || err instanceof InvalidMessageLengthError) {
    return new ProtocolViolationError(`${what}: bad frame length prefix (not this protocol's framing?)`, { cause: err })
  }
  if (err instanceof UnexpectedEOFError) {
    return new StreamEndedEarlyError(`${what}: the stream ended before it was complete`, { cause: err })
  }
  if (err instanceof StreamBufferError) {
    return new ProtocolViolationError(`${what}: the peer sent more than the read buffer holds without waiting`, { cause: err })
  }
  // aborts, resets and closes keep their own type: callers map them to phases
  return err
}
