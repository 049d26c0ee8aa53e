/**
 * Receipts and output addressing.
 *
 * An executor signs `{taskId, moduleCid, inputCid, outputCid, status,
 * exitCode, fuelUsed, executor}` as dag-cbor with its libp2p identity key,
 * so anyone who knows its PeerId can check it without trusting the path the
 * answer took. The submitter verifies the signature against the key inside
 * the executor's PeerId, then every field against what it sent and received,
 * and the output bytes against `outputCid`.
 *
 * The signature covers the body bytes exactly as received: dag-cbor decoders
 * accept non-canonical encodings, so re-encoding before verifying could turn
 * a valid signature invalid (or worse, the reverse).
 */
import { createPrivateKey, createPublicKey, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto'
import * as dagCbor from '@ipld/dag-cbor'
import { dagCborCid, dagCborCidString, parseCid } from './cid.ts'
import { parsePeerIdText } from './peer-id.ts'
import { outputFilesWire, type OutputFiles } from './manifest.ts'
import { MalformedMessageError, ReceiptInvalidError } from './errors.ts'
import { MAX_RECEIPT_BODY_BYTES, MAX_SIGNATURE_BYTES, readReceiptFields } from './messages.ts'
import { decodeBounded, FieldReader } from './validate.ts'
import type { ReceiptBody, SignedReceipt } from '../core/job.ts'
import type { AbortOptions, PrivateKey, PublicKey } from '@libp2p/interface'

/** dag-cbor of the receipt body, with its fields checked first. */
export function encodeReceiptBody (body: ReceiptBody): Uint8Array {
  const wire = {
    taskId: body.taskId,
    moduleCid: body.moduleCid,
    inputCid: body.inputCid,
    outputCid: body.outputCid,
    status: body.status,
    exitCode: body.exitCode ?? null,
    fuelUsed: body.fuelUsed,
    executor: body.executor
  }
  readReceiptFields(new FieldReader('receipt body', wire))
  return dagCbor.encode(wire)
}

/** Strict decode of receipt body bytes (size first, then every field). */
export function decodeReceiptBody (bytes: Uint8Array): ReceiptBody {
  return readReceiptFields(new FieldReader('receipt body', decodeBounded('receipt body', bytes, MAX_RECEIPT_BODY_BYTES)))
}

/** Encodes and signs a receipt body with the executor's libp2p key. */
export async function signReceipt (privateKey: PrivateKey, body: ReceiptBody, options?: AbortOptions): Promise<SignedReceipt> {
  const encoded = encodeReceiptBody(body)
  const key = signingKeyOf(privateKey)
  const signature = key != null ? new Uint8Array(cryptoSign(null, encoded, key)) : await privateKey.sign(encoded, options)
  return { body: encoded, signature }
}

/**
 * Ed25519 keys as node:crypto KeyObjects, made once per key: libp2p's own
 * sign and verify import the raw key into a new KeyObject on every call,
 * which costs about as much as the signature itself, twice per task.
 */
const signingKeys = new WeakMap<PrivateKey, KeyObject>()
const verifyingKeys = new Map<string, KeyObject>()
/** executors whose verifying keys are kept, least recently used forgotten: about 200 bytes each */
const VERIFYING_KEYS = 1024
const ED25519_SIGNATURE_BYTES = 64

function signingKeyOf (privateKey: PrivateKey): KeyObject | undefined {
  if (privateKey.type !== 'Ed25519' || privateKey.raw.byteLength !== 64) return undefined
  let key = signingKeys.get(privateKey)
  if (key == null) {
    const raw = privateKey.raw
    key = createPrivateKey({ format: 'jwk', key: { kty: 'OKP', crv: 'Ed25519', d: Buffer.from(raw.subarray(0, 32)).toString('base64url'), x: Buffer.from(raw.subarray(32)).toString('base64url') } })
    signingKeys.set(privateKey, key)
  }
  return key
}

/**
 * The executor's Ed25519 key as a KeyObject, kept per PeerId text: a PeerId
 * is parsed (base58, multihash) only the first time; undefined for other key
 * types and odd lengths.
 */
function verifyingKeyOf (executor: string, publicKey: () => PublicKey): KeyObject | undefined {
  let key = verifyingKeys.get(executor)
  if (key != null) {
    verifyingKeys.delete(executor)
  } else {
    const raw = publicKey()
    if (raw.type !== 'Ed25519' || raw.raw.byteLength !== 32) return undefined
    key = createPublicKey({ format: 'jwk', key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(raw.raw).toString('base64url') } })
    if (verifyingKeys.size >= VERIFYING_KEYS) verifyingKeys.delete(verifyingKeys.keys().next().value as string)
  }
  verifyingKeys.set(executor, key)
  return key
}

/** Checks the signature with the cached key where there is one, else with libp2p's (other key types, odd lengths: its errors apply). */
async function signatureValid (executor: string, receipt: SignedReceipt, options?: AbortOptions): Promise<boolean> {
  const key = receipt.signature.byteLength === ED25519_SIGNATURE_BYTES ? verifyingKeyOf(executor, () => executorPublicKey(executor)) : undefined
  if (key == null) return await executorPublicKey(executor).verify(receipt.body, receipt.signature, options)
  return cryptoVerify(null, receipt.body, key, receipt.signature)
}

export interface ReceiptExpectations {
  /** the PeerId we dispatched to (the authenticated remote peer of the connection) */
  executor: string
  taskId: string
  moduleCid: string
  inputCid: string
  /** `encodeOutput(stdout, stderr)` of the output actually received; checked against `outputCid` */
  outputBytes?: Uint8Array
}

/**
 * Checks a receipt and returns its decoded body, or throws
 * ReceiptInvalidError naming what is wrong.
 */
export async function verifyReceipt (receipt: SignedReceipt, expect: ReceiptExpectations, options?: AbortOptions): Promise<ReceiptBody> {
  if (!(receipt?.body instanceof Uint8Array) || !(receipt?.signature instanceof Uint8Array)) {
    throw new ReceiptInvalidError('receipt must have a body and a signature, both bytes')
  }
  if (receipt.signature.byteLength === 0 || receipt.signature.byteLength > MAX_SIGNATURE_BYTES) {
    throw new ReceiptInvalidError(`receipt signature is ${receipt.signature.byteLength} bytes; expected 1 to ${MAX_SIGNATURE_BYTES}`)
  }

  let body: ReceiptBody
  try {
    body = decodeReceiptBody(receipt.body)
  } catch (err) {
    if (err instanceof MalformedMessageError) {
      throw new ReceiptInvalidError(`receipt body is malformed: ${err.message}`, { cause: err })
    }
    throw err
  }

  if (body.executor !== expect.executor) {
    throw new ReceiptInvalidError(`receipt names executor ${body.executor}, but the task was dispatched to ${expect.executor}`)
  }

  let valid: boolean
  try {
    valid = await signatureValid(expect.executor, receipt, options)
  } catch (err) {
    // a PeerId that is none, or that embeds no key, says so itself
    if (err instanceof ReceiptInvalidError) throw err
    throw new ReceiptInvalidError(`receipt signature could not be checked with the key of ${expect.executor}: ${(err as Error).message}`, { cause: err })
  }
  if (!valid) {
    throw new ReceiptInvalidError(`receipt signature does not verify with the key of executor ${expect.executor}: the body was altered or signed by another key`)
  }

  for (const field of ['taskId', 'moduleCid', 'inputCid'] as const) {
    if (body[field] !== expect[field]) {
      throw new ReceiptInvalidError(`receipt ${field} is ${body[field]}, expected ${expect[field]}`)
    }
  }

  if (expect.outputBytes != null) {
    const received = dagCborCid(expect.outputBytes)
    // compared as CIDs: another multibase spelling of the same CID is the same output
    const claimed = parseCid(body.outputCid)
    if (claimed == null || !claimed.equals(received)) {
      throw new ReceiptInvalidError(`receipt outputCid is ${body.outputCid}, but the output received hashes to ${received.toString()}`)
    }
  }
  return body
}

function executorPublicKey (executor: string): PublicKey {
  let publicKey: PublicKey | undefined
  try {
    publicKey = parsePeerIdText(executor).publicKey
  } catch (err) {
    throw new ReceiptInvalidError(`executor "${executor}" is not a PeerId`, { cause: err })
  }
  if (publicKey == null) {
    throw new ReceiptInvalidError(`executor ${executor} has a PeerId that does not embed its public key (RSA?): its receipts cannot be checked`)
  }
  return publicKey
}

// ---- output addressing -----------------------------------------------------

/**
 * The canonical output document: dag-cbor `{ stdout: bytes, stderr: bytes }`,
 * and, for a job with preopens, `files` (each `{ path, data }`, sorted by
 * path) and `removed` (guest paths) beside them. Its CID (`outputCid`) is
 * what replicas compare, with status, exit code and fuel used; a job without
 * preopens has no `files` key at all, so its outputCid is the same as a
 * peer without the filesystem computes.
 */
export function encodeOutput (stdout: Uint8Array, stderr: Uint8Array, files?: OutputFiles): Uint8Array {
  if (files == null) return dagCbor.encode({ stdout, stderr })
  return dagCbor.encode({ stdout, stderr, ...outputFilesWire(files) })
}

/** `dagCborCid(encodeOutput(stdout, stderr, files))` as a string. */
export function outputCid (stdout: Uint8Array, stderr: Uint8Array, files?: OutputFiles): string {
  return dagCborCidString(encodeOutput(stdout, stderr, files))
}
