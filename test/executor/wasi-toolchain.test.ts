/**
 * Real compiler output through the executor: Rust's std (wasm32-wasi) and
 * wasi-libc using preopened files, sleeping, and recursing deep. The programs
 * and their build script are in test/fixtures/toolchain/.
 */

import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { after, before, describe, it } from 'node:test'
import { DEFAULT_JOB_LIMITS, type ExecuteRequest, type ExecuteResult, type JobDir, type JobLimits } from '../../src/core/job.ts'
import { cidForBytes } from '../../src/executor/cid.ts'
import { Executor } from '../../src/executor/executor.ts'

const TOOLCHAIN = new URL('../fixtures/toolchain/', import.meta.url)
const encoder = new TextEncoder()
const decoder = new TextDecoder()

function program (name: string): Uint8Array {
  return new Uint8Array(readFileSync(new URL(name, TOOLCHAIN)))
}

function job (module: Uint8Array, opts: { args?: string[], preopens?: JobDir[], limits?: Partial<JobLimits> } = {}): ExecuteRequest {
  return {
    jobId: 'toolchain-job',
    taskId: 'toolchain-job-1',
    module,
    moduleCid: cidForBytes(module),
    input: new Uint8Array(0),
    args: opts.args ?? [],
    env: [],
    limits: opts.limits ?? {},
    moduleName: 'files.wasm',
    preopens: opts.preopens
  }
}

/** The submitter's directory: what the job reads, and must find unchanged afterwards. */
function dataDir (): JobDir {
  return {
    guest: '/data',
    files: [
      { path: '/data/in/b.txt', data: encoder.encode('beta\nsecond line\n') },
      { path: '/data/in/a.txt', data: encoder.encode('alpha\n') },
      { path: '/data/in/rename-me.txt', data: encoder.encode('moved\n') },
      { path: '/data/in/remove-me.txt', data: encoder.encode('gone\n') },
      { path: '/data/log.txt', data: encoder.encode('first entry\n') }
    ],
    emptyDirs: ['/data/empty']
  }
}

function files (result: ExecuteResult): Record<string, string> {
  return Object.fromEntries((result.files ?? []).map(f => [f.path, decoder.decode(f.data)]))
}

function assertSucceeded (result: ExecuteResult): void {
  assert.equal(result.status, 'succeeded', `${result.status}: ${result.error ?? ''} ${decoder.decode(result.stderr)}`)
}

describe('real toolchain output using files through the executor', () => {
  const executor = new Executor({ maxConcurrent: 2, maxLimits: { maxCallDepth: 4 * DEFAULT_JOB_LIMITS.maxCallDepth } })
  before(async () => { await executor.start() })
  after(async () => { await executor.stop() })

  it('runs a Rust program that lists, reads, writes, appends, renames and removes files, and returns what changed', async () => {
    const data = dataDir()
    const log = data.files[4].data
    const result = await executor.execute(job(program('files-rust.wasm'), { preopens: [data] }))
    assertSucceeded(result)
    assert.equal(decoder.decode(result.stdout), 'listing: a.txt b.txt remove-me.txt rename-me.txt\n' +
      'summary is 113 bytes; slept at least 1 s: true\noutside the preopen: refused\n')
    assert.deepEqual(files(result), {
      '/data/log.txt': 'first entry\nsummarised 4 files\n',
      '/data/out/renamed.txt': 'moved\n',
      '/data/out/summary.txt': 'a.txt: 1 lines, 6 bytes\nb.txt: 2 lines, 17 bytes\nremove-me.txt: 1 lines, 5 bytes\nrename-me.txt: 1 lines, 6 bytes\n'
    })
    assert.deepEqual(result.files?.map(f => f.path), ['/data/log.txt', '/data/out/renamed.txt', '/data/out/summary.txt'])
    assert.deepEqual(result.removedFiles, ['/data/in/remove-me.txt', '/data/in/rename-me.txt'])
    assert.equal(decoder.decode(log), 'first entry\n', 'the submitted bytes are never written to')
  })

  it('gives the same outcome, files and fuel on every run (what replicas compare)', async () => {
    const a = await executor.execute(job(program('files-rust.wasm'), { preopens: [dataDir()] }))
    const b = await executor.execute(job(program('files-rust.wasm'), { preopens: [dataDir()] }))
    assertSucceeded(a)
    assert.deepEqual({ ...a, durationMs: 0, cpuTimeMs: 0 }, { ...b, durationMs: 0, cpuTimeMs: 0 })
  })

  it('reports output_too_large when the changed files take stdout, stderr and files past outputBytes', async () => {
    const result = await executor.execute(job(program('files-rust.wasm'), { preopens: [dataDir()], limits: { outputBytes: 200 } }))
    assert.equal(result.status, 'output_too_large')
    assert.match(result.error ?? '', /changed files .* exceeded the output cap of 200 bytes/)
    assert.deepEqual(result.files, [])
  })

  it('rejects preopens whose paths are not normalised guest paths under their directory', async () => {
    const bad: JobDir = { guest: '/data', files: [{ path: '/elsewhere/x', data: new Uint8Array(1) }] }
    const result = await executor.execute(job(program('files-rust.wasm'), { preopens: [bad] }))
    assert.equal(result.status, 'rejected')
    assert.match(result.error ?? '', /\/elsewhere\/x is not a normalised path under it/)
  })

  it('counts the preopened files against payloadBytes with the module and input', async () => {
    const module = program('files-rust.wasm')
    const big: JobDir = { guest: '/data', files: [{ path: '/data/big', data: new Uint8Array(1024) }] }
    const result = await executor.execute(job(module, { preopens: [big], limits: { payloadBytes: module.length + 1000 } }))
    assert.equal(result.status, 'rejected')
    assert.match(result.error ?? '', /module \+ input \+ preopened files is \d+ bytes, above limits.payloadBytes/)
  })

  it('runs a Rust recursion just under the default call-depth limit, which V8 alone would also run', async () => {
    const depth = DEFAULT_JOB_LIMITS.maxCallDepth - 100
    const result = await executor.execute(job(program('files-rust.wasm'), { args: ['recurse', String(depth)] }))
    assertSucceeded(result)
    assert.equal(decoder.decode(result.stdout), `recursed ${depth}\n`)
    assert.equal(result.files, undefined, 'a job without preopens has no files in its result')
    assert.equal(result.removedFiles, undefined)
  })

  it('stops a Rust recursion past the limit with the deterministic call-depth error, not an engine stack overflow', async () => {
    for (const maxCallDepth of [DEFAULT_JOB_LIMITS.maxCallDepth, 2 * DEFAULT_JOB_LIMITS.maxCallDepth]) {
      const result = await executor.execute(job(program('files-rust.wasm'), { args: ['recurse', String(maxCallDepth + 10)], limits: { maxCallDepth } }))
      assert.equal(result.status, 'failed')
      assert.equal(result.error, `call depth limit ${maxCallDepth} exceeded`)
    }
  })

  it('runs a C program (wasi-libc) that lists, stats, writes, appends, rewrites in place and sleeps', async () => {
    const data = dataDir()
    const result = await executor.execute(job(program('files-c.wasm'), { preopens: [data] }))
    assertSucceeded(result)
    assert.equal(decoder.decode(result.stdout), 'listing: a.txt b.txt remove-me.txt rename-me.txt\nslept at least 1 s: yes\noutside the preopen: refused\n')
    assert.deepEqual(files(result), {
      '/data/log.txt': 'first entry\nc listed 4 files\n',
      '/data/out-c.txt': '#.txt: 6 bytes\nb.txt: 17 bytes\nremove-me.txt: 5 bytes\nrename-me.txt: 6 bytes\n'
    })
    assert.deepEqual(result.removedFiles, [])
  })
})
