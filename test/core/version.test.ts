import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { main } from '../../src/cli/cli.ts'
import type { Output } from '../../src/cli/output.ts'
import { VERSION } from '../../src/core/version.ts'

describe('VERSION', () => {
  it('equals the version in package.json', () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: unknown }
    assert.equal(typeof pkg.version, 'string')
    assert.equal(VERSION, pkg.version)
  })

  for (const flag of ['--version', '-V', 'version']) {
    it(`is what \`worldcompute ${flag}\` prints, alone on stdout, with exit code 0`, async () => {
      const out: string[] = []
      const err: string[] = []
      const o: Output = { out: line => { out.push(line) }, err: line => { err.push(line) } }
      assert.equal(await main([flag], {}, o), 0)
      assert.deepEqual(out, [VERSION])
      assert.deepEqual(err, [])
    })
  }
})
