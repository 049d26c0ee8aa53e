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

/** A flag, environment variable or config-file value could not be used. */
export class ConfigError extends WorldComputeError {
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, 'CONFIG_INVALID', options)
  }
}

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

export class IdentityError extends WorldComputeError {
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, 'IDENTITY_INVALID', options)
  }
}

/** The local API is not answering: the daemon is not running or not reachable. */
export class DaemonNotRunningError extends WorldComputeError {
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, 'DAEMON_NOT_RUNNING', options)
  }
}

/** The local API answered with an error status. */
export class ApiError extends WorldComputeError {
  readonly status: number
  constructor (message: string, code: string, status: number, options?: { cause?: unknown }) {
    super(message, code, options)
    this.status = status
  }
}

/** The relay refused or did not answer a reservation request. */
export class ReservationFailedError extends WorldComputeError {
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, 'RESERVATION_FAILED', options)
  }
}

/** `ping` could not find a path to its target. */
export class PeerUnreachableError extends WorldComputeError {
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, 'PEER_UNREACHABLE', options)
  }
}
