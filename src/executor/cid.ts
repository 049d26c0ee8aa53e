/**
 * CIDv1 of raw bytes hashed with sha2-256, in its base32 string form (`bafkrei…`).
 *
 * Built by hand from node:crypto so that src/executor/ depends on nothing but
 * src/core/ and node builtins (the sandbox process reads only those folders
 * under --permission). The test suite checks it against the `multiformats`
 * package byte for byte.
 *
 * Layout (https://github.com/multiformats/cid, multicodec table):
 *   <version 0x01> <codec raw 0x55> <multihash: fn sha2-256 0x12> <length 0x20> <32-byte digest>
 * All four header values are below 0x80, so each is a one-byte varint.
 */

import { createHash } from 'node:crypto'

const CID_VERSION = 0x01
const RAW_CODEC = 0x55
const SHA2_256 = 0x12
const SHA2_256_LENGTH = 32

/** RFC 4648 base32, lower case, as multibase 'b' uses it. */
const BASE32_ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567'

/** RFC 4648 base32 without padding (multibase 'b' omits '='). */
export function base32Encode (bytes: Uint8Array): string {
  let out = ''
  let buffer = 0
  let bits = 0
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte
    bits += 8
    while (bits >= 5) {
      bits -= 5
      out += BASE32_ALPHABET[(buffer >>> bits) & 31]
    }
    // keep only the bits not yet emitted, so `buffer` never overflows 32 bits
    buffer &= (1 << bits) - 1
  }
  if (bits > 0) out += BASE32_ALPHABET[(buffer << (5 - bits)) & 31]
  return out
}

/** The binary CID: header bytes followed by the sha2-256 digest. */
export function cidBytesForBytes (bytes: Uint8Array): Uint8Array {
  const digest = createHash('sha256').update(bytes).digest()
  const cid = new Uint8Array(4 + SHA2_256_LENGTH)
  cid.set([CID_VERSION, RAW_CODEC, SHA2_256, SHA2_256_LENGTH], 0)
  cid.set(digest, 4)
  return cid
}

/** The CIDv1 (raw, sha2-256) of `bytes` as a multibase base32 string, e.g. `bafkrei…`. */
export function cidForBytes (bytes: Uint8Array): string {
  return 'b' + base32Encode(cidBytesForBytes(bytes))
}
