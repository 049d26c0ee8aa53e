import { createHash, randomBytes } from 'node:crypto'

/**
 * The name of the cookie that carries a dashboard session (HttpOnly,
 * SameSite=Strict, Path=/dashboard). A browser keeps cookies per host, not
 * per port: with the API's port in the name, two donors on one host (7767,
 * 7768) each keep their own session instead of overwriting the other's.
 */
export function sessionCookieName (port: number): string {
  return `wc_dashboard_${port}`
}

export interface DashboardLoginsInit {
  /** how long a login link works, ms @default 60000 */
  loginTokenTtlMs?: number
  /** how long a browser stays logged in after it used a link, ms @default 43200000 (12 h) */
  sessionTtlMs?: number
  /** login links not yet used that are kept; past it the oldest stops working @default 16 */
  maxLoginTokens?: number
  /** sessions kept; past it the oldest is logged out @default 16 */
  maxSessions?: number
  /** clock, ms @default Date.now */
  now?: () => number
}

export interface DashboardSession {
  /** the cookie's value */
  id: string
  expiresAt: number
}

/**
 * The dashboard's logins, in memory only (a restart logs every browser out):
 * one-time login tokens that the CLI asks for through the bearer-token API,
 * and the sessions a browser gets by using one. Both are 256 random bits,
 * kept as their SHA-256 so a lookup's timing says nothing about a stored
 * value; expired entries go on the next use, so nothing runs while nobody
 * logs in or watches.
 */
export class DashboardLogins {
  private readonly tokenTtlMs: number
  private readonly sessionTtlMs: number
  private readonly maxTokens: number
  private readonly maxSessions: number
  private readonly now: () => number
  /** hash → expiry (ms); Map order is insertion order, so the first entry is the oldest */
  private readonly tokens = new Map<string, number>()
  private readonly sessions = new Map<string, number>()

  constructor (init: DashboardLoginsInit = {}) {
    this.tokenTtlMs = init.loginTokenTtlMs ?? 60_000
    this.sessionTtlMs = init.sessionTtlMs ?? 12 * 3600_000
    this.maxTokens = init.maxLoginTokens ?? 16
    this.maxSessions = init.maxSessions ?? 16
    this.now = init.now ?? Date.now
  }

  get sessionTtlSeconds (): number {
    return Math.floor(this.sessionTtlMs / 1000)
  }

  /** A new one-time login token and when it stops working. */
  issueToken (): { token: string, expiresAt: number } {
    const token = randomBytes(32).toString('base64url')
    const expiresAt = this.now() + this.tokenTtlMs
    remember(this.tokens, hash(token), expiresAt, this.maxTokens, this.now())
    return { token, expiresAt }
  }

  /** Uses up a login token: a new session when it was issued and has not expired or been used; undefined otherwise. */
  redeem (token: string): DashboardSession | undefined {
    const key = hash(token)
    const expiresAt = this.tokens.get(key)
    this.tokens.delete(key)
    if (expiresAt == null || expiresAt <= this.now()) return undefined
    const id = randomBytes(32).toString('base64url')
    const session = { id, expiresAt: this.now() + this.sessionTtlMs }
    remember(this.sessions, hash(id), session.expiresAt, this.maxSessions, this.now())
    return session
  }

  /** Whether the cookie's value names a live session. */
  valid (id: string | undefined): boolean {
    if (id == null || id === '') return false
    const key = hash(id)
    const expiresAt = this.sessions.get(key)
    if (expiresAt == null) return false
    if (expiresAt > this.now()) return true
    this.sessions.delete(key)
    return false
  }
}

function hash (value: string): string {
  return createHash('sha256').update(value).digest('hex')
}

/** Adds an entry after dropping the expired ones and, past `max`, the oldest. */
function remember (map: Map<string, number>, key: string, expiresAt: number, max: number, now: number): void {
  for (const [k, at] of map) if (at <= now) map.delete(k)
  while (map.size >= max) {
    const oldest = map.keys().next().value
    if (oldest == null) break
    map.delete(oldest)
  }
  map.set(key, expiresAt)
}

/** The session cookie's value in a Cookie header, if any. */
export function sessionFromCookie (header: string | undefined, port: number): string | undefined {
  if (header == null) return undefined
  const name = sessionCookieName(port)
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim()
  }
  return undefined
}

/** The Set-Cookie value for a session: only this server's /dashboard paths see it, scripts never do. */
export function sessionCookie (session: DashboardSession, maxAgeSeconds: number, port: number): string {
  return `${sessionCookieName(port)}=${session.id}; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}`
}
