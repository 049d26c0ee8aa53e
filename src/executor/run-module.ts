/**
 * Runs one prepared (instrumented) module to completion on the current thread
 * and classifies how it ended. Used by worker.ts inside the sandbox; also
 * usable directly (tests, benchmarks), since it touches nothing but the module
 * and the shim.
 */

import type { ExecStatus, ExecuteResult, JobDir } from '../core/job.ts'
import { FUEL_EXPORT, START_EXPORT, TRAP_EXPORT, TrapCode } from './instrument.ts'
import { waitForInput, type OutputSink } from './stream-io.ts'
import { Errno, WASI_MODULE } from './wasi-abi.ts'
import { OutputLimitExceeded, WasiExit, WasiShim } from './wasi-shim.ts'

export interface RunSpec {
  /** seeds random_get */
  jobId: string
  input: Uint8Array
  /**
   * for an input still arriving while the job runs (a StreamedInput's
   * `arrived`): [0] is how many bytes of `input` are there; reads wait for
   * theirs @default input is all there
   */
  inputArrived?: Int32Array
  /** argv[1..] */
  args: readonly string[]
  /** `K=V` strings */
  env: readonly string[]
  /** argv[0] @default 'main.wasm' */
  moduleName?: string
  fuel: number
  outputBytes: number
  /** the limit baked into the module, for the error text */
  maxCallDepth: number
  /** directories preopened from fd 3, in an in-memory overlay */
  preopens?: JobDir[]
  /** cap on the overlay (file bytes plus a fixed cost per entry) @default outputBytes */
  filesystemBytes?: number
}

/** An ExecuteResult without durationMs (the caller measures time). */
export type RunOutcome = Omit<ExecuteResult, 'durationMs'>

/**
 * V8's trap messages mapped to the names the WebAssembly spec test suite uses,
 * so that the error text (which replicas compare) does not depend on the
 * engine's wording.
 */
const TRAP_TEXT: Record<string, string> = {
  unreachable: 'unreachable executed',
  'divide by zero': 'integer divide by zero',
  'remainder by zero': 'integer divide by zero',
  'divide result unrepresentable': 'integer overflow',
  'float unrepresentable in integer range': 'invalid conversion to integer',
  'memory access out of bounds': 'out of bounds memory access',
  'table index is out of bounds': 'out of bounds table access',
  'null function or function signature mismatch': 'indirect call to a null or mismatched function',
  'data segment out of bounds': 'out of bounds memory access',
  'element segment out of bounds': 'out of bounds table access',
  'operation does not support unaligned accesses': 'unaligned atomic access'
}

export interface RunOptions {
  /** where stdout goes in chunks while the job runs; the outcome's stdout is then what had not gone yet @default kept whole */
  stdoutSink?: OutputSink
  /** an instance of this module made ahead (SpareInstance), taken instead of instantiating here @default instantiated here */
  spare?: SpareInstance
}

type HostCall = (...args: unknown[]) => number | undefined

/**
 * An instance of a module made ahead of the job that runs it (between jobs,
 * off any job's path), whose imports call the functions of whichever shim
 * `take` names. Instantiating runs no guest code (instrumentation moved the
 * start function out): the instance is the one the job would have made, down
 * to its memory. It saves the job the instantiation, most of all the guest
 * memory's allocation (about 0.1 ms of a trivial job's 0.25 ms run). Only for
 * modules that import nothing but preview1 functions, as prepared ones do.
 */
export class SpareInstance {
  readonly instance: WebAssembly.Instance
  /** each import's function, set by `take` (until then, and for unknown names, ENOSYS) */
  private readonly slots: Array<{ name: string, fn: HostCall }>
  private taken = false

  /** Throws as `new WebAssembly.Instance` does (a link or memory error), or a TypeError for an import other than a preview1 function. */
  constructor (module: WebAssembly.Module) {
    const nosys: HostCall = () => Errno.nosys
    this.slots = []
    const ns: Record<string, HostCall> = {}
    for (const imp of WebAssembly.Module.imports(module)) {
      if (imp.module !== WASI_MODULE || imp.kind !== 'function') throw new TypeError(`a spare instance serves preview1 functions only, not ${imp.module}.${imp.name} (${imp.kind})`)
      const slot = { name: imp.name, fn: nosys }
      this.slots.push(slot)
      // nine fixed parameters, as the shim's guard: a rest parameter would allocate on every host call
      ns[imp.name] = (a, b, c, d, e, f, g, h, i) => slot.fn(a, b, c, d, e, f, g, h, i)
    }
    this.instance = new WebAssembly.Instance(module, { [WASI_MODULE]: ns })
  }

  /** The instance, its imports now calling `shim`'s functions; undefined once taken (an instance serves one job). */
  take (shim: WasiShim): WebAssembly.Instance | undefined {
    if (this.taken) return undefined
    this.taken = true
    for (const slot of this.slots) slot.fn = (shim.functions[slot.name] as HostCall | undefined) ?? slot.fn
    return this.instance
  }
}

export function runModule (module: WebAssembly.Module, spec: RunSpec, options: RunOptions = {}): RunOutcome {
  const arrived = spec.inputArrived
  const shim = new WasiShim({
    args: [spec.moduleName ?? 'main.wasm', ...spec.args],
    env: spec.env,
    stdin: spec.input,
    stdinArrived: arrived === undefined ? undefined : (end) => { waitForInput(arrived, end) },
    stdoutSink: options.stdoutSink,
    outputLimit: spec.outputBytes,
    randomSeed: spec.jobId,
    preopens: spec.preopens,
    filesystemLimit: spec.filesystemBytes
  })
  const budget = BigInt(spec.fuel)
  let fuel: WebAssembly.Global | undefined
  let trap: WebAssembly.Global | undefined
  const outcome = (status: ExecStatus, extra: { exitCode?: number, error?: string } = {}): RunOutcome => {
    const remaining = fuel === undefined ? budget : (fuel.value as bigint)
    let used = budget - remaining
    // out of fuel: the last charge took the counter below zero; the job used its whole budget
    if (used > budget) used = budget
    const base = { status, ...extra, stdout: shim.stdout, stderr: shim.stderr, fuelUsed: Number(used < 0n ? 0n : used) }
    return withFiles(base, shim, spec.outputBytes)
  }

  let instance: WebAssembly.Instance
  try {
    instance = options.spare?.take(shim) ?? new WebAssembly.Instance(module, shim.importsFor(module))
  } catch (err) {
    // no guest code runs during instantiation (the start function was moved out); this is a link or segment error
    return outcome('failed', { error: describeInstantiationError(err) })
  }
  const exports = instance.exports
  fuel = exports[FUEL_EXPORT] as WebAssembly.Global
  trap = exports[TRAP_EXPORT] as WebAssembly.Global
  fuel.value = budget
  shim.attach(exports.memory as WebAssembly.Memory, hostCharge(fuel, trap))

  try {
    const start = exports[START_EXPORT]
    if (typeof start === 'function') start()
    ;(exports._start as () => void)()
    return outcome('succeeded', { exitCode: 0 })
  } catch (err) {
    if (err instanceof WasiExit) {
      return err.code === 0 ? outcome('succeeded', { exitCode: 0 }) : outcome('failed', { exitCode: err.code })
    }
    if (err instanceof OutputLimitExceeded) return outcome('output_too_large', { error: err.message })
    const code = trap.value as number
    if (code === TrapCode.outOfFuel) return outcome('out_of_fuel', { error: `fuel budget of ${spec.fuel} exhausted` })
    if (code === TrapCode.callDepth) return outcome('failed', { error: `call depth limit ${spec.maxCallDepth} exceeded` })
    if (err instanceof WebAssembly.RuntimeError) {
      return outcome('failed', { error: TRAP_TEXT[err.message] ?? `trap: ${err.message}` })
    }
    if (err instanceof RangeError && /call stack/i.test(err.message)) {
      // V8's own stack ran out before the deterministic limit: depends on frame sizes, so say so
      return outcome('failed', { error: `call stack exhausted before the call depth limit of ${spec.maxCallDepth} (engine stack; lower limits.maxCallDepth)` })
    }
    return outcome('failed', { error: `executor error: ${describe(err)}` })
  }
}

/**
 * The outcome with the files the job changed under its preopens. They count
 * against the output cap with stdout and stderr: a job whose files take it
 * past the cap is output_too_large, its files left out (a part of a file
 * would be a result nobody asked for).
 */
function withFiles (outcome: RunOutcome, shim: WasiShim, outputBytes: number): RunOutcome {
  const changes = shim.fileChanges()
  if (changes === undefined) return outcome
  const fileBytes = changes.files.reduce((n, f) => n + f.data.length, 0)
  if (outcome.status === 'output_too_large') return { ...outcome, files: [], removedFiles: changes.removedFiles }
  if (shim.outputBytes + fileBytes > outputBytes) {
    return {
      ...outcome,
      status: 'output_too_large',
      exitCode: undefined,
      error: `stdout, stderr and the ${changes.files.length} changed files (${fileBytes} bytes) together exceeded the output cap of ${outputBytes} bytes`,
      files: [],
      removedFiles: changes.removedFiles
    }
  }
  return { ...outcome, ...changes }
}

/** Thrown by a host call whose fuel charge took the budget below zero; the runner reports out_of_fuel from the trap global. */
class HostOutOfFuel extends Error {
  constructor () {
    super('fuel budget exhausted by a host call')
    this.name = 'HostOutOfFuel'
  }
}

/** Host calls charge the same fuel global as the injected code, and stop the guest the same way when it runs out. */
function hostCharge (fuel: WebAssembly.Global, trap: WebAssembly.Global): (units: number) => void {
  return (units) => {
    if (units <= 0) return
    const left = (fuel.value as bigint) - BigInt(units)
    fuel.value = left
    if (left < 0n) {
      trap.value = TrapCode.outOfFuel
      throw new HostOutOfFuel()
    }
  }
}

function describeInstantiationError (err: unknown): string {
  if (err instanceof WebAssembly.RuntimeError) return TRAP_TEXT[err.message] ?? `trap: ${err.message}`
  if (err instanceof WebAssembly.LinkError) return `link error: ${err.message}`
  return `instantiation failed: ${describe(err)}`
}

function describe (err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err)
}
