/**
 * Content identifiers: modules and inputs are CIDv1 raw/sha2-256, outputs and
 * receipts (dag-cbor documents) are CIDv1 dag-cbor/sha2-256: the multicodec
 * says which kind of bytes a CID names, so one cannot stand for the other.
 *
 * Messages carry CIDs as strings, never as `CID` objects: `cborg.encode` of a
 * CID object silently produces a bloated map instead of tag 42, and a string
 * is also what the API and the CLI show.
 */
import { remember } from '../core/recent.ts'
import { createHash } from 'node:crypto'
import { CID } from 'multiformats/cid'
import { create as createDigest } from 'multiformats/hashes/digest'

/** multicodec `raw` */
export const RAW_CODE = 0x55
/** multicodec `dag-cbor` */
export const DAG_CBOR_CODE = 0x71
/** multihash `sha2-256` */
export const SHA2_256_CODE = 0x12

/**
 * sha2-256 with node:crypto, synchronously: multiformats' hasher is typed
 * `Digest | Promise<Digest>`, and hashing a 64 MiB module should not need an
 * await in the middle of a stream handler.
 */
function sha256Digest (bytes: Uint8Array): ReturnType<typeof createDigest<typeof SHA2_256_CODE>> {
  const hash = createHash('sha256').update(bytes).digest()
  return createDigest(SHA2_256_CODE, new Uint8Array(hash.buffer, hash.byteOffset, hash.byteLength))
}

/** CIDv1, raw, sha2-256: the address of a module or an input blob. */
export function rawCid (bytes: Uint8Array): CID {
  return CID.createV1(RAW_CODE, sha256Digest(bytes))
}

/** CIDv1, dag-cbor, sha2-256: the address of a dag-cbor document (outputs). */
export function dagCborCid (bytes: Uint8Array): CID {
  return CID.createV1(DAG_CBOR_CODE, sha256Digest(bytes))
}

/** `rawCid(bytes)` in its canonical string form (base32 `b…`). */
export function rawCidString (bytes: Uint8Array): string {
  return rawCid(bytes).toString()
}

/** `dagCborCid(bytes)` in its canonical string form (base32 `b…`). */
export function dagCborCidString (bytes: Uint8Array): string {
  return dagCborCid(bytes).toString()
}

/**
 * Parses a CID string; returns undefined instead of throwing, because every
 * caller turns a bad CID into its own, more specific error.
 */
export function parseCid (value: string): CID | undefined {
  const known = parsedCids.get(value)
  if (known != null) return known
  let cid: CID
  try {
    cid = CID.parse(value)
  } catch {
    // multiformats throws plain Errors with messages about bases and varints;
    // the caller reports the field instead, which is what a reader needs
    return undefined
  }
  remember(parsedCids, value, cid, PARSED_CIDS)
  return cid
}

/**
 * CIDs parsed lately, by their text, oldest first: a task's module and input
 * CIDs are parsed a dozen times on its way (each message encoded is checked
 * by its decoder, then decoded by the peer, the receipt likewise), and a
 * CID object is never changed after it is made, so one can be shared.
 */
const parsedCids = new Map<string, CID>()
/** about 300 bytes each */
const PARSED_CIDS = 1024

/**
 * The CID when `value` parses as a CIDv1 raw sha2-256 — the address of a
 * module, an input or a file, the only blobs the project stores by CID —
 * else undefined (callers name their own error).
 */
export function parseRawCid (value: string): CID | undefined {
  const cid = parseCid(value)
  return cid != null && cid.version === 1 && cid.code === RAW_CODE && cid.multihash.code === SHA2_256_CODE ? cid : undefined
}

/**
 * True when `cidString` parses as a CIDv1 raw/sha2-256 and addresses exactly
 * `bytes`. Compared as CIDs, so any multibase spelling of the same CID matches.
 */
export function verifyRawCid (bytes: Uint8Array, cidString: string): boolean {
  return parseRawCid(cidString)?.equals(rawCid(bytes)) ?? false
}

/** As `verifyRawCid`, for dag-cbor documents. */
export function verifyDagCborCid (bytes: Uint8Array, cidString: string): boolean {
  const cid = parseCid(cidString)
  if (cid == null || cid.version !== 1 || cid.code !== DAG_CBOR_CODE || cid.multihash.code !== SHA2_256_CODE) {
    return false
  }
  return cid.equals(dagCborCid(bytes))
}
