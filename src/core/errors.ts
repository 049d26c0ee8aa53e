/**
 * Named errors with an actionable message, a stable `code` (it crosses the API)
 * and the underlying `cause`. Callers match on `name` or `code`, never on text.
 */

export class WorldComputeError extends Error {
  readonly code: string
  constructor (message: string, code: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = new.target.name
    this.code = code
  }
}

/**
 * The base of an error class whose code is fixed by the class:
 * `class XError extends errorWithCode('X_CODE') {}` takes (message, { cause }).
 */
export function errorWithCode (code: string) {
  return class extends WorldComputeError {
    constructor (message: string, options?: { cause?: unknown }) {
      super(message, code, options)
    }
  }
}

/** A flag, environment variable or config-file value could not be used. */
export class ConfigError extends errorWithCode('CONFIG_INVALID') {}

/** A multiaddr given by the user does not parse, named by where it came from. */
export class InvalidMultiaddrError extends ConfigError {
  readonly source: string
  readonly value: string
  constructor (source: string, value: string, options?: { cause?: unknown }) {
    const why = options?.cause instanceof Error ? `: ${options.cause.message}` : ''
    super(`invalid multiaddr for ${source}: "${value}"${why}`, options)
    this.source = source
    this.value = value
  }
}

export class IdentityError extends errorWithCode('IDENTITY_INVALID') {}

/** The local API is not answering: the daemon is not running or not reachable. */
export class DaemonNotRunningError extends errorWithCode('DAEMON_NOT_RUNNING') {}

/** The local API answered with an error status. */
export class ApiError extends WorldComputeError {
  readonly status: number
  constructor (message: string, code: string, status: number, options?: { cause?: unknown }) {
    super(message, code, options)
    this.status = status
  }
}

/** The relay refused or did not answer a reservation request. */
export class ReservationFailedError extends errorWithCode('RESERVATION_FAILED') {}

/** `ping` could not find a path to its target. */
export class PeerUnreachableError extends errorWithCode('PEER_UNREACHABLE') {}
