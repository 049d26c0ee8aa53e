import { readFileSync, statSync, chmodSync } from 'node:fs'
import { base58btc } from 'multiformats/bases/base58'

/**
 * The PeerId of an Ed25519 identity key file, read without loading
 * @libp2p/crypto: `worldcompute id` is a short command, and the crypto
 * stack (~150 modules) is most of its start-up. The formats are libp2p's
 * specification, stable across its versions: the key file is the protobuf
 * `PrivateKey { Type = 1 (Ed25519), Data = seed ‖ public key }`; the PeerId
 * of an Ed25519 key is the identity multihash of the protobuf
 * `PublicKey { Type = 1, Data = public key }`, in base58btc. Anything else
 * (a missing, corrupt or non-Ed25519 file) returns undefined, and the caller
 * takes the full path (config/identity.ts), which creates or explains it.
 */
export function peerIdFromKeyFile (path: string): string | undefined {
  let bytes: Buffer
  try {
    bytes = readFileSync(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  // 08 01: Type = Ed25519; 12 40: Data, 64 bytes
  if (bytes.length !== 68 || bytes[0] !== 0x08 || bytes[1] !== 0x01 || bytes[2] !== 0x12 || bytes[3] !== 0x40) return undefined
  if ((statSync(path).mode & 0o777) !== 0o600) chmodSync(path, 0o600)
  const publicKey = bytes.subarray(36, 68)
  // identity multihash (code 0x00, length 36) of PublicKey { 08 01, 12 20, key }
  const multihash = Buffer.concat([Buffer.from([0x00, 0x24, 0x08, 0x01, 0x12, 0x20]), publicKey])
  return base58btc.baseEncode(multihash)
}
