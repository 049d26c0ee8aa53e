import type { Socket } from 'node:net'

/**
 * One CONNECT request and the proxy's answer, on a connection we hold.
 *
 * Why not Node's HTTP client here: NTLM authenticates the CONNECTION, so the
 * type 1 and type 3 messages must go as further CONNECTs on the SAME socket
 * that carried the 407 with the challenge. Node's client treats any answer
 * to a CONNECT as an upgrade and hands the socket over with the 407's body
 * unread, so the next request would start in the middle of an error page.
 * This reader parses the status line and headers, skips a refusal's body by
 * its Content-Length, and says whether the connection can carry the next
 * round (HTTP/1.1 without `Connection: close`, a body of known length).
 */

/** A proxy's answer to one CONNECT. */
export interface ConnectAnswer {
  status: number
  statusText: string
  /** header values by lower-case name, in the order received (a proxy may send several `Proxy-Authenticate`) */
  headers: Map<string, string[]>
  /** the connection can carry another CONNECT (keep-alive, body skipped) */
  reusable: boolean
  /** bytes after the headers of a 2xx answer: they already belong to the tunnel */
  head: Buffer
}

/** The proxy's answer is not HTTP, is too large, or the connection ended before it was whole. */
export class ConnectAnswerError extends Error {
  /** the connection ended (closed or reset) before the answer was whole */
  readonly closed: boolean
  /** not one byte of an answer came: a kept-alive connection the proxy had already closed */
  readonly silent: boolean
  constructor (message: string, closed: boolean, silent = false, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'ConnectAnswerError'
    this.closed = closed
    this.silent = silent
  }
}

/** Headers larger than this are not a proxy's answer to a CONNECT. */
const MAX_HEADER_BYTES = 64 * 1024
/** A refusal's body (an error page) longer than this is not read through: the connection is not reused. */
const MAX_SKIPPED_BODY = 1024 * 1024

/** The CONNECT request line and headers; `authorization` is a whole `Proxy-Authorization` value. */
export function connectRequest (target: string, authorization?: string): string {
  const lines = [`CONNECT ${target} HTTP/1.1`, `Host: ${target}`, 'Proxy-Connection: keep-alive']
  if (authorization != null) lines.push(`Proxy-Authorization: ${authorization}`)
  return `${lines.join('\r\n')}\r\n\r\n`
}

/**
 * Writes a CONNECT and reads the answer. The signal's abort rejects with its
 * reason and leaves the socket to the caller (who destroys it).
 */
export async function connectRound (socket: Socket, target: string, authorization: string | undefined, signal: AbortSignal): Promise<ConnectAnswer> {
  signal.throwIfAborted()
  const answer = readAnswer(socket, signal)
  socket.write(connectRequest(target, authorization))
  return await answer
}

/** Reads one answer off the socket: headers, then a refusal's body by its length. */
async function readAnswer (socket: Socket, signal: AbortSignal): Promise<ConnectAnswer> {
  return await new Promise<ConnectAnswer>((resolve, reject) => {
    let buffered = Buffer.alloc(0)
    let parsed: Omit<ConnectAnswer, 'head'> & { bodyLeft: number } | undefined
    const cleanup = (): void => {
      socket.removeListener('readable', onReadable)
      socket.removeListener('end', onEnd)
      socket.removeListener('close', onEnd)
      socket.removeListener('error', onError)
      signal.removeEventListener('abort', onAbort)
    }
    const fail = (err: Error): void => { cleanup(); reject(err) }
    // with the 'readable' listener gone the socket is neither flowing nor paused, so whoever reads
    // the tunnel next (a pipe, a 'data' listener, TLS) starts it as on a fresh socket
    const done = (answer: ConnectAnswer): void => { cleanup(); resolve(answer) }
    const onChunk = (chunk: Buffer): boolean => {
      buffered = Buffer.concat([buffered, chunk])
      if (parsed == null) {
        const end = buffered.indexOf('\r\n\r\n')
        if (end === -1) {
          if (buffered.length > MAX_HEADER_BYTES) fail(new ConnectAnswerError(`an answer with more than ${MAX_HEADER_BYTES} bytes of headers`, false))
          return buffered.length > MAX_HEADER_BYTES
        }
        try {
          parsed = parseHead(buffered.subarray(0, end).toString('latin1'))
        } catch (err) {
          fail(err as Error)
          return true
        }
        buffered = buffered.subarray(end + 4)
        if (parsed.status >= 200 && parsed.status < 300) {
          done({ ...parsed, reusable: false, head: buffered })
          return true
        }
      }
      if (buffered.length < parsed.bodyLeft) return false
      // bytes past the body would answer a request we did not send: do not reuse
      done({ ...parsed, reusable: parsed.reusable && buffered.length === parsed.bodyLeft, head: Buffer.alloc(0) })
      return true
    }
    const onReadable = (): void => {
      for (let chunk = socket.read() as Buffer | null; chunk != null; chunk = socket.read() as Buffer | null) {
        if (onChunk(chunk)) return
      }
    }
    const onEnd = (): void => {
      if (parsed != null) {
        // a refusal whose body ran to the end of the connection: whole, but the connection is gone
        done({ ...parsed, reusable: false, head: Buffer.alloc(0) })
        return
      }
      const silent = buffered.length === 0
      fail(new ConnectAnswerError(silent ? 'closed the connection without answering the CONNECT' : 'closed the connection in the middle of its answer', true, silent))
    }
    const onError = (err: NodeJS.ErrnoException): void => {
      if (parsed != null) { onEnd(); return }
      fail(new ConnectAnswerError(err.code === 'ECONNRESET' ? 'reset the connection without answering the CONNECT' : err.message, true, buffered.length === 0, { cause: err }))
    }
    const onAbort = (): void => { fail(signal.reason as Error) }
    socket.on('readable', onReadable)
    socket.once('end', onEnd)
    socket.once('close', onEnd)
    socket.once('error', onError)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

/** Status line and headers; throws a {@link ConnectAnswerError} for anything that is not HTTP/1.x. */
function parseHead (text: string): Omit<ConnectAnswer, 'head'> & { bodyLeft: number } {
  const [statusLine, ...lines] = text.split('\r\n')
  const m = /^HTTP\/1\.([01]) (\d{3})(?: (.*))?$/.exec(statusLine)
  if (m == null) throw new ConnectAnswerError(`the answer is not HTTP/1.x: "${statusLine.slice(0, 80)}"`, false)
  const headers = new Map<string, string[]>()
  for (const line of lines) {
    const colon = line.indexOf(':')
    if (colon <= 0) continue
    const name = line.slice(0, colon).trim().toLowerCase()
    headers.set(name, [...(headers.get(name) ?? []), line.slice(colon + 1).trim()])
  }
  const connection = [...(headers.get('connection') ?? []), ...(headers.get('proxy-connection') ?? [])].join(',').toLowerCase()
  const length = headers.get('content-length')?.[0]
  const bodyLeft = length != null && /^\d+$/.test(length) ? Number(length) : NaN
  const keepAlive = m[1] === '1' ? !connection.includes('close') : connection.includes('keep-alive')
  // a body without a length (chunked, or read to the close) or a huge one is not read for a
  // refusal: the answer is taken at once, and a next round opens a new connection
  const skippable = Number.isFinite(bodyLeft) && bodyLeft <= MAX_SKIPPED_BODY
  return {
    status: Number(m[2]),
    statusText: m[3] ?? '',
    headers,
    reusable: keepAlive && skippable,
    bodyLeft: skippable ? bodyLeft : 0
  }
}
