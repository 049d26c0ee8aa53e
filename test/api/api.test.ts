import type { JobView } from '../../src/core/job.ts'
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { request } from 'node:http'
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ApiServer } from '../../src/api/server.ts'
import { ApiClient } from '../../src/api/client.ts'
import { API_VERSION_HEADER, routes, type ApiHandlers, type PingRequest } from '../../src/api/routes.ts'
import { ensureDataDir, type DataDirPaths } from '../../src/config/data-dir.ts'
import { ApiError, DaemonNotRunningError, PeerUnreachableError } from '../../src/core/errors.ts'
import { configureLogging, resetLogging } from '../../src/log/logger.ts'
import type { DaemonStatus, PingResult } from '../../src/core/types.ts'

const PEER = '12D3KooWCUxGstisocAwjyRccMAVqDFAksLECFj23zxN7fP231Wj'
const TARGET = '12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK'
const VERSION = '9.8.7-test'

const STATUS: DaemonStatus = {
  peerId: PEER,
  reachability: 'private',
  reachabilityReason: 'behind NAT (test stub)',
  listenAddrs: [`/ip4/127.0.0.1/tcp/4001/p2p/${PEER}`],
  relays: [],
  connections: [],
  bootstrap: [],
  startedAt: '2025-01-01T00:00:00.000Z',
  version: VERSION
}

interface RawResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: unknown
}

/** A request with full control of the headers (fetch forbids setting Host), to 127.0.0.1 only. */
async function raw (port: number, opts: { method?: string, path: string, headers?: Record<string, string>, body?: string }): Promise<RawResponse> {
  return await new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1',
      port,
      method: opts.method ?? 'GET',
      path: opts.path,
      headers: opts.headers ?? {},
      agent: false
    }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => { chunks.push(c) })
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text === '' ? undefined : JSON.parse(text) })
      })
      res.on('error', reject)
    })
    req.on('error', reject)
    if (opts.body != null) req.write(opts.body)
    req.end()
  })
}

function errorCode (res: RawResponse): string | undefined {
  return (res.body as { error?: { code?: string } } | undefined)?.error?.code
}

function errorMessage (res: RawResponse): string {
  return (res.body as { error?: { message?: string } } | undefined)?.error?.message ?? ''
}

let root: string
const logLines: string[] = []

before(() => {
  root = mkdtempSync(join(tmpdir(), 'wc-api-test-'))
  configureLogging({ sink: line => { logLines.push(line) } })
})

after(() => {
  resetLogging()
  rmSync(root, { recursive: true, force: true })
})

function stubHandlers (pings: PingRequest[]): ApiHandlers {
  return {
    health: async () => ({ ok: true, peerId: PEER, version: VERSION, pid: process.pid }),
    status: async () => STATUS,
    dials: async (req) => ({ total: req.limit, attempts: [] }),
    ping: async (req): Promise<PingResult> => {
      pings.push(req)
      if (req.target === 'unreachable-peer') throw new PeerUnreachableError('no path to unreachable-peer')
      if (req.target === 'explode') throw new Error('handler bug')
      return { target: req.target, peerId: req.target, probes: [{ seq: 1, ok: true, rttMs: 1.5, path: 'direct', transport: 'tcp' }] }
    },
    submitJob: async (req) => ({ ...JOB, moduleCid: `module-of-${req.module.length}` }),
    job: async (req) => {
      if (req.id !== JOB.jobId) throw Object.assign(new Error(`no job ${req.id}`), { code: 'JOB_NOT_FOUND' })
      return req.full ? { ...JOB, stdout: 'hi\n', stderr: '' } : JOB
    },
    jobFiles: async (req) => ({ jobId: req.id, files: [{ path: req.path ?? '/out/a.txt', size: 2, cid: 'bafkrei-a', data: 'aGk=' }], removed: [] }),
    cancelJob: async (req) => {
      if (req.id !== JOB.jobId) throw Object.assign(new Error(`no job ${req.id}`), { code: 'JOB_NOT_FOUND' })
      return { outcome: 'cancelled', stopped: 1, unreached: [], job: { ...JOB, status: 'cancelled', final: true } }
    },
    jobs: async () => ({ jobs: [JOB] }),
    pause: async () => ({ paused: true, pausedBy: 'user', cpuLimit: 100, suspendWhenBusy: null, runHours: null }),
    resume: async () => ({ paused: false, pausedBy: null, cpuLimit: 100, suspendWhenBusy: null, runHours: null }),
    donated: async () => ({ tasks: [] })
  }
}

const JOB: JobView = {
  jobId: 'job-0123456789abcdef',
  status: 'succeeded',
  final: true,
  message: '1/1 agree, receipts verified: succeeded (exit 0)',
  exitCode: 0,
  error: null,
  outputCid: 'bafyreioutput',
  fuelUsed: 10,
  durationMs: 5,
  replicasWanted: 1,
  replicas: [],
  moduleCid: 'bafkreimodule',
  inputCid: 'bafkreiinput',
  createdAt: '2026-11-25T00:00:00.000Z',
  finishedAt: '2026-11-25T00:00:00.005Z'
}

describe('job routes', () => {
  let server: ApiServer
  let dataDir: string
  before(async () => {
    dataDir = join(root, 'jobs')
    server = new ApiServer({ paths: ensureDataDir(dataDir), port: 0, handlers: stubHandlers([]), version: VERSION })
    await server.start()
  })
  after(async () => { await server.stop() })

  it('submits a job with a body larger than the default 1 MiB cap', async () => {
    const client = new ApiClient({ dataDir })
    const module = Buffer.alloc(3 * 1024 * 1024, 7).toString('base64')
    const view = await client.call('submitJob', { module, input: '', moduleName: 'm.wasm', args: [], env: [], replicas: 1, limits: {} })
    assert.equal(view.moduleCid, `module-of-${module.length}`)
  })

  it('rejects a submission with an unknown limit, naming it', async () => {
    const client = new ApiClient({ dataDir })
    await assert.rejects(client.call('submitJob', { module: 'AGFzbQ==', input: '', moduleName: 'm.wasm', args: [], env: [], replicas: 1, limits: { speed: 9 } as any }),
      (err: Error & { code?: string }) => err.code === 'BAD_REQUEST' && /limits\.speed/.test(err.message))
  })

  it('answers an unknown job ID with JOB_NOT_FOUND', async () => {
    const client = new ApiClient({ dataDir })
    await assert.rejects(client.call('job', { id: 'job-nope', full: false }), (err: Error & { code?: string }) => err.code === 'JOB_NOT_FOUND')
    const full = await client.call('job', { id: JOB.jobId, full: true })
    assert.equal(full.stdout, 'hi\n')
  })

  it('cancels a job through POST /v1/jobs/<id>/cancel, the ID taken from the path', async () => {
    const client = new ApiClient({ dataDir })
    const done = await client.call('cancelJob', { id: JOB.jobId })
    assert.equal(done.outcome, 'cancelled')
    assert.equal(done.job.status, 'cancelled')
    await assert.rejects(client.call('cancelJob', { id: 'job-nope' }), (err: Error & { code?: string }) => err.code === 'JOB_NOT_FOUND')
  })
})

describe('ApiServer and ApiClient with a running server', () => {
  let dataDir: string
  let paths: DataDirPaths
  let server: ApiServer
  let token: string
  const pings: PingRequest[] = []

  before(async () => {
    dataDir = join(root, 'running')
    paths = ensureDataDir(dataDir)
    server = new ApiServer({ paths, port: 0, handlers: stubHandlers(pings), version: VERSION })
    await server.start()
    token = readFileSync(paths.apiToken, 'utf8').trim()
  })

  after(async () => {
    await server.stop()
  })

  function auth (): Record<string, string> {
    return { authorization: `Bearer ${token}` }
  }

  it('listens on a free port and writes it to the endpoint file', () => {
    assert.ok(server.port > 0)
    const endpoint = JSON.parse(readFileSync(paths.apiEndpoint, 'utf8')) as { port: number, pid: number }
    assert.equal(endpoint.port, server.port)
    assert.equal(endpoint.pid, process.pid)
  })

  it('returns the status handler data through ApiClient', async () => {
    const status = await new ApiClient({ dataDir }).call('status', {})
    assert.deepEqual(status, STATUS)
  })

  it('passes a GET query through the route parser to the handler', async () => {
    const dials = await new ApiClient({ dataDir }).call('dials', { limit: 5 })
    assert.deepEqual(dials, { total: 5, attempts: [] })
  })

  it('passes a POST body through the route parser to the handler', async () => {
    const before = pings.length
    const result = await new ApiClient({ dataDir }).call('ping', { target: ` ${TARGET} `, count: 2 })
    assert.equal(result.target, TARGET)
    assert.deepEqual(pings.slice(before), [{ target: TARGET, count: 2 }])
  })

  it('writes the api-token file with mode 0600 and a long random token', () => {
    assert.equal(statSync(paths.apiToken).mode & 0o777, 0o600)
    assert.match(token, /^[0-9a-f]{64}$/)
  })

  it('answers with the version header', async () => {
    const res = await raw(server.port, { path: routes.health.path, headers: auth() })
    assert.equal(res.status, 200)
    assert.equal(res.headers[API_VERSION_HEADER], VERSION)
  })

  it('refuses a request without the bearer token with 401', async () => {
    const res = await raw(server.port, { path: routes.status.path })
    assert.equal(res.status, 401)
    assert.equal(errorCode(res), 'UNAUTHORISED')
  })

  it('refuses a request with a wrong bearer token with 401', async () => {
    const res = await raw(server.port, { path: routes.status.path, headers: { authorization: `Bearer ${'0'.repeat(64)}` } })
    assert.equal(res.status, 401)
  })

  it('refuses a request whose Host is not loopback with 403 FORBIDDEN_HOST', async () => {
    const res = await raw(server.port, { path: routes.status.path, headers: { ...auth(), host: 'evil.example:1234' } })
    assert.equal(res.status, 403)
    assert.equal(errorCode(res), 'FORBIDDEN_HOST')
  })

  it('accepts a request whose Host is localhost', async () => {
    const res = await raw(server.port, { path: routes.status.path, headers: { ...auth(), host: `localhost:${server.port}` } })
    assert.equal(res.status, 200)
  })

  it('refuses a request carrying an Origin header with 403', async () => {
    const res = await raw(server.port, { path: routes.status.path, headers: { ...auth(), origin: 'http://evil.example' } })
    assert.equal(res.status, 403)
    assert.equal(errorCode(res), 'FORBIDDEN_ORIGIN')
  })

  it('answers an unknown path with 404', async () => {
    const res = await raw(server.port, { path: '/v1/nope', headers: auth() })
    assert.equal(res.status, 404)
    assert.equal(errorCode(res), 'NOT_FOUND')
  })

  it('answers a route called with the wrong method with 405', async () => {
    const res = await raw(server.port, { method: 'GET', path: routes.ping.path, headers: auth() })
    assert.equal(res.status, 405)
  })

  it('refuses a ping with count 1000 with 400 naming count', async () => {
    const before = pings.length
    const res = await raw(server.port, {
      method: 'POST',
      path: routes.ping.path,
      headers: { ...auth(), 'content-type': 'application/json' },
      body: JSON.stringify({ target: TARGET, count: 1000 })
    })
    assert.equal(res.status, 400)
    assert.equal(errorCode(res), 'BAD_REQUEST')
    assert.match(errorMessage(res), /count/)
    assert.equal(pings.length, before, 'the handler must not run for a bad request')
  })

  it('refuses a body that is not JSON with 400', async () => {
    const res = await raw(server.port, { method: 'POST', path: routes.ping.path, headers: auth(), body: '{not json' })
    assert.equal(res.status, 400)
    assert.match(errorMessage(res), /JSON/)
  })

  it('answers 422 for a handler error with a string code, and the client throws ApiError with that code', async () => {
    const res = await raw(server.port, {
      method: 'POST',
      path: routes.ping.path,
      headers: auth(),
      body: JSON.stringify({ target: 'unreachable-peer' })
    })
    assert.equal(res.status, 422)
    assert.equal(errorCode(res), 'PEER_UNREACHABLE')

    await assert.rejects(new ApiClient({ dataDir }).call('ping', { target: 'unreachable-peer', count: 1 }), (err: unknown) => {
      assert.ok(err instanceof ApiError, `expected ApiError, got ${String(err)}`)
      assert.equal(err.code, 'PEER_UNREACHABLE')
      assert.equal(err.status, 422)
      assert.equal(err.message, 'no path to unreachable-peer')
      return true
    })
  })

  it('answers 500 INTERNAL for a handler error without a code', async () => {
    await assert.rejects(new ApiClient({ dataDir }).call('ping', { target: 'explode', count: 1 }), (err: unknown) =>
      err instanceof ApiError && err.status === 500 && err.code === 'INTERNAL')
  })
})

describe('ApiServer stop and ApiClient without a daemon', () => {
  it('removes the endpoint file on stop, after which the client says to start the worldcompute daemon', async () => {
    const dataDir = join(root, 'stopping')
    const paths = ensureDataDir(dataDir)
    const server = new ApiServer({ paths, port: 0, handlers: stubHandlers([]), version: VERSION })
    await server.start()
    const client = new ApiClient({ dataDir })
    assert.deepEqual(await client.call('status', {}), STATUS)
    assert.ok(existsSync(paths.apiEndpoint))

    await server.stop()
    assert.equal(existsSync(paths.apiEndpoint), false)
    await assert.rejects(client.call('status', {}), (err: unknown) => {
      assert.ok(err instanceof DaemonNotRunningError, `expected DaemonNotRunningError, got ${String(err)}`)
      assert.equal(err.code, 'DAEMON_NOT_RUNNING')
      assert.ok(err.message.includes('worldcompute daemon'), err.message)
      return true
    })
  })

  it('throws DaemonNotRunningError when the endpoint file names a port nobody answers on', async () => {
    const dataDir = join(root, 'stale')
    const paths = ensureDataDir(dataDir)
    const server = new ApiServer({ paths, port: 0, handlers: stubHandlers([]), version: VERSION })
    await server.start()
    const stale = readFileSync(paths.apiEndpoint, 'utf8')
    await server.stop()
    // a daemon killed with SIGKILL leaves its endpoint file behind
    writeFileSync(paths.apiEndpoint, stale)
    await assert.rejects(new ApiClient({ dataDir }).call('status', {}), (err: unknown) =>
      err instanceof DaemonNotRunningError && err.message.includes('no daemon answers') && err.message.includes('worldcompute daemon'))
  })

  it('throws DaemonNotRunningError saying no daemon is running for an empty data dir', async () => {
    const dataDir = join(root, 'empty')
    ensureDataDir(dataDir)
    await assert.rejects(new ApiClient({ dataDir }).call('status', {}), (err: unknown) => {
      assert.ok(err instanceof DaemonNotRunningError)
      assert.ok(err.message.includes('no daemon is running'), err.message)
      assert.ok(err.message.includes(dataDir), err.message)
      return true
    })
  })

  it('follows its daemon to another port, and to a replaced token, with the same client: it reads the data directory again when a call reached nobody', async () => {
    const dataDir = join(root, 'moved')
    const paths = ensureDataDir(dataDir)
    const first = new ApiServer({ paths, port: 0, handlers: stubHandlers([]), version: VERSION })
    await first.start()
    const client = new ApiClient({ dataDir })
    assert.deepEqual(await client.call('status', {}), STATUS)
    const firstPort = first.port
    await first.stop()
    const second = new ApiServer({ paths, port: 0, handlers: stubHandlers([]), version: VERSION })
    await second.start()
    let third: ApiServer | undefined
    try {
      assert.notEqual(second.port, firstPort)
      assert.deepEqual(await client.call('status', {}), STATUS)
      // on the same port, with a new token (one readable by others is replaced at start): the kept token is refused once
      await second.stop()
      const token = readFileSync(paths.apiToken, 'utf8')
      chmodSync(paths.apiToken, 0o644)
      third = new ApiServer({ paths, port: second.port, handlers: stubHandlers([]), version: VERSION })
      await third.start()
      assert.notEqual(readFileSync(paths.apiToken, 'utf8'), token)
      assert.deepEqual(await client.call('status', {}), STATUS)
    } finally {
      await second.stop()
      await third?.stop()
    }
  })

  it('gives up on a call the daemon does not answer within the client\'s timeout, and the handler\'s signal says the client went', async () => {
    const dataDir = join(root, 'slow')
    const paths = ensureDataDir(dataDir)
    let handlerSignal: AbortSignal | undefined
    const handlers: ApiHandlers = {
      ...stubHandlers([]),
      status: async (_req, { signal }) => {
        handlerSignal = signal
        return await new Promise<DaemonStatus>((_resolve, reject) => { signal.addEventListener('abort', () => { reject(new Error('the client went')) }) })
      }
    }
    const server = new ApiServer({ paths, port: 0, handlers, version: VERSION })
    await server.start()
    try {
      await assert.rejects(new ApiClient({ dataDir, timeoutMs: 200 }).call('status', {}), (err: unknown) => {
        assert.ok(err instanceof DaemonNotRunningError)
        assert.match(err.message, /did not answer \/v1\/status within/)
        assert.equal((err.cause as Error).name, 'TimeoutError')
        return true
      })
      for (let i = 0; i < 100 && handlerSignal?.aborted !== true; i++) await new Promise(resolve => setTimeout(resolve, 10))
      assert.equal(handlerSignal?.aborted, true)
    } finally {
      await server.stop()
    }
  })

  it('keeps the same token when a server restarts in the same data dir', async () => {
    const dataDir = join(root, 'restart')
    const paths = ensureDataDir(dataDir)
    const first = new ApiServer({ paths, port: 0, handlers: stubHandlers([]), version: VERSION })
    await first.start()
    const token = readFileSync(paths.apiToken, 'utf8')
    await first.stop()
    const second = new ApiServer({ paths, port: 0, handlers: stubHandlers([]), version: VERSION })
    await second.start()
    try {
      assert.equal(readFileSync(paths.apiToken, 'utf8'), token)
      assert.deepEqual(await new ApiClient({ dataDir }).call('status', {}), STATUS)
    } finally {
      await second.stop()
    }
  })
})
