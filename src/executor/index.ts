/**
 * The WebAssembly executor: prepare (validate, enforce policy, clamp memory,
 * meter fuel and call depth) and run (a permission-fenced sandbox process with
 * a worker pool and a deterministic WASI preview1 shim).
 */

export { Executor, type ExecuteOptions, type ExecutorInit, type ExecutorState, type ExecutorStatus } from './executor.ts'
export { base32Encode, cidBytesForBytes, cidForBytes } from './cid.ts'
export {
  ExecutorNotRunningError,
  InstrumentationError,
  InvalidModuleError,
  JobAbortedError,
  ModuleRejectedError,
  SandboxStartError,
  WasmParseError
} from './errors.ts'
export {
  FUEL_EXPORT,
  METER_VERSION,
  START_EXPORT,
  TRAP_EXPORT,
  TrapCode,
  instrumentModule,
  type ExportEntry,
  type FuncType,
  type ImportEntry,
  type InstrumentOptions,
  type InstrumentResult,
  type MemoryInfo
} from './instrument.ts'
export { resolveJobLimits, resolveMaxLimits, type LimitsCheck } from './limits.ts'
export { DEFAULT_MODULE_LIMITS, ModuleLimitError, resolveModuleLimits, type ModuleLimits } from './module-limits.ts'
export { PreparedModuleCache, memoryPagesFor, prepareModule, preparedKey, type PrepareLimits, type PreparedModule } from './prepare.ts'
export { runModule, type RunOptions, type RunOutcome, type RunSpec } from './run-module.ts'
export { SANDBOX_ENTRY, SANDBOX_READ_DIRS, sandboxExecArgv, type SandboxFlagsInit } from './sandbox-launch.ts'
export { Errno, WASI_MODULE, WASI_SIGNATURES } from './wasi-abi.ts'
export { HostFuel, IOV_MAX, OutputLimitExceeded, VIRTUAL_CLOCK_STEP_NS, VIRTUAL_EPOCH_NS, WasiExit, WasiShim, type FuelCharge, type WasiShimInit } from './wasi-shim.ts'
