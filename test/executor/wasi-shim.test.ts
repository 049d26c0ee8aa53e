import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Errno, WASI_SIGNATURES } from '../../src/executor/wasi-abi.ts'
import { OutputLimitExceeded, VIRTUAL_CLOCK_STEP_NS, VIRTUAL_EPOCH_NS, WasiExit, WasiShim, type WasiShimInit } from '../../src/executor/wasi-shim.ts'
import { fixture, text } from './helpers/fixtures.ts'

type Fn = (...args: Array<number | bigint>) => number

function shimWith (init: Partial<WasiShimInit> = {}): { shim: WasiShim, mem: WebAssembly.Memory, view: () => DataView, call: (name: string, ...args: Array<number | bigint>) => number } {
  const shim = new WasiShim({ args: ['main.wasm'], env: [], stdin: new Uint8Array(0), outputLimit: 1024, randomSeed: 'job-1', ...init })
  const mem = new WebAssembly.Memory({ initial: 1 })
  shim.attach(mem)
  return {
    shim,
    mem,
    view: () => new DataView(mem.buffer),
    call: (name, ...args) => (shim.functions[name] as Fn)(...args)
  }
}

function readString (mem: WebAssembly.Memory, ptr: number): string {
  const bytes = new Uint8Array(mem.buffer)
  let end = ptr
  while (bytes[end] !== 0) end++
  return text(bytes.subarray(ptr, end))
}

function writeIovec (mem: WebAssembly.Memory, at: number, ptr: number, len: number): void {
  const v = new DataView(mem.buffer)
  v.setUint32(at, ptr, true)
  v.setUint32(at + 4, len, true)
}

describe('WasiShim', () => {
  it('serves argv with argv[0] first and NUL-terminated strings', () => {
    const { call, view, mem } = shimWith({ args: ['prog.wasm', 'a', 'héllo'] })
    assert.equal(call('args_sizes_get', 0, 4), Errno.success)
    assert.equal(view().getUint32(0, true), 3)
    assert.equal(view().getUint32(4, true), 'prog.wasm\0a\0héllo\0'.length + 1) // é is two UTF-8 bytes
    assert.equal(call('args_get', 100, 200), Errno.success)
    assert.deepEqual([0, 1, 2].map(i => readString(mem, view().getUint32(100 + 4 * i, true))), ['prog.wasm', 'a', 'héllo'])
  })

  it('serves the job\'s environment and nothing of the host\'s', () => {
    const { call, view, mem } = shimWith({ env: ['GREETING=hi', 'N=1'] })
    call('environ_sizes_get', 0, 4)
    assert.equal(view().getUint32(0, true), 2)
    call('environ_get', 100, 200)
    assert.deepEqual([0, 1].map(i => readString(mem, view().getUint32(100 + 4 * i, true))), ['GREETING=hi', 'N=1'])
  })

  it('reads stdin from the job input until it is exhausted', () => {
    const { call, view, mem } = shimWith({ stdin: new TextEncoder().encode('abcdef') })
    writeIovec(mem, 0, 100, 4)
    assert.equal(call('fd_read', 0, 0, 1, 8), Errno.success)
    assert.equal(view().getUint32(8, true), 4)
    assert.equal(call('fd_read', 0, 0, 1, 8), Errno.success)
    assert.equal(view().getUint32(8, true), 2)
    assert.equal(call('fd_read', 0, 0, 1, 8), Errno.success)
    assert.equal(view().getUint32(8, true), 0, 'end of input reads 0 bytes')
    assert.equal(text(new Uint8Array(mem.buffer, 100, 4)), 'efcd')
  })

  it('skips a zero-length iovec instead of reporting end of input', () => {
    const { call, view, mem } = shimWith({ stdin: new TextEncoder().encode('xyz') })
    writeIovec(mem, 0, 100, 0)
    writeIovec(mem, 8, 200, 8)
    assert.equal(call('fd_read', 0, 0, 2, 16), Errno.success)
    assert.equal(view().getUint32(16, true), 3)
    assert.equal(text(new Uint8Array(mem.buffer, 200, 3)), 'xyz')
  })

  it('collects stdout and stderr separately', () => {
    const { shim, call, mem } = shimWith()
    new Uint8Array(mem.buffer).set(new TextEncoder().encode('outerr'), 100)
    writeIovec(mem, 0, 100, 3)
    writeIovec(mem, 8, 103, 3)
    assert.equal(call('fd_write', 1, 0, 1, 16), Errno.success)
    assert.equal(call('fd_write', 2, 8, 1, 16), Errno.success)
    assert.equal(text(shim.stdout), 'out')
    assert.equal(text(shim.stderr), 'err')
  })

  it('sees the memory as it is after the guest grows it, between two calls', () => {
    const { shim, call, mem } = shimWith()
    new Uint8Array(mem.buffer).set(new TextEncoder().encode('one'), 100)
    writeIovec(mem, 0, 100, 3)
    assert.equal(call('fd_write', 1, 0, 1, 16), Errno.success)
    assert.equal(call('fd_write', 1, 65_536, 1, 16), Errno.fault, 'the second page does not exist yet')
    mem.grow(1)
    new Uint8Array(mem.buffer).set(new TextEncoder().encode('two'), 65_600)
    writeIovec(mem, 65_536, 65_600, 3)
    assert.equal(call('fd_write', 1, 65_536, 1, 65_544), Errno.success)
    assert.equal(new DataView(mem.buffer).getUint32(65_544, true), 3)
    assert.equal(text(shim.stdout), 'onetwo')
  })

  it('stops the run when stdout and stderr together pass the output cap, keeping output up to the cap', () => {
    const { shim, call, mem } = shimWith({ outputLimit: 10 })
    writeIovec(mem, 0, 100, 6)
    assert.equal(call('fd_write', 1, 0, 1, 16), Errno.success)
    assert.throws(() => call('fd_write', 2, 0, 1, 16), OutputLimitExceeded)
    assert.equal(shim.stdout.length + shim.stderr.length, 10)
  })

  it('answers EBADF for descriptors that do not exist and for writing to stdin', () => {
    const { call } = shimWith()
    assert.equal(call('fd_write', 0, 0, 0, 16), Errno.badf)
    assert.equal(call('fd_write', 3, 0, 0, 16), Errno.badf)
    assert.equal(call('fd_read', 1, 0, 0, 16), Errno.badf)
    assert.equal(call('fd_prestat_get', 3, 0), Errno.badf)
    assert.equal(call('path_open', 3, 0, 0, 0, 0, 0n, 0n, 0, 0), Errno.badf)
  })

  it('describes the standard streams as character devices that cannot seek', () => {
    const { call, view } = shimWith()
    assert.equal(call('fd_fdstat_get', 1, 0), Errno.success)
    assert.equal(view().getUint8(0), 2)
    assert.equal(call('fd_seek', 1, 0n, 0, 32), Errno.spipe)
    assert.equal(call('fd_tell', 0, 32), Errno.spipe)
  })

  it('treats a closed standard stream as gone', () => {
    const { call } = shimWith()
    assert.equal(call('fd_close', 1), Errno.success)
    assert.equal(call('fd_write', 1, 0, 0, 16), Errno.badf)
    assert.equal(call('fd_close', 1), Errno.badf)
  })

  it('runs a virtual clock from a fixed epoch that advances one step per reading', () => {
    const { call, view } = shimWith()
    assert.equal(call('clock_time_get', 0, 0n, 0), Errno.success)
    assert.equal(view().getBigUint64(0, true), VIRTUAL_EPOCH_NS + VIRTUAL_CLOCK_STEP_NS)
    assert.equal(call('clock_time_get', 1, 0n, 0), Errno.success)
    assert.equal(view().getBigUint64(0, true), 2n * VIRTUAL_CLOCK_STEP_NS)
    assert.equal(call('clock_res_get', 1, 0), Errno.success)
    assert.equal(view().getBigUint64(0, true), VIRTUAL_CLOCK_STEP_NS)
    assert.equal(call('clock_time_get', 9, 0n, 0), Errno.inval)
  })

  it('derives random bytes from the job ID alone', () => {
    const draw = (seed: string): string => {
      const { call, mem } = shimWith({ randomSeed: seed })
      call('random_get', 0, 20)
      call('random_get', 20, 50)
      return Buffer.from(new Uint8Array(mem.buffer, 0, 70)).toString('hex')
    }
    assert.equal(draw('job-a'), draw('job-a'))
    assert.notEqual(draw('job-a'), draw('job-b'))
  })

  it('answers ENOSYS for signals, ENOTSOCK for sockets on a descriptor that exists, and 0 for sched_yield', () => {
    const { call } = shimWith()
    assert.equal(call('proc_raise', 9), Errno.nosys)
    assert.equal(call('sock_accept', 0, 0, 0), Errno.notsock)
    assert.equal(call('sock_shutdown', 1, 0), Errno.notsock)
    assert.equal(call('sock_recv', 7, 0, 0, 0, 0, 0), Errno.badf)
    assert.equal(call('sched_yield'), Errno.success)
  })

  it('implements every preview1 function', () => {
    const { shim } = shimWith()
    for (const name of Object.keys(WASI_SIGNATURES)) assert.equal(typeof shim.functions[name], 'function', name)
  })

  it('ends the run with the exit code on proc_exit', () => {
    const { call } = shimWith()
    assert.throws(() => call('proc_exit', 3), (err: unknown) => err instanceof WasiExit && err.code === 3)
  })

  it('answers EFAULT instead of throwing when the guest passes a pointer outside its memory', () => {
    const { call } = shimWith()
    assert.equal(call('args_sizes_get', 65535, 0), Errno.fault)
    assert.equal(call('random_get', -16, 64), Errno.fault) // i32 arrives signed: -16 is 0xfffffff0
  })

  it('links every WASI import of a real C program', () => {
    const module = new WebAssembly.Module(fixture('clock-random'))
    const { shim } = shimWith()
    const imports = shim.importsFor(module)
    for (const imp of WebAssembly.Module.imports(module)) assert.equal(typeof imports[imp.module][imp.name], 'function', imp.name)
  })
})
