import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync, linkSync, rmSync, chmodSync, statSync } from 'node:fs'
import { IdentityError } from '../core/errors.ts'
import { ensureDataDir } from './data-dir.ts'
import type { PrivateKey, PeerId } from '@libp2p/interface'

export interface Identity {
  privateKey: PrivateKey
  peerId: PeerId
  /** true when this call created the key */
  created: boolean
  path: string
}

/**
 * Loads the Ed25519 identity of a data directory, creating it on first use.
 * The same directory always yields the same PeerId: the earlier
 * implementation's identity changed at every start, so peers could never
 * remember a donor.
 */
export async function loadOrCreateIdentity (dataDir: string): Promise<Identity> {
  const paths = ensureDataDir(dataDir)
  let bytes: Uint8Array | undefined
  try {
    bytes = readFileSync(paths.identityKey)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new IdentityError(`cannot read identity key ${paths.identityKey}: ${(err as Error).message}`, { cause: err })
    }
  }
  if (bytes != null) {
    let privateKey: PrivateKey
    try {
      privateKey = privateKeyFromProtobuf(bytes)
    } catch (err) {
      throw new IdentityError(`identity key ${paths.identityKey} is corrupt (${(err as Error).message}); move it away to create a new identity, or restore it from a backup`, { cause: err })
    }
    if (privateKey.type !== 'Ed25519') {
      throw new IdentityError(`identity key ${paths.identityKey} is ${privateKey.type}, expected Ed25519`)
    }
    const mode = statSync(paths.identityKey).mode & 0o777
    if (mode !== 0o600) chmodSync(paths.identityKey, 0o600)
    return { privateKey, peerId: peerIdFromPrivateKey(privateKey), created: false, path: paths.identityKey }
  }
  const privateKey = await generateKeyPair('Ed25519')
  // write-then-rename so a crash never leaves a half-written key behind
  // write a private temp file, then link it into place: link fails if another
  // process created the key meanwhile, and then we use theirs instead of
  // replacing it (two PeerIds for one data dir would be the bug we exist to fix)
  const tmp = `${paths.identityKey}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`
  try {
    writeFileSync(tmp, privateKeyToProtobuf(privateKey), { mode: 0o600, flag: 'wx' })
    try {
      linkSync(tmp, paths.identityKey)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return await loadOrCreateIdentity(dataDir)
      throw err
    }
  } catch (err) {
    throw new IdentityError(`cannot write identity key ${paths.identityKey}: ${(err as Error).message}`, { cause: err })
  } finally {
    rmSync(tmp, { force: true })
  }
  return { privateKey, peerId: peerIdFromPrivateKey(privateKey), created: true, path: paths.identityKey }
}
