/**
 * Structural limits on what a module may declare, checked before it is
 * metered, compiled or instantiated. V8 treats some allocation failures as
 * fatal to the whole process (a table of ten million entries, a table grown
 * past the worker's heap), and worker `resourceLimits` do not contain them; so
 * every resource a module can make the engine allocate is bounded here, far
 * below the engine's own limits and the worker's heap. A module over a limit
 * is the job's own `rejected`, with the limit's name in the reason.
 */

import { ModuleRejectedError } from './errors.ts'

export interface ModuleLimits {
  /** function types in the type section @default 100000 */
  maxTypes: number
  /** imports (all from wasi_snapshot_preview1) @default 1000 */
  maxImports: number
  /** functions, imported and defined @default 200000 */
  maxFunctions: number
  /** tables @default 16 */
  maxTables: number
  /**
   * table entries over all tables: each table's maximum is rewritten down to
   * its share (this limit divided by the number of tables), so `table.grow`
   * past it returns -1 as the spec says @default 1000000
   */
  maxTableEntries: number
  /** globals defined by the module @default 100000 */
  maxGlobals: number
  /** exports @default 10000 */
  maxExports: number
  /** element segments @default 100000 */
  maxElementSegments: number
  /** entries over all element segments @default 1000000 */
  maxElementEntries: number
  /** data segments @default 100000 */
  maxDataSegments: number
  /** locals of one function, parameters included (V8 accepts at most 50000) @default 50000 */
  maxLocals: number
  /** block/loop/if nesting inside one function @default 20000 */
  maxNesting: number
  /** the code section after metering, bytes: bounds the memory and time of preparation @default 134217728 */
  maxMeteredCodeBytes: number
}

export const DEFAULT_MODULE_LIMITS: Readonly<ModuleLimits> = Object.freeze({
  maxTypes: 100_000,
  maxImports: 1_000,
  maxFunctions: 200_000,
  maxTables: 16,
  maxTableEntries: 1_000_000,
  maxGlobals: 100_000,
  maxExports: 10_000,
  maxElementSegments: 100_000,
  maxElementEntries: 1_000_000,
  maxDataSegments: 100_000,
  maxLocals: 50_000,
  maxNesting: 20_000,
  maxMeteredCodeBytes: 128 * 1024 * 1024
})

/** What V8 itself accepts: a limit above it would let the engine, not this check, decide. */
const ENGINE_CEILINGS: Readonly<ModuleLimits> = Object.freeze({
  maxTypes: 1_000_000,
  maxImports: 100_000,
  maxFunctions: 1_000_000,
  maxTables: 100_000,
  maxTableEntries: 10_000_000,
  maxGlobals: 1_000_000,
  maxExports: 100_000,
  maxElementSegments: 10_000_000,
  maxElementEntries: 10_000_000,
  maxDataSegments: 100_000,
  maxLocals: 50_000,
  maxNesting: 1_000_000,
  maxMeteredCodeBytes: 1024 * 1024 * 1024
})

/** A module declares more of a resource than the executor allows. */
export class ModuleLimitError extends ModuleRejectedError {
  readonly limit: keyof ModuleLimits
  constructor (limit: keyof ModuleLimits, message: string) {
    super(message)
    this.limit = limit
  }
}

/** Merges `overrides` over the defaults; throws RangeError for a value that is not a count within the engine's own limit. */
export function resolveModuleLimits (overrides: Partial<ModuleLimits> = {}): ModuleLimits {
  const out = { ...DEFAULT_MODULE_LIMITS }
  for (const key of Object.keys(DEFAULT_MODULE_LIMITS) as Array<keyof ModuleLimits>) {
    const v = overrides[key]
    if (v === undefined) continue
    if (!Number.isSafeInteger(v) || v < 1 || v > ENGINE_CEILINGS[key]) {
      throw new RangeError(`moduleLimits.${key} must be an integer in 1..${ENGINE_CEILINGS[key]}, got ${String(v)}`)
    }
    out[key] = v
  }
  return out
}

/** Throws ModuleLimitError when `count` of `what` is above `limits[key]`. */
export function checkCount (limits: ModuleLimits, key: keyof ModuleLimits, count: number, what: string): void {
  const limit = limits[key]
  if (count > limit) {
    throw new ModuleLimitError(key, `the module declares ${count} ${what}, above this executor's limit of ${limit} (moduleLimits.${key})`)
  }
}
