import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { siblingModuleUrl } from '../../src/core/module-url.ts'

describe('siblingModuleUrl', () => {
  it('keeps .ts for a caller running from the TypeScript sources', () => {
    assert.equal(siblingModuleUrl('./worker.ts', 'file:///repo/src/executor/sandbox-process.ts').href, 'file:///repo/src/executor/worker.ts')
  })

  it('names the .js file for a caller running from the built dist/', () => {
    assert.equal(siblingModuleUrl('../main.ts', 'file:///pkg/dist/daemon/commands/demo.js').href, 'file:///pkg/dist/daemon/main.js')
  })
})
