import { WorldComputeError } from '../../core/errors.ts'

/**
 * A poll dial or session failed at a known phase: `tls` (inside the tunnel or
 * to the relay), `http` (the relay's answer to a poll request). The phase
 * travels with the error so the dial recorder files it as any other rung's.
 */
export class HttpsPollError extends WorldComputeError {
  readonly phase: 'tcp-connect' | 'tls' | 'http'
  /** the HTTP status, when the relay (or a proxy) answered one */
  readonly status?: number
  constructor (message: string, code: string, phase: 'tcp-connect' | 'tls' | 'http', options?: { cause?: unknown, status?: number }) {
    super(message, code, options)
    this.phase = phase
    if (options?.status != null) this.status = options.status
  }
}

/** The code of an HTTP status the relay (or a proxy in between) answered a poll request with. */
export function codeOfStatus (status: number): string {
  if (status === 404 || status === 400 || status === 405) return 'POLL_NOT_SERVED'
  if (status === 429) return 'POLL_SESSION_LIMIT'
  if (status === 409) return 'POLL_OUT_OF_SEQUENCE'
  if (status === 410) return 'POLL_SESSION_CLOSED'
  if (status === 407) return 'PROXY_AUTH_REQUIRED'
  if (status === 403) return 'POLL_FORBIDDEN'
  return 'POLL_HTTP_STATUS'
}
