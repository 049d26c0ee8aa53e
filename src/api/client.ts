import { readFileSync } from 'node:fs'
import { Agent, request as httpRequest, type IncomingMessage } from 'node:http'
import { ApiError, DaemonNotRunningError } from '../core/errors.ts'
import { dataDirPaths } from '../config/data-dir.ts'
import { fillPath, routes, type ApiErrorBody, type RequestOf, type ResponseOf, type RouteName, type SubmitJobRequest } from './routes.ts'
import type { ApiEndpoint } from './server.ts'
import { bytesRawCid, uploadBlob, uploadBlobBytes, type PutBlobResponse } from './blobs.ts'
import type { JobView } from '../core/job.ts'

export interface ApiClientInit {
  dataDir: string
  /** per-request timeout @default 30000 */
  timeoutMs?: number
}

/**
 * One keep-alive agent for every client in this process: a submitter that
 * calls the API per job pays the TCP handshake once, not per call (a new
 * connection per request cost ~1 ms of a ~2 ms call on 127.0.0.1). Idle
 * sockets are unreferenced by the agent, so a CLI process still exits when
 * its work is done; the agent closes them a second before the server's
 * advertised keep-alive runs out (Node's margin), so a reused socket is not
 * one the server is closing.
 */
const keepAlive = new Agent({ keepAlive: true })

interface RawAnswer { status: number, text: string }

/** A module up to this size is remembered with its CID by `submitJobByCid` (a copy kept per client): 1 MiB. */
const REMEMBERED_MODULE_BYTES = 1024 * 1024

export interface CallOptions { signal?: AbortSignal, timeoutMs?: number }

/** The daemon's port file and the token beside it, as read together. */
type Endpoint = ApiEndpoint & { token: string }

/**
 * The typed client the CLI (and tests, and later the doctor) use to reach a
 * running daemon. It finds the daemon through the data directory: the port
 * file the daemon writes and the token beside it, read at the first call
 * and kept while the daemon answers on them; a call that reached no daemon
 * there (connection refused) or whose token was refused (401) reads them
 * again and, when they changed (the daemon restarted), is sent once more:
 * neither ran anything.
 */
export class ApiClient {
  readonly dataDir: string
  private readonly timeoutMs: number
  private known?: Endpoint
  /** the last module submitted by CID (a copy of its bytes) and its CID */
  private lastModule?: { bytes: Buffer, cid: string }

  constructor (init: ApiClientInit) {
    this.dataDir = init.dataDir
    this.timeoutMs = init.timeoutMs ?? 30_000
  }

  private startHint (): string {
    return `start one with \`worldcompute daemon --data-dir ${this.dataDir}\``
  }

  endpoint (): Endpoint {
    const paths = dataDirPaths(this.dataDir)
    let endpoint: ApiEndpoint
    try {
      endpoint = JSON.parse(readFileSync(paths.apiEndpoint, 'utf8')) as ApiEndpoint
    } catch (err) {
      throw new DaemonNotRunningError(`no daemon is running for data dir ${this.dataDir}; ${this.startHint()}`, { cause: err })
    }
    let token: string
    try {
      token = readFileSync(paths.apiToken, 'utf8').trim()
    } catch (err) {
      throw new DaemonNotRunningError(`cannot read the API token in ${this.dataDir} (${(err as Error).message}); ${this.startHint()}`, { cause: err })
    }
    return { ...endpoint, token }
  }

  async call<N extends RouteName> (name: N, request: RequestOf<N>, options: CallOptions = {}): Promise<ResponseOf<N>> {
    const kept = this.known
    const at = kept ?? this.endpoint()
    this.known = at
    try {
      return await this.callAt(at, name, request, options)
    } catch (err) {
      if (kept == null || !reachedNoDaemon(err)) throw err
      this.known = undefined
      const now = this.endpoint()
      if (now.port === at.port && now.pid === at.pid && now.token === at.token) throw err
      this.known = now
      return await this.callAt(now, name, request, options)
    }
  }

  private async callAt<N extends RouteName> ({ port, token, pid }: Endpoint, name: N, request: RequestOf<N>, options: CallOptions): Promise<ResponseOf<N>> {
    const route = routes[name]
    let path = fillPath(route.path, request as Record<string, unknown>)
    let body: string | undefined
    if (route.method === 'GET') {
      const query = new URLSearchParams()
      for (const [k, v] of Object.entries(request as Record<string, unknown>)) {
        if (v !== undefined) query.set(k, String(v))
      }
      if (query.size > 0) path += `?${query.toString()}`
    } else {
      body = JSON.stringify(request)
    }
    // a timer cleared when the call ends, not AbortSignal.timeout, which lives out its whole 30 s after every call
    const timeout = new AbortController()
    const timer = setTimeout(() => { timeout.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError')) }, options.timeoutMs ?? this.timeoutMs)
    const signal = options.signal != null ? AbortSignal.any([options.signal, timeout.signal]) : timeout.signal
    const headers: Record<string, string | number> = { authorization: `Bearer ${token}` }
    if (body != null) Object.assign(headers, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    let res: RawAnswer
    try {
      res = await send(port, { method: route.method, path, headers, body, signal })
    } catch (err) {
      if (timeout.signal.aborted) {
        throw new DaemonNotRunningError(`the daemon at 127.0.0.1:${port} (pid ${pid}) did not answer ${route.path} within ${((options.timeoutMs ?? this.timeoutMs) / 1000).toFixed(0)} s`, { cause: err })
      }
      throw new DaemonNotRunningError(`no daemon answers at 127.0.0.1:${port} (pid ${pid}, data dir ${this.dataDir}); it may have stopped: ${this.startHint()}`, { cause: err })
    } finally {
      clearTimeout(timer)
    }
    const text = res.text
    let parsed: unknown
    try {
      parsed = text === '' ? undefined : JSON.parse(text)
    } catch (err) {
      throw new ApiError(`the daemon answered ${route.path} with invalid JSON (HTTP ${res.status})`, 'BAD_RESPONSE', res.status, { cause: err })
    }
    if (res.status < 200 || res.status > 299) {
      const e = (parsed as ApiErrorBody | undefined)?.error
      throw new ApiError(e?.message ?? `HTTP ${res.status}`, e?.code ?? 'HTTP_ERROR', res.status)
    }
    return parsed as ResponseOf<N>
  }

  /**
   * The module's CID, hashed only when its bytes differ from the last
   * module's: a client that submits one module many times (`job submit
   * --batch`, a script) compares its bytes with a copy of them, far cheaper
   * than hashing them again, and a caller that changed them gets a new CID.
   */
  private moduleCidOf (module: Uint8Array): string {
    const last = this.lastModule
    if (last != null && last.bytes.equals(module)) return last.cid
    const cid = bytesRawCid(module)
    this.lastModule = module.byteLength <= REMEMBERED_MODULE_BYTES ? { bytes: Buffer.from(module), cid } : undefined
    return cid
  }

  /** Streams a file to `PUT /v1/blobs/{cid}` (blobs.ts `uploadBlob`); `cid` is the file's (`fileRawCid`). */
  async putBlob (cid: string, path: string, options: { signal?: AbortSignal } = {}): Promise<PutBlobResponse> {
    const { port, token } = this.endpoint()
    return await uploadBlob({ port, token }, cid, path, options)
  }

  /**
   * `submitJob` with the module named by its CID rather than carried base64
   * in the body: one call when the daemon holds the module (an earlier
   * submit uploaded it), else the daemon answers BLOB_NOT_FOUND and the
   * module is uploaded (`PUT /v1/blobs/{cid}`) and named again. A client
   * that submits one module many times (`job submit --batch`, a script)
   * sends its bytes once and a small JSON body after. A daemon that takes
   * no uploads (NOT_AVAILABLE) gets the module inline.
   */
  async submitJobByCid (request: Omit<SubmitJobRequest, 'module' | 'moduleCid'>, module: Uint8Array, options: CallOptions = {}): Promise<JobView> {
    const moduleCid = this.moduleCidOf(module)
    const byCid: SubmitJobRequest = { ...request, module: '', moduleCid }
    try {
      return await this.call('submitJob', byCid, options)
    } catch (err) {
      if (!(err instanceof ApiError) || err.code !== 'BLOB_NOT_FOUND') throw err
    }
    try {
      const { port, token } = this.endpoint()
      await uploadBlobBytes({ port, token }, moduleCid, module, options)
    } catch (err) {
      if (!(err instanceof ApiError) || err.code !== 'NOT_AVAILABLE') throw err
      return await this.call('submitJob', { ...request, module: Buffer.from(module).toString('base64') }, options)
    }
    return await this.call('submitJob', byCid, options)
  }
}

/** A call that ran nothing: no daemon listened on the port (refused), or the daemon refused the token (401). */
function reachedNoDaemon (err: unknown): boolean {
  if (err instanceof ApiError) return err.status === 401
  return err instanceof DaemonNotRunningError && (err.cause as NodeJS.ErrnoException | undefined)?.code === 'ECONNREFUSED'
}

interface SendInit { method: string, path: string, headers: Record<string, string | number>, body: string | undefined, signal: AbortSignal }

/** One request over the keep-alive agent; sent once more when a reused socket turns out closed before any answer. */
async function send (port: number, init: SendInit): Promise<RawAnswer> {
  try {
    return await sendOnce(port, init)
  } catch (err) {
    // a reused keep-alive socket the daemon closed before it read the request: nothing was done, send it again
    const stale = (err as { reusedSocket?: boolean }).reusedSocket === true && (err as NodeJS.ErrnoException).code === 'ECONNRESET'
    if (!stale || init.signal.aborted) throw err
    return await sendOnce(port, init)
  }
}

/**
 * One request and its whole answer. The signal destroys the request (the
 * rejection carries its reason); it is listened to here rather than handed
 * to `http.request`, whose own handling of a signal follows the request's
 * end of stream and costs about as much as the rest of a small call's
 * client side.
 */
async function sendOnce (port: number, init: SendInit): Promise<RawAnswer> {
  const { signal } = init
  if (signal.aborted) throw signal.reason
  let onAbort = (): void => {}
  try {
    return await new Promise<RawAnswer>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port, method: init.method, path: init.path, headers: init.headers, agent: keepAlive }, (res: IncomingMessage) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => { chunks.push(c) })
        res.on('error', reject)
        res.on('end', () => { resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }) })
      })
      req.on('error', (err) => { reject(Object.assign(err, { reusedSocket: req.reusedSocket })) })
      onAbort = () => {
        reject(signal.reason)
        req.destroy(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason)))
      }
      signal.addEventListener('abort', onAbort, { once: true })
      req.end(init.body)
    })
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}
