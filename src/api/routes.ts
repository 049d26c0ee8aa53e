import type { DaemonStatus, DialAttempt, DonatedTask, DonorControlsView, PingResult } from '../core/types.ts'
import type { JobLimits, JobView } from '../core/job.ts'
import { MAX_BLOB_UPLOAD_BYTES, parsePutBlob, type PutBlobRequest, type PutBlobResponse } from './blobs.ts'

/**
 * Every route of the local API, defined once: the server dispatches on these
 * and the typed client calls through them, so the two cannot drift apart.
 */

export const API_PREFIX = '/v1'
export const API_VERSION_HEADER = 'x-worldcompute-version'

export interface Route<Req, Res> {
  method: 'GET' | 'POST' | 'PUT'
  path: string
  /** request body cap @default 1 MiB */
  maxBodyBytes?: number
  /**
   * the body is raw bytes, not JSON: the server does not read it but hands
   * it to `parseRequest` as `body`, for the handler to stream @default false
   */
  rawBody?: boolean
  /**
   * the answer is written one turn of the event loop after the handler
   * returns (its check phase), so what the handler set going without waiting
   * on I/O leaves first: a submitted job placed at once is on the wire to
   * its donor before its acknowledgement is encoded and written @default false
   */
  answerAfterWork?: boolean
  /** validates a decoded request body or query; throws a message on bad input */
  parseRequest: (input: unknown) => Req
  /** marker for the response type; never called */
  readonly response?: Res
}

export interface HealthResponse { ok: true, peerId: string, version: string, pid: number }
export interface DialsRequest { limit: number }
export interface DialsResponse { total: number, attempts: DialAttempt[] }
export interface PingRequest { target: string, count: number }
export interface SubmitJobRequest {
  /** base64; empty when `moduleCid` names it */
  module: string
  /** a blob uploaded with `PUT /v1/blobs/{cid}`, instead of `module` */
  moduleCid?: string
  /** base64 (empty: no stdin); or `inputCid` instead */
  input: string
  /** a blob uploaded with `PUT /v1/blobs/{cid}`, instead of `input` */
  inputCid?: string
  moduleName: string
  args: string[]
  env: string[]
  replicas: number
  limits: Partial<JobLimits>
  /** the only executors (PeerIds) the job may run on; absent: any */
  executors?: string[]
  /** directories preopened for the job (`job submit --dir`); the broker checks the paths */
  dirs?: SubmitDir[]
}
/** One preopened directory of a submitted job: guest paths absolute, file bytes base64 or an uploaded blob's CID. */
export interface SubmitDir {
  guest: string
  /** `data` base64, or empty when `cid` names a blob uploaded with `PUT /v1/blobs/{cid}` */
  files: Array<{ path: string, data: string, cid?: string }>
  emptyDirs?: string[]
}
export interface JobRequest { id: string, full: boolean }
/** `path`: one output file; absent: all of them */
export interface JobFilesRequest { id: string, path?: string }
export interface JobFilesResponse {
  jobId: string
  /** the agreed result's output files, bytes base64 */
  files: Array<{ path: string, size: number, cid: string, data: string }>
  /** guest paths of the files the job removed */
  removed: string[]
}
export interface CancelJobRequest { id: string }
/**
 * What `POST /v1/jobs/{id}/cancel` did: `cancelled` (it was running and is
 * now stopped everywhere the broker could reach), `already-cancelled` (an
 * earlier cancel did it: nothing changed), `already-finished` (it had its
 * final answer: nothing changed). `job` is the job as it stands after.
 */
export interface CancelJobResponse {
  outcome: 'cancelled' | 'already-cancelled' | 'already-finished'
  /** its tasks the executors stopped or dropped */
  stopped: number
  /** executors that could not be told in time: their tasks lapse there by themselves */
  unreached: string[]
  job: JobView
}
export interface JobsRequest { limit: number }
export interface JobsResponse { jobs: JobView[] }
/** A one-time link that logs a browser into the dashboard. */
export interface DashboardLoginResponse { url: string, expiresAt: string }
export interface DonatedRequest { limit: number }
export interface DonatedResponse { tasks: DonatedTask[] }

/**
 * Module, input and `--dir` files one submit may carry together: the
 * payload travels base64 in one JSON body, held in the daemon's memory while
 * it is parsed, so this bounds that memory. Donors apply their own
 * `--max-payload` (64 MiB by default) to what they accept.
 */
export const MAX_SUBMIT_PAYLOAD_BYTES = 128 * 1024 * 1024
/** MAX_SUBMIT_PAYLOAD_BYTES base64-inflated, plus the JSON around it */
const MAX_SUBMIT_BODY = Math.ceil(MAX_SUBMIT_PAYLOAD_BYTES * 4 / 3) + 1024 * 1024

function stringList (value: unknown, name: string, maxItems: number, maxLength: number): string[] {
  if (value === undefined) return []
  if (!Array.isArray(value) || value.length > maxItems || !value.every(v => typeof v === 'string' && v.length <= maxLength)) {
    throw new Error(`${name} must be a list of at most ${maxItems} strings of at most ${maxLength} characters`)
  }
  return value as string[]
}

const LIMIT_KEYS = ['deadlineMs', 'memoryBytes', 'outputBytes', 'payloadBytes', 'fuel', 'maxCallDepth'] as const

function limitsOf (value: unknown): Partial<JobLimits> {
  if (value === undefined) return {}
  const o = obj(value)
  const out: Partial<JobLimits> = {}
  for (const [k, v] of Object.entries(o)) {
    if (!(LIMIT_KEYS as readonly string[]).includes(k)) throw new Error(`limits.${k} is not a limit (known: ${LIMIT_KEYS.join(', ')})`)
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw new Error(`limits.${k} must be a positive whole number`)
    out[k as typeof LIMIT_KEYS[number]] = v
  }
  return out
}

function base64Field (value: unknown, name: string): string {
  if (typeof value !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(value)) throw new Error(`${name} must be base64 text`)
  return value
}

function obj (input: unknown): Record<string, unknown> {
  if (input == null) return {}
  if (typeof input !== 'object' || Array.isArray(input)) throw new Error('request body must be a JSON object')
  return input as Record<string, unknown>
}

function intIn (value: unknown, name: string, min: number, max: number, def: number): number {
  if (value === undefined || value === null || value === '') return def
  // numbers, and the strings of a query; Number() of anything else runs a client's "toString", and can throw
  const n = typeof value === 'number' ? value : typeof value === 'string' ? Number(value) : Number.NaN
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be an integer from ${min} to ${max}`)
  return n
}

function parsePing (input: unknown): PingRequest {
  const o = obj(input)
  if (typeof o.target !== 'string' || o.target.trim() === '') throw new Error('target must be a PeerId or a multiaddr')
  return { target: o.target.trim(), count: intIn(o.count, 'count', 1, 100, 3) }
}

function parseSubmitJob (input: unknown): SubmitJobRequest {
  const o = obj(input)
  const replicas = intIn(o.replicas, 'replicas', 1, 16, 1)
  const moduleName = o.moduleName === undefined ? 'main.wasm' : o.moduleName
  if (typeof moduleName !== 'string' || moduleName.length > 256) throw new Error('moduleName must be a string of at most 256 characters')
  const env = stringList(o.env, 'env', 256, 4096)
  for (const e of env) if (!e.includes('=')) throw new Error(`env entry "${e}" must be K=V`)
  return {
    ...bytesOrCid(o, 'module', 'moduleCid', true) as { module: string, moduleCid?: string },
    ...bytesOrCid(o, 'input', 'inputCid', false) as { input: string, inputCid?: string },
    moduleName,
    args: stringList(o.args, 'args', 256, 4096),
    env,
    replicas,
    limits: limitsOf(o.limits),
    ...executorsOf(o.executors),
    ...dirsOf(o.dirs)
  }
}

/** `module` / `moduleCid` (or `input` / `inputCid`): at most one of the two; `required`: exactly one. */
function bytesOrCid (o: Record<string, unknown>, bytes: string, cid: string, required: boolean): Record<string, string> {
  if (o[cid] === undefined) {
    if (required || o[bytes] !== undefined) return { [bytes]: base64Field(o[bytes], bytes) }
    return { [bytes]: '' }
  }
  if (o[bytes] !== undefined && o[bytes] !== '') throw new Error(`give ${bytes} or ${cid}, not both`)
  return { [bytes]: '', [cid]: cidField(o[cid], cid) }
}

function cidField (value: unknown, name: string): string {
  if (typeof value !== 'string' || !/^[a-z2-7]{8,128}$/.test(value)) throw new Error(`${name} must be a CIDv1 in base32 (b…) of a blob uploaded with PUT ${API_PREFIX}/blobs/{cid}`)
  return value
}

/** Preopens of a submitted job, by shape: the paths themselves are the broker's to judge. */
const MAX_SUBMIT_DIRS = 64
const MAX_SUBMIT_ENTRIES = 65_536
function dirsOf (value: unknown): { dirs?: SubmitDir[] } {
  if (value === undefined || value === null) return {}
  if (!Array.isArray(value) || value.length > MAX_SUBMIT_DIRS) throw new Error(`dirs must be a list of at most ${MAX_SUBMIT_DIRS} directories`)
  let entries = 0
  const dirs = value.map((d: unknown, i: number): SubmitDir => {
    const o = obj(d)
    if (typeof o.guest !== 'string' || o.guest.length > 4096) throw new Error(`dirs[${i}].guest must be a path`)
    if (!Array.isArray(o.files)) throw new Error(`dirs[${i}].files must be a list`)
    const files = o.files.map((f: unknown, j: number) => {
      const fo = obj(f)
      if (typeof fo.path !== 'string' || fo.path.length > 4096) throw new Error(`dirs[${i}].files[${j}].path must be a path`)
      if (fo.cid !== undefined) {
        if (fo.data !== undefined && fo.data !== '') throw new Error(`dirs[${i}].files[${j}]: give data or cid, not both`)
        return { path: fo.path, data: '', cid: cidField(fo.cid, `dirs[${i}].files[${j}].cid`) }
      }
      return { path: fo.path, data: base64Field(fo.data, `dirs[${i}].files[${j}].data`) }
    })
    const emptyDirs = stringList(o.emptyDirs, `dirs[${i}].emptyDirs`, MAX_SUBMIT_ENTRIES, 4096)
    entries += files.length + emptyDirs.length
    if (entries > MAX_SUBMIT_ENTRIES) throw new Error(`dirs must hold at most ${MAX_SUBMIT_ENTRIES} files and empty directories in all`)
    return { guest: o.guest, files, emptyDirs }
  })
  return { dirs }
}

function parseJobFilesRequest (input: unknown): JobFilesRequest {
  const { id } = parseJobRequest(input)
  const path = obj(input).path
  if (path === undefined || path === '') return { id }
  if (typeof path !== 'string' || !path.startsWith('/') || path.length > 4096) throw new Error('path must be an absolute guest path')
  return { id, path }
}

/** `executors`: 1–64 PeerIds when given (the broker checks that each is one). */
function executorsOf (value: unknown): { executors?: string[] } {
  if (value === undefined || value === null) return {}
  const executors = stringList(value, 'executors', 64, 128)
  if (executors.length === 0) throw new Error('executors, when given, must name at least one executor')
  return { executors }
}

function jobIdOf (o: Record<string, unknown>): string {
  if (typeof o.id !== 'string' || !/^[\w.-]{1,128}$/.test(o.id)) throw new Error('id must be a job ID')
  return o.id
}

function parseJobRequest (input: unknown): JobRequest {
  const o = obj(input)
  return { id: jobIdOf(o), full: o.full === 'true' || o.full === true || o.full === '1' }
}

/**
 * A route path's `{name}` segments: matched against a request path (the
 * values, or undefined when it does not match), and filled from a request.
 */
export function matchPath (pattern: string, pathname: string): Record<string, string> | undefined {
  return matchSegments(pathSegments(pattern), pathname.split('/'))
}

/** A route path cut at its slashes once, each `{name}` segment as its name: what a request's segments are matched against. */
export type PathSegments = ReadonlyArray<string | { name: string }>

export function pathSegments (pattern: string): PathSegments {
  return pattern.split('/').map(segment => {
    const name = /^\{(\w+)\}$/.exec(segment)?.[1]
    return name != null ? { name } : segment
  })
}

/** `matchPath` on a path cut already: the server cuts a request's path once for all the routes it tries. */
export function matchSegments (want: PathSegments, got: readonly string[]): Record<string, string> | undefined {
  if (want.length !== got.length) return undefined
  const params: Record<string, string> = {}
  for (let i = 0; i < want.length; i++) {
    const segment = want[i]
    if (typeof segment === 'string') {
      if (segment !== got[i]) return undefined
    } else {
      if (got[i] === '') return undefined
      params[segment.name] = decodeURIComponent(got[i])
    }
  }
  return params
}

export function fillPath (pattern: string, request: Record<string, unknown>): string {
  return pattern.replace(/\{(\w+)\}/g, (_, name: string) => encodeURIComponent(String(request[name])))
}

/** A route typed by its request and response (the response type only marks what the client gets back). */
function route<Req, Res> (r: Route<Req, Res>): Route<Req, Res> {
  return r
}

export const routes = {
  health: route<Record<string, never>, HealthResponse>({ method: 'GET', path: `${API_PREFIX}/health`, parseRequest: () => ({}) }),
  status: route<Record<string, never>, DaemonStatus>({ method: 'GET', path: `${API_PREFIX}/status`, parseRequest: () => ({}) }),
  dials: route<DialsRequest, DialsResponse>({
    method: 'GET',
    path: `${API_PREFIX}/dials`,
    parseRequest: (input: unknown) => ({ limit: intIn(obj(input).limit, 'limit', 1, 10_000, 100) })
  }),
  ping: route<PingRequest, PingResult>({ method: 'POST', path: `${API_PREFIX}/ping`, parseRequest: parsePing }),
  submitJob: route<SubmitJobRequest, JobView>({ method: 'POST', path: `${API_PREFIX}/jobs`, maxBodyBytes: MAX_SUBMIT_BODY, answerAfterWork: true, parseRequest: parseSubmitJob }),
  /** a module, input or directory file as raw bytes, streamed to disk and checked against its CID; a submit names it by CID */
  putBlob: route<PutBlobRequest, PutBlobResponse>({ method: 'PUT', path: `${API_PREFIX}/blobs/{cid}`, rawBody: true, maxBodyBytes: MAX_BLOB_UPLOAD_BYTES, parseRequest: parsePutBlob }),
  job: route<JobRequest, JobView>({ method: 'GET', path: `${API_PREFIX}/job`, parseRequest: parseJobRequest }),
  jobFiles: route<JobFilesRequest, JobFilesResponse>({ method: 'GET', path: `${API_PREFIX}/job/files`, parseRequest: parseJobFilesRequest }),
  cancelJob: route<CancelJobRequest, CancelJobResponse>({ method: 'POST', path: `${API_PREFIX}/jobs/{id}/cancel`, parseRequest: (input: unknown) => ({ id: jobIdOf(obj(input)) }) }),
  jobs: route<JobsRequest, JobsResponse>({
    method: 'GET',
    path: `${API_PREFIX}/jobs`,
    parseRequest: (input: unknown) => ({ limit: intIn(obj(input).limit, 'limit', 1, 1000, 50) })
  }),
  dashboardLoginToken: route<Record<string, never>, DashboardLoginResponse>({ method: 'POST', path: `${API_PREFIX}/dashboard/login-token`, parseRequest: () => ({}) }),
  /** the owner pauses the donor: running jobs suspended, offers declined, kept across restarts */
  pause: route<Record<string, never>, DonorControlsView>({ method: 'POST', path: `${API_PREFIX}/pause`, parseRequest: () => ({}) }),
  resume: route<Record<string, never>, DonorControlsView>({ method: 'POST', path: `${API_PREFIX}/resume`, parseRequest: () => ({}) }),
  /** the tasks this donor ran for others, the newest first */
  donated: route<DonatedRequest, DonatedResponse>({
    method: 'GET',
    path: `${API_PREFIX}/donated`,
    parseRequest: (input: unknown) => ({ limit: intIn(obj(input).limit, 'limit', 1, 10_000, 50) })
  })
} as const

export type Routes = typeof routes
export type RouteName = keyof Routes
export type RequestOf<N extends RouteName> = Routes[N] extends Route<infer Req, any> ? Req : never
export type ResponseOf<N extends RouteName> = Routes[N] extends Route<any, infer Res> ? Res : never

/** Routes the API server answers itself (it holds the dashboard's logins), not the daemon. */
export type ServerRouteName = 'dashboardLoginToken'
export type RouteHandler<N extends RouteName> = (req: RequestOf<N>, options: { signal: AbortSignal }) => Promise<ResponseOf<N>>

/** Routes a daemon may leave out: the server answers them `NOT_AVAILABLE` (a daemon with no blob store takes no uploads). */
export type OptionalRouteName = 'putBlob'
/** What the daemon provides to serve each route. */
export type ApiHandlers = { [N in Exclude<RouteName, ServerRouteName | OptionalRouteName>]: RouteHandler<N> } & { [N in OptionalRouteName]?: RouteHandler<N> }

/** The JSON body of every error answer. */
export interface ApiErrorBody { error: { code: string, message: string } }
