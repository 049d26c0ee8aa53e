import { createHash } from 'node:crypto'
import { createReadStream, statSync } from 'node:fs'
import { request as httpRequest, type ClientRequest } from 'node:http'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { create as createDigest } from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import { ApiError } from '../core/errors.ts'

/**
 * `PUT /v1/blobs/{cid}`: a module, input or directory file uploaded as raw
 * bytes, streamed to a file in the data directory as it arrives and checked
 * against its CID, so a submit can name it (`moduleCid`, `inputCid`, a
 * file's `cid`) instead of carrying it base64 inside its JSON body.
 */

/** `PUT /v1/blobs/{cid}`: the CID (CIDv1 raw sha2-256) and the body, read by the handler as it arrives. */
export interface PutBlobRequest {
  cid: string
  body: AsyncIterable<Uint8Array>
}
export interface PutBlobResponse {
  cid: string
  size: number
  /** false: the daemon held the blob already and kept none of the bytes sent */
  stored: boolean
}

/** Largest upload the route takes (a declared larger body is refused before it is read): the dispatch wire's bound, 4 GiB. */
export const MAX_BLOB_UPLOAD_BYTES = 4 * 1024 * 1024 * 1024

/** The CLI uploads a module, input or file over this size as a blob and names it by CID in the submit. */
export const BLOB_UPLOAD_THRESHOLD_BYTES = 8 * 1024 * 1024

/** A CID's shape, checked in full (codec, hash) by the blob store. */
const CID_TEXT = /^[a-z2-7]{8,128}$/

export function parsePutBlob (input: unknown): PutBlobRequest {
  const o = (input ?? {}) as Record<string, unknown>
  if (typeof o.cid !== 'string' || !CID_TEXT.test(o.cid)) throw new Error('cid must be a CIDv1 in base32 (b…)')
  const body = o.body as AsyncIterable<Uint8Array> | undefined
  if (body == null || typeof body[Symbol.asyncIterator] !== 'function') throw new Error('the request body is the blob\'s bytes')
  return { cid: o.cid, body }
}

/**
 * CIDv1 raw sha2-256 (base32) of a sha-256 digest: the address the daemon
 * gives a module or input. From the digest, not the bytes, because uploads
 * hash as they stream; a test checks it against codec/cid.ts.
 */
export function rawCidOfDigest (digest: Uint8Array): string {
  return CID.createV1(raw.code, createDigest(sha256.code, digest)).toString()
}

/** The CID of bytes held in memory (a module submitted by CID). */
export function bytesRawCid (bytes: Uint8Array): string {
  return rawCidOfDigest(createHash('sha256').update(bytes).digest())
}

/** The CID of a file's bytes, read in chunks. */
export async function fileRawCid (path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
  return rawCidOfDigest(hash.digest())
}

/** The error answer's shape (routes.ts `ApiErrorBody`, which imports this file). */
interface ErrorBody { error?: { code?: string, message?: string } }

export interface UploadTarget { port: number, token: string }

/**
 * Streams a file to `PUT /v1/blobs/{cid}` (never read whole into memory);
 * the daemon's answer, or an ApiError with its code (`BLOB_CID_MISMATCH`:
 * the file changed since its CID was computed; `TOO_LARGE`).
 */
export async function uploadBlob (target: UploadTarget, cid: string, path: string, options: { signal?: AbortSignal } = {}): Promise<PutBlobResponse> {
  return await putBody(target, cid, statSync(path).size, (req) => {
    createReadStream(path).on('error', (err) => { req.destroy(err) }).pipe(req)
  }, options)
}

/** Uploads bytes held in memory (a module submitted by CID) to `PUT /v1/blobs/{cid}`; answers as `uploadBlob`. */
export async function uploadBlobBytes (target: UploadTarget, cid: string, bytes: Uint8Array, options: { signal?: AbortSignal } = {}): Promise<PutBlobResponse> {
  return await putBody(target, cid, bytes.byteLength, (req) => { req.end(bytes) }, options)
}

/** One `PUT /v1/blobs/{cid}` of `size` bytes that `send` writes to the request. */
async function putBody (target: UploadTarget, cid: string, size: number, send: (req: ClientRequest) => void, options: { signal?: AbortSignal }): Promise<PutBlobResponse> {
  return await new Promise<PutBlobResponse>((resolve, reject) => {
    const req = httpRequest({
      host: '127.0.0.1',
      port: target.port,
      method: 'PUT',
      path: `/v1/blobs/${encodeURIComponent(cid)}`,
      headers: { authorization: `Bearer ${target.token}`, 'content-type': 'application/octet-stream', 'content-length': size },
      signal: options.signal
    }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => { chunks.push(c) })
      res.on('error', reject)
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        try {
          const parsed = JSON.parse(text) as PutBlobResponse | ErrorBody
          if (res.statusCode === 200) resolve(parsed as PutBlobResponse)
          else reject(new ApiError((parsed as ErrorBody).error?.message ?? `HTTP ${res.statusCode}`, (parsed as ErrorBody).error?.code ?? 'HTTP_ERROR', res.statusCode ?? 0))
        } catch (err) {
          reject(new ApiError(`the daemon answered the upload of ${cid} with invalid JSON (HTTP ${res.statusCode})`, 'BAD_RESPONSE', res.statusCode ?? 0, { cause: err }))
        }
      })
    })
    // a refusal (413, a CID mismatch) can reach us while the body is still being sent, and the
    // write then fails (EPIPE, ECONNRESET): the daemon's answer, when it comes, is what to report
    req.on('error', (err) => { setTimeout(() => { reject(err) }, 200).unref() })
    send(req)
  })
}
