import { backoffDelay, pause, type BackoffPolicy } from '../../core/async.ts'
import type { Logger } from '../../log/logger.ts'
import { ByteQueue } from './byte-queue.ts'
import type { PollEnd, PollSink } from './connection.ts'
import { HttpsPollError, codeOfStatus } from './errors.ts'
import type { PollHttp, PollResponse } from './http-client.ts'

export interface ClientSessionInit {
  http: PollHttp
  /** the route prefix, `/wc-poll/1` */
  path: string
  id: string
  log: Logger
  /** bytes per upload request at most @default 256 KiB */
  maxUploadBytes?: number
  /** queued upstream bytes past which writes say "no more" @default 4 MiB */
  maxBufferedBytes?: number
  /** a poll's answer is awaited this long (the relay holds it up to its wait) @default 30000 */
  pollTimeoutMs?: number
  /** an upload's answer @default 15000 */
  uploadTimeoutMs?: number
  /** failed requests in a row are retried for this long before the session counts as lost @default 20000 */
  giveUpMs?: number
  /** @default 100 ms doubling to 2 s */
  retry?: BackoffPolicy
}

const RETRY: BackoffPolicy = { initialMs: 100, maxMs: 2_000, jitter: 0.2 }

/** Opens a session: POST <path>/open → the id. */
export async function openSession (http: PollHttp, path: string, signal: AbortSignal): Promise<string> {
  let res: PollResponse
  try {
    res = await http.post(`${path}/open`, new Uint8Array(0), { signal })
  } catch (err) {
    if (signal.aborted) throw signal.reason
    // a socket, tunnel or TLS error already names its phase and code (dial-error.ts reads them)
    if (typeof (err as { code?: unknown }).code === 'string') throw err
    throw new HttpsPollError(`the poll session request got no answer: ${(err as Error).message}`, 'POLL_NO_ANSWER', 'http', { cause: err })
  }
  const id = Buffer.from(res.body).toString('utf8')
  if (res.status !== 200 || !/^[0-9a-f]{32}$/.test(id)) {
    throw new HttpsPollError(`the relay (or a proxy) answered the poll session request with HTTP ${res.status}${res.status === 200 ? ' and no session id' : ''}`, codeOfStatus(res.status === 200 ? 0 : res.status), 'http', { status: res.status })
  }
  return id
}

/**
 * The donor's end of a poll session: one upload and one long poll in flight
 * at most. An upload names the offset of its first byte and is repeated
 * until acknowledged; a poll acknowledges the bytes received so far, so a
 * lost answer is answered again. Requests that fail are retried with backoff
 * until {@link ClientSessionInit.giveUpMs} of failures in a row, then the
 * session is lost (the connection closes with the cause).
 */
export class ClientSession implements PollEnd {
  readonly #init: Required<Omit<ClientSessionInit, 'http' | 'path' | 'id' | 'log'>> & ClientSessionInit
  readonly #up = new ByteQueue()
  readonly #stop = new AbortController()
  #sink?: PollSink
  #uploading = false
  #wantDrain = false
  #down = 0
  #ended = false
  #flushed?: () => void

  constructor (init: ClientSessionInit) {
    this.#init = {
      maxUploadBytes: 256 * 1024,
      maxBufferedBytes: 4 * 1024 * 1024,
      pollTimeoutMs: 30_000,
      uploadTimeoutMs: 15_000,
      giveUpMs: 20_000,
      retry: RETRY,
      ...init
    }
  }

  attach (sink: PollSink): void {
    this.#sink = sink
    void this.#pollLoop()
  }

  write (bytes: Uint8Array): boolean {
    if (this.#ended) return false
    this.#up.push(bytes)
    if (!this.#uploading) void this.#uploadLoop()
    const room = this.#up.length < this.#init.maxBufferedBytes
    if (!room) this.#wantDrain = true
    return room
  }

  /** Sends what is queued (bounded by the signal), then ends the session on the relay. */
  async close (options?: { signal?: AbortSignal }): Promise<void> {
    if (this.#ended) return
    if (this.#up.length > 0) {
      await new Promise<void>((resolve) => {
        this.#flushed = resolve
        options?.signal?.addEventListener('abort', () => { resolve() }, { once: true })
      })
    }
    this.#end()
    await this.#sendClose()
  }

  reset (err: Error): void {
    if (this.#ended) return
    this.#init.log.debug(`poll session ${this.#init.id.slice(0, 8)} reset: ${err.message}`)
    this.#end()
    void this.#sendClose()
  }

  #end (): void {
    this.#ended = true
    this.#stop.abort(new Error('poll session ended'))
  }

  async #sendClose (): Promise<void> {
    try {
      await this.#init.http.post(`${this.#init.path}/s/${this.#init.id}/close`, new Uint8Array(0), { signal: AbortSignal.timeout(5_000) })
    } catch (err) {
      // the relay expires the session by itself when idle; nothing is lost but its slot for a while
      this.#init.log.debug(`closing poll session ${this.#init.id.slice(0, 8)} on the relay failed: ${(err as Error).message}`)
    } finally {
      this.#init.http.close()
    }
  }

  /** The session is lost (the relay forgot it, or it stopped answering): the connection closes with why. */
  #lose (err: HttpsPollError): void {
    if (this.#ended) return
    this.#init.log.warn(`poll session ${this.#init.id.slice(0, 8)} lost: ${err.message}`, { transport: 'https-poll', phase: 'http', code: err.code })
    this.#end()
    this.#init.http.close()
    this.#flushed?.()
    this.#sink?.closed(err)
  }

  async #pollLoop (): Promise<void> {
    while (!this.#ended) {
      const res = await this.#request(`down/${this.#down}`, new Uint8Array(0), this.#init.pollTimeoutMs)
      if (res == null) return
      if (res.status === 410) {
        this.#end()
        this.#init.http.close()
        this.#sink?.closed()
        return
      }
      if (res.body.byteLength > 0) {
        this.#down += res.body.byteLength
        this.#sink?.data(res.body)
      }
    }
  }

  async #uploadLoop (): Promise<void> {
    this.#uploading = true
    try {
      while (!this.#ended && this.#up.length > 0) {
        const offset = this.#up.base
        const res = await this.#request(`up/${offset}`, this.#up.read(offset, this.#init.maxUploadBytes), this.#init.uploadTimeoutMs)
        // the relay closed the session: the poll loop ends the connection
        if (res == null || res.status === 410) return
        const acked = Number(Buffer.from(res.body).toString('utf8'))
        if (!Number.isSafeInteger(acked) || acked < offset || acked > this.#up.end) {
          this.#lose(new HttpsPollError(`the relay acknowledged offset "${Buffer.from(res.body).toString('utf8').slice(0, 20)}" for an upload at ${offset}`, 'POLL_OUT_OF_SEQUENCE', 'http'))
          return
        }
        this.#up.dropUntil(acked)
        this.#drained()
      }
      this.#flushed?.()
    } finally {
      this.#uploading = false
    }
  }

  #drained (): void {
    if (this.#wantDrain && this.#up.length < this.#init.maxBufferedBytes) {
      this.#wantDrain = false
      this.#sink?.drain()
    }
  }

  /**
   * One request, repeated on network errors and 5xx until it gets a 2xx or
   * 410 (returned), a definitive 4xx or the give-up time (the session is
   * lost: undefined), or the session ends (undefined).
   */
  async #request (verb: string, body: Uint8Array, timeoutMs: number): Promise<PollResponse | undefined> {
    const firstFailure = { at: 0, count: 0 }
    while (!this.#ended) {
      const signal = AbortSignal.any([this.#stop.signal, AbortSignal.timeout(timeoutMs)])
      let failure: HttpsPollError
      try {
        const res = await this.#init.http.post(`${this.#init.path}/s/${this.#init.id}/${verb}`, body, { signal })
        if ((res.status >= 200 && res.status < 300) || res.status === 410) return res
        failure = new HttpsPollError(`the relay answered ${verb.split('/')[0]} with HTTP ${res.status}`, codeOfStatus(res.status), 'http', { status: res.status })
        if (res.status < 500) { this.#lose(failure); return undefined }
      } catch (err) {
        if (this.#ended) return undefined
        failure = new HttpsPollError(`${verb.split('/')[0]} request failed: ${(err as Error).message}`, 'POLL_NO_ANSWER', 'http', { cause: err })
      }
      if (firstFailure.count++ === 0) firstFailure.at = Date.now()
      if (Date.now() - firstFailure.at >= this.#init.giveUpMs) { this.#lose(failure); return undefined }
      this.#init.log.debug(`poll session ${this.#init.id.slice(0, 8)}: ${failure.message}; retrying`)
      await pause(backoffDelay(this.#init.retry, firstFailure.count), { signal: this.#stop.signal })
    }
    return undefined
  }
}
