import assert from 'node:assert/strict'
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { loadOrCreateIdentity } from '../../src/config/identity.ts'
import { peerIdFromKeyFile } from '../../src/config/peer-id-file.ts'

describe('peerIdFromKeyFile', () => {
  const dirs: string[] = []
  const tempDir = (): string => {
    const dir = mkdtempSync(join(tmpdir(), 'wc-peerid-'))
    dirs.push(dir)
    return dir
  }
  after(() => { for (const dir of dirs) rmSync(dir, { recursive: true, force: true }) })

  it('gives the PeerId libp2p computes for the same key, without loading the crypto stack', async () => {
    for (let i = 0; i < 5; i++) {
      const dir = tempDir()
      const identity = await loadOrCreateIdentity(dir)
      assert.equal(peerIdFromKeyFile(identity.path), identity.peerId.toString())
    }
  })

  it('leaves a missing, corrupt or foreign key file to the full path, and narrows a loose mode', async () => {
    const dir = tempDir()
    assert.equal(peerIdFromKeyFile(join(dir, 'absent.key')), undefined)
    const bad = join(dir, 'bad.key')
    writeFileSync(bad, Buffer.from('not a key'))
    assert.equal(peerIdFromKeyFile(bad), undefined)
    const identity = await loadOrCreateIdentity(dir)
    chmodSync(identity.path, 0o644)
    assert.equal(peerIdFromKeyFile(identity.path), identity.peerId.toString())
    assert.equal(statSync(identity.path).mode & 0o777, 0o600)
  })
})
