import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, it } from 'node:test'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { base32Encode, cidBytesForBytes, cidForBytes } from '../../src/executor/cid.ts'
import { fixture } from './helpers/fixtures.ts'

async function reference (bytes: Uint8Array): Promise<CID> {
  return CID.create(1, raw.code, await sha256.digest(bytes))
}

describe('cidForBytes', () => {
  const samples: Array<[string, Uint8Array]> = [
    ['empty input', new Uint8Array(0)],
    ['one byte', new Uint8Array([0x61])],
    ['"hello world"', new TextEncoder().encode('hello world')],
    ['a 1 MiB random blob', new Uint8Array(randomBytes(1 << 20))],
    ['the hello.wasm fixture', fixture('hello')]
  ]
  for (const [label, bytes] of samples) {
    it(`matches multiformats' CIDv1 raw sha2-256 string for ${label}`, async () => {
      const expected = await reference(bytes)
      assert.equal(cidForBytes(bytes), expected.toString())
      assert.deepEqual(cidBytesForBytes(bytes), expected.bytes)
    })
  }

  it('produces bafkrei… strings that multiformats parses back to raw sha2-256', () => {
    const cid = CID.parse(cidForBytes(fixture('primes')))
    assert.equal(cid.version, 1)
    assert.equal(cid.code, raw.code)
    assert.equal(cid.multihash.code, sha256.code)
    assert.match(cid.toString(), /^bafkrei[a-z2-7]+$/)
  })

  it('encodes base32 per RFC 4648 in lower case without padding', () => {
    // RFC 4648 §10 test vectors, lower-cased and unpadded
    const vectors: Array<[string, string]> = [['', ''], ['f', 'my'], ['fo', 'mzxq'], ['foo', 'mzxw6'], ['foob', 'mzxw6yq'], ['fooba', 'mzxw6ytb'], ['foobar', 'mzxw6ytboi']]
    for (const [input, output] of vectors) assert.equal(base32Encode(new TextEncoder().encode(input)), output)
  })
})
