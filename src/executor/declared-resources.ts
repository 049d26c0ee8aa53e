/**
 * The resources a module declares outside its code — tables, element and data
 * segments — read and bounded before anything is compiled or instantiated
 * (see module-limits.ts for why), and the table section rewritten so that no
 * table can grow past its share of the executor's table budget.
 */

import { ModuleRejectedError } from './errors.ts'
import { checkCount, ModuleLimitError, type ModuleLimits } from './module-limits.ts'
import { ByteReader, ByteWriter } from './wasm-binary.ts'
import { InstrKind, hex, readInstruction } from './wasm-instructions.ts'

/** A byte range of the module: a section's payload. */
export interface PayloadRange {
  payloadStart: number
  payloadEnd: number
}

export interface Limits {
  min: number
  max?: number
}

export function readLimits (r: ByteReader, what: string): Limits {
  const at = r.pos
  const flags = r.u8()
  if (flags === 0x02 || flags === 0x03) {
    throw new ModuleRejectedError(`shared ${what} (threads) is not allowed: shared-memory threads are not deterministic; compile without -pthread (at byte ${at})`)
  }
  if (flags > 0x01) {
    throw new ModuleRejectedError(`${what} limits flag 0x${hex(flags)} (64-bit or custom page size) is not supported (at byte ${at})`)
  }
  const min = r.u32()
  return flags === 0x01 ? { min, max: r.u32() } : { min }
}

export function readTableType (r: ByteReader): { ref: number, limits: Limits } {
  const at = r.pos
  const ref = r.u8()
  if (ref !== 0x70 && ref !== 0x6f) throw new ModuleRejectedError(`table element type 0x${hex(ref)} is not supported (at byte ${at})`)
  return { ref, limits: readLimits(r, 'table') }
}

/** `ref.func funcidx` */
const REF_FUNC = 0xd2

/**
 * Skips a constant expression (global initialisers, segment offsets, element
 * entries), refusing forbidden opcodes inside it; the functions it names with
 * `ref.func` go into `refs` when given.
 */
export function skipConstExpr (r: ByteReader, refs?: Set<number>): void {
  for (;;) {
    if (refs !== undefined && r.peekU8() === REF_FUNC) {
      r.u8()
      refs.add(r.u32())
      continue
    }
    if (readInstruction(r) === InstrKind.end) return
  }
}


export function expectEnd (r: ByteReader, section: string): void {
  if (!r.atEnd) r.fail(`${section} section has ${r.end - r.pos} unexpected trailing bytes`)
}

/**
 * Reads the table section and bounds it: at most `maxTables` tables, each
 * starting within its share of `maxTableEntries`. Returns the rewritten
 * section payload when some table's maximum was absent or above its share
 * (the maximum becomes the share), else undefined (the section is copied).
 */
export function boundTables (bytes: Uint8Array, s: PayloadRange | undefined, limits: ModuleLimits): Uint8Array | undefined {
  if (s === undefined) return undefined
  const r = new ByteReader(bytes, s.payloadStart, s.payloadEnd)
  const count = r.u32()
  checkCount(limits, 'maxTables', count, 'tables')
  const share = Math.floor(limits.maxTableEntries / Math.max(1, count))
  const tables: Array<{ ref: number, limits: Limits }> = []
  let rewrite = false
  for (let i = 0; i < count; i++) {
    if (r.peekU8() === 0x40) throw new ModuleRejectedError('tables with an initialiser expression (GC proposal) are not supported')
    const table = readTableType(r)
    if (table.limits.min > share) {
      throw new ModuleLimitError('maxTableEntries', `table ${i} starts with ${table.limits.min} entries, above its share of ${share} of this executor's limit of ${limits.maxTableEntries} table entries (moduleLimits.maxTableEntries)`)
    }
    if (table.limits.max === undefined || table.limits.max > share) rewrite = true
    tables.push(table)
  }
  expectEnd(r, 'table')
  if (!rewrite) return undefined
  const w = new ByteWriter(8 + 11 * count)
  w.u32(count)
  for (const t of tables) w.u8(t.ref).u8(0x01).u32(t.limits.min).u32(Math.min(t.limits.max ?? share, share))
  return w.toBytes()
}

/** Counts the element segments and their entries, refusing more than the limits allow. */
export function boundElements (bytes: Uint8Array, s: PayloadRange | undefined, limits: ModuleLimits, refs: Set<number>): void {
  if (s === undefined) return
  const r = new ByteReader(bytes, s.payloadStart, s.payloadEnd)
  const count = r.u32()
  checkCount(limits, 'maxElementSegments', count, 'element segments')
  let entries = 0
  for (let i = 0; i < count; i++) {
    entries += readElementSegment(r, refs)
    checkCount(limits, 'maxElementEntries', entries, 'element segment entries (or more)')
  }
  expectEnd(r, 'element')
}

/**
 * Reads one element segment (the eight encodings of the spec's binary format)
 * and returns its entry count; the functions it holds go into `refs`.
 */
function readElementSegment (r: ByteReader, refs: Set<number>): number {
  const at = r.pos
  const flags = r.u32()
  if (flags > 7) r.fail(`element segment flags ${flags} are not defined`, at)
  const hasTable = (flags & 0x02) !== 0 && (flags & 0x01) === 0
  const active = (flags & 0x01) === 0
  const exprs = (flags & 0x04) !== 0
  if (hasTable) r.u32()
  if (active) skipConstExpr(r)
  // flags 0 and 4 imply funcref; the others name an element kind or reference type
  if (flags !== 0 && flags !== 4) r.u8()
  const n = r.u32()
  for (let i = 0; i < n; i++) {
    if (exprs) skipConstExpr(r, refs)
    else refs.add(r.u32()) // without expressions, entries are function indices (elemkind 0x00 is the only one)
  }
  return n
}

/** Refuses more data segments than the limit (the data count section, when present, announces the same number). */
export function boundData (bytes: Uint8Array, s: PayloadRange | undefined, limits: ModuleLimits): void {
  if (s === undefined) return
  const r = new ByteReader(bytes, s.payloadStart, s.payloadEnd)
  checkCount(limits, 'maxDataSegments', r.u32(), 'data segments')
}
