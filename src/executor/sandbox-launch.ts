/**
 * How the sandbox process is started: the entry file and the Node flags that
 * fence it. Kept apart from executor.ts so that tests can start a probe under
 * exactly the same flags.
 */

import { fileURLToPath } from 'node:url'
import { siblingModuleUrl } from '../core/module-url.ts'

/** The sandbox process's entry point. */
export const SANDBOX_ENTRY = fileURLToPath(siblingModuleUrl('./sandbox-process.ts', import.meta.url))

/**
 * The sandbox's end of the data socket (inputs in, stdout out: stream-io.ts),
 * after stdin, stdout, stderr and the IPC channel. Made by the parent before
 * fork (data-channel.ts) and inherited: the sandbox opens nothing itself.
 */
export const SANDBOX_DATA_FD = 4

/** The only source folders the sandbox may read: its own code and the shared core types it imports. */
export const SANDBOX_READ_DIRS: readonly string[] = [
  fileURLToPath(new URL('./', import.meta.url)),
  fileURLToPath(new URL('../core/', import.meta.url))
]

export interface SandboxFlagsInit {
  /** process-wide cap on any wasm memory, in 64 KiB pages (the donor's maximum) */
  maxMemoryPages: number
  /** process-wide cap on any wasm table, in entries (the executor's table budget) @default 10000000, V8's own */
  maxTableEntries?: number
  /** extra readable paths (tests only: a probe script) */
  extraReadPaths?: readonly string[]
}

/**
 * Node's permission model (stable since 22.13): with `--permission` the process
 * gets no fs writes, no child processes, no addons, no WASI, and reads only the
 * listed folders. `--allow-worker` is needed for the worker pool. The network is
 * not restricted by Node 24's permission model; the guest has no network imports.
 * `--wasm-max-mem-pages` is V8's process-wide fence behind the per-module clamp:
 * worker `resourceLimits` do not cover wasm memory. `--wasm-max-table-size` is
 * the same fence for tables, behind the rewrite of each table's maximum: a
 * table allocation V8 cannot make aborts the whole process.
 */
export function sandboxExecArgv (init: SandboxFlagsInit): string[] {
  return [
    '--permission',
    ...[...SANDBOX_READ_DIRS, ...(init.extraReadPaths ?? [])].map(p => `--allow-fs-read=${p}`),
    '--allow-worker',
    `--wasm-max-mem-pages=${Math.max(1, Math.floor(init.maxMemoryPages))}`,
    ...(init.maxTableEntries !== undefined ? [`--wasm-max-table-size=${Math.max(1, Math.floor(init.maxTableEntries))}`] : []),
    // the sandbox's stderr is kept only for crash reports; this warning about --allow-worker is expected there
    '--disable-warning=SecurityWarning'
  ]
}
