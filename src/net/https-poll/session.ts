import type { ServerResponse } from 'node:http'
import { errorWithCode } from '../../core/errors.ts'
import { ByteQueue } from './byte-queue.ts'
import type { PollEnd, PollSink } from './connection.ts'

/** A session that no request reached for its idle time: the client is gone. */
export class PollSessionExpiredError extends errorWithCode('POLL_SESSION_EXPIRED') {}

/** The session ended by a reset from this end. */
export class PollSessionResetError extends errorWithCode('POLL_SESSION_RESET') {}

export interface ServerSessionInit {
  id: string
  ip: string
  /** how long a downstream poll is held open when there is nothing to send */
  pollWaitMs: number
  /** bytes in one downstream response at most */
  maxResponseBytes: number
  /** unacknowledged downstream bytes past which writes say "no more" */
  maxBufferedBytes: number
  /** answers one HTTP response (content-length body, no-store) */
  reply: (res: ServerResponse, status: number, body?: Uint8Array | string) => void
  /** the session is over: the server forgets it */
  onEnd: (session: ServerSession) => void
}

interface HeldPoll {
  ack: number
  res: ServerResponse
  timer: NodeJS.Timeout
}

/**
 * The relay's end of one poll session. Upstream bytes arrive in POST bodies
 * tagged with their stream offset; downstream bytes wait in a queue until a
 * poll acknowledges them, so a request retried after a lost response is
 * answered with the same bytes and nothing is lost or delivered twice.
 * At most one poll is held; a newer one (the client retried) releases it.
 */
export class ServerSession implements PollEnd {
  readonly id: string
  readonly ip: string
  readonly #init: ServerSessionInit
  readonly #down = new ByteQueue()
  #upEnd = 0
  #sink?: PollSink
  #held?: HeldPoll
  /** this end closed: the session ends once the client has every byte */
  #closing = false
  #ended = false

  constructor (init: ServerSessionInit) {
    this.id = init.id
    this.ip = init.ip
    this.#init = init
  }

  get ended (): boolean { return this.#ended }

  attach (sink: PollSink): void {
    this.#sink = sink
  }

  /** POST …/up/<offset>: the bytes from `offset`; answers the offset now acknowledged. */
  upload (offset: number, body: Uint8Array, res: ServerResponse): void {
    if (this.#ended) { this.#init.reply(res, 410, 'session closed'); return }
    if (offset > this.#upEnd) { this.#init.reply(res, 409, `expected offset ${this.#upEnd}`); return }
    const fresh = body.subarray(Math.min(body.byteLength, this.#upEnd - offset))
    this.#upEnd += fresh.byteLength
    this.#init.reply(res, 200, String(this.#upEnd))
    if (fresh.byteLength > 0) this.#sink?.data(fresh)
  }

  /** POST …/down/<ack>: acknowledges the bytes before `ack`, answers the bytes from it (waiting for some). */
  poll (ack: number, res: ServerResponse): void {
    if (this.#ended) { this.#init.reply(res, 410, 'session closed'); return }
    if (ack < this.#down.base || ack > this.#down.end) {
      this.#init.reply(res, 409, `ack ${ack} outside ${this.#down.base}..${this.#down.end}`)
      return
    }
    this.#acknowledge(ack)
    this.#release()
    if (this.#down.end > ack) { this.#answer(ack, res); return }
    if (this.#closing) { this.#finish(res); return }
    const timer = setTimeout(() => { this.#release() }, this.#init.pollWaitMs)
    const held: HeldPoll = { ack, res, timer }
    this.#held = held
    res.once('close', () => {
      if (this.#held === held) { clearTimeout(timer); this.#held = undefined }
    })
  }

  /** POST …/close: the client ended the session. */
  remoteClose (res: ServerResponse): void {
    this.#init.reply(res, 204)
    this.#end()
    this.#sink?.closed()
  }

  /** No request for the idle time. */
  expire (idleMs: number): void {
    if (this.#ended) return
    this.#end()
    this.#sink?.closed(new PollSessionExpiredError(`poll session from ${this.ip} had no request for ${idleMs} ms`))
  }

  write (bytes: Uint8Array): boolean {
    if (this.#ended || this.#closing) return false
    this.#down.push(bytes)
    const held = this.#held
    if (held != null && this.#down.end > held.ack) {
      this.#clearHeld()
      this.#answer(held.ack, held.res)
    }
    return this.#down.length < this.#init.maxBufferedBytes
  }

  async close (): Promise<void> {
    this.#closing = true
    const held = this.#held
    if (held != null && this.#down.end <= held.ack) {
      this.#clearHeld()
      this.#finish(held.res)
    }
  }

  reset (err: Error): void {
    const held = this.#held
    this.#clearHeld()
    if (held != null) this.#init.reply(held.res, 410, `session reset: ${err.message}`)
    this.#end()
  }

  #acknowledge (ack: number): void {
    const wasFull = this.#down.length >= this.#init.maxBufferedBytes
    this.#down.dropUntil(ack)
    if (wasFull && this.#down.length < this.#init.maxBufferedBytes) this.#sink?.drain()
  }

  #answer (ack: number, res: ServerResponse): void {
    this.#init.reply(res, 200, this.#down.read(ack, this.#init.maxResponseBytes))
  }

  /** A held poll ends with no bytes (its wait ran out, or a newer poll replaced it); the client polls again. */
  #release (): void {
    const held = this.#held
    if (held == null) return
    this.#clearHeld()
    this.#init.reply(held.res, 200, new Uint8Array(0))
  }

  #clearHeld (): void {
    if (this.#held != null) clearTimeout(this.#held.timer)
    this.#held = undefined
  }

  /** Everything sent was acknowledged after this end closed: 410 tells the client the stream ended. */
  #finish (res: ServerResponse): void {
    this.#init.reply(res, 410, 'session closed')
    this.#end()
  }

  #end (): void {
    if (this.#ended) return
    this.#ended = true
    this.#clearHeld()
    this.#init.onEnd(this)
  }
}
