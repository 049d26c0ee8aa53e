/**
 * The local API's boundary: the route parsers fed directly, and the real
 * server on 127.0.0.1 fed hostile HTTP requests (bodies, query strings,
 * methods, paths, Host, Origin and token). A parser returns a request or
 * throws a plain Error with its message (the server answers 400 with it);
 * the server answers every request with a JSON error body and a 4xx code or
 * with the handler's answer, never a 500, and keeps serving.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { Agent, request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { ApiServer } from '../../../src/api/server.ts'
import { routes } from '../../../src/api/routes.ts'
import { dataDirPaths, ensureDataDir } from '../../../src/config/data-dir.ts'
import { WorldComputeError } from '../../../src/core/errors.ts'
import { cborValue, fieldName, mutatedBytes, mutatedMessage, partialLimits, PEERS } from '../arbitraries.ts'
import { expectWithin, FuzzFinding } from '../harness.ts'
import type { ApiHandlers, RouteName } from '../../../src/api/routes.ts'
import type { FuzzTarget, OpenTarget } from '../harness.ts'

const PARSE_BUDGET_MS = 500
const REQUEST_BUDGET_MS = 3_000
const ROUTE_NAMES = Object.keys(routes) as RouteName[]

const base64 = fc.uint8Array({ maxLength: 48 }).map(b => Buffer.from(b).toString('base64'))

/** Bodies and queries each route accepts, to mutate from. */
const validInputs: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  fc.record({
    module: base64,
    input: base64,
    moduleName: fc.string({ maxLength: 16 }),
    args: fc.array(fc.string({ maxLength: 8 }), { maxLength: 3 }),
    env: fc.array(fc.string({ maxLength: 8 }).map(v => `K=${v}`), { maxLength: 2 }),
    replicas: fc.integer({ min: 1, max: 16 }),
    limits: partialLimits.map(l => Object.fromEntries(Object.entries(l).map(([k, v]) => [k, Math.max(1, v)])))
  }, { requiredKeys: ['module'] }),
  fc.record({ target: fc.constantFrom(PEERS[0].id, '/ip4/127.0.0.1/tcp/4001'), count: fc.integer({ min: 1, max: 100 }) }),
  fc.record({ id: fc.stringMatching(/^[\w.-]{1,20}$/), full: fc.constantFrom('true', '1', 'false', true) }),
  fc.record({ limit: fc.oneof(fc.integer({ min: 1, max: 1000 }).map(String), fc.integer({ min: 1, max: 1000 })) })
)

/** What a decoded JSON body or query can be: mutated valid inputs, any JSON, a query's strings. */
const parserInput: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: mutatedMessage(validInputs).map(v => JSON.parse(JSON.stringify(v, jsonSafe)) as unknown) },
  { weight: 2, arbitrary: fc.jsonValue() },
  { weight: 2, arbitrary: fc.dictionary(fieldName, fc.string({ maxLength: 12 })) },
  { weight: 1, arbitrary: validInputs }
)

/** JSON.stringify of dag-cbor values: bytes as base64, bigints as numbers' text, CIDs as strings. */
function jsonSafe (_key: string, value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64')
  if (typeof value === 'bigint') return value.toString()
  if (value != null && typeof value === 'object' && (value as { asCID?: unknown }).asCID === value) return String(value)
  return value
}

const parsersTarget: FuzzTarget = {
  name: 'api.parsers',
  weight: 8,
  shrink: true,
  open: async (): Promise<OpenTarget> => ({
    property: fc.property(fc.constantFrom(...ROUTE_NAMES), parserInput, (name, input) => {
      const started = performance.now()
      try {
        routes[name].parseRequest(input)
      } catch (err) {
        // the server answers 400 with the message: a plain Error with one, never a TypeError from a missed check
        if (!(err instanceof Error) || err.constructor !== Error || err.message === '') {
          throw new FuzzFinding(`parse ${name} threw ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`, { cause: err })
        }
      }
      expectWithin(started, PARSE_BUDGET_MS, `parse ${name}`)
    }),
    close: async () => {}
  })
}

// ---- the server over HTTP --------------------------------------------------

class NotServedError extends WorldComputeError {
  constructor () {
    super('not served by the fuzz daemon', 'NOT_SERVED')
  }
}

/** The daemon behind the API: answers the cheap routes, refuses the rest with a named error (a 422). */
const handlers: ApiHandlers = {
  health: async () => ({ ok: true, peerId: PEERS[0].id, version: 'fuzz', pid: process.pid }),
  status: async () => { throw new NotServedError() },
  dials: async () => ({ total: 0, attempts: [] }),
  ping: async () => { throw new NotServedError() },
  submitJob: async () => { throw new NotServedError() },
  job: async () => { throw new NotServedError() },
  jobFiles: async () => { throw new NotServedError() },
  cancelJob: async () => { throw new NotServedError() },
  jobs: async () => ({ jobs: [] }),
  pause: async () => { throw new NotServedError() },
  resume: async () => { throw new NotServedError() },
  donated: async () => ({ tasks: [] })
}

interface HttpInput {
  method: string
  path: string
  host: 'ok' | 'localhost' | 'foreign' | 'none'
  auth: 'ok' | 'wrong' | 'none'
  origin: boolean
  body: Uint8Array
}

const OVER_LIMIT = new Uint8Array(1024 * 1024 + 1).fill(0x61)

const jsonBody = mutatedMessage(validInputs).map(v => new TextEncoder().encode(JSON.stringify(v, jsonSafe)))

const httpInput: fc.Arbitrary<HttpInput> = fc.record({
  method: fc.constantFrom('GET', 'GET', 'POST', 'POST', 'PUT', 'DELETE', 'PATCH'),
  path: fc.oneof(
    { weight: 6, arbitrary: fc.tuple(fc.constantFrom(...Object.values(routes).map(r => r.path)), fc.option(fc.webQueryParameters(), { nil: undefined })).map(([p, q]) => q == null ? p : `${p}?${q}`) },
    { weight: 2, arbitrary: fc.tuple(fc.constantFrom(...Object.values(routes).map(r => r.path)), fc.dictionary(fieldName, fc.string({ maxLength: 12 }), { maxKeys: 4 })).map(([p, q]) => `${p}?${new URLSearchParams(q).toString()}`) },
    { weight: 1, arbitrary: fc.webPath().map(p => p.startsWith('/') ? p : `/${p}`) }
  ),
  host: fc.constantFrom('ok', 'ok', 'ok', 'ok', 'localhost', 'foreign', 'none'),
  auth: fc.constantFrom('ok', 'ok', 'ok', 'ok', 'ok', 'wrong', 'none'),
  origin: fc.constantFrom(false, false, false, true),
  body: fc.oneof(
    { weight: 4, arbitrary: jsonBody },
    { weight: 3, arbitrary: mutatedBytes(jsonBody) },
    { weight: 1, arbitrary: fc.jsonValue().map(v => new TextEncoder().encode(JSON.stringify(v))) },
    { weight: 1, arbitrary: cborValue.map(v => new TextEncoder().encode(JSON.stringify(v, jsonSafe) ?? '')) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 256 }) },
    { weight: 1, arbitrary: fc.constant(new Uint8Array(0)) },
    { weight: 1, arbitrary: fc.constant(OVER_LIMIT) }
  )
})

const ANSWERS = new Set([200, 400, 401, 403, 404, 405, 413, 422])

interface HttpAnswer { status: number, body: string }

async function send (port: number, token: string, agent: Agent, input: HttpInput): Promise<HttpAnswer> {
  const headers: Record<string, string> = {}
  if (input.host !== 'none') headers.host = { ok: `127.0.0.1:${port}`, localhost: 'localhost', foreign: 'rebind.example:80' }[input.host]
  if (input.auth !== 'none') headers.authorization = `Bearer ${input.auth === 'ok' ? token : 'f'.repeat(64)}`
  if (input.origin) headers.origin = 'https://evil.example'
  if (input.method !== 'GET') headers['content-length'] = String(input.body.byteLength)
  return await new Promise<HttpAnswer>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: input.method, path: input.path, headers, agent, setHost: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => { chunks.push(c) })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }) })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.setTimeout(REQUEST_BUDGET_MS, () => { req.destroy(new FuzzFinding(`no answer within ${REQUEST_BUDGET_MS} ms`)) })
    req.end(input.method !== 'GET' ? input.body : undefined)
  })
}

function checkAnswer (input: HttpInput, answer: HttpAnswer): void {
  // Node's HTTP parser refuses some requests itself (no Host header in HTTP/1.1) with a bare 400 and no body
  if (answer.status === 400 && answer.body === '') return
  if (!ANSWERS.has(answer.status)) throw new FuzzFinding(`${input.method} ${input.path}: HTTP ${answer.status}: ${answer.body.slice(0, 300)}`)
  let body: unknown
  try {
    body = JSON.parse(answer.body)
  } catch {
    throw new FuzzFinding(`${input.method} ${input.path}: HTTP ${answer.status} with a body that is not JSON: ${answer.body.slice(0, 200)}`)
  }
  const code = (body as { error?: { code?: unknown } } | null)?.error?.code
  if (answer.status !== 200 && typeof code !== 'string') throw new FuzzFinding(`${input.method} ${input.path}: HTTP ${answer.status} without an error code: ${answer.body.slice(0, 200)}`)
}

const httpTarget: FuzzTarget = {
  name: 'api.http',
  weight: 3,
  open: async (): Promise<OpenTarget> => {
    const root = mkdtempSync(join(tmpdir(), 'wc-fuzz-api-'))
    const paths = dataDirPaths(root)
    ensureDataDir(root)
    const server = new ApiServer({ paths, port: 0, handlers, version: 'fuzz' })
    await server.start()
    const token = readFileSync(paths.apiToken, 'utf8').trim()
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    const property = fc.asyncProperty(httpInput, async (input) => {
      const started = performance.now()
      checkAnswer(input, await send(server.port, token, agent, input))
      expectWithin(started, REQUEST_BUDGET_MS, `${input.method} ${input.path}`)
    })
    const close = async (): Promise<void> => {
      try {
        // the server must still answer once the garbage is over
        const health = await send(server.port, token, agent, { method: 'GET', path: routes.health.path, host: 'ok', auth: 'ok', origin: false, body: new Uint8Array(0) })
        if (health.status !== 200) throw new FuzzFinding(`the API no longer answers health after the run: HTTP ${health.status}`)
      } finally {
        agent.destroy()
        await server.stop()
        rmSync(root, { recursive: true, force: true })
      }
    }
    return { property, close }
  }
}

export const apiTargets: FuzzTarget[] = [parsersTarget, httpTarget]
