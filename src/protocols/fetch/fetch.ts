import { parseCid } from '../../codec/cid.ts'
import { backoffDelay, pause, type BackoffPolicy } from '../../core/async.ts'
import { WorldComputeError } from '../../core/errors.ts'
import { createLogger, type Logger } from '../../log/logger.ts'
import { openProtocolStream } from '../components.ts'
import { codeOf, messageOf, PayloadTooLargeError, ProtocolViolationError, StreamStalledError } from '../errors.ts'
import { framed, handlerOptions } from '../exchange.ts'
import { ProtocolService } from '../service.ts'
import { PhaseTimer } from '../timer.ts'
import { FETCH_ATTEMPTS, FETCH_LIMITS, FETCH_PROTOCOL, FETCH_RANGE_BYTES, FETCH_RETRY_BACKOFF, FETCH_STALL_TIMEOUT_MS, WRITE_BATCH_BYTES } from './constants.ts'
import { ContentCidMismatchError, ContentStoreFullError, ContentTooLargeError, FetchFailedError, FetchRefusedError } from './errors.ts'
import { decodeFetchRequest, decodeFetchResponse, encodeFetchRequest, encodeFetchResponse, type FetchRequest, type FetchResponse } from './messages.ts'
import type { ProtocolRegistrar } from '../components.ts'
import type { FramedStream, Payload, PayloadSource } from '../framing.ts'
import type { AbortOptions, Connection, Stream } from '@libp2p/interface'

/** One blob being written into the donor's content store: hashed as it arrives, kept only if it matches. */
export interface ContentWrite {
  /** bytes written so far: where a resumed fetch starts */
  readonly written: number
  /** throws ContentStoreFullError when the disk is full */
  write: (chunk: Uint8Array) => Promise<void>
  /** keeps the blob once all of it hashes to its CID; else ContentCidMismatchError and nothing kept */
  commit: () => Promise<void>
  /** drops what was written */
  abort: () => Promise<void>
}

/** The donor's content store (donor/content-store.ts) as a fetch sees it. */
export interface ContentSink {
  has: (cid: string) => boolean
  /** the blob's bytes, marking it most recently used; a blob evicted meanwhile throws (ENOENT) */
  read: (cid: string) => Promise<Uint8Array>
  /** room for `size` bytes under `cid`; ContentTooLargeError over the store's cap, ContentStoreFullError on a full disk */
  begin: (cid: string, size: number) => Promise<ContentWrite>
}

/** A payload the broker can read from an offset without reading what comes before (a blob file). */
export interface OffsetPayloadSource extends PayloadSource {
  chunksFrom?: (offset: number, options?: AbortOptions) => AsyncIterable<Uint8Array>
}

export interface FetchInit {
  /**
   * Broker: answers fetches, of the CIDs it granted to the asking peer only
   * (the tasks it dispatched there). Without it the node asks and never
   * answers, so identify does not list the protocol @default false
   */
  serve?: boolean
  /** Donor: where fetched blobs are kept; without it `fetch` cannot be used */
  store?: ContentSink
  /** @default 30000 */
  stallTimeoutMs?: number
  /** tries of one fetch in all, each resuming at what was written @default 3 */
  attempts?: number
  /** the wait before attempt n + 1 is `backoffDelay(retryBackoff, n)` @default FETCH_RETRY_BACKOFF (0.5 s doubling to 4 s, ± 20 %) */
  retryBackoff?: BackoffPolicy
  /** Donor: bytes asked for per request, the next asked when this one's answer came @default 16777216 (16 MiB) */
  rangeBytes?: number
  /** the transport of a connection's address, for logs @default 'circuit' for a relayed address, else 'direct' */
  transportOf?: (addr: string) => string
  /** @default createLogger('protocols.fetch') */
  logger?: Logger
}

export interface FetchComponents {
  registrar: ProtocolRegistrar
}

/** What a dispatch names for the donor to fetch. */
export interface FetchWant {
  /** CIDv1 raw sha2-256 */
  cid: string
  size: number
  /** 'module', 'input' or 'directory file', in logs */
  what: string
}

export interface GrantOptions {
  /** after each frame served: the broker's dispatch counts it as progress of the task */
  onServed?: (bytes: number) => void
}

interface Grant { payload: Payload, onServed?: (bytes: number) => void }

/** A range of a blob being fetched: its stream, asked and answered, its bytes still to read. */
interface FetchRange {
  stream: Stream
  io: FramedStream
  offset: number
  end: number
  timer: PhaseTimer<'receiving' | 'sending'>
}

type OpenedRange = { range: FetchRange } | { error: unknown }

interface RangeAhead {
  opened: Promise<OpenedRange>
  /** stops the range (asked or still asking) when the one before it failed */
  cancel: (reason: unknown) => Promise<void>
}

/**
 * `/worldcompute/fetch/1.0.0`.
 *
 * Donor → broker: a dag-cbor request `{ cid, offset }`. Broker → donor: a
 * response `{ size }` and the bytes from `offset` as payload frames (closed
 * by an empty frame), or `{ refused, error }` and nothing after. The broker
 * serves a CID only to a peer it granted it to (a task it dispatched there,
 * while that dispatch lasts): it is never a file server. The donor writes
 * what arrives into its content store, checked against the CID, and resumes
 * a fetch cut short at the bytes it has.
 */
export class FetchService extends ProtocolService {
  /** fetched (donor) and served (broker) since the service started: for tests and the bench */
  readonly stats = { fetches: 0, bytesFetched: 0, served: 0, bytesServed: 0, refused: 0 }
  private readonly init: FetchInit
  private readonly log: Logger
  private readonly grants = new Map<string, Grant[]>()

  constructor (components: FetchComponents, init: FetchInit = {}) {
    // a big blob goes over the connection its dispatch took: direct when the dispatch needed it, a circuit when it fits the relay's limit
    super(components.registrar, { protocol: FETCH_PROTOCOL, name: 'fetch', inbound: init.serve === true ? handlerOptions(FETCH_LIMITS, true) : undefined })
    this.init = init
    this.log = init.logger ?? createLogger('protocols.fetch')
  }

  async stop (): Promise<void> {
    await super.stop()
    this.grants.clear()
  }

  // ---- broker side ---------------------------------------------------------

  /** Lets `peer` fetch `cid` (served from `payload`) until the returned release is called. */
  grant (peer: string, cid: string, payload: Payload, options: GrantOptions = {}): () => void {
    const key = grantKey(peer, cid)
    const grant: Grant = { payload, onServed: options.onServed }
    this.grants.set(key, [...(this.grants.get(key) ?? []), grant])
    return () => {
      const left = (this.grants.get(key) ?? []).filter(g => g !== grant)
      if (left.length > 0) this.grants.set(key, left)
      else this.grants.delete(key)
    }
  }

  protected async answer (stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString()
    const timer = new PhaseTimer<'receiving' | 'sending'>((phase, ms) => new StreamStalledError(this.protocol, peer, phase, ms), this.stopping)
    let cid: string | undefined
    try {
      timer.enter('receiving', this.stallMs)
      const io = framed(stream, FETCH_LIMITS)
      const req = await io.readMessage(decodeFetchRequest, 'fetch request', { signal: timer.signal })
      cid = req.cid
      timer.enter('sending', this.stallMs)
      await this.serve(io, peer, req, timer)
      await stream.close({ signal: timer.signal })
    } catch (err) {
      const reason = timer.expired ?? err
      this.log.warn(`fetch of ${cid ?? 'a blob'} by ${peer} not served: ${messageOf(reason)}`, { peer, addr: connection.remoteAddr.toString(), transport: this.transportOf(connection), phase: 'fetch', code: codeOf(reason) })
      stream.abort(reason instanceof Error ? reason : new Error(String(reason)))
    } finally {
      timer.dispose()
    }
  }

  /** The response and the bytes from `offset`, or a refusal: a CID not granted to this peer is never read. */
  private async serve (io: FramedStream, peer: string, { cid, offset, length }: FetchRequest, timer: PhaseTimer<'receiving' | 'sending'>): Promise<void> {
    const grant = this.grants.get(grantKey(peer, cid))?.[0]
    const size = grant?.payload.byteLength ?? 0
    const refusal: FetchResponse | undefined = grant == null
      ? { refused: 'not-granted', error: `no task dispatched to ${peer} names ${cid}` }
      : offset > size ? { refused: 'bad-offset', error: `offset ${offset} is past the ${size} bytes of ${cid}` } : undefined
    if (refusal != null || grant == null) {
      this.stats.refused++
      this.log.info(`fetch of ${cid} by ${peer} refused: ${refusal != null && 'error' in refusal ? refusal.error : ''}`, { peer, phase: 'fetch', code: 'FETCH_REFUSED' })
      await io.writeFrame(encodeFetchResponse(refusal ?? { refused: 'not-granted', error: '' }), { signal: timer.signal })
      return
    }
    await io.writeFrame(encodeFetchResponse({ size }), { signal: timer.signal })
    let last = 0
    await io.writePayload(sliceFrom(grant.payload, offset, Math.min(size, offset + (length ?? size))), {
      signal: timer.signal,
      onFrame: (bytes) => {
        timer.touch()
        grant.onServed?.(bytes - last)
        this.stats.bytesServed += bytes - last
        last = bytes
      }
    })
    this.stats.served++
  }

  // ---- donor side ----------------------------------------------------------

  /**
   * The blob's bytes: from the content store when it holds them, else
   * fetched from the broker at the other end of `connection` into the store
   * first (resumed at what was written, while attempts last). Throws
   * ContentTooLargeError or ContentStoreFullError (this donor cannot keep
   * it), FetchRefusedError (the broker does not serve it to us), or
   * FetchFailedError with the peer, address, transport and cause.
   */
  async fetch (connection: Connection, want: FetchWant, options: AbortOptions = {}): Promise<Uint8Array> {
    const store = this.init.store
    if (store == null) throw new Error('this node has no content store to fetch into')
    const cid = parseCid(want.cid)?.toString() ?? want.cid
    if (store.has(cid)) {
      const held = await readHeld(store, cid)
      if (held != null) return held
    }
    const write = await store.begin(cid, want.size)
    const blob = new BlobAssembly(want.size)
    try {
      await this.fetchInto(connection, { ...want, cid }, write, blob, options)
      await write.commit()
    } catch (err) {
      await write.abort()
      throw this.failure(connection, want, err)
    }
    this.stats.fetches++
    // the bytes just hashed and kept, not read back from the file they went to
    return blob.bytes
  }

  /** Donor: the content store's copy of a blob, when it holds one. */
  async held (cid: string): Promise<Uint8Array | undefined> {
    const store = this.init.store
    const key = parseCid(cid)?.toString() ?? cid
    if (store == null || !store.has(key)) return undefined
    return await readHeld(store, key)
  }

  /** Attempts of one fetch, each resuming at what the last wrote. */
  private async fetchInto (connection: Connection, want: FetchWant, write: ContentWrite, blob: BlobAssembly, options: AbortOptions): Promise<void> {
    const attempts = this.init.attempts ?? FETCH_ATTEMPTS
    for (let attempt = 1; ; attempt++) {
      try {
        while (write.written < want.size) await this.fetchRanges(connection, want, write, blob, options)
        return
      } catch (err) {
        if (attempt >= attempts || !resumable(err) || options.signal?.aborted === true || connection.status !== 'open') throw err
        this.log.warn(`fetch of ${want.what} ${want.cid} from ${connection.remotePeer.toString()} broke at ${write.written} of ${want.size} bytes: ${messageOf(err)}; resuming (attempt ${attempt + 1} of ${attempts})`, this.fields(connection, err))
        await pause(backoffDelay(this.init.retryBackoff ?? FETCH_RETRY_BACKOFF, attempt), { signal: options.signal })
      }
    }
  }

  /**
   * The ranges from what was written to the end, one range ahead: the next
   * range is asked for once the current one's answer came, so its stream's
   * negotiation and its request's round trip overlap the current range's
   * bytes instead of following them (FETCH_RANGE_BYTES says how long a range
   * must last for that). At most two ranges are under way, so what can wait
   * in memory stays bounded by one range beside the one being written.
   */
  private async fetchRanges (connection: Connection, want: FetchWant, write: ContentWrite, blob: BlobAssembly, options: AbortOptions): Promise<void> {
    let ahead: RangeAhead | undefined = this.rangeAhead(connection, want, write.written, options)
    while (ahead != null) {
      const current: OpenedRange = await ahead.opened
      if ('error' in current) throw current.error
      const range: FetchRange = current.range
      ahead = range.end < want.size ? this.rangeAhead(connection, want, range.end, options) : undefined
      try {
        await this.receiveRange(range, write, blob, want)
      } catch (err) {
        await ahead?.cancel(err)
        throw err
      }
    }
  }

  /** A range asked for ahead of its turn, settled (never rejected, so it may wait unobserved) and cancellable. */
  private rangeAhead (connection: Connection, want: FetchWant, offset: number, options: AbortOptions): RangeAhead {
    const stop = new AbortController()
    const signal = options.signal != null ? AbortSignal.any([options.signal, stop.signal]) : stop.signal
    const opened: Promise<OpenedRange> = this.openRange(connection, want, offset, { signal }).then(range => ({ range }), (error: unknown) => ({ error }))
    const cancel = async (reason: unknown): Promise<void> => {
      stop.abort(reason)
      const settled = await opened
      if ('range' in settled) {
        settled.range.timer.dispose()
        settled.range.stream.abort(reason instanceof Error ? reason : new Error(String(reason)))
      }
    }
    return { opened, cancel }
  }

  /** A range's stream: opened, asked for `offset` to the range's end, its answer read; its bytes are left for receiveRange. */
  private async openRange (connection: Connection, want: FetchWant, offset: number, options: AbortOptions): Promise<FetchRange> {
    const peer = connection.remotePeer.toString()
    const timer = new PhaseTimer<'receiving' | 'sending'>((phase, ms) => new StreamStalledError(this.protocol, peer, phase, ms), options.signal)
    let stream: Stream | undefined
    try {
      timer.enter('sending', this.stallMs)
      stream = await openProtocolStream(connection, this.protocol, undefined, { signal: timer.signal })
      const io = framed(stream, FETCH_LIMITS)
      const end = Math.min(want.size, offset + (this.init.rangeBytes ?? FETCH_RANGE_BYTES))
      await io.writeFrame(encodeFetchRequest({ cid: want.cid, offset, length: end - offset }), { signal: timer.signal })
      timer.enter('receiving', this.stallMs)
      const res = await io.readMessage(decodeFetchResponse, 'fetch response', { signal: timer.signal })
      if ('refused' in res) throw new FetchRefusedError(`broker ${peer} refused to serve ${want.cid} (${res.refused}): ${res.error}`)
      if (res.size !== want.size) throw new ProtocolViolationError(`broker ${peer} serves ${want.cid} as ${res.size} bytes; its dispatch said ${want.size}`)
      // a range ahead waits for the one before it to be on disk: no stall clock until its own bytes are read
      timer.dispose()
      return { stream, io, offset, end, timer }
    } catch (err) {
      const reason = timer.expired ?? err
      stream?.abort(reason instanceof Error ? reason : new Error(String(reason)))
      timer.dispose()
      throw reason
    }
  }

  /** A range's bytes, written to the store before it returns. */
  private async receiveRange ({ stream, io, offset, end, timer }: FetchRange, write: ContentWrite, blob: BlobAssembly, want: FetchWant): Promise<void> {
    try {
      if (write.written !== offset) throw new ProtocolViolationError(`${want.what} ${want.cid}: a range from byte ${offset} came while ${write.written} bytes were written`)
      timer.enter('receiving', this.stallMs)
      await receiveInto(io, write, blob, want, end, timer)
      this.stats.bytesFetched += end - offset
      await stream.close({ signal: timer.signal })
    } catch (err) {
      const reason = timer.expired ?? err
      stream.abort(reason instanceof Error ? reason : new Error(String(reason)))
      throw reason
    } finally {
      timer.dispose()
    }
  }

  /** A failure as the caller sees it: the store's own errors and refusals by class, anything else a FetchFailedError, logged once with its fields. */
  private failure (connection: Connection, want: FetchWant, err: unknown): Error {
    const peer = connection.remotePeer.toString()
    const addr = connection.remoteAddr.toString()
    const out = err instanceof ContentStoreFullError || err instanceof ContentTooLargeError || err instanceof FetchRefusedError
      ? err
      : new FetchFailedError(want.cid, peer, addr, this.transportOf(connection), { cause: err })
    this.log.warn(`fetch of ${want.what} ${want.cid} (${want.size} bytes) from ${peer} failed: ${messageOf(err)}`, this.fields(connection, err))
    return out
  }

  private fields (connection: Connection, err: unknown): Record<string, unknown> {
    return { peer: connection.remotePeer.toString(), addr: connection.remoteAddr.toString(), transport: this.transportOf(connection), phase: 'fetch', code: codeOf(err) }
  }

  private transportOf (connection: Connection): string {
    const addr = connection.remoteAddr.toString()
    return this.init.transportOf?.(addr) ?? (addr.includes('/p2p-circuit') ? 'circuit' : 'direct')
  }

  private get stallMs (): number {
    return this.init.stallTimeoutMs ?? FETCH_STALL_TIMEOUT_MS
  }
}

/** The payload's bytes from `offset` to `end`, as a source of that size. */
function sliceFrom (payload: Payload, offset: number, end: number): Payload {
  if (payload instanceof Uint8Array) return payload.subarray(offset, end)
  const source = payload as OffsetPayloadSource
  return {
    byteLength: end - offset,
    chunks: (options) => upTo(source.chunksFrom != null ? source.chunksFrom(offset, options) : skipping(source.chunks(options), offset), end - offset)
  }
}

/** The first `limit` bytes of `chunks`; the rest is not read. */
async function * upTo (chunks: AsyncIterable<Uint8Array>, limit: number): AsyncIterable<Uint8Array> {
  let left = limit
  for await (const chunk of chunks) {
    if (left <= 0) return
    yield chunk.byteLength <= left ? chunk : chunk.subarray(0, left)
    left -= chunk.byteLength
  }
}

/** A source without offsets, read from its start and the first `skip` bytes dropped. */
async function * skipping (chunks: AsyncIterable<Uint8Array>, skip: number): AsyncIterable<Uint8Array> {
  let left = skip
  for await (const chunk of chunks) {
    if (left >= chunk.byteLength) { left -= chunk.byteLength; continue }
    yield chunk.subarray(left)
    left = 0
  }
}

/**
 * A fetched blob's bytes in one buffer of its size, taken at its first byte
 * (a broker that announces a size and sends nothing costs no memory), which
 * the fetch hands back whole once the store kept it. Each frame is copied in
 * once where it belongs, and the store's writes are views of it: joining
 * frames into write batches, and reading the blob back from disk afterwards,
 * would each cost about as much as that copy again.
 */
class BlobAssembly {
  readonly size: number
  private buffer: Uint8Array | undefined

  constructor (size: number) {
    this.size = size
  }

  /** `frame` at `offset`; the caller has checked that it ends within the blob */
  put (frame: Uint8Array, offset: number, cid: string): void {
    this.buffer ??= allocate(this.size, cid)
    this.buffer.set(frame, offset)
  }

  /** the bytes from `start` to `end`, a view (never changed after: later frames land further on) */
  view (start: number, end: number): Uint8Array {
    return this.buffer?.subarray(start, end) ?? new Uint8Array(0)
  }

  get bytes (): Uint8Array {
    return this.buffer ?? new Uint8Array(this.size)
  }
}

/** A blob's buffer; one this process cannot allocate is a blob this donor cannot take (refused, not failed: nothing ran). */
function allocate (size: number, cid: string): Uint8Array {
  try {
    return new Uint8Array(size)
  } catch (err) {
    throw new ContentTooLargeError(`${cid} is ${size} bytes, more than this donor can hold in memory for its task (${messageOf(err)})`, { cause: err })
  }
}

/**
 * Frames into the blob and the store until the empty frame, checked against
 * the range asked for (the announced size is never trusted to allocate: the
 * blob's buffer has the size the dispatch named, which the donor admitted).
 * The muxer hands frames over as fast as they arrive and does not wait for a
 * slow reader, so what arrived is written in batches, one write at a time
 * while the next batch fills: the disk's pace never holds the stream's reads
 * up frame by frame.
 */
async function receiveInto (io: FramedStream, write: ContentWrite, blob: BlobAssembly, want: FetchWant, end: number, timer: PhaseTimer<'receiving' | 'sending'>): Promise<void> {
  let received = write.written
  let batchStart = received
  let failed: unknown
  let writing: Promise<void> = Promise.resolve()
  const flush = async (): Promise<void> => {
    const bytes = blob.view(batchStart, received)
    batchStart = received
    await writing
    if (failed != null) throw failed
    if (bytes.byteLength > 0) writing = write.write(bytes).catch((err: unknown) => { failed = err })
  }
  try {
    while (true) {
      const frame = await io.readFrame(want.what, { signal: timer.signal })
      if (frame.byteLength === 0) break
      if (received + frame.byteLength > end) throw new PayloadTooLargeError(`${want.what} ${want.cid}: the broker sent more than the ${end} bytes asked for; cut off`, end)
      blob.put(frame, received, want.cid)
      received += frame.byteLength
      timer.touch()
      if (received - batchStart >= WRITE_BATCH_BYTES) await flush()
    }
  } finally {
    // what arrived before a break is kept too: a resumed fetch starts after it (the hash at the end judges it all)
    await flush()
    await writing
  }
  if (failed != null) throw failed
  if (write.written !== end) throw new ProtocolViolationError(`${want.what} ${want.cid}: the broker sent up to byte ${write.written} of a range ending at ${end}`)
}

/** The store's copy, or undefined when it was evicted between `has` and the read. */
async function readHeld (store: ContentSink, cid: string): Promise<Uint8Array | undefined> {
  try {
    return await store.read(cid)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

/** Whether a failed attempt may be resumed: the path broke or stalled, not a refusal, a full disk or bad bytes. */
function resumable (err: unknown): boolean {
  if (err instanceof FetchRefusedError || err instanceof ContentStoreFullError || err instanceof ContentTooLargeError || err instanceof ContentCidMismatchError || err instanceof PayloadTooLargeError) return false
  return !(err instanceof WorldComputeError) || err instanceof StreamStalledError || err.code === 'PROTOCOL_VIOLATION'
}

function grantKey (peer: string, cid: string): string {
  return `${peer} ${parseCid(cid)?.toString() ?? cid}`
}
