import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { loadOrCreateIdentity } from '../../src/config/identity.ts'
import { dataDirPaths } from '../../src/config/data-dir.ts'
import { IdentityError } from '../../src/core/errors.ts'

let root: string
let counter = 0

function newDataDir (): string {
  return join(root, `data-${counter++}`)
}

function modeOf (path: string): number {
  return statSync(path).mode & 0o777
}

before(() => {
  root = mkdtempSync(join(tmpdir(), 'wc-identity-test-'))
})

after(() => {
  rmSync(root, { recursive: true, force: true })
})

describe('loadOrCreateIdentity', () => {
  it('creates an Ed25519 key file with mode 0600 on first use', async () => {
    const dir = newDataDir()
    const id = await loadOrCreateIdentity(dir)
    assert.equal(id.created, true)
    assert.equal(id.path, dataDirPaths(dir).identityKey)
    assert.equal(id.privateKey.type, 'Ed25519')
    assert.equal(id.peerId.type, 'Ed25519')
    assert.ok(existsSync(id.path))
    assert.equal(modeOf(id.path), 0o600)
    assert.deepEqual(new Uint8Array(readFileSync(id.path)), privateKeyToProtobuf(id.privateKey))
  })

  it('creates the data directory with mode 0700', async () => {
    const dir = newDataDir()
    await loadOrCreateIdentity(dir)
    assert.equal(modeOf(dir), 0o700)
  })

  it('gives the same PeerId on a second call for the same directory', async () => {
    const dir = newDataDir()
    const first = await loadOrCreateIdentity(dir)
    const second = await loadOrCreateIdentity(dir)
    assert.equal(second.created, false)
    assert.equal(second.peerId.toString(), first.peerId.toString())
    assert.ok(second.privateKey.equals(first.privateKey))
  })

  it('gives different PeerIds for different directories', async () => {
    const a = await loadOrCreateIdentity(newDataDir())
    const b = await loadOrCreateIdentity(newDataDir())
    assert.notEqual(a.peerId.toString(), b.peerId.toString())
  })

  it('loads a key written by someone else into the same PeerId', async () => {
    const dir = newDataDir()
    await loadOrCreateIdentity(dir)
    const key = await generateKeyPair('Ed25519')
    writeFileSync(dataDirPaths(dir).identityKey, privateKeyToProtobuf(key), { mode: 0o600 })
    const id = await loadOrCreateIdentity(dir)
    assert.equal(id.created, false)
    assert.ok(id.privateKey.equals(key))
  })

  it('rejects a corrupt key file with an IdentityError that says what to do', async () => {
    const dir = newDataDir()
    await loadOrCreateIdentity(dir)
    const path = dataDirPaths(dir).identityKey
    writeFileSync(path, Buffer.from('this is not a protobuf key'))
    await assert.rejects(loadOrCreateIdentity(dir), (err: unknown) => {
      assert.ok(err instanceof IdentityError, `expected IdentityError, got ${String(err)}`)
      assert.equal(err.code, 'IDENTITY_INVALID')
      assert.ok(err.message.includes(path), `message should name the file: ${err.message}`)
      assert.match(err.message, /corrupt/)
      assert.match(err.message, /move it away|restore it from a backup/)
      return true
    })
    // the corrupt file is left for the user to inspect, not silently replaced
    assert.equal(readFileSync(path, 'utf8'), 'this is not a protobuf key')
  })

  it('rejects a key that is not Ed25519', async () => {
    const dir = newDataDir()
    await loadOrCreateIdentity(dir)
    const path = dataDirPaths(dir).identityKey
    writeFileSync(path, privateKeyToProtobuf(await generateKeyPair('secp256k1')))
    await assert.rejects(loadOrCreateIdentity(dir), (err: unknown) =>
      err instanceof IdentityError && err.message.includes('secp256k1') && err.message.includes('Ed25519'))
  })

  it('fixes a key file with a wider mode back to 0600', async () => {
    const dir = newDataDir()
    const first = await loadOrCreateIdentity(dir)
    chmodSync(first.path, 0o644)
    assert.equal(modeOf(first.path), 0o644)
    const second = await loadOrCreateIdentity(dir)
    assert.equal(second.peerId.toString(), first.peerId.toString())
    assert.equal(modeOf(first.path), 0o600)
  })
})
