import assert from 'node:assert/strict'
import { appendFileSync, chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { DirArgError, parseDirArg, readDirTrees } from '../../src/cli/dir-args.ts'

const MiB = 1024 * 1024

function dirError (field: RegExp) {
  return (err: unknown) => err instanceof DirArgError && err.code === 'DIR_INVALID' && field.test(err.message)
}

describe('--dir HOST[::GUEST]', () => {
  it('maps HOST to GUEST, wasmtime\'s spelling', () => {
    assert.deepEqual(parseDirArg('./in::/data'), { host: './in', guest: '/data' })
    assert.deepEqual(parseDirArg('in::/data//sub/'), { host: 'in', guest: '/data/sub' })
  })

  it('defaults GUEST to HOST as given, made absolute', () => {
    assert.deepEqual(parseDirArg('data'), { host: 'data', guest: '/data' })
    assert.deepEqual(parseDirArg('./data/in'), { host: './data/in', guest: '/data/in' })
    assert.deepEqual(parseDirArg('/srv/in'), { host: '/srv/in', guest: '/srv/in' })
  })

  it('refuses a relative GUEST, "..", and empty parts, quoting the value', () => {
    assert.throws(() => parseDirArg('in::data'), dirError(/"in::data".*absolute/))
    assert.throws(() => parseDirArg('in::/a/../b'), dirError(/"in::\/a\/..\/b".*\.\./))
    assert.throws(() => parseDirArg('../in'), dirError(/\.\./))
    assert.throws(() => parseDirArg('::/data'), dirError(/host directory is missing/))
    assert.throws(() => parseDirArg('in::'), dirError(/guest directory/))
  })
})

describe('reading a --dir tree', () => {
  let root: string
  before(() => { root = mkdtempSync(join(tmpdir(), 'wc-dir-args-')) })
  after(() => { rmSync(root, { recursive: true, force: true }) })

  function tree (name: string): string {
    const dir = join(root, name)
    mkdirSync(join(dir, 'sub', 'deeper'), { recursive: true })
    mkdirSync(join(dir, 'empty', 'inner'), { recursive: true })
    writeFileSync(join(dir, 'a.txt'), 'alpha')
    writeFileSync(join(dir, 'sub', 'deeper', 'b.bin'), Buffer.from([0, 1, 2]))
    return dir
  }

  it('reads regular files and empty directories at their guest paths, leaving the host tree as it was', async () => {
    const host = tree('plain')
    const [dir] = await readDirTrees([{ host, guest: '/data' }], { maxBytes: MiB })
    assert.equal(dir.guest, '/data')
    assert.deepEqual(dir.files.map(f => [f.path, [...f.data]]), [['/data/a.txt', [...Buffer.from('alpha')]], ['/data/sub/deeper/b.bin', [0, 1, 2]]])
    assert.deepEqual(dir.emptyDirs, ['/data/empty/inner'])
    assert.equal(readFileSync(join(host, 'a.txt'), 'utf8'), 'alpha')
  })

  it('names a missing directory', async () => {
    await assert.rejects(readDirTrees([{ host: join(root, 'nope'), guest: '/x' }], { maxBytes: MiB }), dirError(/nope: no such directory/))
  })

  it('refuses a symbolic link in the tree, naming it', async () => {
    const host = tree('linked')
    symlinkSync('/etc/passwd', join(host, 'sub', 'escape'))
    await assert.rejects(readDirTrees([{ host, guest: '/d' }], { maxBytes: MiB }), dirError(/sub\/escape is a symbolic link/))
  })

  it('refuses a file that changes while it is read, naming it', async () => {
    const host = tree('changing')
    const target = join(host, 'a.txt')
    const afterRead = async (path: string): Promise<void> => { if (path === target) appendFileSync(target, ' and more') }
    await assert.rejects(readDirTrees([{ host, guest: '/d' }], { maxBytes: MiB, afterRead }), dirError(/a\.txt changed while it was read/))
  })

  it('refuses an unreadable file, naming it', { skip: process.getuid?.() === 0 ? 'root reads any file' : false }, async () => {
    const host = tree('locked')
    chmodSync(join(host, 'a.txt'), 0o000)
    await assert.rejects(readDirTrees([{ host, guest: '/d' }], { maxBytes: MiB }), dirError(/cannot read .*a\.txt \(EACCES\)/))
  })

  it('stops at the payload limit, naming the file that crosses it', async () => {
    const host = tree('big')
    await assert.rejects(readDirTrees([{ host, guest: '/d' }], { maxBytes: 6 }), dirError(/b\.bin \(3 bytes\) takes the job's directories over the 6-byte payload limit/))
  })

  it('refuses two directories at one guest path', async () => {
    const host = tree('twice')
    await assert.rejects(readDirTrees([{ host, guest: '/d' }, { host, guest: '/d' }], { maxBytes: MiB }), dirError(/two directories are preopened at \/d/))
  })

  it('refuses a directory preopened inside another, before reading either', async () => {
    const host = tree('nested')
    await assert.rejects(readDirTrees([{ host, guest: '/d/in' }, { host, guest: '/d' }], { maxBytes: MiB }), dirError(/--dir: \/d\/in lies inside \/d, which is preopened too/))
    assert.equal((await readDirTrees([{ host, guest: '/d' }, { host, guest: '/db' }], { maxBytes: MiB })).length, 2)
  })
})
