/**
 * Builds small WebAssembly modules byte by byte for the hostile-module tests,
 * so that no generated (and possibly huge) fixture is committed.
 */

export function u32 (value: number): number[] {
  const out: number[] = []
  let v = value >>> 0
  do {
    let byte = v & 0x7f
    v >>>= 7
    if (v !== 0) byte |= 0x80
    out.push(byte)
  } while (v !== 0)
  return out
}

export function s32 (value: number): number[] {
  const out: number[] = []
  let v = value | 0
  for (;;) {
    const byte = v & 0x7f
    v >>= 7
    const done = (v === 0 && (byte & 0x40) === 0) || (v === -1 && (byte & 0x40) !== 0)
    out.push(done ? byte : byte | 0x80)
    if (done) return out
  }
}

export function name (text: string): number[] {
  const bytes = [...new TextEncoder().encode(text)]
  return [...u32(bytes.length), ...bytes]
}

/** A section: id, then the byte length of `payload`, then `payload`. */
export function section (id: number, payload: number[]): number[] {
  return [id, ...u32(payload.length), ...payload]
}

/** A vector: its count, then its entries. */
export function vec (entries: number[][]): number[] {
  return [...u32(entries.length), ...entries.flat()]
}

export const HEADER = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]
export const I32 = 0x7f
export const FUNCREF = 0x70

/** A function body: local declarations (count, type) and code, with its size in front. */
export function body (code: number[], locals: Array<[number, number]> = []): number[] {
  const inner = [...vec(locals.map(([n, t]) => [...u32(n), t])), ...code]
  return [...u32(inner.length), ...inner]
}

export interface CommandInit {
  /** extra function types after type 0, which is () -> () */
  types?: number[][]
  /** WASI imports: [name, type index] */
  imports?: Array<[string, number]>
  /** the body of _start (its code, without the final end) */
  start: number[]
  /** locals of _start */
  locals?: Array<[number, number]>
  /** table entries: [element type, min, max?] */
  tables?: Array<[number, number, number?]>
  memoryPages?: number
  /** raw payloads of sections placed in order (e.g. element 9, data 11) */
  extra?: Record<number, number[]>
  /** more functions of type 0, with their bodies */
  functions?: number[][]
}

/** A WASI command: `_start` (function index = number of imports) and one exported memory. */
export function command (init: CommandInit): Uint8Array {
  const imports = init.imports ?? []
  const functions = [init.start, ...(init.functions ?? [])]
  const limits = ([type, min, max]: [number, number, number?]): number[] => [type, ...(max === undefined ? [0x00, ...u32(min)] : [0x01, ...u32(min), ...u32(max)])]
  const out = [
    ...HEADER,
    ...section(1, vec([[0x60, 0x00, 0x00], ...(init.types ?? [])])),
    ...(imports.length > 0 ? section(2, vec(imports.map(([n, t]) => [...name('wasi_snapshot_preview1'), ...name(n), 0x00, ...u32(t)]))) : []),
    ...section(3, vec(functions.map(() => [0x00]))),
    ...(init.tables !== undefined ? section(4, vec(init.tables.map(limits))) : []),
    ...section(5, vec([[0x00, ...u32(init.memoryPages ?? 1)]])),
    ...(init.extra?.[6] !== undefined ? section(6, init.extra[6]) : []),
    ...section(7, vec([[...name('memory'), 0x02, 0x00], [...name('_start'), 0x00, ...u32(imports.length)]])),
    ...(init.extra?.[9] !== undefined ? section(9, init.extra[9]) : []),
    ...(init.extra?.[12] !== undefined ? section(12, init.extra[12]) : []),
    ...section(10, vec([body([...init.start, 0x0b], init.locals), ...(init.functions ?? []).map(f => body([...f, 0x0b]))])),
    ...(init.extra?.[11] !== undefined ? section(11, init.extra[11]) : [])
  ]
  return new Uint8Array(out)
}
