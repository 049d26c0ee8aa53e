import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, mkdirSync, readdirSync, readFileSync, statSync, unlinkSync } from 'node:fs'
import { open, rename, unlink, utimes } from 'node:fs/promises'
import { join } from 'node:path'
import { parseRawCid, rawCidString } from '../codec/cid.ts'
import { errorWithCode } from '../core/errors.ts'
import { createLogger, type Logger } from '../log/logger.ts'
import type { AddressedFile } from '../codec/manifest.ts'
import type { JobFile } from '../core/job.ts'
import type { Payload } from '../protocols/framing.ts'
import type { OffsetPayloadSource } from '../protocols/fetch/index.ts'
import type { AbortOptions } from '@libp2p/interface'

/**
 * Big blobs (modules, inputs, directory files uploaded with `PUT
 * /v1/blobs/{cid}`) kept as one file each in the data directory, named by
 * CID. Files rather than rows of the job store's SQLite `blobs` table:
 * node:sqlite reads and writes a BLOB whole (no incremental I/O), so a
 * 200 MiB input would sit in memory at upload and at every dispatch, and it
 * would be written twice (WAL, then the database). A file is written as the
 * bytes arrive and sent to executors in chunks. Small blobs sent inline with
 * a submit stay in SQLite; a job names a file blob with a row marked
 * on-disk, so the job store's retention (`--keep-jobs`) decides when a file
 * is no longer referenced and `sweep` deletes it.
 */

/** What one upload may hold by default: the dispatch wire's bound, since nothing bigger can reach an executor. */
export const MAX_BLOB_BYTES = 4 * 1024 * 1024 * 1024
/** An uploaded blob no job refers to is kept this long (the submit that names it follows its upload). */
export const UNREFERENCED_BLOB_TTL_MS = 60 * 60 * 1000
/** Chunks read from a blob file when it is sent: four dispatch frames. */
const READ_CHUNK_BYTES = 1024 * 1024
const PART_SUFFIX = '.part'

/**
 * Blob CIDs already parsed, by their text (oldest forgotten first): a
 * submit by CID and its job's run look the same CID up several times, and a
 * parse (base32, multihash) costs more than the rest of such a look-up.
 */
const parsedKeys = new Map<string, { key: string, digest: Uint8Array }>()
const PARSED_KEYS = 1024

/** The bytes uploaded do not hash to the CID they were uploaded under: nothing is kept. */
export class BlobCidMismatchError extends errorWithCode('BLOB_CID_MISMATCH') {}
/** Not a CIDv1 raw sha2-256 (the address of a module, input or file blob). */
export class BlobCidInvalidError extends errorWithCode('BLOB_CID_INVALID') {}
/** A submit names a blob this daemon does not hold (never uploaded, or deleted since). */
export class BlobNotFoundError extends errorWithCode('BLOB_NOT_FOUND') {}
/** An upload over the store's limit: cut off, nothing kept (the API answers 413). */
export class BlobTooLargeError extends errorWithCode('TOO_LARGE') {}

export interface BlobStoreInit {
  /** the directory holding the blob files (created, mode 0700) */
  dir: string
  /** largest blob accepted @default 4294967296 (MAX_BLOB_BYTES) */
  maxBlobBytes?: number
  /** @default createLogger('broker.blobs') */
  logger?: Logger
}

export interface PutBlobResult {
  cid: string
  size: number
  /** false: the blob was held already, and the bytes sent were not kept */
  stored: boolean
}

export class BlobStore {
  readonly dir: string
  readonly maxBlobBytes: number
  private readonly log: Logger

  constructor (init: BlobStoreInit) {
    this.dir = init.dir
    this.maxBlobBytes = init.maxBlobBytes ?? MAX_BLOB_BYTES
    this.log = init.logger ?? createLogger('broker.blobs')
    mkdirSync(this.dir, { recursive: true, mode: 0o700 })
    // uploads cut short by a stop or a crash: one daemon holds the data directory, so none of these is under way
    for (const name of readdirSync(this.dir)) if (name.endsWith(PART_SUFFIX)) unlinkSync(join(this.dir, name))
  }

  /** The canonical spelling of a blob CID; throws BlobCidInvalidError for anything but CIDv1 raw sha2-256. */
  static key (cid: string): { key: string, digest: Uint8Array } {
    const known = parsedKeys.get(cid)
    if (known != null) return known
    const parsed = parseRawCid(cid)
    if (parsed == null) {
      throw new BlobCidInvalidError(`${cid.slice(0, 100)} is not a CIDv1 raw sha2-256 (the address of a module, input or file)`)
    }
    const key = { key: parsed.toString(), digest: parsed.multihash.digest }
    if (parsedKeys.size >= PARSED_KEYS) parsedKeys.delete(parsedKeys.keys().next().value as string)
    parsedKeys.set(cid, key)
    return key
  }

  private pathOf (key: string): string {
    return join(this.dir, key)
  }

  /** The size of the blob, when it is held. */
  size (cid: string): number | undefined {
    try {
      return statSync(this.pathOf(BlobStore.key(cid).key)).size
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
  }

  /**
   * Writes `body` under `cid`, hashing it as it arrives, into a part file
   * renamed into place only once the whole of it hashes to the CID: a
   * mismatch, an oversize body, an abort or a broken connection leaves
   * nothing behind. Idempotent: a blob held already is not written again.
   */
  async put (cid: string, body: AsyncIterable<Uint8Array>, options: AbortOptions = {}): Promise<PutBlobResult> {
    const { key, digest } = BlobStore.key(cid)
    const held = this.size(key)
    if (held != null) {
      for await (const _ of body) options.signal?.throwIfAborted()
      // uploaded again ahead of a submit: the sweep's clock starts again
      const t = new Date()
      await utimes(this.pathOf(key), t, t)
      return { cid: key, size: held, stored: false }
    }
    const part = this.pathOf(`${key}.${randomBytes(6).toString('hex')}${PART_SUFFIX}`)
    try {
      const size = await this.writePart(part, key, digest, body, options)
      await rename(part, this.pathOf(key))
      this.log.debug(`stored blob ${key}: ${size} bytes`)
      return { cid: key, size, stored: true }
    } catch (err) {
      await unlink(part).catch((e: NodeJS.ErrnoException) => { if (e.code !== 'ENOENT') this.log.warn(`could not delete the part file ${part}: ${e.message}`, { code: e.code }) })
      throw err
    }
  }

  private async writePart (part: string, key: string, digest: Uint8Array, body: AsyncIterable<Uint8Array>, options: AbortOptions): Promise<number> {
    const fh = await open(part, 'wx', 0o600)
    const hash = createHash('sha256')
    let size = 0
    try {
      for await (const chunk of body) {
        options.signal?.throwIfAborted()
        size += chunk.byteLength
        if (size > this.maxBlobBytes) throw new BlobTooLargeError(`blob ${key} is over the ${this.maxBlobBytes}-byte limit of an upload; cut off`)
        hash.update(chunk)
        await fh.write(chunk)
      }
      options.signal?.throwIfAborted()
      if (!Buffer.from(digest).equals(hash.digest())) throw new BlobCidMismatchError(`the ${size} bytes uploaded as ${key} hash to another CID: nothing kept`)
      // the job store acknowledges a submit only once what it names is durable
      await fh.sync()
      return size
    } finally {
      await fh.close()
    }
  }

  /** The blob as a payload read from its file in chunks (from any offset, for a donor's fetch); throws BlobNotFoundError when it is not held. */
  source (cid: string): OffsetPayloadSource {
    const { key } = BlobStore.key(cid)
    const byteLength = this.size(key)
    if (byteLength == null) throw new BlobNotFoundError(`blob ${key} is not held by this daemon: upload it first (PUT /v1/blobs/${key})`)
    const path = this.pathOf(key)
    return {
      byteLength,
      chunks: (options?: AbortOptions) => createReadStream(path, { highWaterMark: READ_CHUNK_BYTES, signal: options?.signal }),
      // a donor's fetch that resumes reads from where it stopped, not from the start
      chunksFrom: (offset: number, options?: AbortOptions) => createReadStream(path, { start: offset, highWaterMark: READ_CHUNK_BYTES, signal: options?.signal })
    }
  }

  /**
   * The blob as the broker sends it: its bytes, read at once, when it is at
   * most `wholeUpTo` bytes (a small module submitted by CID then goes out in
   * one write with its task, as an inline one does), else `source`. Throws
   * BlobNotFoundError.
   */
  payload (cid: string, wholeUpTo: number): Payload {
    const source = this.source(cid)
    if (source.byteLength > wholeUpTo) return source
    const { key } = BlobStore.key(cid)
    try {
      return readFileSync(this.pathOf(key))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new BlobNotFoundError(`blob ${key} is not held by this daemon: upload it first (PUT /v1/blobs/${key})`, { cause: err })
      throw err
    }
  }

  /**
   * Deletes the blob files no job refers to (`referenced` says, from the job
   * store) that are older than `ttlMs` (an upload waits that long for its
   * submit); how many went.
   */
  sweep (referenced: (cid: string) => boolean, ttlMs = UNREFERENCED_BLOB_TTL_MS, now = Date.now()): number {
    let deleted = 0
    for (const name of readdirSync(this.dir)) {
      if (name.endsWith(PART_SUFFIX) || referenced(name)) continue
      const path = this.pathOf(name)
      try {
        if (now - statSync(path).mtimeMs < ttlMs) continue
        unlinkSync(path)
        deleted++
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn(`could not delete the unreferenced blob ${path}: ${(err as Error).message}`, { code: (err as NodeJS.ErrnoException).code })
      }
    }
    return deleted
  }
}

/**
 * A submitted module or input as the broker takes it: base64 bytes carried
 * in the submit, or (`cid` given) the blob file the store holds under that
 * CID, read in chunks when sent. Throws BlobNotFoundError for a CID never
 * uploaded, BlobCidInvalidError for one that names no raw blob.
 */
export function submittedPayload (blobs: Pick<BlobStore, 'source'>, base64: string, cid: string | undefined): { payload: Payload, cid: string } {
  if (cid != null) return { payload: blobs.source(cid), cid: BlobStore.key(cid).key }
  const bytes = Buffer.from(base64, 'base64')
  return { payload: bytes, cid: rawCidString(bytes) }
}

/**
 * A submitted directory file: its base64 bytes, or (`cid` given) the blob
 * file the store holds under that CID, named by it and read in chunks when
 * sent (its CID was checked at upload, so it is not read to be addressed).
 * Throws BlobNotFoundError, BlobCidInvalidError.
 */
export function submittedFile (blobs: Pick<BlobStore, 'source'>, file: { path: string, data: string, cid?: string }): JobFile | AddressedFile {
  if (file.cid != null) return { path: file.path, cid: BlobStore.key(file.cid).key, data: blobs.source(file.cid) }
  return { path: file.path, data: Buffer.from(file.data, 'base64') }
}
