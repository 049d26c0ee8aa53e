/**
 * Decoding of single WebAssembly instructions, with the executor's opcode
 * policy built in.
 *
 * Allowed: the MVP, sign extension, non-trapping float-to-int, bulk memory,
 * reference types and multi-value (what clang, Rust, Go, Zig and
 * AssemblyScript emit by default). Everything else is refused with a reason,
 * because it is either nondeterministic across machines (SIMD NaN bits, threads)
 * or would let control leave a function without the depth counter seeing it
 * (tail calls, exceptions), or is simply not decoded here (GC, memory64,
 * multi-memory). Opcode numbers are from the spec's binary format chapter
 * (https://webassembly.github.io/spec/core/binary/instructions.html).
 */

import { ModuleRejectedError } from './errors.ts'
import type { ByteReader } from './wasm-binary.ts'

/** How an instruction affects metering; see instrument.ts. */
export const InstrKind = {
  /** straight-line code */
  plain: 0,
  /** `block`: opens a label but control falls straight in, so no new segment */
  block: 1,
  /** `loop`: its body is a branch target, so a segment starts inside it */
  loop: 2,
  /** `if`: the then-arm runs conditionally */
  if: 3,
  /** `else`: the else-arm is entered from the `if` */
  else: 4,
  /** `end`: a join point (target of branches to the enclosing block) */
  end: 5,
  /** `br_if`: control may continue after it */
  branchIf: 6,
  /** `br`, `br_table`, `unreachable`: code after it is dead until the next `end`/`else` */
  jump: 7,
  /** `return`: like a jump, and the call depth must be decremented first */
  return: 8,
  /** `memory.fill`, `memory.copy`, `memory.init`: plain, plus a charge proportional to the length */
  bulk: 9,
  /** `table.grow`, `table.fill`, `table.copy`, `table.init`: plain, plus a charge per element */
  tableBulk: 10,
  /** `call`, `call_indirect`: plain for the segments, but the callee (or the host) reads and writes the fuel global */
  call: 11
} as const
export type InstrKind = typeof InstrKind[keyof typeof InstrKind]

const VALTYPES = new Set([0x7f, 0x7e, 0x7d, 0x7c, 0x70, 0x6f]) // i32 i64 f32 f64 funcref externref

function reject (reason: string, offset: number): never {
  throw new ModuleRejectedError(`${reason} (at byte ${offset})`)
}

/** Reads a value type and refuses v128 (SIMD) and the GC/typed-reference types. */
export function readValType (r: ByteReader): number {
  const at = r.pos
  const t = r.u8()
  if (VALTYPES.has(t)) return t
  if (t === 0x7b) reject('the v128 value type (SIMD) is not allowed: SIMD results differ between machines; compile without -msimd128', at)
  return reject(`value type 0x${hex(t)} (GC or typed function references) is not supported`, at)
}

/** Reads a block type: empty, one value type, or a type index (multi-value). */
export function readBlockType (r: ByteReader): void {
  const first = r.peekU8()
  if (first === 0x40) {
    r.pos++
    return
  }
  // a one-byte negative s33 is a value type code; anything else is a non-negative type index
  if ((first & 0xc0) === 0x40) {
    readValType(r)
    return
  }
  const at = r.pos
  if (r.signed(33) < 0) reject('invalid block type', at)
}

function memArg (r: ByteReader): void {
  const at = r.pos
  const flags = r.u32()
  // bit 6 of the alignment field announces an explicit memory index (multi-memory proposal)
  if ((flags & 0x40) !== 0) reject('multiple memories are not allowed: a module may use only memory 0', at)
  r.u32() // offset (memory32: u32)
}

function memIndex (r: ByteReader): void {
  const at = r.pos
  if (r.u32() !== 0) reject('multiple memories are not allowed: a module may use only memory 0', at)
}

/**
 * Decodes the instruction at `r.pos`, advances past it and returns its kind.
 * Throws ModuleRejectedError for an opcode outside the allowed set.
 */
export function readInstruction (r: ByteReader): InstrKind {
  const at = r.pos
  const op = r.u8()
  if (op >= 0x45 && op <= 0xc4) return InstrKind.plain // numeric ops, sign extension: no immediates
  switch (op) {
    case 0x00: return InstrKind.jump // unreachable
    case 0x01: return InstrKind.plain // nop
    case 0x02: readBlockType(r); return InstrKind.block
    case 0x03: readBlockType(r); return InstrKind.loop
    case 0x04: readBlockType(r); return InstrKind.if
    case 0x05: return InstrKind.else
    case 0x0b: return InstrKind.end
    case 0x0c: r.u32(); return InstrKind.jump // br
    case 0x0d: r.u32(); return InstrKind.branchIf
    case 0x0e: { // br_table
      const n = r.u32()
      for (let i = 0; i <= n; i++) r.u32()
      return InstrKind.jump
    }
    case 0x0f: return InstrKind.return
    case 0x10: r.u32(); return InstrKind.call
    case 0x11: r.u32(); r.u32(); return InstrKind.call // call_indirect typeidx tableidx
    case 0x1a: case 0x1b: return InstrKind.plain // drop, select
    case 0x1c: { // select t*
      const n = r.u32()
      for (let i = 0; i < n; i++) readValType(r)
      return InstrKind.plain
    }
    case 0x20: case 0x21: case 0x22: case 0x23: case 0x24: case 0x25: case 0x26:
      r.u32() // local.get/set/tee, global.get/set, table.get/set
      return InstrKind.plain
    case 0x3f: case 0x40: memIndex(r); return InstrKind.plain // memory.size, memory.grow
    case 0x41: r.signed(32); return InstrKind.plain
    case 0x42: r.skipS64(); return InstrKind.plain
    case 0x43: r.skip(4); return InstrKind.plain
    case 0x44: r.skip(8); return InstrKind.plain
    case 0xd0: { // ref.null heaptype
      const ht = r.u8()
      if (ht !== 0x70 && ht !== 0x6f) reject(`ref.null of heap type 0x${hex(ht)} (GC) is not supported`, at)
      return InstrKind.plain
    }
    case 0xd1: return InstrKind.plain // ref.is_null
    case 0xd2: r.u32(); return InstrKind.plain // ref.func
    case 0xfc: return readMiscInstruction(r, at)
    case 0xfd: return reject('SIMD instructions (0xFD prefix) are not allowed: their NaN results differ between machines; compile without -msimd128', at)
    case 0xfe: return reject('thread and atomic instructions (0xFE prefix) are not allowed: shared-memory threads are not deterministic; compile without -pthread/-matomics', at)
    case 0xfb: return reject('GC instructions (0xFB prefix) are not supported', at)
    case 0x06: case 0x07: case 0x08: case 0x09: case 0x0a: case 0x18: case 0x19: case 0x1f:
      return reject(`exception-handling instruction 0x${hex(op)} is not supported: exceptions would unwind past the call-depth counter; compile without -fwasm-exceptions`, at)
    case 0x12: case 0x13: case 0x15:
      return reject(`tail call instruction 0x${hex(op)} is not supported: the call-depth limit needs every call to return; compile without -mtail-call`, at)
    case 0x14: case 0xd3: case 0xd4: case 0xd5: case 0xd6:
      return reject(`typed function reference instruction 0x${hex(op)} is not supported`, at)
  }
  if (op >= 0x28 && op <= 0x3e) { // loads and stores
    memArg(r)
    return InstrKind.plain
  }
  return reject(`unknown or unsupported opcode 0x${hex(op)}`, at)
}

function readMiscInstruction (r: ByteReader, at: number): InstrKind {
  const sub = r.u32()
  switch (sub) {
    case 0: case 1: case 2: case 3: case 4: case 5: case 6: case 7:
      return InstrKind.plain // i32/i64.trunc_sat_f32/f64_s/u
    case 8: r.u32(); memIndex(r); return InstrKind.bulk // memory.init dataidx mem
    case 9: r.u32(); return InstrKind.plain // data.drop
    case 10: memIndex(r); memIndex(r); return InstrKind.bulk // memory.copy dst src
    case 11: memIndex(r); return InstrKind.bulk // memory.fill
    case 12: r.u32(); r.u32(); return InstrKind.tableBulk // table.init elemidx tableidx
    case 13: r.u32(); return InstrKind.plain // elem.drop
    case 14: r.u32(); r.u32(); return InstrKind.tableBulk // table.copy
    case 15: case 17: r.u32(); return InstrKind.tableBulk // table.grow, table.fill
    case 16: r.u32(); return InstrKind.plain // table.size
  }
  return reject(`unknown or unsupported instruction 0xfc ${sub}`, at)
}

export function hex (n: number): string {
  return n.toString(16).padStart(2, '0')
}
