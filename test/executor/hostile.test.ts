/**
 * Modules written to hurt the executor, each run beside an honest job where
 * the harm would have reached it: a table V8 cannot allocate, a table grown
 * past the worker's heap, a module whose metering would inflate it past a
 * gigabyte, floods of tiny writes and empty iovecs, host calls that touch far
 * more bytes than their fuel paid for. Each must end as that job's own
 * status, and the honest job beside it must finish as if alone.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import type { ExecuteRequest, ExecuteResult } from '../../src/core/job.ts'
import { cidForBytes } from '../../src/executor/cid.ts'
import { crashReason, Executor } from '../../src/executor/executor.ts'
import { instrumentModule } from '../../src/executor/instrument.ts'
import { ModuleLimitError, resolveModuleLimits, type ModuleLimits } from '../../src/executor/module-limits.ts'
import { request, text } from './helpers/fixtures.ts'
import { FUNCREF, HEADER, I32, command, s32, section, u32, vec } from './helpers/wasm-builder.ts'

const MiB = 1024 * 1024

function job (jobId: string, module: Uint8Array, limits: ExecuteRequest['limits'] = {}): ExecuteRequest {
  return { jobId, taskId: `${jobId}-1`, module, moduleCid: cidForBytes(module), input: new Uint8Array(0), args: [], env: [], limits }
}

function assertStatus (result: ExecuteResult, status: ExecuteResult['status']): void {
  assert.equal(result.status, status, `expected ${status}, got ${result.status}: ${result.error ?? ''}`)
}

const T_FD_WRITE = [0x60, 0x04, I32, I32, I32, I32, 0x01, I32]
const T_PROC_EXIT = [0x60, 0x01, I32, 0x00]
const T_RANDOM_GET = [0x60, 0x02, I32, I32, 0x01, I32]
const i32c = (v: number): number[] => [0x41, ...s32(v)]

/** The 59-byte module of the report: one funcref table of ten million entries. */
const HUGE_TABLE = command({ tables: [[FUNCREF, 10_000_000]], start: [] })

/** Grows a one-entry table by 9,999,000 and exits 1 unless table.grow answered -1. */
const TABLE_GROW = command({
  types: [T_PROC_EXIT],
  imports: [['proc_exit', 1]],
  tables: [[FUNCREF, 1]],
  start: [0xd0, 0x70, ...i32c(9_999_000), 0xfc, 0x0f, 0x00, ...i32c(-1), 0x47, 0x04, 0x40, ...i32c(1), 0x10, 0x00, 0x0b]
})

/** Calls fd_write(1, iovs = 0, iovsLen, nwritten = 8) `times` times; the iovec at 0 points at one "x" at 16 when `oneByte`. */
function writeLoop (times: number, iovsLen: number, oneByte: boolean): Uint8Array {
  const setup = oneByte ? [...i32c(0), ...i32c(16), 0x36, 0x02, 0x00, ...i32c(4), ...i32c(1), 0x36, 0x02, 0x00, ...i32c(16), ...i32c(120), 0x3a, 0x00, 0x00] : []
  const loop = [
    0x02, 0x40, 0x03, 0x40,
    0x20, 0x00, ...i32c(times), 0x4f, 0x0d, 0x01, // i >= times ? leave
    ...i32c(1), ...i32c(0), ...i32c(iovsLen), ...i32c(8), 0x10, 0x00, 0x1a, // fd_write(...); drop
    0x20, 0x00, ...i32c(1), 0x6a, 0x21, 0x00, 0x0c, 0x00, // i += 1; continue
    0x0b, 0x0b
  ]
  return command({ types: [T_FD_WRITE], imports: [['fd_write', 1]], start: [...setup, ...loop], locals: [[1, I32]] })
}

/** fd_write with more iovecs than IOV_MAX: exits with the errno it got. */
const TOO_MANY_IOVECS = command({
  types: [T_FD_WRITE, T_PROC_EXIT],
  imports: [['fd_write', 1], ['proc_exit', 2]],
  start: [...i32c(1), ...i32c(0), ...i32c(100_000), ...i32c(8), 0x10, 0x00, 0x10, 0x01]
})

/** random_get over `bytes` bytes of a memory of `pages` pages. */
function randomGet (bytes: number, pages: number): Uint8Array {
  return command({ types: [T_RANDOM_GET], imports: [['random_get', 1]], memoryPages: pages, start: [...i32c(0), ...i32c(bytes), 0x10, 0x00, 0x1a] })
}

/** Grows a one-entry table (maximum 2000) by 1000: 5 instructions + 1000 elements of fuel. */
const TABLE_GROW_1000 = command({ tables: [[FUNCREF, 1, 2000]], start: [0xd0, 0x70, ...i32c(1000), 0xfc, 0x0f, 0x00, 0x1a] })

/**
 * A valid module of about `size` bytes of empty blocks, in as many functions
 * as V8's body size limit needs: nested (`block` × n then `end` × n) or flat
 * (`block end` × n). Built here: it is too large to commit.
 */
function emptyBlocks (size: number, nested: boolean): Uint8Array {
  // V8 refuses a function body above 7,654,321 bytes
  const functions = Math.ceil(size / (6 * MiB))
  const pairs = Math.floor((size / functions - 16) / 3)
  const bodyLength = 1 + pairs * 3 + 1 // no locals; pairs; final end
  const prefix = [
    ...HEADER,
    ...section(1, vec([[0x60, 0x00, 0x00]])),
    ...section(3, vec(Array.from({ length: functions }, () => [0x00]))),
    ...section(5, vec([[0x00, 0x01]])),
    ...section(7, vec([[0x06, ...new TextEncoder().encode('memory'), 0x02, 0x00], [0x06, ...new TextEncoder().encode('_start'), 0x00, 0x00]]))
  ]
  const bodyHeader = [...u32(bodyLength), 0x00]
  const codePayload = u32(functions).length + functions * (bodyHeader.length + bodyLength - 1)
  const codeHeader = [10, ...u32(codePayload), ...u32(functions)]
  const out = new Uint8Array(prefix.length + codeHeader.length + functions * (bodyHeader.length + bodyLength - 1))
  out.set(prefix, 0)
  out.set(codeHeader, prefix.length)
  const body = new Uint8Array(bodyHeader.length + bodyLength - 1)
  body.set(bodyHeader, 0)
  let at = bodyHeader.length
  if (nested) {
    for (let i = 0; i < pairs; i++) { body[at++] = 0x02; body[at++] = 0x40 }
    body.fill(0x0b, at, at + pairs)
    at += pairs
  } else {
    for (let i = 0; i < pairs; i++) { body[at++] = 0x02; body[at++] = 0x40; body[at++] = 0x0b }
  }
  body[at] = 0x0b
  for (let f = 0, pos = prefix.length + codeHeader.length; f < functions; f++, pos += body.length) out.set(body, pos)
  return out
}

describe('hostile modules against one executor, each beside an honest job', () => {
  const executor = new Executor({ maxConcurrent: 2, maxLimits: { deadlineMs: 30_000 } })
  before(async () => { await executor.start() })
  after(async () => { await executor.stop() })

  /** Runs `hostile` and an honest hello beside it; the honest job must succeed with its usual output. */
  async function beside (hostile: ExecuteRequest): Promise<ExecuteResult> {
    const [bad, honest] = await Promise.all([executor.execute(hostile), executor.execute(request('hello'))])
    assertStatus(honest, 'succeeded')
    assert.match(text(honest.stdout), /^hello from wasi$/m)
    assert.equal(executor.status().restarts, 0, 'the sandbox was never restarted')
    return bad
  }

  it('rejects the 59-byte module declaring a table of ten million entries, naming the limit', async () => {
    assert.equal(HUGE_TABLE.length, 59)
    const result = await beside(job('huge-table', HUGE_TABLE))
    assertStatus(result, 'rejected')
    assert.equal(result.errorCode, undefined)
    assert.match(result.error ?? '', /table 0 starts with 10000000 entries.*moduleLimits\.maxTableEntries/)
  })

  it('answers -1 to a table.grow past the table budget instead of allocating it', async () => {
    const result = await beside(job('table-grow', TABLE_GROW))
    assertStatus(result, 'succeeded')
  })

  it('charges table.grow one fuel per element', async () => {
    const result = await beside(job('table-grow-1000', TABLE_GROW_1000))
    assertStatus(result, 'succeeded')
    assert.equal(result.fuelUsed, 1005)
  })

  it('keeps 2 MiB of one-byte writes as output, not as an executor crash', async () => {
    const result = await beside(job('byte-writes', writeLoop(2 * MiB, 1, true)))
    assertStatus(result, 'succeeded')
    assert.equal(result.stdout.length, 2 * MiB)
    assert.equal(result.stdout[0], 0x78)
    assert.ok(result.fuelUsed > 2 * MiB * 2, 'each write pays for its iovec besides its instructions')
  })

  it('stops a flood of empty iovecs with out_of_fuel, each iovec being charged', async () => {
    const result = await beside(job('empty-iovecs', writeLoop(2 ** 30, 1024, false), { fuel: 5_000_000 }))
    assertStatus(result, 'out_of_fuel')
    assert.equal(result.fuelUsed, 5_000_000)
  })

  it('answers EINVAL to an fd_write with more than 1024 iovecs', async () => {
    const result = await executor.execute(job('iov-max', TOO_MANY_IOVECS))
    assertStatus(result, 'failed')
    assert.equal(result.exitCode, 28)
  })

  it('charges random_get one fuel per byte, before producing any', async () => {
    assert.equal((await executor.execute(job('random-small', randomGet(6400, 1)))).fuelUsed, 6405)
    const big = await beside(job('random-255mib', randomGet(255 * MiB, 4096), { fuel: 1_000_000 }))
    assertStatus(big, 'out_of_fuel')
    assert.equal(big.fuelUsed, 1_000_000)
  })
})

describe('preparing a hostile module, beside honest jobs', () => {
  it('rejects 63 MiB of nested empty blocks by nesting while an honest job finishes ok', async () => {
    const executor = new Executor({ maxConcurrent: 2 })
    await executor.start()
    try {
      const module = emptyBlocks(63 * MiB, true)
      assert.ok(WebAssembly.validate(module), 'the generated module is valid')
      const [bad, honest] = await Promise.all([executor.execute(job('nested', module)), executor.execute(request('hello', { limits: { deadlineMs: 2000 } }))])
      assertStatus(honest, 'succeeded')
      assertStatus(bad, 'rejected')
      assert.match(bad.error ?? '', /moduleLimits\.maxNesting/)
    } finally {
      await executor.stop()
    }
  })

  it('rejects 63 MiB of flat empty blocks by their size after metering', async () => {
    const executor = new Executor({ maxConcurrent: 1 })
    await executor.start()
    try {
      const bad = await executor.execute(job('flat', emptyBlocks(63 * MiB, false)))
      assertStatus(bad, 'rejected')
      assert.match(bad.error ?? '', /moduleLimits\.maxMeteredCodeBytes/)
    } finally {
      await executor.stop()
    }
  })

  it('cuts a preparation at its time budget while another job\'s deadline fires on time', async () => {
    // the metered-size limit at its ceiling, so that only the time budget stops this preparation
    const executor = new Executor({ maxConcurrent: 2, prepareTimeoutMs: 1500, moduleLimits: { maxMeteredCodeBytes: 1024 * MiB } })
    await executor.start()
    try {
      const module = emptyBlocks(63 * MiB, false)
      // the honest job goes first: a 63 MiB message ahead of it on the IPC channel would delay its start, not its deadline
      const honest = executor.execute(request('infinite-loop', { limits: { deadlineMs: 300 } }))
      await sleep(20)
      const [bad, loop] = await Promise.all([executor.execute(job('flat', module)), honest])
      assertStatus(bad, 'rejected')
      assert.match(bad.error ?? '', /prepareTimeoutMs/)
      assertStatus(loop, 'deadline_exceeded')
      // metering this module takes many seconds: a deadline kept by a thread doing it would fire only after
      assert.ok(loop.durationMs < 1500, `the honest deadline of 300 ms fired after ${Math.round(loop.durationMs)} ms`)
      assertStatus(await executor.execute(request('hello')), 'succeeded')
      assert.equal(executor.status().restarts, 0)
    } finally {
      await executor.stop()
    }
  })
})

describe('module limits, checked before anything is compiled', () => {
  const TIGHT: ModuleLimits = resolveModuleLimits({ maxGlobals: 2, maxExports: 2, maxFunctions: 2, maxLocals: 10, maxNesting: 3, maxDataSegments: 1, maxElementEntries: 4, maxTables: 1 })

  function limitOf (module: Uint8Array): string {
    assert.ok(WebAssembly.validate(module), 'the hand-built module is valid')
    try {
      instrumentModule(module, { maxMemoryPages: 16, maxCallDepth: 100, moduleLimits: TIGHT })
    } catch (err) {
      assert.ok(err instanceof ModuleLimitError, `expected a ModuleLimitError, got ${String(err)}`)
      assert.equal(err.status, 'rejected')
      return err.limit
    }
    return 'none'
  }

  const globals = vec([0, 1, 2].map(() => [I32, 0x00, 0x41, 0x00, 0x0b]))
  const cases: Array<[string, Uint8Array, keyof ModuleLimits]> = [
    ['globals', command({ start: [], extra: { 6: globals } }), 'maxGlobals'],
    ['functions', command({ start: [], functions: [[], []] }), 'maxFunctions'],
    ['locals in one function', command({ start: [], locals: [[11, I32]] }), 'maxLocals'],
    ['block nesting', command({ start: [0x02, 0x40, 0x02, 0x40, 0x02, 0x40, 0x02, 0x40, 0x0b, 0x0b, 0x0b, 0x0b] }), 'maxNesting'],
    ['data segments', command({ start: [], extra: { 11: vec([[0x01, 0x00], [0x01, 0x00]]) } }), 'maxDataSegments'],
    ['element entries', command({ start: [], tables: [[FUNCREF, 5]], extra: { 9: vec([[0x00, 0x41, 0x00, 0x0b, ...vec([[0], [0], [0], [0], [0]])]]) } }), 'maxElementEntries'],
    ['tables', command({ start: [], tables: [[FUNCREF, 1], [FUNCREF, 1]] }), 'maxTables']
  ]
  for (const [what, module, limit] of cases) {
    it(`refuses a module with too many ${what} as rejected by ${limit}`, () => {
      assert.equal(limitOf(module), limit)
    })
  }

  it('lowers a table maximum above the budget to it, and leaves one within it as declared', () => {
    const limits = resolveModuleLimits({ maxTableEntries: 100 })
    const grown = instrumentModule(command({ tables: [[FUNCREF, 1]], start: [] }), { maxMemoryPages: 1, maxCallDepth: 10, moduleLimits: limits })
    const table = WebAssembly.Module.exports(new WebAssembly.Module(grown.bytes))
    assert.ok(table.length > 0)
    const instance = new WebAssembly.Instance(new WebAssembly.Module(grown.bytes), {})
    void instance
    const within = command({ tables: [[FUNCREF, 1, 50]], start: [] })
    const out = instrumentModule(within, { maxMemoryPages: 1, maxCallDepth: 10, moduleLimits: limits })
    assert.ok(Buffer.from(out.bytes).includes(Buffer.from([0x04, 0x05, 0x01, 0x70, 0x01, 0x01, 0x32])), 'the table section is copied unchanged')
    assert.ok(Buffer.from(grown.bytes).includes(Buffer.from([0x04, 0x05, 0x01, 0x70, 0x01, 0x01, 0x64])), 'the maximum became 100')
  })
})

describe('crash reasons', () => {
  it('leave out native stack traces, heap statistics and install paths', () => {
    const stderr = [
      '[19116:0x7f500c001000]      388 ms: Mark-Compact (reduce) 82.1 (84.3) -> 82.1 (83.6) MB, pooled: 0 MB',
      '',
      'FATAL ERROR: CALL_AND_RETRY_LAST Allocation failed - JavaScript heap out of memory',
      '----- Native stack trace -----',
      '',
      ' 1: 0x931db0  [/work/main/node_modules/node/bin/node]',
      ' 2: 0x75968e node::OOMErrorHandler(char const*, v8::OOMDetails const&) [/work/main/node_modules/node/bin/node]'
    ].join('\n')
    const reason = crashReason(stderr)
    assert.equal(reason, 'FATAL ERROR: CALL_AND_RETRY_LAST Allocation failed - JavaScript heap out of memory')
    const thrown = crashReason('file:///home/donor/wc/src/executor/sandbox-process.ts:120\nError: sandbox: a worker thread could not start\n    at fatal (file:///home/donor/wc/src/executor/sandbox-process.ts:120:9)\nNode.js v24.21.0')
    assert.doesNotMatch(thrown, /\/home\/donor/)
    assert.match(thrown, /Error: sandbox: a worker thread could not start/)
  })
})
