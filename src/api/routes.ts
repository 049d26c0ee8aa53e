import type { DaemonStatus, DialAttempt, PingResult } from '../core/types.ts'

/**
 * Every route of the local API, defined once: the server dispatches on these
 * and the typed client calls through them, so the two cannot drift apart.
 */

export const API_PREFIX = '/v1'
export const API_VERSION_HEADER = 'x-worldcompute-version'

export interface Route<Req, Res> {
  method: 'GET' | 'POST'
  path: string
  /** validates a decoded request body or query; throws a message on bad input */
  parseRequest: (input: unknown) => Req
  /** marker for the response type; never called */
  readonly response?: Res
}

export interface HealthResponse { ok: true, peerId: string, version: string, pid: number }
export interface DialsRequest { limit: number }
export interface DialsResponse { total: number, attempts: DialAttempt[] }
export interface PingRequest { target: string, count: number }

function obj (input: unknown): Record<string, unknown> {
  if (input == null) return {}
  if (typeof input !== 'object' || Array.isArray(input)) throw new Error('request body must be a JSON object')
  return input as Record<string, unknown>
}

function intIn (value: unknown, name: string, min: number, max: number, def: number): number {
  if (value === undefined || value === null || value === '') return def
  const n = typeof value === 'number' ? value : Number(value)
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be an integer from ${min} to ${max}`)
  return n
}

export const routes = {
  health: {
    method: 'GET',
    path: `${API_PREFIX}/health`,
    parseRequest: () => ({})
  } satisfies Route<Record<string, never>, HealthResponse> as Route<Record<string, never>, HealthResponse>,
  status: {
    method: 'GET',
    path: `${API_PREFIX}/status`,
    parseRequest: () => ({})
  } satisfies Route<Record<string, never>, DaemonStatus> as Route<Record<string, never>, DaemonStatus>,
  dials: {
    method: 'GET',
    path: `${API_PREFIX}/dials`,
    parseRequest: (input: unknown) => ({ limit: intIn(obj(input).limit, 'limit', 1, 10_000, 100) })
  } satisfies Route<DialsRequest, DialsResponse> as Route<DialsRequest, DialsResponse>,
  ping: {
    method: 'POST',
    path: `${API_PREFIX}/ping`,
    parseRequest: (input: unknown) => {
      const o = obj(input)
      if (typeof o.target !== 'string' || o.target.trim() === '') throw new Error('target must be a PeerId or a multiaddr')
      return { target: o.target.trim(), count: intIn(o.count, 'count', 1, 100, 3) }
    }
  } satisfies Route<PingRequest, PingResult> as Route<PingRequest, PingResult>
} as const

export type Routes = typeof routes
export type RouteName = keyof Routes
export type RequestOf<N extends RouteName> = Routes[N] extends Route<infer Req, any> ? Req : never
export type ResponseOf<N extends RouteName> = Routes[N] extends Route<any, infer Res> ? Res : never

/** What the daemon provides to serve each route. */
export type ApiHandlers = { [N in RouteName]: (req: RequestOf<N>, options: { signal: AbortSignal }) => Promise<ResponseOf<N>> }

/** The JSON body of every error answer. */
export interface ApiErrorBody { error: { code: string, message: string } }
