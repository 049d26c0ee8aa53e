/**
 * The donor's content store: big modules and inputs fetched by CID
 * (`/worldcompute/fetch/1.0.0`), one file each under the data directory,
 * named by CID. Written as the bytes arrive and hashed on the way, renamed
 * into place only when the whole matches the CID; bounded by total bytes
 * (`--content-cache`), least recently used evicted first. A donor that holds
 * a blob answers offers saying so and fetches only what it lacks; the copy
 * on disk outlives the task, so the next job on the same input costs no
 * transfer.
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdirSync, readdirSync, statSync, unlinkSync } from 'node:fs'
import { open, rename, unlink, utimes, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { parseRawCid } from '../codec/cid.ts'
import { createLogger, type Logger } from '../log/logger.ts'
import { CONTENT_STORE_BYTES, ContentCidMismatchError, ContentStoreFullError, ContentTooLargeError } from '../protocols/fetch/index.ts'
import type { ContentSink, ContentWrite } from '../protocols/fetch/index.ts'

const PART_SUFFIX = '.part'
/** errno codes of a disk (or quota) with no room left */
const NO_SPACE = new Set(['ENOSPC', 'EDQUOT'])

export interface ContentStoreInit {
  /** the directory holding the blob files (created, mode 0700) */
  dir: string
  /** total bytes kept, writes in progress included @default 2147483648 (2 GiB) */
  maxBytes?: number
  /** @default createLogger('donor.content') */
  logger?: Logger
}

export class ContentStore implements ContentSink {
  readonly dir: string
  readonly maxBytes: number
  private readonly log: Logger
  /** key → size, least recently used first */
  private readonly entries = new Map<string, number>()
  private heldBytes = 0
  /** bytes promised to writes under way */
  private reservedBytes = 0

  constructor (init: ContentStoreInit) {
    this.dir = init.dir
    this.maxBytes = init.maxBytes ?? CONTENT_STORE_BYTES
    this.log = init.logger ?? createLogger('donor.content')
    mkdirSync(this.dir, { recursive: true, mode: 0o700 })
    this.load()
    this.evict(0)
  }

  /** What a previous run kept, oldest use first (mtime is touched on every use); its part files are leftovers of a stop or crash. */
  private load (): void {
    const found: Array<[string, number, number]> = []
    for (const name of readdirSync(this.dir)) {
      const path = join(this.dir, name)
      if (name.endsWith(PART_SUFFIX) || keyOf(name) !== name) {
        unlinkSync(path)
        continue
      }
      const info = statSync(path)
      found.push([name, info.size, info.mtimeMs])
    }
    for (const [key, size] of found.sort((a, b) => a[2] - b[2])) this.add(key, size)
  }

  get bytes (): number {
    return this.heldBytes
  }

  get size (): number {
    return this.entries.size
  }

  has (cid: string): boolean {
    const key = keyOf(cid)
    return key != null && this.entries.has(key)
  }

  /** Which of `cids` are held (for an offer's answer). */
  holds (cids: readonly string[]): string[] {
    return cids.filter(cid => this.has(cid))
  }

  /** The blob's bytes, marking it most recently used. */
  async read (cid: string): Promise<Uint8Array> {
    const key = keyOrThrow(cid)
    const size = this.entries.get(key)
    if (size != null) {
      this.entries.delete(key)
      this.entries.set(key, size)
    }
    const bytes = await readWhole(this.pathOf(key))
    const now = new Date()
    // the order of use survives a restart; a blob evicted after the read needs no touch
    await utimes(this.pathOf(key), now, now).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'ENOENT') this.log.warn(`could not mark ${key} used: ${err.message}`, { code: err.code }) })
    return bytes
  }

  /** Room for `size` bytes under `cid`, least recently used blobs evicted to make it, and a part file to write them to. */
  async begin (cid: string, size: number): Promise<ContentWrite> {
    const key = keyOrThrow(cid)
    if (size > this.maxBytes) throw new ContentTooLargeError(`${key} is ${size} bytes, over this donor's ${this.maxBytes}-byte content store (--content-cache)`)
    this.evict(size)
    this.reservedBytes += size
    const part = this.pathOf(`${key}.${randomBytes(6).toString('hex')}${PART_SUFFIX}`)
    let fh: FileHandle
    try {
      fh = await open(part, 'wx', 0o600)
    } catch (err) {
      this.reservedBytes -= size
      throw diskError(err, key)
    }
    return new PartWrite(this, { key, size, part, fh, digest: parseRawCid(key)?.multihash.digest ?? new Uint8Array(0) })
  }

  /** A finished write: the part file becomes the blob, counted in place of its reservation. */
  async settle (w: { key: string, size: number, part: string }, kept: boolean): Promise<void> {
    this.reservedBytes -= w.size
    if (!kept) {
      await unlink(w.part).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'ENOENT') this.log.warn(`could not delete the part file ${w.part}: ${err.message}`, { code: err.code }) })
      return
    }
    await rename(w.part, this.pathOf(w.key))
    this.add(w.key, w.size)
    this.evict(0)
  }

  private add (key: string, size: number): void {
    const previous = this.entries.get(key)
    if (previous != null) this.heldBytes -= previous
    this.entries.delete(key)
    this.entries.set(key, size)
    this.heldBytes += size
  }

  /** Evicts least recently used blobs until `incoming` more bytes fit. A blob being read keeps its open file: the read completes. */
  private evict (incoming: number): void {
    for (const [key, size] of this.entries) {
      if (this.heldBytes + this.reservedBytes + incoming <= this.maxBytes) break
      try {
        unlinkSync(this.pathOf(key))
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
          this.log.warn(`could not evict ${key}: ${(err as Error).message}`, { code: (err as NodeJS.ErrnoException).code })
          continue
        }
      }
      this.entries.delete(key)
      this.heldBytes -= size
      this.log.debug(`evicted ${key} (${size} bytes) from the content store`)
    }
  }

  private pathOf (name: string): string {
    return join(this.dir, name)
  }
}

interface PartInit { key: string, size: number, part: string, fh: FileHandle, digest: Uint8Array }

/** One blob written to its part file: hashed and size-checked as it goes. */
class PartWrite implements ContentWrite {
  private readonly store: ContentStore
  private readonly w: PartInit
  private readonly hash = createHash('sha256')
  private bytes = 0
  private done = false

  constructor (store: ContentStore, w: PartInit) {
    this.store = store
    this.w = w
  }

  get written (): number {
    return this.bytes
  }

  async write (chunk: Uint8Array): Promise<void> {
    if (this.bytes + chunk.byteLength > this.w.size) throw new ContentCidMismatchError(`${this.w.key}: more than its ${this.w.size} bytes arrived`)
    try {
      await this.w.fh.write(chunk)
    } catch (err) {
      throw diskError(err, this.w.key)
    }
    this.hash.update(chunk)
    this.bytes += chunk.byteLength
  }

  async commit (): Promise<void> {
    if (this.bytes !== this.w.size || !Buffer.from(this.w.digest).equals(this.hash.digest())) {
      throw new ContentCidMismatchError(`the ${this.bytes} bytes fetched as ${this.w.key} (${this.w.size} announced) hash to another CID: nothing kept`)
    }
    // a blob's name says its bytes are whole: after a power loss a file under it must not be short
    await this.w.fh.datasync().catch((err: unknown) => { throw diskError(err, this.w.key) })
    await this.finish(true)
  }

  async abort (): Promise<void> {
    await this.finish(false)
  }

  private async finish (kept: boolean): Promise<void> {
    if (this.done) return
    this.done = true
    let closeError: unknown
    await this.w.fh.close().catch((err: unknown) => { closeError = err })
    await this.store.settle(this.w, kept && closeError == null)
    if (kept && closeError != null) throw diskError(closeError, this.w.key)
  }
}

/**
 * A blob file's bytes in as few reads as the kernel allows. By hand because
 * `readFile` reads a file of known size in 512 KiB pieces, each a trip
 * through libuv's thread pool: a third slower for a 64 MiB blob on this
 * project's test machine. A blob's file never changes once named, so its size
 * at open is its size; a short read (the file was cut) is an error.
 */
async function readWhole (path: string): Promise<Uint8Array> {
  const fh = await open(path, 'r')
  try {
    const { size } = await fh.stat()
    const bytes = new Uint8Array(size)
    for (let at = 0; at < size;) {
      const { bytesRead } = await fh.read(bytes, at, size - at, at)
      if (bytesRead === 0) throw Object.assign(new Error(`${path} ended at byte ${at} of ${size} while it was read`), { code: 'EIO' })
      at += bytesRead
    }
    return bytes
  } finally {
    await fh.close()
  }
}

/** The canonical spelling of a CIDv1 raw sha2-256, else undefined. */
function keyOf (cid: string): string | undefined {
  return parseRawCid(cid)?.toString()
}

function keyOrThrow (cid: string): string {
  const key = keyOf(cid)
  if (key == null) throw new ContentCidMismatchError(`${cid.slice(0, 100)} is not a CIDv1 raw sha2-256`)
  return key
}

/** A full disk as ContentStoreFullError; any other error as it is. */
function diskError (err: unknown, key: string): unknown {
  const code = (err as NodeJS.ErrnoException).code
  if (code != null && NO_SPACE.has(code)) return new ContentStoreFullError(`no room on disk for ${key} (${code}): free space or lower --content-cache`, { cause: err })
  return err
}
