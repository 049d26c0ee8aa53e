import { readFileSync } from 'node:fs'
import { ApiError, DaemonNotRunningError } from '../core/errors.ts'
import { dataDirPaths } from '../config/data-dir.ts'
import { fillPath, routes, type ApiErrorBody, type RequestOf, type ResponseOf, type RouteName } from './routes.ts'
import type { ApiEndpoint } from './server.ts'
import { uploadBlob, type PutBlobResponse } from './blobs.ts'

export interface ApiClientInit {
  dataDir: string
  /** per-request timeout @default 30000 */
  timeoutMs?: number
}

/**
 * The typed client the CLI (and tests, and later the doctor) use to reach a
 * running daemon. It finds the daemon through the data directory: the port
 * file the daemon writes and the token beside it.
 */
export class ApiClient {
  readonly dataDir: string
  private readonly timeoutMs: number

  constructor (init: ApiClientInit) {
    this.dataDir = init.dataDir
    this.timeoutMs = init.timeoutMs ?? 30_000
  }

  private startHint (): string {
    return `start one with \`worldcompute daemon --data-dir ${this.dataDir}\``
  }

  endpoint (): ApiEndpoint & { token: string } {
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

  async call<N extends RouteName> (name: N, request: RequestOf<N>, options: { signal?: AbortSignal, timeoutMs?: number } = {}): Promise<ResponseOf<N>> {
    const route = routes[name]
    const { port, token, pid } = this.endpoint()
    const url = new URL(`http://127.0.0.1:${port}${fillPath(route.path, request as Record<string, unknown>)}`)
    let body: string | undefined
    if (route.method === 'GET') {
      for (const [k, v] of Object.entries(request as Record<string, unknown>)) {
        if (v !== undefined) url.searchParams.set(k, String(v))
      }
    } else {
      body = JSON.stringify(request)
    }
    const timeout = AbortSignal.timeout(options.timeoutMs ?? this.timeoutMs)
    const signal = options.signal != null ? AbortSignal.any([options.signal, timeout]) : timeout
    let res: Response
    try {
      res = await fetch(url, {
        method: route.method,
        headers: { authorization: `Bearer ${token}`, ...(body != null ? { 'content-type': 'application/json' } : {}) },
        body,
        signal
      })
    } catch (err) {
      if (timeout.aborted) {
        throw new DaemonNotRunningError(`the daemon at 127.0.0.1:${port} (pid ${pid}) did not answer ${route.path} within ${((options.timeoutMs ?? this.timeoutMs) / 1000).toFixed(0)} s`, { cause: err })
      }
      throw new DaemonNotRunningError(`no daemon answers at 127.0.0.1:${port} (pid ${pid}, data dir ${this.dataDir}); it may have stopped: ${this.startHint()}`, { cause: err })
    }
    const text = await res.text()
    let parsed: unknown
    try {
      parsed = text === '' ? undefined : JSON.parse(text)
    } catch (err) {
      throw new ApiError(`the daemon answered ${route.path} with invalid JSON (HTTP ${res.status})`, 'BAD_RESPONSE', res.status, { cause: err })
    }
    if (!res.ok) {
      const e = (parsed as ApiErrorBody | undefined)?.error
      throw new ApiError(e?.message ?? `HTTP ${res.status}`, e?.code ?? 'HTTP_ERROR', res.status)
    }
    return parsed as ResponseOf<N>
  }

  /** Streams a file to `PUT /v1/blobs/{cid}` (blobs.ts `uploadBlob`); `cid` is the file's (`fileRawCid`). */
  async putBlob (cid: string, path: string, options: { signal?: AbortSignal } = {}): Promise<PutBlobResponse> {
    const { port, token } = this.endpoint()
    return await uploadBlob({ port, token }, cid, path, options)
  }
}
