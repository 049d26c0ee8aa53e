import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { WasmParseError } from '../../src/executor/errors.ts'
import { ByteReader, ByteWriter, encodeS64, encodeU32 } from '../../src/executor/wasm-binary.ts'

describe('LEB128', () => {
  it('round-trips unsigned 32-bit values at every byte-length boundary', () => {
    for (const v of [0, 1, 127, 128, 16383, 16384, 2 ** 21 - 1, 2 ** 21, 2 ** 28 - 1, 2 ** 28, 0xffff_ffff]) {
      const bytes = new Uint8Array(encodeU32(v))
      const r = new ByteReader(bytes)
      assert.equal(r.u32(), v)
      assert.ok(r.atEnd, `all ${bytes.length} bytes of ${v} consumed`)
    }
  })

  it('encodes the spec examples', () => {
    assert.deepEqual(encodeU32(624485), [0xe5, 0x8e, 0x26])
    assert.deepEqual(encodeS64(-123456n), [0xc0, 0xbb, 0x78])
    assert.deepEqual(encodeS64(-1n), [0x7f])
    assert.deepEqual(encodeS64(63n), [0x3f])
    assert.deepEqual(encodeS64(64n), [0xc0, 0x00])
  })

  it('round-trips signed 32-bit values, including the extremes', () => {
    for (const v of [0, 1, -1, 63, 64, -64, -65, 2 ** 31 - 1, -(2 ** 31)]) {
      const r = new ByteReader(new Uint8Array(new ByteWriter().s32(v).toBytes()))
      assert.equal(r.signed(32), v)
    }
  })

  it('accepts padded (non-minimal) encodings, as lld writes them', () => {
    assert.equal(new ByteReader(new Uint8Array([0x85, 0x80, 0x80, 0x80, 0x00])).u32(), 5)
  })

  it('refuses a u32 that overflows 32 bits and says where', () => {
    assert.throws(() => new ByteReader(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x1f])).u32(), WasmParseError)
    assert.throws(() => new ByteReader(new Uint8Array([0x80, 0x80, 0x80, 0x80, 0x80, 0x00])).u32(), /longer than 5 bytes at byte 0/)
  })

  it('refuses to read past the end of the data', () => {
    assert.throws(() => new ByteReader(new Uint8Array([0x80])).u32(), /unexpected end of data at byte 1/)
  })
})
