/**
 * Turns submitted module bytes into something safe to run: checks the CID,
 * validates, enforces policy and the module limits, clamps memory and tables,
 * injects fuel and call-depth accounting, compiles. This is heavy work on
 * bytes a stranger chose, so the sandbox runs it in the job's worker thread,
 * never on its own main thread. Prepared modules are cached by CID + memory
 * cap + depth limit (the fuel budget is set at run time, and the module limits
 * are the same for every job of one executor, so neither is part of the key).
 */

import type { JobLimits } from '../core/job.ts'
import { cidForBytes } from './cid.ts'
import { InstrumentationError, InvalidModuleError, ModuleRejectedError, WasmParseError } from './errors.ts'
import { MAX_WASM_PAGES, WASM_PAGE_BYTES, instrumentModule, type InstrumentResult, type MemoryInfo } from './instrument.ts'
import type { ModuleLimits } from './module-limits.ts'
import { WASI_MODULE, WASI_SIGNATURES, formatSignature } from './wasi-abi.ts'

export interface PreparedModule {
  moduleCid: string
  module: WebAssembly.Module
  /** the instrumented bytes `module` was compiled from (empty in an entry sent to the sandbox's cache) */
  bytes: Uint8Array
  /** the length of the instrumented bytes, which the cache counts */
  meteredSize: number
  memory: MemoryInfo
  /** cap in pages this module was clamped to */
  memoryPages: number
  maxCallDepth: number
}

export type PrepareLimits = Pick<JobLimits, 'memoryBytes' | 'maxCallDepth'> & {
  /** what a module may declare @default DEFAULT_MODULE_LIMITS */
  moduleLimits?: ModuleLimits
}

/** Bounded least-recently-used cache of prepared modules. */
export class PreparedModuleCache {
  private readonly entries = new Map<string, PreparedModule>()
  private totalBytes = 0
  readonly maxEntries: number
  readonly maxBytes: number

  constructor (init: { maxEntries?: number, maxBytes?: number } = {}) {
    this.maxEntries = init.maxEntries ?? 64
    this.maxBytes = init.maxBytes ?? 256 * 1024 * 1024
  }

  get size (): number {
    return this.entries.size
  }

  get (key: string): PreparedModule | undefined {
    const hit = this.entries.get(key)
    if (hit !== undefined) {
      // move to the most recently used end
      this.entries.delete(key)
      this.entries.set(key, hit)
    }
    return hit
  }

  set (key: string, value: PreparedModule): void {
    const old = this.entries.get(key)
    if (old !== undefined) {
      this.entries.delete(key)
      this.totalBytes -= old.meteredSize
    }
    this.entries.set(key, value)
    this.totalBytes += value.meteredSize
    for (const [k, v] of this.entries) {
      if (this.entries.size <= this.maxEntries && this.totalBytes <= this.maxBytes) break
      if (k === key) break // never evict the entry just added
      this.entries.delete(k)
      this.totalBytes -= v.meteredSize
    }
  }

  clear (): void {
    this.entries.clear()
    this.totalBytes = 0
  }
}

const defaultCache = new PreparedModuleCache()

export function memoryPagesFor (memoryBytes: number): number {
  return Math.min(MAX_WASM_PAGES, Math.floor(memoryBytes / WASM_PAGE_BYTES))
}

/** The cache key of a module prepared under `limits`. */
export function preparedKey (moduleCid: string, limits: PrepareLimits): string {
  return `${moduleCid}|${memoryPagesFor(limits.memoryBytes)}|${limits.maxCallDepth}`
}

/**
 * Prepares `bytes` for running. Throws InvalidModuleError (status
 * `invalid_module`), ModuleRejectedError (status `rejected`) or
 * InstrumentationError (an executor bug).
 */
export function prepareModule (bytes: Uint8Array, moduleCid: string, limits: PrepareLimits, cache: PreparedModuleCache = defaultCache): PreparedModule {
  // the CID comes first: a cache hit must never stand in for bytes that do not match it
  const actualCid = cidForBytes(bytes)
  if (actualCid !== moduleCid) {
    throw new InvalidModuleError(`module bytes hash to ${actualCid}, not to the moduleCid ${String(moduleCid)} of the request; the bytes were corrupted or the CID is wrong (expected CIDv1 raw sha2-256, base32)`)
  }
  const memoryPages = memoryPagesFor(limits.memoryBytes)
  const key = preparedKey(moduleCid, limits)
  const hit = cache.get(key)
  if (hit !== undefined) return hit

  // the policy and the module limits come before the engine's validation: a module over a limit is `rejected`
  // with the limit's name (another executor may allow it), even where the engine's own fence would refuse it too
  let result: InstrumentResult
  try {
    result = instrumentModule(bytes, { maxMemoryPages: memoryPages, maxCallDepth: limits.maxCallDepth, moduleLimits: limits.moduleLimits })
  } catch (err) {
    if (err instanceof ModuleRejectedError) throw err
    if (!WebAssembly.validate(bytes)) throw new InvalidModuleError(`not a valid WebAssembly module: ${compileErrorOf(bytes)}`, { cause: err })
    if (err instanceof WasmParseError) throw new InvalidModuleError(`module does not parse: ${err.message}`, { cause: err })
    throw err
  }
  if (!WebAssembly.validate(bytes)) throw new InvalidModuleError(`not a valid WebAssembly module: ${compileErrorOf(bytes)}`)
  checkImports(result)
  const memory = checkExports(result)

  let module: WebAssembly.Module
  try {
    module = new WebAssembly.Module(result.bytes)
  } catch (err) {
    throw new InstrumentationError(`the metered module does not compile (executor bug, please report with the module CID ${moduleCid}): ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
  const prepared: PreparedModule = { moduleCid, module, bytes: result.bytes, meteredSize: result.bytes.length, memory, memoryPages, maxCallDepth: limits.maxCallDepth }
  cache.set(key, prepared)
  return prepared
}

function compileErrorOf (bytes: Uint8Array): string {
  try {
    // only reached when validate() said no: this recovers V8's reason and byte offset
    void new WebAssembly.Module(bytes)
    return 'rejected by WebAssembly.validate'
  } catch (err) {
    return err instanceof Error ? err.message : String(err)
  }
}

/** Imports: functions from wasi_snapshot_preview1 only, with the preview1 signature. */
function checkImports (result: InstrumentResult): void {
  for (const imp of result.imports) {
    if (imp.module !== WASI_MODULE) {
      throw new ModuleRejectedError(`import "${imp.module}"."${imp.name}" is not allowed: a module may import only functions from "${WASI_MODULE}"`)
    }
    if (imp.kind !== 'function' || imp.type === undefined) {
      throw new ModuleRejectedError(`import "${imp.module}"."${imp.name}" is a ${imp.kind}; only functions can be imported from "${WASI_MODULE}"`)
    }
    const expected = WASI_SIGNATURES[imp.name]
    const actual = formatSignature(imp.type.params, imp.type.results)
    if (expected !== undefined) {
      const want = formatSignature(expected[0], expected[1])
      if (actual !== want) {
        throw new ModuleRejectedError(`import "${WASI_MODULE}"."${imp.name}" has type ${actual}, but WASI preview1 defines it as ${want}`)
      }
    } else if (imp.type.results.length > 1 || (imp.type.results.length === 1 && imp.type.results[0] !== 0x7f)) {
      // unknown names get an ENOSYS stub, which can only return an errno (i32) or nothing
      throw new ModuleRejectedError(`import "${WASI_MODULE}"."${imp.name}" is not a WASI preview1 function and its type ${actual} cannot be served by an ENOSYS stub`)
    }
  }
}

/** Exports: a `_start` function of type () -> () and the memory as `memory`. */
function checkExports (result: InstrumentResult): MemoryInfo {
  const start = result.exports.find(e => e.name === '_start')
  if (start === undefined || start.kind !== 'function') {
    throw new ModuleRejectedError('the module does not export a "_start" function: build it as a WASI command (e.g. clang --target=wasm32-wasi, or wasm32-wasip1 for Rust)')
  }
  const type = result.functionTypes[start.index]
  if (type === undefined || type.params.length > 0 || type.results.length > 0) {
    throw new ModuleRejectedError('"_start" must take no parameters and return nothing')
  }
  const memory = result.exports.find(e => e.name === 'memory')
  if (memory === undefined || memory.kind !== 'memory' || result.memory === undefined) {
    throw new ModuleRejectedError('the module does not export its memory as "memory", which WASI needs to pass data')
  }
  return result.memory
}
