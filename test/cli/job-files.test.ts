import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, existsSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { preparedDirs, SaveFilesError, saveJobFiles } from '../../src/cli/job-files.ts'
import { UsageError } from '../../src/cli/args.ts'
import { rawCidString } from '../../src/codec/cid.ts'
import type { ApiClient } from '../../src/api/client.ts'
import type { JobFilesResponse } from '../../src/api/routes.ts'

/** The API client's `call`, answering `jobFiles` with fixed files. */
function filesApi (files: Array<[string, string]>, removed: string[] = []): Pick<ApiClient, 'call'> {
  const response: JobFilesResponse = { jobId: 'job-1', files: files.map(([path, text]) => ({ path, size: text.length, cid: 'bafkrei-x', data: Buffer.from(text).toString('base64') })), removed }
  return { call: (async () => response) as Pick<ApiClient, 'call'>['call'] }
}

const quiet = { out: () => {}, err: () => {} }

describe('--save DIR', () => {
  let root: string
  before(() => { root = mkdtempSync(join(tmpdir(), 'wc-save-')) })
  after(() => { rmSync(root, { recursive: true, force: true }) })

  it('writes each file under DIR/<guest path>, creating directories, and lists removed files without deleting', async () => {
    const dir = join(root, 'plain')
    const lines: string[] = []
    await saveJobFiles(filesApi([['/out/result.txt', 'RESULT'], ['/out/deep/er/x.bin', 'x']], ['/data/in.txt']), 'job-1', dir, { out: () => {}, err: l => lines.push(l) })
    assert.equal(readFileSync(join(dir, 'out', 'result.txt'), 'utf8'), 'RESULT')
    assert.equal(readFileSync(join(dir, 'out', 'deep', 'er', 'x.bin'), 'utf8'), 'x')
    assert.ok(lines.some(l => l.includes('/data/in.txt')))
  })

  it('refuses a path that is not a normalised guest path', async () => {
    const dir = join(root, 'dots')
    await assert.rejects(saveJobFiles(filesApi([['/out/../../escape.txt', 'x']]), 'job-1', dir, quiet), (err: unknown) => err instanceof SaveFilesError && err.code === 'SAVE_FILES_FAILED')
    assert.equal(existsSync(join(root, 'escape.txt')), false)
  })

  it('refuses to write through a symbolic link in DIR that leads outside it', async () => {
    const dir = join(root, 'linked')
    const outside = join(root, 'outside')
    mkdirSync(dir, { recursive: true })
    mkdirSync(outside, { recursive: true })
    symlinkSync(outside, join(dir, 'out'))
    await assert.rejects(saveJobFiles(filesApi([['/out/result.txt', 'x']]), 'job-1', dir, quiet), (err: unknown) => err instanceof SaveFilesError && /symbolic link/.test(err.message))
    assert.equal(existsSync(join(outside, 'result.txt')), false)
  })

  it('refuses to overwrite a symbolic link in DIR', async () => {
    const dir = join(root, 'filelink')
    mkdirSync(join(dir, 'out'), { recursive: true })
    symlinkSync(join(root, 'victim.txt'), join(dir, 'out', 'result.txt'))
    await assert.rejects(saveJobFiles(filesApi([['/out/result.txt', 'x']]), 'job-1', dir, quiet), (err: unknown) => err instanceof SaveFilesError && /is a symbolic link/.test(err.message))
    assert.equal(existsSync(join(root, 'victim.txt')), false)
  })
})

describe('--dir files over the upload threshold', () => {
  let root: string
  before(() => { root = mkdtempSync(join(tmpdir(), 'wc-dir-upload-')) })
  after(() => { rmSync(root, { recursive: true, force: true }) })

  it('are uploaded as blobs and named by CID, the small ones staying inline', async () => {
    const host = join(root, 'tree')
    mkdirSync(join(host, 'sub'), { recursive: true })
    writeFileSync(join(host, 'small.txt'), 'small')
    const big = Buffer.alloc(4096, 3)
    writeFileSync(join(host, 'sub', 'big.bin'), big)
    const puts: Array<[string, string]> = []
    const prepared = await preparedDirs([`${host}::/data`], 1024 * 1024, { overBytes: 1024, put: async (cid, path) => { puts.push([cid, path]) } })
    assert.ok(prepared != null)
    assert.deepEqual(puts, [[rawCidString(big), join(host, 'sub', 'big.bin')]])
    const files = prepared.dirs[0].files
    assert.deepEqual(files.find(f => f.path === '/data/sub/big.bin'), { path: '/data/sub/big.bin', data: '', cid: rawCidString(big) })
    assert.equal(files.find(f => f.path === '/data/small.txt')?.data, Buffer.from('small').toString('base64'))
    assert.equal(prepared.bytes, 5 + 4096)
  })

  it('count against the inline payload limit only when sent inline', async () => {
    const host = join(root, 'limit')
    mkdirSync(host, { recursive: true })
    writeFileSync(join(host, 'big.bin'), Buffer.alloc(4096, 1))
    const prepared = await preparedDirs([host], 100, { overBytes: 1024, put: async () => {} })
    assert.equal(prepared?.bytes, 4096)
    await assert.rejects(preparedDirs([host], 100), (err: unknown) => err instanceof UsageError && /over the 100-byte payload limit/.test(err.message))
  })
})
