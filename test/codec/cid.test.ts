import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import * as dagCbor from '@ipld/dag-cbor'
import { base58btc } from 'multiformats/bases/base58'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { dagCborCid, dagCborCidString, parseCid, rawCid, rawCidString, verifyDagCborCid, verifyRawCid } from '../../src/codec/cid.ts'
import { encodeOutput, outputCid } from '../../src/codec/receipt.ts'

const bytes = new TextEncoder().encode('hello world compute')

describe('cid', () => {
  it('builds the same raw CID as multiformats does', async () => {
    const expected = CID.createV1(raw.code, await sha256.digest(bytes))
    assert.ok(rawCid(bytes).equals(expected))
    assert.equal(rawCidString(bytes), expected.toString())
    assert.ok(rawCidString(bytes).startsWith('bafkrei'), 'CIDv1 raw sha2-256 in base32')
  })

  it('builds the same dag-cbor CID as multiformats does', async () => {
    const doc = dagCbor.encode({ a: 1 })
    const expected = CID.createV1(dagCbor.code, await sha256.digest(doc))
    assert.ok(dagCborCid(doc).equals(expected))
    assert.equal(dagCborCidString(doc), expected.toString())
  })

  it('verifies raw bytes against their CID in any multibase spelling', () => {
    const cid = rawCid(bytes)
    assert.equal(verifyRawCid(bytes, cid.toString()), true)
    assert.equal(verifyRawCid(bytes, cid.toString(base58btc)), true)
  })

  it('refuses other bytes, other codecs, CIDv0 and strings that are not CIDs', () => {
    const cid = rawCidString(bytes)
    assert.equal(verifyRawCid(new TextEncoder().encode('other'), cid), false)
    assert.equal(verifyRawCid(bytes, dagCborCidString(bytes)), false)
    assert.equal(verifyRawCid(bytes, 'QmPZ9gcCEpqKTo6aq61g2nXGUhM4iCL3ewB6LDXZCtioEB'), false)
    assert.equal(verifyRawCid(bytes, 'not a cid'), false)
    assert.equal(verifyDagCborCid(bytes, dagCborCidString(bytes)), true)
    assert.equal(verifyDagCborCid(bytes, cid), false)
    assert.equal(parseCid('nope'), undefined)
  })

  it('addresses output as the dag-cbor CID of { stdout, stderr }', () => {
    const stdout = new TextEncoder().encode('OUT')
    const stderr = new TextEncoder().encode('err')
    const doc = encodeOutput(stdout, stderr)
    assert.deepEqual(dagCbor.decode(doc), { stdout, stderr })
    assert.equal(outputCid(stdout, stderr), dagCborCidString(doc))
    assert.notEqual(outputCid(stderr, stdout), outputCid(stdout, stderr), 'stdout and stderr are not interchangeable')
  })
})
