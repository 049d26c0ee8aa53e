/**
 * Byte-level reading and writing of the WebAssembly binary format: LEB128
 * integers, names and raw slices.
 *
 * Hand-written rather than taken from npm: no maintained package meters fuel
 * well (`wasm-metering` measured 11x slower and handles only the MVP), and the
 * injector needs only this small subset of a binary toolkit. Encoding follows
 * the spec's "Binary Format" chapter
 * (https://webassembly.github.io/spec/core/binary/values.html).
 */

import { WasmParseError } from './errors.ts'

const textDecoder = new TextDecoder('utf-8', { fatal: true })
const textEncoder = new TextEncoder()

/** Sequential reader over a byte range; every read checks bounds and names the offset on failure. */
export class ByteReader {
  readonly bytes: Uint8Array
  pos: number
  readonly end: number

  constructor (bytes: Uint8Array, start = 0, end = bytes.length) {
    this.bytes = bytes
    this.pos = start
    this.end = end
  }

  get atEnd (): boolean {
    return this.pos >= this.end
  }

  fail (message: string, offset = this.pos): never {
    throw new WasmParseError(message, offset)
  }

  u8 (): number {
    if (this.pos >= this.end) this.fail('unexpected end of data')
    return this.bytes[this.pos++]
  }

  peekU8 (): number {
    if (this.pos >= this.end) this.fail('unexpected end of data')
    return this.bytes[this.pos]
  }

  /** Unsigned LEB128 of at most 32 bits (at most 5 bytes, unused high bits zero). */
  u32 (): number {
    const start = this.pos
    let result = 0
    let shift = 0
    for (let i = 0; i < 5; i++) {
      const byte = this.u8()
      if (i === 4 && (byte & 0x70) !== 0) this.fail('u32 LEB128 overflows 32 bits', start)
      result += (byte & 0x7f) * 2 ** shift
      if ((byte & 0x80) === 0) return result
      shift += 7
    }
    return this.fail('u32 LEB128 longer than 5 bytes', start)
  }

  /**
   * Signed LEB128 of at most `bits` bits, returned as a number (used for s32 and
   * the s33 block type index, both exact in a double).
   */
  signed (bits: 32 | 33): number {
    const start = this.pos
    const maxBytes = Math.ceil(bits / 7)
    let result = 0
    let shift = 0
    for (let i = 0; i < maxBytes; i++) {
      const byte = this.u8()
      result += (byte & 0x7f) * 2 ** shift
      shift += 7
      if ((byte & 0x80) === 0) {
        if ((byte & 0x40) !== 0) result -= 2 ** shift
        if (result < -(2 ** (bits - 1)) || result >= 2 ** (bits - 1)) this.fail(`s${bits} LEB128 out of range`, start)
        return result
      }
    }
    return this.fail(`s${bits} LEB128 longer than ${maxBytes} bytes`, start)
  }

  /** Skips a signed 64-bit LEB128 (i64.const): only its length matters to the injector. */
  skipS64 (): void {
    const start = this.pos
    for (let i = 0; i < 10; i++) {
      if ((this.u8() & 0x80) === 0) return
    }
    this.fail('s64 LEB128 longer than 10 bytes', start)
  }

  skip (n: number): void {
    if (n < 0 || this.pos + n > this.end) this.fail(`${n} bytes run past the end of the section`)
    this.pos += n
  }

  slice (n: number): Uint8Array {
    const start = this.pos
    this.skip(n)
    return this.bytes.subarray(start, start + n)
  }

  /** A name: u32 length then UTF-8 bytes (the spec requires valid UTF-8). */
  name (): string {
    const start = this.pos
    const bytes = this.slice(this.u32())
    try {
      return textDecoder.decode(bytes)
    } catch (err) {
      throw new WasmParseError('name is not valid UTF-8', start, { cause: err })
    }
  }
}

/** Growable output buffer. */
export class ByteWriter {
  private buf: Uint8Array
  length = 0

  constructor (initialCapacity = 1024) {
    this.buf = new Uint8Array(Math.max(16, initialCapacity))
  }

  private reserve (n: number): void {
    if (this.length + n <= this.buf.length) return
    let capacity = this.buf.length * 2
    while (capacity < this.length + n) capacity *= 2
    const next = new Uint8Array(capacity)
    next.set(this.buf.subarray(0, this.length))
    this.buf = next
  }

  u8 (byte: number): this {
    this.reserve(1)
    this.buf[this.length++] = byte
    return this
  }

  bytes (bytes: ArrayLike<number>): this {
    this.reserve(bytes.length)
    this.buf.set(bytes, this.length)
    this.length += bytes.length
    return this
  }

  /** `src[start..end)`, copied without a subarray when short (the injector copies millions of short runs). */
  range (src: Uint8Array, start: number, end: number): this {
    const n = end - start
    this.reserve(n)
    if (n <= 32) {
      const buf = this.buf
      let at = this.length
      for (let i = start; i < end; i++) buf[at++] = src[i]
    } else {
      this.buf.set(src.subarray(start, end), this.length)
    }
    this.length += n
    return this
  }

  u32 (value: number): this {
    return this.bytes(encodeU32(value))
  }

  s32 (value: number): this {
    return this.bytes(encodeS32(value))
  }

  s64 (value: bigint): this {
    return this.bytes(encodeS64(value))
  }

  /** Signed LEB128 of a non-negative integer below 2^53, without BigInt (the injector writes one per metered segment). */
  sleb (value: number): this {
    this.reserve(8)
    let v = value
    for (;;) {
      const byte = v % 128
      v = Math.floor(v / 128)
      if (v === 0 && (byte & 0x40) === 0) {
        this.buf[this.length++] = byte
        return this
      }
      this.buf[this.length++] = byte | 0x80
    }
  }

  name (value: string): this {
    const utf8 = textEncoder.encode(value)
    return this.u32(utf8.length).bytes(utf8)
  }

  /** A vector or section payload prefixed by its byte length. */
  sized (payload: Uint8Array): this {
    return this.u32(payload.length).bytes(payload)
  }

  toBytes (): Uint8Array {
    return this.buf.slice(0, this.length)
  }
}

export function encodeU32 (value: number): number[] {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff_ffff) {
    throw new RangeError(`u32 out of range: ${value}`)
  }
  const out: number[] = []
  let v = value
  do {
    let byte = v % 128
    v = Math.floor(v / 128)
    if (v !== 0) byte |= 0x80
    out.push(byte)
  } while (v !== 0)
  return out
}

export function encodeS32 (value: number): number[] {
  if (!Number.isInteger(value) || value < -(2 ** 31) || value >= 2 ** 31) throw new RangeError(`s32 out of range: ${value}`)
  return encodeS64(BigInt(value))
}

export function encodeS64 (value: bigint): number[] {
  if (value < -(2n ** 63n) || value >= 2n ** 63n) throw new RangeError(`s64 out of range: ${value}`)
  const out: number[] = []
  let v = value
  for (;;) {
    const byte = Number(v & 0x7fn)
    v >>= 7n // arithmetic shift: keeps the sign
    const done = (v === 0n && (byte & 0x40) === 0) || (v === -1n && (byte & 0x40) !== 0)
    out.push(done ? byte : byte | 0x80)
    if (done) return out
  }
}
