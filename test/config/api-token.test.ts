import assert from 'node:assert/strict'
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, it } from 'node:test'
import { loadOrCreateToken } from '../../src/api/server.ts'
import { ensureDataDir, type DataDirPaths } from '../../src/config/data-dir.ts'
import { createLogger, configureLogging, resetLogging } from '../../src/log/logger.ts'

const OLD = 'a'.repeat(64)

describe('the api-token file', { skip: process.platform === 'win32' ? 'file modes say nothing on Windows' : false }, () => {
  let dir: string
  let paths: DataDirPaths
  let lines: string[]

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'wc-token-'))
    paths = ensureDataDir(join(dir, 'data'))
    lines = []
    configureLogging({ spec: 'info', sink: (line) => { lines.push(line) } })
  })
  afterEach(() => {
    resetLogging()
    rmSync(dir, { recursive: true, force: true })
  })

  it('is created with mode 0600', () => {
    const token = loadOrCreateToken(paths, createLogger('api'))
    assert.match(token, /^[0-9a-f]{64}$/)
    assert.equal(statSync(paths.apiToken).mode & 0o777, 0o600)
  })

  it('is used as it is when only its owner can read it', () => {
    writeFileSync(paths.apiToken, OLD + '\n', { mode: 0o600 })
    assert.equal(loadOrCreateToken(paths, createLogger('api')), OLD)
    assert.equal(lines.length, 0)
  })

  for (const mode of [0o644, 0o640, 0o604]) {
    it(`is replaced by a new 0600 token, with a warning naming the file and its mode, when it has mode 0${mode.toString(8)}`, () => {
      writeFileSync(paths.apiToken, OLD + '\n')
      chmodSync(paths.apiToken, mode)
      const token = loadOrCreateToken(paths, createLogger('api'))
      assert.notEqual(token, OLD, 'a token others could read is not used')
      assert.equal(readFileSync(paths.apiToken, 'utf8').trim(), token)
      assert.equal(statSync(paths.apiToken).mode & 0o777, 0o600)
      const warning = lines.filter(l => l.includes('code=API_TOKEN_EXPOSED'))
      assert.equal(warning.length, 1)
      assert.ok(warning[0].includes(paths.apiToken) && warning[0].includes(`mode=0${mode.toString(8)}`), warning[0])
    })
  }
})
