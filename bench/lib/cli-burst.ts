/**
 * A burst of jobs submitted the way a user does: `worldcompute job submit
 * hello.wasm … --json` run as its own process in the submitting daemon's
 * namespace, `concurrency` at a time, each waiting for its job's final answer;
 * and the exactly-once check of the burst against the executors' own records
 * (`worldcompute donated --json` on every donor).
 */
import { fileURLToPath } from 'node:url'
import { cliJson, type DonorNode } from '../../test/lab/processes.ts'
import type { Lab } from '../../test/lab/topology.ts'
import type { JobView } from '../../src/core/job.ts'
import type { DonatedTask } from '../../src/core/types.ts'
import { pool } from './lab-mesh.ts'

export const HELLO_WASM = fileURLToPath(new URL('../../test/fixtures/wasm/hello.wasm', import.meta.url))

export interface CliJob {
  index: number
  /** Date.now() when the CLI process was spawned / when it exited */
  startAt: number
  endAt: number
  code: number | null
  /** the final job, as `job submit --json` printed it */
  view?: JobView
  /** why there is no view, or the CLI's stderr when it exited non-zero */
  error?: string
  /** the GREETING this job was given: its stdout must carry it back */
  greeting: string
}

/** Runs `count` CLI submits, `concurrency` at a time; each is bounded by `perJobTimeoutMs`. */
export async function cliBurst (lab: Lab, submitter: DonorNode, opts: { count: number, concurrency: number, tag: string, perJobTimeoutMs: number }): Promise<CliJob[]> {
  const out: CliJob[] = []
  const indexes = Array.from({ length: opts.count }, (_x, i) => i)
  await pool(indexes, opts.concurrency, async (index) => {
    const greeting = `${opts.tag}-${index}`
    const startAt = Date.now()
    try {
      const res = await cliJson<JobView>(lab, submitter, ['job', 'submit', HELLO_WASM, '--arg', 'x', '--env', `GREETING=${greeting}`], opts.perJobTimeoutMs)
      const job: CliJob = { index, startAt, endAt: Date.now(), code: res.code, greeting, ...(res.value != null ? { view: res.value } : {}) }
      if (res.value == null || res.code !== 0) job.error = `exit ${String(res.code)}: ${res.stderr.trim().split('\n').slice(-3).join(' / ').slice(0, 400)}`
      out.push(job)
    } catch (err) {
      out.push({ index, startAt, endAt: Date.now(), code: null, greeting, error: (err as Error).message.split('\n')[0] })
    }
  })
  return out.sort((a, b) => a.index - b.index)
}

/** Whether a CLI job succeeded with the output its own input asks for. */
export function cliJobSucceeded (j: CliJob): boolean {
  return j.code === 0 && j.view?.status === 'succeeded' && j.view.final && (j.view.stdout ?? '').includes(`GREETING=${j.greeting}`)
}

export interface ExactlyOnce {
  /** job IDs whose replica ran exactly once, successfully, on exactly one executor */
  once: number
  /** job IDs with more than one run recorded (the same or other executors) */
  twice: Array<{ jobId: string, runs: Array<{ donor: string, status: string }> }>
  /** job IDs no executor recorded */
  never: string[]
  /** job IDs whose only runs did not succeed */
  notOk: string[]
  /** donors whose `donated` could not be read, with why */
  unreadable: string[]
  /** runs recorded per donor for these jobs */
  perDonor: Map<string, number>
}

/**
 * Exactly once, from the executors' side: every donor's `donated` record
 * (the tasks it ran for others), filtered to `jobIds` sent by `brokerPeerId`.
 */
export async function exactlyOnce (lab: Lab, donors: DonorNode[], brokerPeerId: string, jobIds: string[]): Promise<ExactlyOnce> {
  const wanted = new Set(jobIds)
  const runs = new Map<string, Array<{ donor: string, status: string }>>()
  const unreadable: string[] = []
  const perDonor = new Map<string, number>()
  await pool(donors, 4, async (d) => {
    const res = await cliJson<DonatedTask[]>(lab, d, ['donated', '--limit', '10000'], 30_000).catch((err: Error) => ({ code: null, value: undefined, stderr: err.message }))
    if (res.value == null) {
      unreadable.push(`${d.name}: exit ${String(res.code)} ${res.stderr.trim().slice(0, 200)}`)
      return
    }
    for (const t of res.value) {
      if (t.broker !== brokerPeerId || !wanted.has(t.jobId)) continue
      const list = runs.get(t.jobId) ?? []
      list.push({ donor: d.name, status: t.status })
      runs.set(t.jobId, list)
      perDonor.set(d.name, (perDonor.get(d.name) ?? 0) + 1)
    }
  })
  return { ...classifyRuns(jobIds, runs), unreadable, perDonor }
}

/** Sorts `jobIds` by the runs the executors recorded of each: exactly one that succeeded, more than one, none, or one that did not succeed. */
export function classifyRuns (jobIds: string[], runs: ReadonlyMap<string, Array<{ donor: string, status: string }>>): Pick<ExactlyOnce, 'once' | 'twice' | 'never' | 'notOk'> {
  const result: Pick<ExactlyOnce, 'once' | 'twice' | 'never' | 'notOk'> = { once: 0, twice: [], never: [], notOk: [] }
  for (const id of jobIds) {
    const r = runs.get(id) ?? []
    if (r.length === 0) result.never.push(id)
    else if (r.length > 1) result.twice.push({ jobId: id, runs: r })
    else if (r[0].status !== 'succeeded') result.notOk.push(id)
    else result.once++
  }
  return result
}
