import assert from 'node:assert/strict'
import { before, describe, it } from 'node:test'
import * as dagCbor from '@ipld/dag-cbor'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { rawCidString } from '../../src/codec/cid.ts'
import { ReceiptInvalidError } from '../../src/codec/errors.ts'
import { decodeReceiptBody, encodeOutput, encodeReceiptBody, outputCid, signReceipt, verifyReceipt } from '../../src/codec/receipt.ts'
import type { PrivateKey } from '@libp2p/interface'
import type { ReceiptBody, SignedReceipt } from '../../src/core/job.ts'

const enc = new TextEncoder()
const stdout = enc.encode('HELLO')
const stderr = enc.encode('')
const moduleCid = rawCidString(enc.encode('module'))
const inputCid = rawCidString(enc.encode('hello'))

let executorKey: PrivateKey
let otherKey: PrivateKey
let executor: string
let other: string
let body: ReceiptBody
let expect: { executor: string, taskId: string, moduleCid: string, inputCid: string, outputBytes: Uint8Array }

async function rejected (receipt: SignedReceipt, expectation: typeof expect, text: RegExp): Promise<void> {
  await assert.rejects(verifyReceipt(receipt, expectation), (err: unknown) => {
    assert.ok(err instanceof ReceiptInvalidError, `expected ReceiptInvalidError, got ${String(err)}`)
    assert.equal(err.code, 'RECEIPT_INVALID')
    assert.match(err.message, text)
    return true
  })
}

describe('receipt', () => {
  before(async () => {
    executorKey = await generateKeyPair('Ed25519')
    otherKey = await generateKeyPair('Ed25519')
    executor = peerIdFromPrivateKey(executorKey).toString()
    other = peerIdFromPrivateKey(otherKey).toString()
    body = { taskId: 'job-1/0', moduleCid, inputCid, outputCid: outputCid(stdout, stderr), status: 'succeeded', exitCode: 0, fuelUsed: 1234, executor }
    expect = { executor, taskId: 'job-1/0', moduleCid, inputCid, outputBytes: encodeOutput(stdout, stderr) }
  })

  it('signs a body that verifies and decodes back to the same fields', async () => {
    const receipt = await signReceipt(executorKey, body)
    assert.deepEqual(decodeReceiptBody(receipt.body), body)
    assert.deepEqual(await verifyReceipt(receipt, expect), body)
    assert.equal(receipt.signature.byteLength, 64)
  })

  it('signs as libp2p\'s own key does, and verifies what libp2p\'s key signed', async () => {
    const receipt = await signReceipt(executorKey, body)
    assert.equal(await executorKey.publicKey.verify(receipt.body, receipt.signature), true)
    assert.deepEqual(receipt.signature, new Uint8Array(await executorKey.sign(receipt.body)), 'Ed25519 signatures are deterministic')
    const signedByLibp2p = { body: receipt.body, signature: await executorKey.sign(receipt.body) }
    assert.deepEqual(await verifyReceipt(signedByLibp2p, expect), body)
    // the same executor again (its key now cached), with the signature of another key: still refused
    await rejected({ body: receipt.body, signature: await otherKey.sign(receipt.body) }, expect, /does not verify/)
  })

  it('encodes a null exit code explicitly', async () => {
    const trapped: ReceiptBody = { ...body, status: 'failed', exitCode: null }
    const decoded = dagCbor.decode(encodeReceiptBody(trapped)) as Record<string, unknown>
    assert.equal(decoded.exitCode, null)
    assert.deepEqual(await verifyReceipt(await signReceipt(executorKey, trapped), expect), trapped)
  })

  it('rejects a body with one byte changed', async () => {
    const receipt = await signReceipt(executorKey, body)
    const tampered = receipt.body.slice()
    // inside the taskId text "job-1/0": still valid dag-cbor, different content
    const at = Buffer.from(tampered).indexOf('job-1/0') + 4
    tampered[at] = '2'.charCodeAt(0)
    await rejected({ body: tampered, signature: receipt.signature }, expect, /signature does not verify/)
  })

  it('rejects a body altered into something that is not a receipt', async () => {
    const receipt = await signReceipt(executorKey, body)
    const tampered = receipt.body.slice()
    tampered[0] = 0x00
    await rejected({ body: tampered, signature: receipt.signature }, expect, /receipt body is malformed/)
  })

  it('rejects a changed signature', async () => {
    const receipt = await signReceipt(executorKey, body)
    const signature = receipt.signature.slice()
    signature[10] ^= 0x01
    await rejected({ body: receipt.body, signature }, expect, /signature does not verify/)
  })

  it('rejects a receipt signed by another key in the executor\'s name', async () => {
    const forged = await signReceipt(otherKey, body)
    await rejected(forged, expect, /signature does not verify with the key of executor/)
  })

  it('rejects a receipt from a peer other than the one dispatched to', async () => {
    const fromOther = await signReceipt(otherKey, { ...body, executor: other })
    await rejected(fromOther, expect, new RegExp(`names executor ${other}`))
  })

  it('rejects an outputCid that does not match the output bytes received', async () => {
    const receipt = await signReceipt(executorKey, body)
    await rejected(receipt, { ...expect, outputBytes: encodeOutput(enc.encode('HELLO!'), stderr) }, /output received hashes to/)
  })

  it('rejects a receipt for another task, module or input', async () => {
    const receipt = await signReceipt(executorKey, body)
    await rejected(receipt, { ...expect, taskId: 'job-1/1' }, /taskId is job-1\/0, expected job-1\/1/)
    await rejected(receipt, { ...expect, moduleCid: inputCid }, /moduleCid is/)
    await rejected(receipt, { ...expect, inputCid: moduleCid }, /inputCid is/)
  })

  it('verifies the bytes received even when their encoding is not canonical', async () => {
    // the same fields in a non-canonical key order: a decoder accepts it, and
    // the signature is over these bytes, so it must verify without re-encoding
    const entries = Object.entries(body).reverse()
    const parts = [new Uint8Array([0xa0 + entries.length]), ...entries.flatMap(([k, v]) => [dagCbor.encode(k), dagCbor.encode(v)])]
    const bytes = new Uint8Array(Buffer.concat(parts))
    assert.notDeepEqual(bytes, encodeReceiptBody(body))
    const receipt = { body: bytes, signature: await executorKey.sign(bytes) }
    assert.deepEqual(await verifyReceipt(receipt, expect), body)
  })

  it('refuses to sign a body with a malformed field', async () => {
    await assert.rejects(signReceipt(executorKey, { ...body, outputCid: moduleCid }), /field "outputCid" must be a CIDv1 dag-cbor/)
    await assert.rejects(signReceipt(executorKey, { ...body, executor: 'me' }), /field "executor" must be a PeerId/)
  })
})
