/**
 * The metering injector: one pass over a WebAssembly binary that enforces the
 * structural policy, clamps the memory, and injects deterministic fuel and
 * call-depth accounting. Hand-written (no npm package meters well; see
 * wasm-binary.ts) and dependency-free.
 *
 * What the rewritten module contains, and why:
 *
 * - Three new mutable globals appended after every existing global (imported
 *   globals come first in the index space, so appending at the end shifts no
 *   index): `fuel` (i64, exported as `__wc_fuel`), `trap` (i32, exported as
 *   `__wc_trap`: why the injected code trapped) and `depth` (i32). No function
 *   or import is added, so no function index shifts either.
 * - Fuel (cost rule "meter/5", METER_VERSION): every original instruction costs 1,
 *   memory.fill/copy/init cost 1 more per 64 bytes, table.grow/fill/copy/init
 *   1 more per element, and host calls charge the guest bytes they touch
 *   (wasi-memory.ts, HostFuel). The code is cut into
 *   segments of straight-line code ending at a control instruction (loop, if,
 *   else, end, br, br_if, br_table, return, unreachable); a segment starts at
 *   the function entry and after each of those, i.e. at every place control can
 *   arrive other than by falling through. Each live segment begins with
 *   `fuel -= cost; if (fuel < 0) { trap = 1; unreachable }`, cost being the
 *   number of instructions in it including the control instruction that ends it.
 *   `block` does not end a segment: entering a block is falling through.
 *   Segments right after br/br_table/return/unreachable are dead code and get
 *   no charge. Charging a whole segment up front is what makes the count
 *   independent of the engine: it depends only on which segments ran.
 * - Where the count lives: while a body runs, in a local of its own
 *   (an i64 after every existing local), which V8 keeps in a register; the
 *   global is loaded into it at entry and after each call, and stored from it
 *   before each call (the callee and host calls charge the global), before
 *   each return and the body's end, and when the check traps for fuel. A run
 *   that ends well, or out of fuel, counts the same as if every segment
 *   charged the global; a trap of the guest's own (unreachable, a bad memory
 *   access) shows the count as of the last entry, call or return, so this
 *   placement is part of the cost rule too.
 * - Straight leaves (straight-leaves.ts): a small function whose body is one
 *   straight segment and that only direct calls reach costs the same fuel at
 *   every call, so each segment that calls it is charged that much more and
 *   the function is copied as written, with no counter, charge or depth
 *   count; its callers neither store nor reload the counter around the call.
 *   Its fuel is charged with the calling segment, before any of it runs, like
 *   the segment's own instructions.
 * - Depth: each function body becomes
 *     depth += 1; if (depth > MAX) { trap = 2; unreachable }
 *     block (result …) <original body> end
 *     depth -= 1
 *   and every `return` is preceded by `depth -= 1`. Wrapping the body in a block
 *   means branches to the function's own label (br/br_if/br_table with the
 *   outermost depth, which act as returns) land before the decrement without
 *   rewriting them. Tail calls and exceptions, which would leave a function by
 *   another way, are refused (wasm-instructions.ts).
 * - A start section is removed and its function exported as `__wc_start`, so
 *   the host sets the fuel budget before any guest code runs.
 * - The memory's maximum becomes min(declared max, cap); a minimum above the cap
 *   is refused. Imported memories and more than one memory are refused.
 * - Every declared resource is bounded (module-limits.ts): a table's maximum
 *   becomes its share of the table budget, so `table.grow` past it returns -1;
 *   counts, locals, nesting and the metered code size above a limit are refused.
 */

import { boundData, boundElements, boundTables, expectEnd, readLimits, readTableType, skipConstExpr, type Limits } from './declared-resources.ts'
import { ModuleRejectedError } from './errors.ts'
import { DEFAULT_MODULE_LIMITS, ModuleLimitError, checkCount, type ModuleLimits } from './module-limits.ts'
import { findStraightLeaves, type StraightLeaves } from './straight-leaves.ts'
import { ByteReader, ByteWriter, encodeS32, encodeU32 } from './wasm-binary.ts'
import { InstrKind, hex, readInstruction, readValType } from './wasm-instructions.ts'

/** Pinned name of the cost rule: fuel is part of what replicas compare, so any change must bump it. */
export const METER_VERSION = 'meter/5'

export const FUEL_EXPORT = '__wc_fuel'
export const TRAP_EXPORT = '__wc_trap'
export const START_EXPORT = '__wc_start'
/** Prefix reserved for the executor's exports; a module may not use it. */
export const RESERVED_EXPORT_PREFIX = '__wc_'

/** Values of the `__wc_trap` global after the injected code trapped. */
export const TrapCode = {
  none: 0,
  outOfFuel: 1,
  callDepth: 2
} as const

export const WASM_PAGE_BYTES = 65_536
/** memory32 can address at most 4 GiB */
export const MAX_WASM_PAGES = 65_536
/** V8's kV8MaxWasmFunctionLocals; adding the fuel local (and the scratch local) must not cross it */
const MAX_FUNCTION_LOCALS = 50_000

export type ExternKind = 'function' | 'table' | 'memory' | 'global' | 'tag'
const EXTERN_KINDS: readonly ExternKind[] = ['function', 'table', 'memory', 'global', 'tag']

export interface FuncType {
  /** value type bytes, e.g. 0x7f for i32 */
  params: number[]
  results: number[]
}

export interface ImportEntry {
  module: string
  name: string
  kind: ExternKind
  /** for function imports */
  type?: FuncType
}

export interface ExportEntry {
  name: string
  kind: ExternKind
  index: number
}

export interface InstrumentOptions {
  /** memory cap in 64 KiB pages (the declared maximum is clamped to it) */
  maxMemoryPages: number
  /** deterministic call depth limit; a call that would go deeper traps */
  maxCallDepth: number
  /** what the module may declare @default DEFAULT_MODULE_LIMITS */
  moduleLimits?: ModuleLimits
}

export interface MemoryInfo {
  initialPages: number
  /** the maximum written into the rewritten module */
  maximumPages: number
  /** the maximum the module declared, if any */
  declaredMaximumPages?: number
}

export interface InstrumentResult {
  bytes: Uint8Array
  imports: ImportEntry[]
  /** the original exports (the injected ones are not listed) */
  exports: ExportEntry[]
  memory?: MemoryInfo
  /** index of the function that was the start function, now exported as `__wc_start` */
  startFunction?: number
  /** the type of every function in the index space, imports first */
  functionTypes: FuncType[]
}

interface SectionRange {
  id: number
  /** offset of the section id byte */
  headerStart: number
  payloadStart: number
  payloadEnd: number
}

/** Non-custom sections in the order the spec requires them (tag 13 and data count 12 sit out of numeric order). */
const SECTION_RANK: Record<number, number> = { 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13 }
const GLOBAL_SECTION = 6
const EXPORT_SECTION = 7
const CODE_SECTION = 10

const I32 = 0x7f
const I64 = 0x7e
/** `call funcidx` (0x11 is call_indirect) */
const CALL = 0x10
const NO_BYTES = new Uint8Array(0)

/**
 * Checks policy and rewrites `bytes`. Throws WasmParseError for bytes that do
 * not parse, ModuleRejectedError for a policy violation. The input should have
 * passed `WebAssembly.validate` first: this parser checks structure, not types.
 */
export function instrumentModule (bytes: Uint8Array, options: InstrumentOptions): InstrumentResult {
  checkOptions(options)
  // pass 1: section boundaries; pass 2: the sections whose contents the rewrite depends on
  const sections = readSections(bytes)
  const limits = options.moduleLimits ?? DEFAULT_MODULE_LIMITS
  const parsed = parseSections(bytes, sections, limits)
  const memory = checkPolicy(parsed, options.maxMemoryPages)
  const bodyTypes = parsed.functionTypes.map(t => parsed.types[t])
  const globalBase = parsed.imports.filter(i => i.kind === 'global').length + parsed.definedGlobals
  const { extraTypes, wrapperTypes } = wrapperBlockTypes(parsed.types, bodyTypes)
  const importedFunctions = parsed.imports.filter(i => i.kind === 'function').length
  const leaves = findStraightLeaves(bytes, sections.find(s => s.id === CODE_SECTION), importedFunctions, bodyTypes.map(t => t.params.length), parsed.reachable)

  // pass 3: emit
  const rewritten = emitModule(bytes, sections, {
    typeCount: parsed.types.length,
    extraTypes,
    memory,
    definedGlobals: parsed.definedGlobals,
    exportCount: parsed.exports.length,
    globalBase,
    startFunction: parsed.startFunction,
    bodyTypes,
    wrapperTypes,
    tables: parsed.tables,
    leaves,
    limits,
    injected: {
      fuel: encodeU32(globalBase),
      trap: encodeU32(globalBase + 1),
      depth: encodeU32(globalBase + 2),
      maxCallDepth: options.maxCallDepth
    }
  })

  return {
    bytes: rewritten,
    imports: parsed.imports,
    exports: parsed.exports,
    memory,
    startFunction: parsed.startFunction,
    functionTypes: [
      ...parsed.imports.flatMap(i => i.type === undefined ? [] : [i.type]),
      ...bodyTypes
    ]
  }
}

function checkOptions (options: InstrumentOptions): void {
  if (!Number.isInteger(options.maxMemoryPages) || options.maxMemoryPages < 0 || options.maxMemoryPages > MAX_WASM_PAGES) {
    throw new RangeError(`maxMemoryPages must be an integer in 0..${MAX_WASM_PAGES}, got ${options.maxMemoryPages}`)
  }
  if (!Number.isInteger(options.maxCallDepth) || options.maxCallDepth < 1 || options.maxCallDepth > 0x7fff_ffff) {
    throw new RangeError(`maxCallDepth must be a positive 31-bit integer, got ${options.maxCallDepth}`)
  }
}

/** The module header, then where each section lies, checking the order the spec requires. */
function readSections (bytes: Uint8Array): SectionRange[] {
  const r = new ByteReader(bytes)
  const magic = r.slice(4)
  if (magic[0] !== 0x00 || magic[1] !== 0x61 || magic[2] !== 0x73 || magic[3] !== 0x6d) r.fail('not a WebAssembly module (bad magic)', 0)
  const version = r.slice(4)
  if (version[0] !== 1 || version[1] !== 0 || version[2] !== 0 || version[3] !== 0) {
    throw new ModuleRejectedError('only WebAssembly binary version 1 modules are supported (components and other layers are not)')
  }
  const sections: SectionRange[] = []
  let lastRank = 0
  while (!r.atEnd) {
    const headerStart = r.pos
    const id = r.u8()
    const size = r.u32()
    const payloadStart = r.pos
    r.skip(size)
    if (id !== 0) {
      const rank = SECTION_RANK[id]
      if (rank === undefined) r.fail(`unknown section id ${id}`, headerStart)
      if (id === 13) throw new ModuleRejectedError('the tag section (exception handling) is not supported: compile without -fwasm-exceptions')
      if (rank <= lastRank) r.fail(`section ${id} is out of order or repeated`, headerStart)
      lastRank = rank
    }
    sections.push({ id, headerStart, payloadStart, payloadEnd: r.pos })
  }
  return sections
}

/** What the rewrite needs to know of the original module. */
interface ParsedModule {
  types: FuncType[]
  imports: ImportEntry[]
  /** the type index of each defined function */
  functionTypes: number[]
  memories: Limits[]
  definedGlobals: number
  exports: ExportEntry[]
  startFunction?: number
  /** the table section bounded to the executor's table budget, when it had to be rewritten */
  tables?: Uint8Array
  /** every function reachable other than by a direct call: exported, the start function, in an element segment or named by ref.func */
  reachable: Set<number>
}

/** Reads what the rewrite needs and refuses a module that declares more than `limits` allow. */
function parseSections (bytes: Uint8Array, sections: SectionRange[], limits: ModuleLimits): ParsedModule {
  const find = (id: number): SectionRange | undefined => sections.find(s => s.id === id)
  const types = parseTypes(bytes, find(1))
  checkCount(limits, 'maxTypes', types.length, 'function types')
  const imports = parseImports(bytes, find(2), types)
  checkCount(limits, 'maxImports', imports.length, 'imports')
  const functionTypes = parseFunctions(bytes, find(3), types.length)
  checkCount(limits, 'maxFunctions', imports.length + functionTypes.length, 'functions (imported and defined)')
  const tables = boundTables(bytes, find(4), limits)
  const memories = parseMemories(bytes, find(5))
  const reachable = new Set<number>()
  const definedGlobals = countGlobals(bytes, find(GLOBAL_SECTION), reachable)
  checkCount(limits, 'maxGlobals', definedGlobals, 'globals')
  const exports = parseExports(bytes, find(EXPORT_SECTION))
  checkCount(limits, 'maxExports', exports.length, 'exports')
  const startFunction = parseStart(bytes, find(8))
  boundElements(bytes, find(9), limits, reachable)
  boundData(bytes, find(11), limits)
  for (const e of exports) if (e.kind === 'function') reachable.add(e.index)
  if (startFunction !== undefined) reachable.add(startFunction)
  return { types, imports, functionTypes, memories, definedGlobals, exports, startFunction, tables, reachable }
}

/** Refuses what the executor cannot cap or would collide with its exports; returns the clamped memory. */
function checkPolicy (parsed: ParsedModule, maxMemoryPages: number): MemoryInfo | undefined {
  if (parsed.imports.some(i => i.kind === 'memory')) {
    throw new ModuleRejectedError('imported memories are not allowed: the executor can only cap a memory the module defines; define it in the module and export it as "memory"')
  }
  if (parsed.memories.length > 1) {
    throw new ModuleRejectedError(`the module defines ${parsed.memories.length} memories; at most one is allowed`)
  }
  const memory = parsed.memories.length === 1 ? clampMemory(parsed.memories[0], maxMemoryPages) : undefined
  const reserved = parsed.exports.find(e => e.name.startsWith(RESERVED_EXPORT_PREFIX))
  if (reserved !== undefined) {
    throw new ModuleRejectedError(`export "${reserved.name}" uses the prefix "${RESERVED_EXPORT_PREFIX}", which is reserved for the executor; rename it`)
  }
  return memory
}

/**
 * The block type of each body wrapper: a function with several results needs
 * a type [] -> results, taken from the type section or appended to it.
 */
function wrapperBlockTypes (types: FuncType[], bodyTypes: FuncType[]): { extraTypes: FuncType[], wrapperTypes: number[][] } {
  const extraTypes: FuncType[] = []
  const wrapperTypes = bodyTypes.map(t => {
    if (t.results.length === 0) return [0x40]
    if (t.results.length === 1) return [t.results[0]]
    let index = types.findIndex(x => x.params.length === 0 && sameTypes(x.results, t.results))
    if (index < 0) {
      let k = extraTypes.findIndex(x => sameTypes(x.results, t.results))
      if (k < 0) k = extraTypes.push({ params: [], results: t.results }) - 1
      index = types.length + k
    }
    return encodeS32(index)
  })
  return { extraTypes, wrapperTypes }
}

/** Everything pass 3 writes that is not copied from the original module. */
interface Rewrite {
  /** number of types in the original type section */
  typeCount: number
  extraTypes: FuncType[]
  memory: MemoryInfo | undefined
  definedGlobals: number
  exportCount: number
  /** index of the first injected global (fuel) */
  globalBase: number
  startFunction: number | undefined
  /** the type of each defined function */
  bodyTypes: FuncType[]
  /** the encoded block type of each defined function's body wrapper */
  wrapperTypes: number[][]
  /** the bounded table section, when the original's maxima had to be lowered */
  tables: Uint8Array | undefined
  /** functions charged by their callers and copied as written */
  leaves: StraightLeaves
  limits: ModuleLimits
  injected: Injected
}

function emitModule (bytes: Uint8Array, sections: SectionRange[], rewrite: Rewrite): Uint8Array {
  // metered code is about twice the size; the code section cannot outgrow its limit
  const out = new ByteWriter(Math.min(Math.ceil(bytes.length * 2.2), bytes.length + rewrite.limits.maxMeteredCodeBytes) + 256)
  out.bytes([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00])
  // a module without a global or export section still gets one, for the injected globals and their exports
  const missing = { globals: true, exports: true }
  const addMissingBefore = (rank: number): void => {
    if (missing.globals && rank > SECTION_RANK[GLOBAL_SECTION]) {
      out.u8(GLOBAL_SECTION).sized(encodeGlobals(bytes, undefined, rewrite.definedGlobals))
      missing.globals = false
    }
    if (missing.exports && rank > SECTION_RANK[EXPORT_SECTION]) {
      out.u8(EXPORT_SECTION).sized(encodeExports(bytes, undefined, rewrite.exportCount, rewrite.globalBase, rewrite.startFunction))
      missing.exports = false
    }
  }
  for (const section of sections) {
    if (section.id !== 0) addMissingBefore(SECTION_RANK[section.id])
    if (section.id === GLOBAL_SECTION) missing.globals = false
    if (section.id === EXPORT_SECTION) missing.exports = false
    emitSection(out, bytes, section, rewrite)
  }
  addMissingBefore(Number.POSITIVE_INFINITY)
  return out.toBytes()
}

/** One section of the rewritten module: the original's, or its rewrite. */
function emitSection (out: ByteWriter, bytes: Uint8Array, section: SectionRange, rewrite: Rewrite): void {
  const payload = bytes.subarray(section.payloadStart, section.payloadEnd)
  switch (section.id) {
    case 1:
      out.u8(1).sized(rewrite.extraTypes.length === 0 ? payload : encodeTypes(bytes, section, rewrite.typeCount, rewrite.extraTypes))
      break
    case 4:
      // a table section whose maxima are within the budget is copied as it is, like the sections below
      if (rewrite.tables !== undefined) out.u8(4).sized(rewrite.tables)
      else out.bytes(bytes.subarray(section.headerStart, section.payloadEnd))
      break
    case 5:
      out.u8(5).sized(encodeMemory(rewrite.memory))
      break
    case GLOBAL_SECTION:
      out.u8(GLOBAL_SECTION).sized(encodeGlobals(bytes, section, rewrite.definedGlobals))
      break
    case EXPORT_SECTION:
      out.u8(EXPORT_SECTION).sized(encodeExports(bytes, section, rewrite.exportCount, rewrite.globalBase, rewrite.startFunction))
      break
    case 8:
      break // the start function is exported as __wc_start instead
    case CODE_SECTION:
      out.u8(CODE_SECTION).sized(instrumentCode(bytes, section, rewrite))
      break
    default: // custom sections and those the rewrite leaves alone
      out.bytes(bytes.subarray(section.headerStart, section.payloadEnd))
  }
}

interface Injected {
  fuel: number[]
  trap: number[]
  depth: number[]
  maxCallDepth: number
}

function sameTypes (a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((t, i) => t === b[i])
}

function parseTypes (bytes: Uint8Array, s: SectionRange | undefined): FuncType[] {
  if (s === undefined) return []
  const r = new ByteReader(bytes, s.payloadStart, s.payloadEnd)
  const count = r.u32()
  const types: FuncType[] = []
  for (let i = 0; i < count; i++) {
    const at = r.pos
    const form = r.u8()
    if (form !== 0x60) throw new ModuleRejectedError(`type ${i} has form 0x${hex(form)} (GC type definitions), which is not supported (at byte ${at})`)
    const params: number[] = []
    const results: number[] = []
    for (let n = r.u32(); n > 0; n--) params.push(readValType(r))
    for (let n = r.u32(); n > 0; n--) results.push(readValType(r))
    types.push({ params, results })
  }
  expectEnd(r, 'type')
  return types
}

function encodeTypes (bytes: Uint8Array, s: SectionRange, count: number, extra: FuncType[]): Uint8Array {
  const r = new ByteReader(bytes, s.payloadStart, s.payloadEnd)
  r.u32()
  const w = new ByteWriter(s.payloadEnd - s.payloadStart + 16 * extra.length)
  w.u32(count + extra.length).bytes(bytes.subarray(r.pos, s.payloadEnd))
  for (const t of extra) {
    w.u8(0x60).u32(t.params.length).bytes(t.params).u32(t.results.length).bytes(t.results)
  }
  return w.toBytes()
}

function parseImports (bytes: Uint8Array, s: SectionRange | undefined, types: FuncType[]): ImportEntry[] {
  if (s === undefined) return []
  const r = new ByteReader(bytes, s.payloadStart, s.payloadEnd)
  const imports: ImportEntry[] = []
  for (let n = r.u32(); n > 0; n--) {
    const module = r.name()
    const name = r.name()
    const at = r.pos
    const kindByte = r.u8()
    const kind = EXTERN_KINDS[kindByte]
    switch (kind) {
      case 'function': {
        const typeIndex = r.u32()
        if (typeIndex >= types.length) r.fail(`import ${module}.${name} names type ${typeIndex}, which does not exist`, at)
        imports.push({ module, name, kind, type: types[typeIndex] })
        break
      }
      case 'table':
        readTableType(r)
        imports.push({ module, name, kind })
        break
      case 'memory':
        readLimits(r, 'memory')
        imports.push({ module, name, kind })
        break
      case 'global':
        readValType(r)
        r.u8() // mutability
        imports.push({ module, name, kind })
        break
      case 'tag':
        throw new ModuleRejectedError(`import ${module}.${name} is an exception tag; exception handling is not supported`)
      default:
        r.fail(`import ${module}.${name} has unknown kind ${kindByte}`, at)
    }
  }
  expectEnd(r, 'import')
  return imports
}

function parseFunctions (bytes: Uint8Array, s: SectionRange | undefined, typeCount: number): number[] {
  if (s === undefined) return []
  const r = new ByteReader(bytes, s.payloadStart, s.payloadEnd)
  const result: number[] = []
  for (let n = r.u32(); n > 0; n--) {
    const at = r.pos
    const t = r.u32()
    if (t >= typeCount) r.fail(`function names type ${t}, which does not exist`, at)
    result.push(t)
  }
  expectEnd(r, 'function')
  return result
}

function parseMemories (bytes: Uint8Array, s: SectionRange | undefined): Limits[] {
  if (s === undefined) return []
  const r = new ByteReader(bytes, s.payloadStart, s.payloadEnd)
  const memories: Limits[] = []
  for (let n = r.u32(); n > 0; n--) memories.push(readLimits(r, 'memory'))
  expectEnd(r, 'memory')
  return memories
}

function clampMemory (declared: Limits, capPages: number): MemoryInfo {
  if (declared.min > capPages) {
    throw new ModuleRejectedError(
      `the module's memory starts at ${declared.min} pages (${mib(declared.min)}), above this job's memory cap of ${capPages} pages (${mib(capPages)}); ` +
      'raise limits.memoryBytes or link with a smaller initial memory (e.g. -Wl,--initial-memory=…)'
    )
  }
  const maximumPages = Math.min(declared.max ?? capPages, capPages)
  return { initialPages: declared.min, maximumPages, declaredMaximumPages: declared.max }
}

function mib (pages: number): string {
  return `${(pages * WASM_PAGE_BYTES / 1_048_576).toFixed(pages % 16 === 0 ? 0 : 2)} MiB`
}

function encodeMemory (memory: MemoryInfo | undefined): Uint8Array {
  const w = new ByteWriter(16)
  if (memory === undefined) return w.u32(0).toBytes()
  return w.u32(1).u8(0x01).u32(memory.initialPages).u32(memory.maximumPages).toBytes()
}

function countGlobals (bytes: Uint8Array, s: SectionRange | undefined, refs: Set<number>): number {
  if (s === undefined) return 0
  const r = new ByteReader(bytes, s.payloadStart, s.payloadEnd)
  const count = r.u32()
  for (let i = 0; i < count; i++) {
    readValType(r)
    r.u8() // mutability
    skipConstExpr(r, refs)
  }
  expectEnd(r, 'global')
  return count
}

function encodeGlobals (bytes: Uint8Array, s: SectionRange | undefined, count: number): Uint8Array {
  const w = new ByteWriter(64 + (s === undefined ? 0 : s.payloadEnd - s.payloadStart))
  w.u32(count + 3)
  if (s !== undefined) {
    const r = new ByteReader(bytes, s.payloadStart, s.payloadEnd)
    r.u32()
    w.bytes(bytes.subarray(r.pos, s.payloadEnd))
  }
  // fuel: starts at 0 so that any guest code running before the host sets the budget traps as out of fuel
  w.bytes([I64, 0x01, 0x42, 0x00, 0x0b])
  // trap reason and call depth
  w.bytes([I32, 0x01, 0x41, 0x00, 0x0b])
  w.bytes([I32, 0x01, 0x41, 0x00, 0x0b])
  return w.toBytes()
}

function parseExports (bytes: Uint8Array, s: SectionRange | undefined): ExportEntry[] {
  if (s === undefined) return []
  const r = new ByteReader(bytes, s.payloadStart, s.payloadEnd)
  const exports: ExportEntry[] = []
  for (let n = r.u32(); n > 0; n--) {
    const name = r.name()
    const at = r.pos
    const kind = EXTERN_KINDS[r.u8()]
    if (kind === undefined) r.fail(`export "${name}" has an unknown kind`, at)
    exports.push({ name, kind, index: r.u32() })
  }
  expectEnd(r, 'export')
  return exports
}

function encodeExports (bytes: Uint8Array, s: SectionRange | undefined, count: number, globalBase: number, startFunction: number | undefined): Uint8Array {
  const w = new ByteWriter(64 + (s === undefined ? 0 : s.payloadEnd - s.payloadStart))
  w.u32(count + 2 + (startFunction === undefined ? 0 : 1))
  if (s !== undefined) {
    const r = new ByteReader(bytes, s.payloadStart, s.payloadEnd)
    r.u32()
    w.bytes(bytes.subarray(r.pos, s.payloadEnd))
  }
  w.name(FUEL_EXPORT).u8(0x03).u32(globalBase)
  w.name(TRAP_EXPORT).u8(0x03).u32(globalBase + 1)
  if (startFunction !== undefined) w.name(START_EXPORT).u8(0x00).u32(startFunction)
  return w.toBytes()
}

function parseStart (bytes: Uint8Array, s: SectionRange | undefined): number | undefined {
  if (s === undefined) return undefined
  const r = new ByteReader(bytes, s.payloadStart, s.payloadEnd)
  const index = r.u32()
  expectEnd(r, 'start')
  return index
}

// ---------------------------------------------------------------------------
// Function bodies

/**
 * Per-body scratch, reused across bodies. Typed arrays, not JS arrays: a body
 * can hold millions of instructions, and these live outside the worker's JS
 * heap, where an allocation that fails is a RangeError rather than a fatal
 * out-of-memory of the whole process.
 */
const scratch = {
  /** byte offset of each instruction, and one past the last */
  starts: new Uint32Array(4096),
  kinds: new Uint8Array(4096),
  /** the fuel charged at each instruction that starts a live segment, else 0 */
  cost: new Uint32Array(4096),
  length: 0
}

function reserveScratch (n: number): void {
  if (n <= scratch.kinds.length) return
  let capacity = scratch.kinds.length * 2
  while (capacity < n) capacity *= 2
  const starts = new Uint32Array(capacity)
  const kinds = new Uint8Array(capacity)
  const cost = new Uint32Array(capacity)
  starts.set(scratch.starts.subarray(0, scratch.length))
  kinds.set(scratch.kinds.subarray(0, scratch.length))
  cost.set(scratch.cost.subarray(0, scratch.length))
  Object.assign(scratch, { starts, kinds, cost })
}

function isBoundary (kind: number): boolean {
  return kind !== InstrKind.plain && kind !== InstrKind.block && kind !== InstrKind.bulk && kind !== InstrKind.tableBulk && kind !== InstrKind.call
}

function instrumentCode (bytes: Uint8Array, s: SectionRange, rewrite: Rewrite): Uint8Array {
  const { bodyTypes: funcTypes, wrapperTypes, limits } = rewrite
  const r = new ByteReader(bytes, s.payloadStart, s.payloadEnd)
  const count = r.u32()
  if (count !== funcTypes.length) r.fail(`code section has ${count} bodies but the function section declares ${funcTypes.length}`, s.payloadStart)
  const out = new ByteWriter(Math.min((s.payloadEnd - s.payloadStart) * 2, limits.maxMeteredCodeBytes) + 64)
  out.u32(count)
  const body = new ByteWriter(4096)
  const ctx: BodyContext = { sn: meteringSnippets(rewrite.injected), limits, leaves: rewrite.leaves, room: 0 }
  for (let f = 0; f < count; f++) {
    const size = r.u32()
    const bodyStart = r.pos
    const bodyEnd = bodyStart + size
    if (bodyEnd > r.end) r.fail(`body of function ${f} runs past the code section`, bodyStart)
    body.length = 0
    ctx.room = limits.maxMeteredCodeBytes - out.length
    instrumentBody(new ByteReader(bytes, bodyStart, bodyEnd), f, funcTypes[f].params.length, wrapperTypes[f], ctx, body)
    out.sized(body.toBytes())
    r.pos = bodyEnd
  }
  if (!r.atEnd) r.fail('code section has trailing bytes')
  return out.toBytes()
}

/** What instrumentBody needs besides the body itself. */
interface BodyContext {
  sn: Snippets
  limits: ModuleLimits
  leaves: StraightLeaves
  /** bytes the metered code section may still grow by */
  room: number
}

/** The injected instruction sequences that depend only on the module, encoded once per module. */
interface Snippets {
  /** the index of the fuel global */
  fuel: number[]
  /** the index of the trap global */
  trap: number[]
  /** depth += 1; if (depth > max) { trap = callDepth; unreachable } */
  depthEnter: Uint8Array
  /** depth -= 1 */
  depthLeave: Uint8Array
}

function trapWith (sn: Pick<Snippets, 'trap'>, code: number): number[] {
  return [0x04, 0x40, 0x41, code, 0x24, ...sn.trap, 0x00, 0x0b] // if; trap = code; unreachable; end
}

function meteringSnippets (inj: Injected): Snippets {
  const D = inj.depth
  const sn = { fuel: inj.fuel, trap: inj.trap }
  return {
    ...sn,
    depthEnter: Uint8Array.from([
      0x23, ...D, 0x41, 0x01, 0x6a, 0x24, ...D, // depth += 1
      0x23, ...D, 0x41, ...encodeS32(inj.maxCallDepth), 0x4b, ...trapWith(sn, TrapCode.callDepth) // depth > max (unsigned) ?
    ]),
    depthLeave: Uint8Array.from([0x23, ...D, 0x41, 0x01, 0x6b, 0x24, ...D])
  }
}

/**
 * The sequences that name a body's own locals. The fuel counter lives in a
 * local while the body runs, where V8 keeps it in a register: a global is a
 * load and a store through memory on every segment, whose store-to-load
 * latency is on every loop iteration's critical path. The global is the
 * counter only across calls (the callee and the host read and charge it),
 * at returns, and when the injected check traps for fuel.
 */
interface BodySnippets {
  /** global.get fuel; local.set F: at entry and after each call */
  load: Uint8Array
  /** local.get F; global.set fuel: before each call and when leaving */
  store: Uint8Array
  /** local.get F; i64.const (the cost follows) */
  chargeHead: Uint8Array
  /** i64.sub; local.tee F; if (F < 0) { fuel = F; trap = outOfFuel; unreachable } */
  chargeTail: Uint8Array
  /** depth -= 1; fuel = F: before each return and the body's end */
  leave: Uint8Array
}

function bodySnippets (sn: Snippets, fuelLocal: number): BodySnippets {
  const L = encodeU32(fuelLocal)
  const store = [0x20, ...L, 0x24, ...sn.fuel]
  return {
    load: Uint8Array.from([0x23, ...sn.fuel, 0x21, ...L]),
    store: Uint8Array.from(store),
    chargeHead: Uint8Array.from([0x20, ...L, 0x42]),
    chargeTail: Uint8Array.from(fuelCheckAfter([0x7d, 0x22, ...L], store, sn)),
    leave: Uint8Array.from([...sn.depthLeave, ...store])
  }
}

/** `sub` (which leaves the new fuel on the stack and in the local), then: if (fuel < 0) { store; trap = outOfFuel; unreachable } */
function fuelCheckAfter (sub: number[], store: number[], sn: Snippets): number[] {
  return [...sub, 0x42, 0x00, 0x53, 0x04, 0x40, ...store, 0x41, TrapCode.outOfFuel, 0x24, ...sn.trap, 0x00, 0x0b]
}

/** Where a body's local declarations lie and how many locals the function has, parameters included. */
interface Locals {
  start: number
  groups: number
  /** just after the group count */
  groupsEnd: number
  end: number
  count: number
}

function readLocals (br: ByteReader, f: number, paramCount: number, limits: ModuleLimits): Locals {
  const start = br.pos
  const groups = br.u32()
  const groupsEnd = br.pos
  let count = paramCount
  for (let g = 0; g < groups; g++) {
    count += br.u32()
    readValType(br)
  }
  if (count > MAX_FUNCTION_LOCALS) br.fail(`function ${f} declares ${count} locals, above the limit of ${MAX_FUNCTION_LOCALS}`, start)
  checkCount(limits, 'maxLocals', count, `locals in function ${f}`)
  return { start, groups, groupsEnd, end: br.pos, count }
}

/** What segmentBody found in a body, for the scratch local and the size bound. */
interface BodyShape {
  /** a memory or table bulk instruction is present, so the body needs the scratch local */
  bulk: boolean
  /** live segments, each of which gets a fuel charge */
  charged: number
  /** returns and bulk instructions, each of which gets a snippet */
  extras: number
  /** calls, each of which stores the fuel local before and loads it after */
  calls: number
}

/**
 * Decodes the instructions of a body into the scratch arrays and records the
 * cost of each live segment at its first instruction; refuses nesting deeper
 * than `maxNesting`.
 */
function segmentBody (br: ByteReader, f: number, maxNesting: number, leaves: StraightLeaves): BodyShape {
  const shape: BodyShape = { bulk: false, charged: 0, extras: 0, calls: 0 }
  scratch.length = 0
  let nesting = 1
  let segmentStart = 0
  let dead = false
  /** the fuel of the straight leaves this segment calls */
  let leafCost = 0
  while (nesting > 0) {
    if (br.atEnd) br.fail(`body of function ${f} ends without its final "end"`)
    const i = scratch.length
    reserveScratch(i + 2)
    scratch.starts[i] = br.pos
    const kind = readInstruction(br)
    scratch.kinds[i] = kind
    scratch.cost[i] = 0
    scratch.length++
    if (kind === InstrKind.block || kind === InstrKind.loop || kind === InstrKind.if) {
      if (++nesting > maxNesting + 1) throw new ModuleLimitError('maxNesting', `function ${f} nests blocks more than ${maxNesting} deep, above this executor's limit (moduleLimits.maxNesting)`)
    } else if (kind === InstrKind.end) nesting--
    else if (kind === InstrKind.bulk || kind === InstrKind.tableBulk) shape.bulk = true
    if (kind === InstrKind.return || kind === InstrKind.bulk || kind === InstrKind.tableBulk) shape.extras++
    else if (kind === InstrKind.call) {
      const leaf = straightLeafCalled(br, scratch.starts[i], leaves)
      // charged with this segment and copied as it is, like any plain instruction
      if (leaf > 0) scratch.kinds[i] = InstrKind.plain
      else shape.calls++
      leafCost += leaf
    }
    if (isBoundary(kind)) {
      if (!dead) shape.charged++
      scratch.cost[segmentStart] = dead ? 0 : i - segmentStart + 1 + leafCost
      leafCost = 0
      segmentStart = i + 1
      dead = kind === InstrKind.jump || kind === InstrKind.return
    }
  }
  if (!br.atEnd) br.fail(`function ${f} has bytes after its final "end"`)
  scratch.starts[scratch.length] = br.end
  return shape
}

/** The fuel of the straight leaf the call instruction at `at` calls directly, or 0 (call_indirect, an import, another function). */
function straightLeafCalled (br: ByteReader, at: number, leaves: StraightLeaves): number {
  if (br.bytes[at] !== CALL) return 0
  const after = br.pos
  br.pos = at + 1
  const callee = br.u32() - leaves.importedFunctions
  br.pos = after
  return callee >= 0 && callee < leaves.cost.length ? leaves.cost[callee] : 0
}

/**
 * fuel -= len >> 6 before a bulk memory instruction (memory.fill/copy/init), or
 * fuel -= n before a table instruction that touches n elements
 * (table.grow/fill/copy/init); the operand, on top of the stack, is kept in the
 * scratch local and put back.
 */
function bulkCharge (scratchLocal: number, sn: Snippets, bs: BodySnippets, fuelLocal: number, perElement: boolean): Uint8Array {
  const local = encodeU32(scratchLocal)
  const F = encodeU32(fuelLocal)
  const scale = perElement ? [] : [0x42, 0x06, 0x88] // i64.const 6; i64.shr_u
  return Uint8Array.from([
    0x21, ...local, // local.set scratch (the length operand)
    0x20, ...F, 0x20, ...local, 0xad, ...scale, // F, extend_u(len) (>> 6)
    ...fuelCheckAfter([0x7d, 0x22, ...F], [...bs.store], sn), // F -= …, checked
    0x20, ...local // local.get scratch: put the length back
  ])
}

/** Throws when the metered body could take the code section past its limit; the bound is computed before anything is written. */
function checkRoom (f: number, bodyBytes: number, shape: BodyShape, snippetBytes: number, bs: BodySnippets, ctx: BodyContext): void {
  const { sn } = ctx
  // a cost needs at most 5 bytes of LEB128 (it is below 2^32); 32 bytes cover the new local groups, the wrapper block and the ends
  const charge = bs.chargeHead.length + 5 + bs.chargeTail.length
  const fixed = 32 + bs.load.length + sn.depthEnter.length + 2 * bs.leave.length
  const bound = bodyBytes + fixed + shape.charged * charge + shape.extras * snippetBytes + shape.calls * (bs.store.length + bs.load.length)
  if (bound > ctx.room) {
    throw new ModuleLimitError('maxMeteredCodeBytes', `metering function ${f} would take the code past this executor's limit of ${ctx.limits.maxMeteredCodeBytes} bytes (moduleLimits.maxMeteredCodeBytes); metering adds a charge to every branch target and block end`)
  }
}

/** A straight leaf's body as written: its callers charge its fuel, and it adds no call depth (straight-leaves.ts). */
function copyStraightLeaf (bytes: Uint8Array, start: number, end: number, f: number, ctx: BodyContext, body: ByteWriter): void {
  if (end - start > ctx.room) {
    throw new ModuleLimitError('maxMeteredCodeBytes', `function ${f} would take the code past this executor's limit of ${ctx.limits.maxMeteredCodeBytes} bytes (moduleLimits.maxMeteredCodeBytes)`)
  }
  body.range(bytes, start, end)
}

/** Writes the local declarations: the original groups, then the fuel i64 and (for bulk charges) the scratch i32, after every existing local so that no index shifts. */
function writeLocals (body: ByteWriter, bytes: Uint8Array, locals: Locals, bulk: boolean): void {
  body.u32(locals.groups + (bulk ? 2 : 1)).bytes(bytes.subarray(locals.groupsEnd, locals.end)).u32(1).u8(I64)
  if (bulk) body.u32(1).u8(I32)
}

/** Writes the metered version of the body `br` reads into `body`. */
function instrumentBody (br: ByteReader, f: number, paramCount: number, wrapperType: number[], ctx: BodyContext, body: ByteWriter): void {
  const { sn } = ctx
  const bytes = br.bytes
  const locals = readLocals(br, f, paramCount, ctx.limits)
  if (ctx.leaves.cost[f] > 0) {
    copyStraightLeaf(br.bytes, locals.start, br.end, f, ctx, body)
    return
  }
  const shape = segmentBody(br, f, ctx.limits.maxNesting, ctx.leaves)
  const added = shape.bulk ? 2 : 1
  if (locals.count + added > MAX_FUNCTION_LOCALS) br.fail(`function ${f} has too many locals to meter (the fuel counter needs one more)`, locals.start)
  const fuelLocal = locals.count
  const bs = bodySnippets(sn, fuelLocal)
  const bulk = shape.bulk ? bulkCharge(fuelLocal + 1, sn, bs, fuelLocal, false) : NO_BYTES
  const table = shape.bulk ? bulkCharge(fuelLocal + 1, sn, bs, fuelLocal, true) : NO_BYTES
  checkRoom(f, br.end - locals.start, shape, Math.max(bulk.length, bs.leave.length), bs, ctx)
  writeLocals(body, bytes, locals, shape.bulk)
  body.bytes(bs.load).bytes(sn.depthEnter)
  body.u8(0x02).bytes(wrapperType) // block (result …) around the original body
  const { starts, kinds, cost: segmentCost } = scratch
  const n = scratch.length
  // original instructions are copied in runs, up to each place where something is injected
  let copied = starts[0]
  for (let i = 0; i < n; i++) {
    const cost = segmentCost[i]
    const kind = kinds[i]
    if (cost === 0 && kind !== InstrKind.return && kind !== InstrKind.bulk && kind !== InstrKind.tableBulk && kind !== InstrKind.call) continue
    body.range(bytes, copied, starts[i])
    copied = starts[i]
    if (cost > 0) body.range(bs.chargeHead, 0, bs.chargeHead.length).sleb(cost).range(bs.chargeTail, 0, bs.chargeTail.length)
    if (kind === InstrKind.return) body.bytes(bs.leave)
    else if (kind === InstrKind.bulk) body.bytes(bulk)
    else if (kind === InstrKind.tableBulk) body.bytes(table)
    else if (kind === InstrKind.call) {
      body.bytes(bs.store).range(bytes, starts[i], starts[i + 1]).bytes(bs.load)
      copied = starts[i + 1]
    }
  }
  body.range(bytes, copied, starts[n])
  // the original final `end` closed the wrapper block
  body.bytes(bs.leave).u8(0x0b)
}
