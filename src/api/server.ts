import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { readFileSync, writeFileSync, renameSync, statSync, unlinkSync } from 'node:fs'
import { setImmediate as nextCheckPhase } from 'node:timers/promises'
import { setMaxListeners } from 'node:events'
import { WorldComputeError } from '../core/errors.ts'
import { follow } from '../core/async.ts'
import { createLogger, type Logger } from '../log/logger.ts'
import { API_VERSION_HEADER, matchSegments, pathSegments, routes, type ApiErrorBody, type ApiHandlers, type PathSegments, type RouteHandler, type RouteName } from './routes.ts'
import { Dashboard, DASHBOARD_LOGIN_PATH, DASHBOARD_PATH } from './dashboard.ts'
import { DashboardLogins, type DashboardLoginsInit } from './dashboard-auth.ts'
import type { DataDirPaths } from '../config/data-dir.ts'

const MAX_BODY_BYTES = 1024 * 1024

/** How long an idle API connection is kept open for the next call (Node's default). */
const KEEP_ALIVE_MS = 5_000

/** Ports above a taken default tried before asking the OS for any: a second or third donor lands next to the first. */
export const PORT_SEARCH = 16

export interface ApiServerInit {
  paths: DataDirPaths
  /** 0 picks a free port (tests run several daemons on one host) */
  port: number
  /**
   * The port is the built-in default, not one the operator chose: when it is
   * taken (another donor on this host), listen on the next free one instead
   * (up to `PORT_SEARCH` ports above it, then any the OS gives), record it
   * in api-endpoint.json and say so at INFO. A port the operator chose that
   * is taken fails with `ApiPortInUseError`: they meant that port.
   * @default false
   */
  nextFreePort?: boolean
  handlers: ApiHandlers
  version: string
  logger?: Logger
  /** the dashboard's login links and sessions (lifetimes, how many are kept) */
  dashboard?: DashboardLoginsInit
}

/** The API's port on 127.0.0.1 is taken: another daemon on this data directory, most often. */
export class ApiPortInUseError extends WorldComputeError {
  readonly port: number
  constructor (port: number, options?: { cause?: unknown }) {
    super(`API port ${port} on 127.0.0.1 is in use (another daemon?); choose another with --api-port N (0 picks a free one)`, 'API_PORT_IN_USE', options)
    this.port = port
  }
}

export interface ApiEndpoint { port: number, pid: number, startedAt: string }

/**
 * Reads the token, creating it (mode 0600) on first use.
 *
 * A token file that group or others may read is no secret, so it is
 * replaced by a new one (mode 0600) with a WARN naming the file and its old
 * mode, rather than refused: whoever could read it may have copied it, and
 * `chmod 600` would leave that copy valid; the local CLI reads the file on
 * every call, so it follows the new token with no step from the user.
 */
export function loadOrCreateToken (paths: DataDirPaths, log?: Logger): string {
  try {
    const token = readFileSync(paths.apiToken, 'utf8').trim()
    const exposed = exposedMode(paths.apiToken)
    if (exposed == null && token.length >= 32) return token
    if (exposed != null) {
      log?.warn(`${paths.apiToken} was readable by group or others (mode ${exposed}): replaced it with a new token (mode 0600); a copy of the old one no longer works`, {
        file: paths.apiToken, mode: exposed, code: 'API_TOKEN_EXPOSED'
      })
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const token = randomBytes(32).toString('hex')
  const tmp = `${paths.apiToken}.${process.pid}.tmp`
  writeFileSync(tmp, token + '\n', { mode: 0o600 })
  renameSync(tmp, paths.apiToken)
  return token
}

/** The file's mode as octal text ("0644") when group or others have any access to it; undefined when only its owner has (or on Windows, where modes say nothing). */
function exposedMode (path: string): string | undefined {
  if (process.platform === 'win32') return undefined
  const mode = statSync(path).mode & 0o777
  return (mode & 0o077) !== 0 ? `0${mode.toString(8)}` : undefined
}

/**
 * The local API: HTTP on 127.0.0.1 only, versioned prefix, bearer token from
 * the data directory. Requests whose Host is not loopback, or that carry a
 * browser Origin, are refused: a web page must not be able to drive the
 * daemon through DNS rebinding (Tailscale's LocalAPI does the same).
 */
export class ApiServer {
  private readonly init: ApiServerInit
  private readonly log: Logger
  private server?: Server
  /** the bearer token's bytes, compared with each request's (made once, not per request) */
  private tokenBytes = Buffer.alloc(0)
  private readonly controller = new AbortController()
  private readonly logins: DashboardLogins
  private readonly dashboard: Dashboard
  /** the daemon's handlers and the server's own, merged once */
  private readonly handlers: Partial<ApiHandlers> & ApiServer['ownHandlers']
  port = 0

  constructor (init: ApiServerInit) {
    this.init = init
    this.handlers = { ...init.handlers, ...this.ownHandlers }
    this.log = init.logger ?? createLogger('api')
    // every request under way listens for the stop (requestSignal): as many as there are open requests
    setMaxListeners(Infinity, this.controller.signal)
    this.logins = new DashboardLogins(init.dashboard)
    this.dashboard = new Dashboard({
      logins: this.logins,
      port: () => this.port,
      serveRoute: async (req, res, url, allow) => { await this.dispatch(req, res, url, allow) },
      fail: (res, status, code, message) => { this.fail(res, status, code, message) },
      logger: this.log
    })
  }

  /** The routes the server answers itself: a one-time link that logs a browser into the dashboard. */
  private readonly ownHandlers: { dashboardLoginToken: RouteHandler<'dashboardLoginToken'> } = {
    dashboardLoginToken: async () => {
      const { token, expiresAt } = this.logins.issueToken()
      return { url: `http://127.0.0.1:${this.port}${DASHBOARD_LOGIN_PATH}?token=${token}`, expiresAt: new Date(expiresAt).toISOString() }
    }
  }

  async start (): Promise<void> {
    this.tokenBytes = Buffer.from(loadOrCreateToken(this.init.paths, this.log))
    const server = createServer((req, res) => { void this.handle(req, res) })
    // Node's clients (fetch, http.Agent) close an idle socket a second before the server's advertised
    // keep-alive runs out: at 1 s they reused none, and every API call paid a new TCP connection
    server.keepAliveTimeout = KEEP_ALIVE_MS
    this.port = await this.bind(server)
    this.server = server
    const endpoint: ApiEndpoint = { port: this.port, pid: process.pid, startedAt: new Date().toISOString() }
    const tmp = `${this.init.paths.apiEndpoint}.${process.pid}.tmp`
    writeFileSync(tmp, JSON.stringify(endpoint) + '\n', { mode: 0o600 })
    renameSync(tmp, this.init.paths.apiEndpoint)
    this.log.info(`local API listening on http://127.0.0.1:${this.port}`)
  }

  /** Listens on the configured port, or (`nextFreePort`) the first free one after it; resolves with the port bound. */
  private async bind (server: Server): Promise<number> {
    const wanted = this.init.port
    const search = this.init.nextFreePort === true && wanted !== 0
    const candidates = search ? [...Array.from({ length: PORT_SEARCH + 1 }, (_, i) => wanted + i).filter(p => p <= 65535), 0] : [wanted]
    for (const port of candidates) {
      try {
        const bound = await listenOn(server, port)
        if (port !== wanted) {
          this.log.info(`API port ${wanted} on 127.0.0.1 is in use (another donor on this host?): listening on ${bound} instead, recorded in ${this.init.paths.apiEndpoint} for the CLI; give --api-port N to fix one`, { code: 'API_PORT_MOVED', wanted, port: bound })
        }
        return bound
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err
        if (!search) throw new ApiPortInUseError(wanted, { cause: err })
      }
    }
    // unreachable in practice: port 0 is never in use
    throw new ApiPortInUseError(wanted)
  }

  async stop (): Promise<void> {
    this.controller.abort()
    const server = this.server
    if (server == null) return
    this.server = undefined
    try {
      const current = JSON.parse(readFileSync(this.init.paths.apiEndpoint, 'utf8')) as ApiEndpoint
      if (current.pid === process.pid) unlinkSync(this.init.paths.apiEndpoint)
    } catch (err) {
      this.log.debug(`could not remove ${this.init.paths.apiEndpoint}: ${(err as Error).message}`)
    }
    server.closeAllConnections()
    await new Promise<void>(resolve => server.close(() => resolve()))
  }

  private hostAllowed (host: string | undefined): boolean {
    if (host == null) return false
    const name = host.replace(/:\d+$/, '')
    return name === '127.0.0.1' || name === 'localhost' || name === '[::1]'
  }

  private authorised (header: string | undefined): boolean {
    if (header == null || !header.startsWith('Bearer ')) return false
    const given = Buffer.from(header.slice(7).trim())
    const want = this.tokenBytes
    return given.length === want.length && timingSafeEqual(given, want)
  }

  private async handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    res.setHeader(API_VERSION_HEADER, this.init.version)
    try {
      if (!this.hostAllowed(req.headers.host)) {
        return this.fail(res, 403, 'FORBIDDEN_HOST', 'Host must be 127.0.0.1 or localhost')
      }
      const url = new URL(req.url ?? '/', 'http://127.0.0.1')
      if (url.pathname === DASHBOARD_PATH || url.pathname.startsWith(`${DASHBOARD_PATH}/`)) {
        return await this.dashboard.handle(req, res, url)
      }
      if (req.headers.origin != null) {
        return this.fail(res, 403, 'FORBIDDEN_ORIGIN', 'browser requests are not accepted by the local API')
      }
      if (!this.authorised(req.headers.authorization)) {
        return this.fail(res, 401, 'UNAUTHORISED', 'missing or wrong bearer token (see api-token in the data directory)')
      }
      await this.dispatch(req, res, url)
    } catch (err) {
      const e = err as Error & { code?: unknown }
      const code = typeof e.code === 'string' ? e.code : 'INTERNAL'
      const status = code === 'INTERNAL' ? 500 : code === 'TOO_LARGE' ? 413 : 422
      if (status === 500) this.log.error(`API ${req.method} ${req.url} failed: ${e.stack ?? String(err)}`)
      else this.log.info(`API ${req.method} ${req.url}: ${e.message}`, { code })
      this.fail(res, status, code, e.message ?? String(err))
    }
  }

  /** Answers a request through the route table (only the routes `allow` accepts); errors reach `handle`'s catch. */
  private async dispatch (req: IncomingMessage, res: ServerResponse, url: URL, allow: (name: RouteName) => boolean = () => true): Promise<void> {
    const onPath = routesOn(url.pathname).filter(([name]) => allow(name))
    if (onPath.length === 0) return this.fail(res, 404, 'NOT_FOUND', `no route ${url.pathname}`)
    const entry = onPath.find(([, r]) => r.method === req.method)
    if (entry == null) return this.fail(res, 405, 'METHOD_NOT_ALLOWED', `${url.pathname} takes ${onPath.map(([, r]) => r.method).join(' or ')}`)
    const [name, route, params] = entry
    let input: unknown
    if (route.method === 'GET') {
      input = Object.fromEntries(url.searchParams.entries())
    } else if (route.rawBody === true) {
      // streamed by the handler (a blob upload to disk), never read whole here; a declared size over the cap is refused unread
      const max = route.maxBodyBytes ?? MAX_BODY_BYTES
      if (Number(req.headers['content-length'] ?? 0) > max) throw Object.assign(new Error(`request body over ${max} bytes`), { code: 'TOO_LARGE' })
      input = { body: req }
    } else {
      const body = await readBody(req, route.maxBodyBytes ?? MAX_BODY_BYTES)
      try {
        input = body.length === 0 ? {} : JSON.parse(body.toString('utf8'))
      } catch {
        return this.fail(res, 400, 'BAD_REQUEST', 'request body is not valid JSON')
      }
    }
    // values in the path (`{id}`) win over the same names in an object body or the query
    if (Object.keys(params).length > 0 && typeof input === 'object' && !Array.isArray(input)) input = { ...input, ...params }
    let parsed: unknown
    try {
      parsed = route.parseRequest(input)
    } catch (err) {
      return this.fail(res, 400, 'BAD_REQUEST', (err as Error).message)
    }
    const signal = this.requestSignal(res)
    const handler = this.handlers[name] as ((r: unknown, o: { signal: AbortSignal }) => Promise<unknown>) | undefined
    if (handler == null) return this.fail(res, 404, 'NOT_AVAILABLE', `this daemon does not serve ${url.pathname}`)
    const result = await handler(parsed, { signal })
    if (route.answerAfterWork === true) await nextCheckPhase()
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify(result))
  }

  /**
   * Aborted when the server stops or the client goes before its answer is
   * written whole. One controller told by both, not AbortSignal.any, whose
   * composite signal costs more to make and to listen to than the rest of
   * a small call's bookkeeping; the stop listener goes with the response.
   */
  private requestSignal (res: ServerResponse): AbortSignal {
    const request = new AbortController()
    const unfollow = follow(this.controller.signal, request)
    res.on('close', () => {
      unfollow()
      if (!res.writableFinished) request.abort()
    })
    return request.signal
  }

  private fail (res: ServerResponse, status: number, code: string, message: string): void {
    if (res.headersSent) {
      res.end()
      return
    }
    const body: ApiErrorBody = { error: { code, message } }
    // a refusal before the body was read whole (too large, cut off): the rest of it would arrive as the next
    // request on this kept-alive connection, so it is closed after the answer
    if (!res.req.complete) res.shouldKeepAlive = false
    res.writeHead(status, { 'content-type': 'application/json' })
    res.end(JSON.stringify(body))
  }
}

/** `server.listen` on 127.0.0.1 as a promise of the port bound; rejects with the listen error (EADDRINUSE, EACCES). */
async function listenOn (server: Server, port: number): Promise<number> {
  return await new Promise<number>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject)
      const address = server.address()
      resolve(typeof address === 'object' && address != null ? address.port : port)
    })
  })
}

type RouteEntry = [RouteName, typeof routes[RouteName], PathSegments]

/** Routes by the number of segments of their path, each path cut once: a request's path is matched against those of its length only. */
const routesByLength = new Map<number, RouteEntry[]>()
for (const [name, route] of Object.entries(routes) as Array<[RouteName, typeof routes[RouteName]]>) {
  const segments = pathSegments(route.path)
  routesByLength.set(segments.length, [...(routesByLength.get(segments.length) ?? []), [name, route, segments]])
}

/** The routes whose path matches `pathname`, each with the values of its `{name}` segments. */
function routesOn (pathname: string): Array<[RouteName, typeof routes[RouteName], Record<string, string>]> {
  const out: Array<[RouteName, typeof routes[RouteName], Record<string, string>]> = []
  const got = pathname.split('/')
  for (const [name, route, segments] of routesByLength.get(got.length) ?? []) {
    const params = matchSegments(segments, got)
    if (params != null) out.push([name, route, params])
  }
  return out
}

/**
 * The request body, at most `max` bytes (TOO_LARGE past that, the request
 * destroyed as a for-await loop that throws would leave it), read from its
 * events: no async iterator per request.
 */
async function readBody (req: IncomingMessage, max: number): Promise<Buffer> {
  return await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const done = (err?: Error): void => {
      req.off('data', onData)
      req.off('end', onEnd)
      req.off('error', done)
      req.off('close', onClose)
      if (err == null) resolve(Buffer.concat(chunks, size))
      else reject(err)
    }
    const onData = (chunk: Buffer): void => {
      size += chunk.length
      if (size <= max) {
        chunks.push(chunk)
        return
      }
      done(Object.assign(new Error(`request body over ${max} bytes`), { code: 'TOO_LARGE' }))
      req.destroy()
    }
    const onEnd = (): void => { done() }
    const onClose = (): void => { done(Object.assign(new Error('the request ended before its body was complete'), { code: 'ERR_STREAM_PREMATURE_CLOSE' })) }
    req.on('data', onData)
    req.once('end', onEnd)
    req.once('error', done)
    req.once('close', onClose)
  })
}
