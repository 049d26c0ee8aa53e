import type { IncomingMessage, ServerResponse } from 'node:http'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import type { Logger } from '../log/logger.ts'
import { DashboardLogins, sessionCookie, sessionFromCookie } from './dashboard-auth.ts'
import { routes } from './routes.ts'

/** Where the dashboard lives on the API's port; the page calls the API under `${DASHBOARD_PATH}/api/v1/…`. */
export const DASHBOARD_PATH = '/dashboard'
export const DASHBOARD_LOGIN_PATH = `${DASHBOARD_PATH}/login`
const API_PATH = `${DASHBOARD_PATH}/api`

/**
 * The API routes the page may call with its session. Jobs are submitted and
 * peers pinged with the bearer token only: a session in a browser is easier
 * to abuse than a file only this user can read. Names not in the route table
 * (a daemon without them) answer 404, which the page shows as such.
 */
export const DASHBOARD_ROUTES: ReadonlySet<string> = new Set(['health', 'status', 'dials', 'jobs', 'donated', 'pause', 'resume'])

/** Strict: the page's own files only, no inline script or style, never framed. */
export const DASHBOARD_CSP = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

const HTML = 'text/html; charset=utf-8'

interface Asset { path: () => string, type: string }

const ownFile = (name: string) => () => fileURLToPath(new URL(`./dashboard/${name}`, import.meta.url))
// uPlot is a dependency: resolved where npm put it, from a clone or from the installed package
const uplotFile = (name: string) => () => createRequire(import.meta.url).resolve(`uplot/dist/${name}`)

const ASSETS: Record<string, Asset> = {
  [`${DASHBOARD_PATH}/`]: { path: ownFile('index.html'), type: HTML },
  [`${DASHBOARD_PATH}/app.js`]: { path: ownFile('app.js'), type: 'text/javascript; charset=utf-8' },
  [`${DASHBOARD_PATH}/style.css`]: { path: ownFile('style.css'), type: 'text/css; charset=utf-8' },
  [`${DASHBOARD_PATH}/icon.svg`]: { path: ownFile('icon.svg'), type: 'image/svg+xml' },
  [`${DASHBOARD_PATH}/uplot.js`]: { path: uplotFile('uPlot.iife.min.js'), type: 'text/javascript; charset=utf-8' },
  [`${DASHBOARD_PATH}/uplot.css`]: { path: uplotFile('uPlot.min.css'), type: 'text/css; charset=utf-8' }
}

export interface DashboardInit {
  logins: DashboardLogins
  /** the API's port: the page's own origin is http://127.0.0.1:PORT or http://localhost:PORT */
  port: () => number
  /** answers an API request (its `/v1/…` URL) through the server's route table, for the routes `allow` accepts */
  serveRoute: (req: IncomingMessage, res: ServerResponse, url: URL, allow: (name: string) => boolean) => Promise<void>
  /** writes a JSON error answer */
  fail: (res: ServerResponse, status: number, code: string, message: string) => void
  logger: Logger
}

/**
 * The dashboard's side of the API server: the login link, the session
 * cookie, the page's files, and the page's calls to the API routes. A request
 * is accepted only from the page itself (no Origin, or the server's own;
 * `Sec-Fetch-Site` same-origin, or none for a link opened from outside the
 * browser) with a live session; the bearer-token API keeps refusing every
 * request that carries an Origin.
 */
export class Dashboard {
  private readonly init: DashboardInit
  private readonly files = new Map<string, Buffer>()

  constructor (init: DashboardInit) {
    this.init = init
  }

  async handle (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v)
    const refused = this.foreign(req)
    if (refused != null) return this.init.fail(res, 403, 'FORBIDDEN_ORIGIN', refused)
    if (url.pathname === DASHBOARD_LOGIN_PATH) return this.login(req, res, url)
    if (!this.init.logins.valid(sessionFromCookie(req.headers.cookie, this.init.port()))) return this.loggedOut(res, url)
    if (url.pathname === `${API_PATH}/routes` && req.method === 'GET') return json(res, { routes: dashboardRoutes() })
    if (url.pathname.startsWith(`${API_PATH}/`)) {
      // the path set on a copy, never parsed as a URL: `//host/…` must stay a path
      const apiUrl = new URL(url.href)
      apiUrl.pathname = url.pathname.slice(API_PATH.length)
      return await this.init.serveRoute(req, res, apiUrl, name => DASHBOARD_ROUTES.has(name))
    }
    if (url.pathname === DASHBOARD_PATH) return redirect(res, `${DASHBOARD_PATH}/`)
    if (req.method !== 'GET') return this.init.fail(res, 405, 'METHOD_NOT_ALLOWED', `${url.pathname} takes GET`)
    const asset = ASSETS[url.pathname]
    if (asset == null) return this.init.fail(res, 404, 'NOT_FOUND', `no page ${url.pathname}`)
    res.writeHead(200, { 'content-type': asset.type })
    res.end(this.file(asset))
  }

  /** Why the request does not come from the dashboard's own page; undefined when it does. */
  private foreign (req: IncomingMessage): string | undefined {
    const site = req.headers['sec-fetch-site']
    if (site != null && site !== 'same-origin' && site !== 'none') return `the dashboard answers only its own page (Sec-Fetch-Site: ${String(site)})`
    const origin = req.headers.origin
    const port = this.init.port()
    const own = origin === `http://127.0.0.1:${port}` || origin === `http://localhost:${port}`
    if (origin != null && !own) return `the dashboard answers only its own page, not ${origin}`
    if (req.method !== 'GET' && !own) return 'a dashboard request that changes something must come from the dashboard page (Origin)'
    return undefined
  }

  private login (req: IncomingMessage, res: ServerResponse, url: URL): void {
    const session = req.method === 'GET' ? this.init.logins.redeem(url.searchParams.get('token') ?? '') : undefined
    if (session == null) {
      this.init.logger.info('dashboard login refused: the link was used already, expired, or never issued', { code: 'DASHBOARD_LOGIN_REFUSED' })
      return page(res, 401, 'This login link does not work: each link works once, for a minute. Run `worldcompute dashboard` for a new one.')
    }
    this.init.logger.info('dashboard: a browser logged in', { code: 'DASHBOARD_LOGIN' })
    res.setHeader('set-cookie', sessionCookie(session, this.init.logins.sessionTtlSeconds, this.init.port()))
    redirect(res, `${DASHBOARD_PATH}/`)
  }

  private loggedOut (res: ServerResponse, url: URL): void {
    const message = 'not logged in to the dashboard, or the session expired: run `worldcompute dashboard` for a login link'
    if (url.pathname.startsWith(`${API_PATH}/`)) return this.init.fail(res, 401, 'UNAUTHORISED', message)
    page(res, 401, `${message[0].toUpperCase()}${message.slice(1)}.`)
  }

  /** The file's bytes, read once; a file missing from the install is a bug, answered with 500 and logged. */
  private file (asset: Asset): Buffer {
    const path = asset.path()
    let bytes = this.files.get(path)
    if (bytes == null) {
      bytes = readFileSync(path)
      this.files.set(path, bytes)
    }
    return bytes
  }
}

const SECURITY_HEADERS = {
  'content-security-policy': DASHBOARD_CSP,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store'
}

/** The API routes this daemon offers the page: it shows what a daemon without some of them cannot do, without calling them. */
export function dashboardRoutes (): Array<{ name: string, method: string, path: string }> {
  return Object.entries(routes).filter(([name]) => DASHBOARD_ROUTES.has(name)).map(([name, r]) => ({ name, method: r.method, path: r.path }))
}

function json (res: ServerResponse, body: unknown): void {
  res.writeHead(200, { 'content-type': 'application/json' })
  res.end(JSON.stringify(body))
}

function redirect (res: ServerResponse, location: string): void {
  res.writeHead(302, { location })
  res.end()
}

/** A page of one sentence, for a person who opened a link. */
function page (res: ServerResponse, status: number, sentence: string): void {
  const text = sentence.replace(/[&<>]/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;' })[c] ?? c)
  res.writeHead(status, { 'content-type': HTML })
  res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>World Compute</title></head><body><p>${text}</p></body></html>\n`)
}
