import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { SaveFilesError, saveJobFiles } from '../../src/cli/job-files.ts'
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
