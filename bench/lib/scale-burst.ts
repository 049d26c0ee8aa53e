/**
 * The load generator of bench/scale.ts: runs INSIDE the submitting daemon's
 * network namespace (its local API listens on that namespace's 127.0.0.1), so
 * it is started by the bench with `ip netns exec … node bench/lib/scale-burst.ts`.
 *
 * It submits `--count` trivial jobs (hello.wasm, 1 replica) through the
 * project's typed API client (src/api/client.ts: port and token from the data
 * dir, as the CLI finds them) with at most `--concurrency` submits in flight,
 * then polls the job list until every accepted job is final or `--timeout-ms`
 * passes, and prints one JSON object (BurstOutput) on stdout. Per-job
 * submit → final times use the broker's own `finishedAt`, so the poll interval
 * does not blur them.
 *
 *   node bench/lib/scale-burst.ts --data-dir DIR --count 1000 [--concurrency 32] [--timeout-ms 600000]
 */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { ApiClient } from '../../src/api/client.ts'
import type { JobView } from '../../src/core/job.ts'

export interface BurstJob {
  jobId: string
  /** Date.now() just before the submit request was sent */
  submitAt: number
  /** Date.now() when the submit answered */
  acceptedAt: number
  /** the broker's createdAt / finishedAt, ms since the epoch (finishedAt null: never final) */
  createdAt: number
  finishedAt: number | null
  status: JobView['status']
  final: boolean
  message: string
  error: string | null
  replicas: Array<{ executor: string, path: JobView['replicas'][number]['path'], state: string, failure: string | null }>
}

export interface BurstOutput {
  count: number
  concurrency: number
  /** submits the API refused or that failed in transport, with why */
  submitErrors: Array<{ index: number, error: string }>
  jobs: BurstJob[]
  /** first submit sent → last submit answered, ms */
  submitPhaseMs: number
  /** every accepted job final before the timeout */
  allFinal: boolean
  /** polls of the job list made while waiting */
  polls: number
  /** polls that got no answer in time (a saturated broker), polled again until the deadline */
  pollErrors: number
  /** the full view of one succeeded job: its stdout, proof that the work really ran */
  sampleStdout: string | null
  /** this load generator's own CPU (user + system), ms: not part of the mesh's cost */
  selfCpuMs: number
}

const HELLO = fileURLToPath(new URL('../../test/fixtures/wasm/hello.wasm', import.meta.url))

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

async function main (): Promise<void> {
  const { values } = parseArgs({
    options: {
      'data-dir': { type: 'string' },
      count: { type: 'string' },
      concurrency: { type: 'string', default: '32' },
      'timeout-ms': { type: 'string', default: '600000' },
      'poll-ms': { type: 'string', default: '1000' }
    }
  })
  const dataDir = values['data-dir']
  if (dataDir == null) throw new Error('--data-dir is required')
  const count = Number(values.count)
  const concurrency = Number(values.concurrency)
  const timeoutMs = Number(values['timeout-ms'])
  const pollMs = Number(values['poll-ms'])
  if (!Number.isInteger(count) || count < 1 || count > 1000) throw new Error('--count must be 1–1000 (the jobs route lists at most 1000)')
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new Error('--concurrency must be a positive integer')
  const client = new ApiClient({ dataDir, timeoutMs: 60_000 })
  // the request body is built once: the same module and input for every job
  const request = { module: readFileSync(HELLO).toString('base64'), input: '', moduleName: 'hello.wasm', args: ['x'], env: ['GREETING=scale'], replicas: 1, limits: {} }

  const jobs = new Map<string, BurstJob>()
  const submitErrors: BurstOutput['submitErrors'] = []
  const t0 = Date.now()
  let next = 0
  // bounded concurrency: `concurrency` lanes, each submitting the next index until none is left
  const lane = async (): Promise<void> => {
    while (next < count) {
      const index = next++
      const submitAt = Date.now()
      try {
        const v = await client.call('submitJob', request)
        jobs.set(v.jobId, {
          jobId: v.jobId, submitAt, acceptedAt: Date.now(), createdAt: Date.parse(v.createdAt), finishedAt: null,
          status: v.status, final: false, message: v.message, error: v.error, replicas: []
        })
      } catch (err) {
        submitErrors.push({ index, error: `${(err as Error).name}: ${(err as Error).message}` })
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, lane))
  const submitPhaseMs = Date.now() - t0

  // wait for every accepted job to be final: one list request per poll (bounded in count by the deadline)
  const deadline = t0 + timeoutMs
  let polls = 0
  const apply = (v: JobView): void => {
    const j = jobs.get(v.jobId)
    if (j == null) return
    j.status = v.status
    j.final = v.final
    j.message = v.message
    j.error = v.error
    j.finishedAt = v.finishedAt != null ? Date.parse(v.finishedAt) : null
    j.replicas = v.replicas.map(r => ({ executor: r.executor, path: r.path, state: r.state, failure: r.failure }))
  }
  let pollErrors = 0
  while (Date.now() < deadline) {
    polls++
    try {
      const list = await client.call('jobs', { limit: 1000 })
      const seen = new Set<string>()
      for (const v of list.jobs) { apply(v); seen.add(v.jobId) }
      // a job missing from the list (the list is capped) is asked for by ID: none may go unaccounted for
      for (const j of jobs.values()) {
        if (!j.final && !seen.has(j.jobId)) apply(await client.call('job', { id: j.jobId, full: false }))
      }
    } catch (err) {
      // a saturated broker may not answer one poll in time (the scale run's did not, once): poll
      // again until the deadline; the jobs' states are whatever the last answered poll said
      pollErrors++
      process.stderr.write(`scale-burst: poll ${polls} failed (${(err as Error).message}); polling again\n`)
    }
    if ([...jobs.values()].every(j => j.final)) break
    await sleep(pollMs)
  }
  const allFinal = [...jobs.values()].every(j => j.final)
  const ok = [...jobs.values()].find(j => j.status === 'succeeded')
  const sampleStdout = ok != null
    ? await client.call('job', { id: ok.jobId, full: true }).then(v => v.stdout ?? null, (err: Error) => `(could not fetch: ${err.message})`)
    : null
  const cpu = process.cpuUsage()
  const out: BurstOutput = {
    count,
    concurrency,
    submitErrors,
    jobs: [...jobs.values()],
    submitPhaseMs,
    allFinal,
    polls,
    pollErrors,
    sampleStdout,
    selfCpuMs: (cpu.user + cpu.system) / 1000
  }
  process.stdout.write(JSON.stringify(out) + '\n')
}

main().catch((err: unknown) => {
  process.stderr.write(`scale-burst failed: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
