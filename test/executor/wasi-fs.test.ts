import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { JobDir } from '../../src/core/job.ts'
import { Errno, EventType, FdFlags, FileType, OFlags, Rights } from '../../src/executor/wasi-abi.ts'
import { MAX_OPEN_FDS } from '../../src/executor/wasi-fds.ts'
import { FS_ENTRY_BYTES, checkPreopens, compareBytes } from '../../src/executor/wasi-fs.ts'
import { VIRTUAL_CLOCK_STEP_NS, VIRTUAL_EPOCH_NS, WasiShim, type WasiShimInit } from '../../src/executor/wasi-shim.ts'

type Fn = (...args: Array<number | bigint>) => number

const encoder = new TextEncoder()
const decoder = new TextDecoder()
/** where the tests put strings and iovecs in guest memory; results go at OUT */
const PATH = 1024
const IOV = 512
const DATA = 4096
const OUT = 64
const PATH2 = 1536

function dir (files: Record<string, string>, emptyDirs: string[] = []): JobDir {
  return { guest: '/data', files: Object.entries(files).map(([path, text]) => ({ path, data: encoder.encode(text) })), emptyDirs }
}

function fsShim (preopens: JobDir[], init: Partial<WasiShimInit> = {}): {
  shim: WasiShim
  mem: WebAssembly.Memory
  call: (name: string, ...args: Array<number | bigint>) => number
  u32: (at: number) => number
  u64: (at: number) => bigint
  open: (path: string, oflags?: number, fdflags?: number, rights?: bigint) => number
  path: (text: string, at?: number) => [number, number]
  write: (fd: number, text: string) => number
  read: (fd: number, len: number) => string
} {
  const shim = new WasiShim({ args: ['main.wasm'], env: [], stdin: encoder.encode('input'), outputLimit: 1 << 20, randomSeed: 'job-1', preopens, ...init })
  const mem = new WebAssembly.Memory({ initial: 1 })
  shim.attach(mem)
  const view = (): DataView => new DataView(mem.buffer)
  const call = (name: string, ...args: Array<number | bigint>): number => (shim.functions[name] as Fn)(...args)
  const path = (text: string, at = PATH): [number, number] => {
    const bytes = encoder.encode(text)
    new Uint8Array(mem.buffer).set(bytes, at)
    return [at, bytes.length]
  }
  const open = (p: string, oflags = 0, fdflags = 0, rights = Rights.fdRead | Rights.fdWrite | Rights.fdSeek | Rights.fdTell | Rights.fdFilestatGet | Rights.fdFilestatSetSize | Rights.fdReaddir): number => {
    const errno = call('path_open', 3, 0, ...path(p), oflags, rights, rights, fdflags, OUT)
    return errno === Errno.success ? view().getUint32(OUT, true) : -errno
  }
  const write = (fd: number, text: string): number => {
    const bytes = encoder.encode(text)
    new Uint8Array(mem.buffer).set(bytes, DATA)
    view().setUint32(IOV, DATA, true)
    view().setUint32(IOV + 4, bytes.length, true)
    return call('fd_write', fd, IOV, 1, OUT)
  }
  const read = (fd: number, len: number): string => {
    view().setUint32(IOV, DATA, true)
    view().setUint32(IOV + 4, len, true)
    assert.equal(call('fd_read', fd, IOV, 1, OUT), Errno.success)
    return decoder.decode(new Uint8Array(mem.buffer, DATA, view().getUint32(OUT, true)))
  }
  return { shim, mem, call, u32: at => view().getUint32(at, true), u64: at => view().getBigUint64(at, true), open, path, write, read }
}

describe('the WASI shim filesystem', () => {
  it('preopens each directory from fd 3 with its guest path', () => {
    const { call, u32 } = fsShim([dir({ '/data/a': 'x' }), { guest: '/out', files: [] }])
    assert.equal(call('fd_prestat_get', 4, OUT), Errno.success)
    assert.equal(u32(OUT + 4), '/out'.length)
    assert.equal(call('fd_prestat_get', 5, OUT), Errno.badf)
  })

  it('reads the submitted files and never writes to the submitted bytes (copy-on-write)', () => {
    const request = dir({ '/data/in/a.txt': 'hello' })
    const { shim, open, read, write } = fsShim([request])
    const fd = open('in/a.txt')
    assert.equal(read(fd, 100), 'hello')
    const rw = open('in/a.txt')
    assert.equal(write(rw, 'J'), Errno.success)
    assert.equal(decoder.decode(request.files[0].data), 'hello')
    assert.deepEqual(shim.fileChanges()?.files.map(f => [f.path, decoder.decode(f.data)]), [['/data/in/a.txt', 'Jello']])
  })

  it('returns new and changed files sorted by path bytes, and the removed ones', () => {
    const { shim, call, open, write, path } = fsShim([dir({ '/data/keep': 'same', '/data/drop': 'x', '/data/edit': 'old' })])
    assert.equal(write(open('\u{1F600}', OFlags.creat), 'emoji'), Errno.success)
    assert.equal(write(open('\uFF5E', OFlags.creat), 'fullwidth tilde'), Errno.success)
    assert.equal(write(open('edit', OFlags.trunc), 'new'), Errno.success)
    assert.equal(call('path_unlink_file', 3, ...path('drop')), Errno.success)
    const changes = shim.fileChanges()
    // UTF-8 byte order puts U+FF5E (ef bd be) before U+1F600 (f0 9f 98 80); UTF-16 order would not
    assert.deepEqual(changes?.files.map(f => f.path), ['/data/edit', '/data/\uFF5E', '/data/\u{1F600}'])
    assert.deepEqual(changes?.removedFiles, ['/data/drop'])
    assert.ok(compareBytes('\uFF5E', '\u{1F600}') < 0)
  })

  it('lists directories in name-byte order with deterministic inode numbers', () => {
    const listing = (files: Record<string, string>): Array<[string, bigint]> => {
      const { call, u32, open, mem } = fsShim([dir(files)])
      const fd = open('.', OFlags.directory, 0, Rights.fdReaddir)
      assert.equal(call('fd_readdir', fd, DATA, 2048, 0n, OUT), Errno.success)
      return direntsAt(mem, DATA, u32(OUT))
    }
    const a = listing({ '/data/b': '1', '/data/a': '2', '/data/c/d': '3' })
    const b = listing({ '/data/c/d': '3', '/data/a': '2', '/data/b': '1' })
    assert.deepEqual(a.map(e => e[0]), ['.', '..', 'a', 'b', 'c'])
    assert.deepEqual(a, b)
  })

  it('refuses paths that leave the preopen: absolute, through .., or through a symbolic link', () => {
    const { call, open, path } = fsShim([dir({ '/data/a': 'x' })])
    assert.equal(open('/etc/passwd'), -Errno.notcapable)
    assert.equal(open('../etc/passwd'), -Errno.notcapable)
    assert.equal(open('sub/../../a'), -Errno.noent)
    assert.equal(call('path_symlink', ...path('../..', PATH2), 3, ...path('up')), Errno.success)
    assert.equal(open('up/etc', 0, 0), -Errno.notcapable)
  })

  it('follows a relative symbolic link from a directory that was renamed', () => {
    const { call, open, read, path } = fsShim([dir({ '/data/x': 'found', '/data/a/keep': '' })])
    assert.equal(call('path_symlink', ...path('..', PATH2), 3, ...path('a/up')), Errno.success)
    assert.equal(call('path_rename', 3, ...path('a', PATH2), 3, ...path('b')), Errno.success)
    assert.equal(read(open('b/up/x'), 100), 'found')
    assert.equal(open('a/up/x'), -Errno.noent)
    assert.equal(open('b/up/up'), -Errno.noent)
  })

  it('answers ENOSPC when the job grows the overlay past its budget', () => {
    const { open, write, call } = fsShim([dir({})], { filesystemLimit: 2 * FS_ENTRY_BYTES + 10 })
    // the preopen's root and the file are one entry each
    const fd = open('f', OFlags.creat)
    assert.equal(write(fd, '0123456789'), Errno.success)
    assert.equal(write(fd, 'more'), Errno.nospc)
    assert.equal(call('fd_filestat_set_size', fd, 2n), Errno.success)
    assert.equal(call('fd_seek', fd, 2n, 0, OUT), Errno.success)
    assert.equal(write(fd, 'eight by'), Errno.success, 'truncating gives the bytes back')
  })

  it('bounds the number of entries: creating files and directories ends in ENOSPC, and removing one makes room', () => {
    const { call, open, path } = fsShim([dir({})], { filesystemLimit: 100 * FS_ENTRY_BYTES })
    const create = (i: number): number => i % 2 === 0
      ? call('path_create_directory', 3, ...path(`d${i}`))
      : Math.max(0, -open(`f${i}`, OFlags.creat))
    let made = 0
    let errno: number = Errno.success
    while (errno === Errno.success && made < 1000) {
      errno = create(made)
      if (errno === Errno.success) made++
    }
    assert.equal(errno, Errno.nospc)
    assert.equal(made, 99, 'the root is the hundredth entry')
    assert.equal(call('path_remove_directory', 3, ...path('d0')), Errno.success)
    assert.equal(call('path_create_directory', 3, ...path('again')), Errno.success)
  })

  it('bounds the open descriptors: one past MAX_OPEN_FDS is EMFILE, and closing one makes room', () => {
    const { call, open } = fsShim([dir({ '/data/a': 'x' })])
    let last = 0
    for (let i = 4; i < MAX_OPEN_FDS; i++) last = open('a')
    assert.equal(last, MAX_OPEN_FDS - 1)
    assert.equal(open('a'), -Errno.mfile)
    assert.equal(call('fd_close', 100), Errno.success)
    assert.equal(open('a'), 100, 'the lowest free number is taken again')
  })

  it('appends with FDFLAGS_APPEND and checks rights', () => {
    const { shim, open, write } = fsShim([dir({ '/data/log': 'a\n' })])
    assert.equal(write(open('log', 0, FdFlags.append), 'b\n'), Errno.success)
    assert.equal(decoder.decode(shim.fileChanges()?.files[0].data), 'a\nb\n')
    assert.equal(write(open('log', 0, 0, Rights.fdRead), 'c'), Errno.badf)
    assert.equal(open('log', OFlags.directory), -Errno.notdir)
    assert.equal(open('log', OFlags.creat | OFlags.excl), -Errno.exist)
  })

  it('renumbers descriptors and lets stdio change its flags', () => {
    const { call, open, read } = fsShim([dir({ '/data/a': 'from a' })])
    const fd = open('a')
    assert.equal(call('fd_renumber', fd, 0), Errno.success)
    assert.equal(read(0, 100), 'from a')
    assert.equal(call('fd_renumber', fd, 0), Errno.badf)
    assert.equal(call('fd_fdstat_set_flags', 1, FdFlags.nonblock), Errno.success)
    assert.equal(call('fd_fdstat_get', 1, OUT), Errno.success)
  })

  it('reports stdio and files ready in poll_oneoff and advances the virtual clock for a sleep', () => {
    const { call, u32, u64, mem } = fsShim([dir({})])
    const subs = subscriptions(mem, DATA)
    // a 2 s relative sleep alone: fires at once, the clock 2 s later
    subs.clock(0, 7n, 2_000_000_000n)
    assert.equal(call('poll_oneoff', DATA, OUT + 256, 1, OUT), Errno.success)
    assert.equal(u32(OUT), 1)
    assert.equal(u64(OUT + 256), 7n)
    assert.equal(call('clock_time_get', 1, 0n, OUT), Errno.success)
    assert.equal(u64(OUT), 2_000_000_000n + VIRTUAL_CLOCK_STEP_NS)
    // stdin ready beats the sleep: no time passes
    subs.clock(0, 1n, 5_000_000_000n)
    subs.fd(1, 2n, EventType.fdRead, 0)
    assert.equal(call('poll_oneoff', DATA, OUT + 256, 2, OUT), Errno.success)
    assert.equal(u32(OUT), 1)
    assert.equal(u64(OUT + 256), 2n)
    assert.equal(u64(OUT + 256 + 16), BigInt('input'.length))
    assert.equal(call('clock_time_get', 0, 0n, OUT), Errno.success)
    assert.equal(u64(OUT), VIRTUAL_EPOCH_NS + 2_000_000_000n + 2n * VIRTUAL_CLOCK_STEP_NS)
  })

  it('describes files and directories in filestat with virtual-clock times', () => {
    const { call, u64, path } = fsShim([dir({ '/data/a': 'abc' }, ['/data/empty'])])
    assert.equal(call('path_filestat_get', 3, 0, ...path('a'), OUT), Errno.success)
    assert.equal(u64(OUT + 32), 3n)
    assert.equal(u64(OUT + 48), VIRTUAL_EPOCH_NS)
    assert.equal(call('path_filestat_get', 3, 0, ...path('empty'), OUT), Errno.success)
    assert.equal(Number(u64(OUT + 16) & 0xffn), FileType.directory)
  })
})

/** The dirents fd_readdir wrote at `at`: name and inode of each. */
function direntsAt (mem: WebAssembly.Memory, at: number, used: number): Array<[string, bigint]> {
  const v = new DataView(mem.buffer, at, used)
  const out: Array<[string, bigint]> = []
  for (let p = 0; p + 24 <= used;) {
    const len = v.getUint32(p + 16, true)
    out.push([decoder.decode(new Uint8Array(mem.buffer, at + p + 24, len)), v.getBigUint64(p + 8, true)])
    p += 24 + len
  }
  return out
}

/** Writes poll_oneoff subscriptions (48 bytes each) from `at`: the first call writes the first. */
function subscriptions (mem: WebAssembly.Memory, at: number): { clock: (i: number, userdata: bigint, ns: bigint) => void, fd: (i: number, userdata: bigint, type: number, fd: number) => void } {
  const v = new DataView(mem.buffer)
  return {
    clock: (i, userdata, ns) => {
      new Uint8Array(mem.buffer, at + i * 48, 48).fill(0)
      v.setBigUint64(at + i * 48, userdata, true)
      v.setUint8(at + i * 48 + 8, EventType.clock)
      v.setUint32(at + i * 48 + 16, 1, true) // monotonic
      v.setBigUint64(at + i * 48 + 24, ns, true)
    },
    fd: (i, userdata, type, fd) => {
      new Uint8Array(mem.buffer, at + i * 48, 48).fill(0)
      v.setBigUint64(at + i * 48, userdata, true)
      v.setUint8(at + i * 48 + 8, type)
      v.setUint32(at + i * 48 + 16, fd, true)
    }
  }
}

describe('checkPreopens', () => {
  it('accepts well-formed preopens and names what is wrong with others', () => {
    assert.equal(checkPreopens([dir({ '/data/a/b': '' }, ['/data/c'])]), undefined)
    assert.match(checkPreopens([{ guest: 'data', files: [] }]) ?? '', /absolute, normalised guest path/)
    assert.match(checkPreopens([dir({ '/data/../x': '' })]) ?? '', /not a normalised path under it/)
    assert.match(checkPreopens([dir({ '/data/a': '', '/data/a/b': '' })]) ?? '', /\/data\/a is both a file and a directory/)
    assert.match(checkPreopens([dir({}), dir({})]) ?? '', /given twice/)
    // an empty directory under a file: refused here, where it would otherwise fail the run as an executor error
    assert.match(checkPreopens([dir({ '/data/a': '' }, ['/data/a/b'])]) ?? '', /\/data\/a is both a file and a directory \(\/data\/a\/b is under it\)/)
    // a preopen inside another: a job could write one guest path through both
    assert.match(checkPreopens([{ guest: '/data', files: [] }, { guest: '/data/sub', files: [] }]) ?? '', /preopen \/data\/sub lies inside preopen \/data/)
    assert.equal(checkPreopens([{ guest: '/data', files: [] }, { guest: '/database', files: [] }]), undefined)
  })
})
