/**
 * Straight leaves: small defined functions whose whole body is one segment of
 * straight-line code (no block, loop, branch, return, call or bulk
 * instruction), reached only by direct calls. Such a function always costs the
 * same fuel, the number of its instructions, so the metering injector
 * (instrument.ts) adds that cost to the charge of each caller's segment that
 * calls it and leaves the function itself as written: no fuel counter, no
 * charge, no call-depth count. Per call that saves the caller's store and load
 * of the fuel global around the call and, in the callee, the load, the depth
 * count and its check, the charge and its check, and the store: more code than
 * the body itself for the small helpers compilers keep out of line (wasi-libc's
 * `toupper` is 9 instructions, called once per byte of a text filter).
 *
 * Reached only by direct calls: not exported, not the start function, not in
 * an element segment and not named by `ref.func` in a constant expression. The
 * spec lets a body name a function with `ref.func` only if one of those places
 * declares it, so these sets cover every way to reach a function other than a
 * direct call; a function reached by `call_indirect` or from the host would
 * run uncharged.
 *
 * The call depth does not count them: a straight leaf calls nothing, so its
 * frame is the top one and there is at most one, and it is small (bounded
 * locals and code), within the margin the depth limit keeps below V8's own
 * stack limit (sandbox-process.ts).
 */

import { ByteReader } from './wasm-binary.ts'
import { InstrKind, readInstruction, readValType } from './wasm-instructions.ts'

/** Bodies larger than this are not looked at: a small helper is what pays for its metering many times over. */
export const STRAIGHT_LEAF_MAX_BODY_BYTES = 256
/** Parameters and locals together: bounds the frame a straight leaf adds above the counted depth. */
export const STRAIGHT_LEAF_MAX_LOCALS = 32

export interface StraightLeaves {
  /** functions imported: a defined function's index is this plus its position in the code section */
  importedFunctions: number
  /** the fuel of one run of each defined function that is a straight leaf; 0 for every other */
  cost: Uint32Array
}

export interface CodeRange {
  payloadStart: number
  payloadEnd: number
}

/**
 * Finds the straight leaves among the bodies of the code section `code`.
 * `paramCounts` gives each defined function's parameter count; `reachable`
 * holds every function index reachable other than by a direct call.
 * Structural errors are left to the injector's own pass over the bodies,
 * which reports them with their position.
 */
export function findStraightLeaves (bytes: Uint8Array, code: CodeRange | undefined, importedFunctions: number, paramCounts: readonly number[], reachable: ReadonlySet<number>): StraightLeaves {
  const cost = new Uint32Array(paramCounts.length)
  if (code === undefined) return { importedFunctions, cost }
  const r = new ByteReader(bytes, code.payloadStart, code.payloadEnd)
  const count = Math.min(r.u32(), paramCounts.length)
  for (let f = 0; f < count; f++) {
    const size = r.u32()
    const start = r.pos
    if (start + size > r.end) break
    r.pos = start + size
    if (size > STRAIGHT_LEAF_MAX_BODY_BYTES || reachable.has(importedFunctions + f)) continue
    cost[f] = straightCost(new ByteReader(bytes, start, start + size), paramCounts[f])
  }
  return { importedFunctions, cost }
}

/** The instruction count of a body that is one straight segment with few locals, else 0. */
function straightCost (r: ByteReader, paramCount: number): number {
  let locals = paramCount
  for (let groups = r.u32(); groups > 0; groups--) {
    locals += r.u32()
    if (locals > STRAIGHT_LEAF_MAX_LOCALS) return 0
    readValType(r)
  }
  let n = 0
  while (!r.atEnd) {
    const kind = readInstruction(r)
    n++
    if (kind === InstrKind.end) return r.atEnd ? n : 0
    if (kind !== InstrKind.plain) return 0
  }
  return 0
}
