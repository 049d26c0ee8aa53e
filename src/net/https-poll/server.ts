import { randomBytes } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { createLogger, type Logger } from '../../log/logger.ts'
import { HTTPS_POLL_PATH } from '../constants.ts'
import { ServerSession } from './session.ts'

/** Limits of a relay's poll sessions; every one has a default sized for a relay's 443. */
export interface PollServerInit {
  /** route prefix @default HTTPS_POLL_PATH */
  path?: string
  /**
   * how long a downstream poll waits for bytes before it ends empty: a
   * buffering proxy forwards a response only once it is complete, so a poll
   * must end well before proxies' and clients' idle timeouts @default 10000
   */
  pollWaitMs?: number
  /** a session no request reached for this long is closed @default 45000 */
  idleMs?: number
  /** bytes in one upstream POST body at most (413 beyond) @default 1 MiB */
  maxUploadBytes?: number
  /** bytes in one downstream response at most @default 256 KiB */
  maxResponseBytes?: number
  /** unacknowledged downstream bytes per session before writes wait @default 4 MiB */
  maxBufferedBytes?: number
  /** open sessions at most @default 1024 */
  maxSessions?: number
  /** open sessions per client IP at most (a NATed office shares one) @default 32 */
  maxSessionsPerIp?: number
  logger?: Logger
}

export const POLL_DEFAULTS = Object.freeze({
  pollWaitMs: 10_000,
  idleMs: 45_000,
  maxUploadBytes: 1024 * 1024,
  maxResponseBytes: 256 * 1024,
  maxBufferedBytes: 4 * 1024 * 1024,
  maxSessions: 1024,
  maxSessionsPerIp: 32
})

/** A new session, handed to the listener that makes it a libp2p connection. */
export type SessionHandler = (session: ServerSession, req: IncomingMessage) => void

type Settings = Required<Omit<PollServerInit, 'logger'>>

/**
 * The relay side of the poll transport: one HTTP route (a prefix) on the
 * WebSocket listeners' route table. Every request is a POST with a
 * content-length body and an answer with one (no chunking, no hop-by-hop
 * header relied on), so proxies that buffer, re-sign TLS and strip
 * `Connection`/`Upgrade` pass it:
 *  - `POST <path>/open` → 200, the session id (128 random bits, hex);
 *  - `POST <path>/s/<id>/up/<offset>` with bytes → 200, the offset acknowledged;
 *  - `POST <path>/s/<id>/down/<ack>` → 200 with the bytes from `ack` (empty when none came within the wait), 410 once the stream ended;
 *  - `POST <path>/s/<id>/close` → 204.
 * Malformed requests get a 4xx and change nothing.
 */
export class PollServer {
  readonly settings: Settings
  readonly #log: Logger
  readonly #sessions = new Map<string, ServerSession>()
  readonly #idle = new Map<string, NodeJS.Timeout>()
  readonly #perIp = new Map<string, number>()
  readonly #onSession: SessionHandler

  constructor (init: PollServerInit, onSession: SessionHandler) {
    const { logger, ...rest } = init
    this.settings = { path: HTTPS_POLL_PATH, ...POLL_DEFAULTS, ...stripUndefined(rest) }
    this.#log = logger ?? createLogger('net.https-poll')
    this.#onSession = onSession
  }

  get sessionCount (): number { return this.#sessions.size }

  /** The route: claims every request under the prefix. */
  route = (req: IncomingMessage, res: ServerResponse): boolean => {
    const url = req.url ?? ''
    if (url !== this.settings.path && !url.startsWith(`${this.settings.path}/`)) return false
    this.#dispatch(req, res, url.slice(this.settings.path.length).split('?')[0].split('/').slice(1))
    return true
  }

  /** Ends every session (the listener closed). */
  closeAll (): void {
    for (const session of [...this.#sessions.values()]) session.reset(new Error('the relay stopped listening'))
  }

  #dispatch (req: IncomingMessage, res: ServerResponse, parts: string[]): void {
    if (req.method !== 'POST') { reply(res, 405, 'POST only'); req.resume(); return }
    if (parts.length === 1 && parts[0] === 'open') { this.#open(req, res); req.resume(); return }
    const [s, id, verb, arg] = parts
    const session = s === 's' && id != null ? this.#sessions.get(id) : undefined
    if (session == null) { reply(res, 404, 'no such session'); req.resume(); return }
    this.#idle.get(session.id)?.refresh()
    if (verb === 'close' && parts.length === 3) { session.remoteClose(res); req.resume(); return }
    const offset = parts.length === 4 ? parseOffset(arg) : undefined
    if (offset == null || (verb !== 'up' && verb !== 'down')) { reply(res, 400, 'malformed request'); req.resume(); return }
    if (verb === 'down') { session.poll(offset, res); req.resume(); return }
    this.#readBody(req, res, (body) => { session.upload(offset, body, res) })
  }

  #open (req: IncomingMessage, res: ServerResponse): void {
    const ip = req.socket.remoteAddress ?? 'unknown'
    const mine = this.#perIp.get(ip) ?? 0
    if (this.#sessions.size >= this.settings.maxSessions || mine >= this.settings.maxSessionsPerIp) {
      const which = mine >= this.settings.maxSessionsPerIp ? `${mine} from ${ip}, the per-IP limit` : `${this.#sessions.size}, the relay's limit`
      this.#log.warn(`poll session refused: ${which}`, { ip, transport: 'https-poll', phase: 'http', code: 'POLL_SESSION_LIMIT' })
      reply(res, 429, 'too many sessions')
      return
    }
    const session = new ServerSession({
      id: randomBytes(16).toString('hex'),
      ip,
      pollWaitMs: this.settings.pollWaitMs,
      maxResponseBytes: this.settings.maxResponseBytes,
      maxBufferedBytes: this.settings.maxBufferedBytes,
      reply,
      onEnd: (s) => { this.#forget(s) }
    })
    this.#sessions.set(session.id, session)
    this.#perIp.set(ip, mine + 1)
    const timer = setTimeout(() => { session.expire(this.settings.idleMs) }, this.settings.idleMs)
    timer.unref()
    this.#idle.set(session.id, timer)
    reply(res, 200, session.id)
    this.#onSession(session, req)
  }

  #forget (session: ServerSession): void {
    if (!this.#sessions.delete(session.id)) return
    clearTimeout(this.#idle.get(session.id))
    this.#idle.delete(session.id)
    const left = (this.#perIp.get(session.ip) ?? 1) - 1
    if (left <= 0) this.#perIp.delete(session.ip)
    else this.#perIp.set(session.ip, left)
  }

  #readBody (req: IncomingMessage, res: ServerResponse, done: (body: Uint8Array) => void): void {
    const declared = Number(req.headers['content-length'] ?? 0)
    if (declared > this.settings.maxUploadBytes) { reply(res, 413, 'body too large'); req.destroy(); return }
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (chunk: Buffer) => {
      size += chunk.byteLength
      if (size > this.settings.maxUploadBytes) { reply(res, 413, 'body too large'); req.destroy(); return }
      chunks.push(chunk)
    })
    req.once('end', () => { if (!res.headersSent) done(Buffer.concat(chunks)) })
    req.once('error', (err) => { this.#log.debug(`poll upload from ${req.socket.remoteAddress ?? '?'} broke off: ${err.message}`) })
  }
}

/** One complete response: a content-length body, never cached, never chunked. */
export function reply (res: ServerResponse, status: number, body?: Uint8Array | string): void {
  if (res.headersSent || res.destroyed) return
  const bytes = typeof body === 'string' ? Buffer.from(body) : body ?? new Uint8Array(0)
  res.writeHead(status, {
    'Content-Type': typeof body === 'string' ? 'text/plain' : 'application/octet-stream',
    'Content-Length': String(bytes.byteLength),
    'Cache-Control': 'no-store'
  })
  res.end(bytes)
}

/** A decimal stream offset (no sign, no exponent, safe integer); undefined otherwise. */
export function parseOffset (text: string | undefined): number | undefined {
  if (text == null || !/^\d{1,15}$/.test(text)) return undefined
  return Number(text)
}

function stripUndefined<T extends object> (o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>
}
