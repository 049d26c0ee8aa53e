import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { CLI_DOCS, REGENERATE, renderCliDocs } from '../../scripts/gen-cli-docs.ts'
import { commands } from '../../src/daemon/commands/index.ts'

describe('docs/cli.md', () => {
  it('is what the commands\' help texts and flag tables generate', async () => {
    const expected = await renderCliDocs()
    assert.equal(readFileSync(CLI_DOCS, 'utf8'), expected, `docs/cli.md is out of date with the CLI's help texts: run \`${REGENERATE}\` and commit docs/cli.md`)
  })

  it('has a section for every command', async () => {
    const text = readFileSync(CLI_DOCS, 'utf8')
    for (const name of Object.keys(commands)) assert.match(text, new RegExp(`^## worldcompute ${name}$`, 'm'), `no section for ${name}`)
  })
})
