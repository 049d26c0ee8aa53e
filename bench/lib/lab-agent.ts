/**
 * A helper bench/lab-paths.ts runs inside a donor's network namespace, where
 * the daemon's local API (127.0.0.1 of that namespace) can be reached with
 * the project's own ApiClient, without a `worldcompute` CLI process (and its
 * Node start-up) per request:
 *
 *   status-poll --data-dir D [--interval-ms 150] [--max-ms 120000]
 *     One JSON line per `status` sample ({ t, relays: [{ peerId, since }] } or
 *     { t, error }), until SIGTERM or --max-ms.
 *
 *   job --data-dir D --module FILE.wasm --input TEXT [--poll-ms 10]
 *     Submits one job through the API and polls `job` until it is final;
 *     prints { submitMs, finalMs, view }: the submit call's time and the time
 *     from just before the submit call to the final answer being seen.
 */
import { readFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { ApiClient } from '../../src/api/client.ts'

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

function line (obj: unknown): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`)
}

async function statusPoll (client: ApiClient, intervalMs: number, maxMs: number): Promise<void> {
  let stop = false
  process.once('SIGTERM', () => { stop = true })
  process.once('SIGINT', () => { stop = true })
  const end = Date.now() + maxMs
  while (!stop && Date.now() < end) {
    const t = Date.now()
    try {
      const s = await client.call('status', {}, { timeoutMs: 5_000 })
      line({ t, done: Date.now(), relays: s.relays.map(r => ({ peerId: r.peerId, since: r.since, source: r.source ?? null })) })
    } catch (err) {
      // a failed sample is data (the API did not answer), not a reason to stop polling
      line({ t, done: Date.now(), error: (err as Error).message })
    }
    const wait = intervalMs - (Date.now() - t)
    if (wait > 0) await sleep(wait)
  }
}

async function job (client: ApiClient, modulePath: string, input: string, pollMs: number): Promise<void> {
  const module = readFileSync(modulePath)
  const t0 = performance.now()
  const accepted = await client.call('submitJob', {
    module: module.toString('base64'),
    input: Buffer.from(input).toString('base64'),
    moduleName: modulePath.split('/').pop() ?? 'main.wasm',
    args: [],
    env: [],
    replicas: 1,
    limits: {}
  }, { timeoutMs: 60_000 })
  const submitMs = performance.now() - t0
  // bounded: 60 s, then the job is reported as not final
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline) {
    const v = await client.call('job', { id: accepted.jobId, full: false }, { timeoutMs: 10_000 })
    if (v.final) {
      const finalMs = performance.now() - t0
      line({ submitMs, finalMs, view: await client.call('job', { id: accepted.jobId, full: true }, { timeoutMs: 10_000 }) })
      return
    }
    await sleep(pollMs)
  }
  throw new Error(`job ${accepted.jobId} was not final within 60 s`)
}

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    'data-dir': { type: 'string' },
    'interval-ms': { type: 'string', default: '150' },
    'max-ms': { type: 'string', default: '120000' },
    module: { type: 'string' },
    input: { type: 'string', default: '' },
    'poll-ms': { type: 'string', default: '10' }
  }
})
try {
  const dataDir = values['data-dir']
  if (dataDir == null) throw new Error('--data-dir is required')
  const client = new ApiClient({ dataDir })
  if (positionals[0] === 'status-poll') {
    await statusPoll(client, Number(values['interval-ms']), Number(values['max-ms']))
  } else if (positionals[0] === 'job') {
    if (values.module == null) throw new Error('job needs --module')
    await job(client, values.module, values.input, Number(values['poll-ms']))
  } else {
    throw new Error(`usage: lab-agent.ts status-poll|job … (got "${positionals.join(' ')}")`)
  }
  process.exit(0)
} catch (err) {
  process.stderr.write(`lab-agent ${positionals[0] ?? ''} failed: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
}
