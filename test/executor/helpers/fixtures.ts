/** Loads the committed WebAssembly fixtures and builds execute requests around them. */
import { readFileSync } from 'node:fs'
import type { ExecuteRequest, JobLimits } from '../../../src/core/job.ts'
import { cidForBytes } from '../../../src/executor/cid.ts'

const cache = new Map<string, Uint8Array>()

/** The bytes of test/fixtures/wasm/<name>.wasm. */
export function fixture (name: string): Uint8Array {
  let bytes = cache.get(name)
  if (bytes === undefined) {
    bytes = new Uint8Array(readFileSync(new URL(`../../fixtures/wasm/${name}.wasm`, import.meta.url)))
    cache.set(name, bytes)
  }
  return bytes
}

export interface RequestOptions {
  jobId?: string
  input?: string | Uint8Array
  args?: string[]
  env?: string[]
  limits?: Partial<JobLimits>
  moduleName?: string
  moduleCid?: string
}

export function request (name: string, opts: RequestOptions = {}): ExecuteRequest {
  const module = fixture(name)
  return {
    jobId: opts.jobId ?? `job-${name}`,
    taskId: `task-${name}-1`,
    module,
    moduleCid: opts.moduleCid ?? cidForBytes(module),
    input: typeof opts.input === 'string' ? new TextEncoder().encode(opts.input) : opts.input ?? new Uint8Array(0),
    args: opts.args ?? [],
    env: opts.env ?? [],
    limits: opts.limits ?? {},
    moduleName: opts.moduleName
  }
}

const decoder = new TextDecoder()
export function text (bytes: Uint8Array): string {
  return decoder.decode(bytes)
}
