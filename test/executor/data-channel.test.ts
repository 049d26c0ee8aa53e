import assert from 'node:assert/strict'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { openDataChannel } from '../../src/executor/data-channel.ts'

describe('openDataChannel', () => {
  let dir = ''
  let savedTmp: string | undefined
  before(() => {
    // a folder of our own as the temporary folder, so what the channel leaves there shows
    dir = mkdtempSync(join(tmpdir(), 'wc-data-channel-test-'))
    savedTmp = process.env.TMPDIR
    process.env.TMPDIR = dir
  })
  after(() => {
    if (savedTmp === undefined) delete process.env.TMPDIR
    else process.env.TMPDIR = savedTmp
    rmSync(dir, { recursive: true, force: true })
  })

  it('gives two connected ends, the first reading into the buffers its onread gives, and leaves no socket file behind', async () => {
    const into = new Uint8Array(5)
    let fill = 0
    const { ours, theirs } = await openDataChannel({
      buffer: () => into.subarray(fill),
      callback: (n: number) => { fill += n; return true }
    })
    try {
      assert.deepEqual(readdirSync(dir), [], 'the folder and its listener are gone once connected')
      const back: Buffer[] = []
      theirs.on('data', (chunk: Buffer) => { back.push(chunk) })
      theirs.write(Uint8Array.of(1, 2, 3, 4, 5))
      ours.write(Uint8Array.of(9, 8))
      const deadline = Date.now() + 5000
      while ((fill < 5 || Buffer.concat(back).byteLength < 2) && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 5))
      assert.deepEqual([...into], [1, 2, 3, 4, 5])
      assert.deepEqual([...Buffer.concat(back)], [9, 8])
    } finally {
      ours.destroy()
      theirs.destroy()
    }
  })
})
