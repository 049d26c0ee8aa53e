/**
 * Jobs per second from one broker to four donors, against a bare libp2p
 * request/response rate on the same nodes:
 *
 *   jobs   a --no-execute submitter (donor.execute false) bursts trivial jobs
 *          (hello.wasm, 1 replica) through its API, naming the module by CID
 *          as `job submit` and `--batch` do (ApiClient.submitJobByCid: the
 *          bytes go up once, in the warm-up); the rate is jobs / time from
 *          the first submit to the last job being final
 *   bare   1 KiB echo request/response on a new stream each (opened and
 *          negotiated every time, while a job's task goes out on a dispatch
 *          stream kept per donor), from the same submitter node over
 *          its connections to the same four donors, with as many requests
 *          in flight as the donors have job slots (the concurrency a
 *          perfect scheduler would keep busy)
 *
 * All nodes listen on 127.0.0.1 TCP as well as through one relay, so the
 * broker dispatches over direct connections. After one untimed burst and one
 * untimed bare run at the measured sizes (V8 compiles each path before it is
 * timed), bursts and bare runs alternate. The job watcher reads no job rows:
 * it stamps a job final on the broker's 'final' event, costing the process
 * it measures nothing a client in a process of its own would not.
 *
 *   node_modules/.bin/node bench/throughput.ts [--quick] [--json-out FILE]
 *
 * WC_BENCH_CPU_PROFILE=FILE also writes a V8 CPU profile of the first
 * measured burst of jobs (start-up, warm-up and bare runs left out).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { Session } from 'node:inspector/promises'
import { benchMain, progress, row, within, type BenchRow } from './lib/report.ts'
import {
  capacityServiceOf, connectionTo, DIRECT_AND_RELAY, echoOnce, handleEcho, helloRequest, submitHello, jobView, JobWatcher,
  startBenchDaemon, startBenchRelay, waitForExecutors, type BenchDaemon
} from './lib/mesh.ts'
import { benchLogging, describeWarnings, problemsSoFar } from './lib/log-sink.ts'
import { EluMeter, fmt, num, summarize } from './lib/stats.ts'

const DONORS = 4
const request = helloRequest()

interface Burst {
  jobs: number
  ms: number
  rate: number
  failed: number
  paths: Record<string, number>
  perDonor: Record<string, number>
  /** tasks that failed and were retried (offer/dispatch trouble) */
  retried: number
}

/** Runs `count` tasks with at most `limit` in flight. */
async function pool (count: number, limit: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0
  const lane = async (): Promise<void> => {
    while (next < count) await task(next++)
  }
  await Promise.all(Array.from({ length: Math.min(limit, count) }, lane))
}

async function burst (submitter: BenchDaemon, watcher: JobWatcher, count: number, donors: BenchDaemon[], timeoutMs: number): Promise<Burst> {
  const ids: string[] = []
  const t0 = performance.now()
  // 8 submits in flight: enough that the API client is not what limits the rate
  await pool(count, 8, async () => {
    const accepted = await submitHello(submitter.client, request)
    watcher.track(accepted.jobId)
    ids.push(accepted.jobId)
  })
  const finals = await within(`${count} jobs to finish`, timeoutMs, Promise.all(ids.map(async id => await watcher.finished(id, timeoutMs))))
  const end = Math.max(...finals.map(t => t.final as number))
  const ms = end - t0
  const paths: Record<string, number> = {}
  const perDonor: Record<string, number> = {}
  const names = new Map(donors.map((d, i) => [d.peerId, `donor${i + 1}`]))
  let failed = 0
  let retried = 0
  for (const id of ids) {
    const { job, tasks } = submitter.broker.getJob(id)
    if (job.final?.status !== 'succeeded') failed++
    retried += tasks.filter(t => t.state === 'failed').length
    const done = tasks.find(t => t.state === 'done')
    if (done != null) {
      paths[String(done.path)] = (paths[String(done.path)] ?? 0) + 1
      const who = names.get(done.executor) ?? done.executor
      perDonor[who] = (perDonor[who] ?? 0) + 1
    }
  }
  // one full check through the API, outside the timed region
  const v = await jobView(submitter.client, ids[ids.length - 1])
  if (v.status !== 'succeeded' || !(v.stdout ?? '').startsWith('hello from wasi')) throw new Error(`job ${v.jobId} ended ${v.status}: ${v.message}`)
  return { jobs: count, ms, rate: count / (ms / 1000), failed, paths, perDonor, retried }
}

async function bare (submitter: BenchDaemon, donors: BenchDaemon[], count: number, inFlight: number, payload: Uint8Array): Promise<{ rate: number, ms: number, count: number }> {
  const conns = donors.map(d => {
    const c = connectionTo(submitter, d.peerId, 'direct')
    if (c == null) throw new Error(`no direct connection from the submitter to ${d.peerId}`)
    return c
  })
  const deadline = Date.now() + 30_000
  let started = 0
  let done = 0
  const t0 = performance.now()
  // lane i talks to donor i % 4, as the slots are spread over the donors
  await Promise.all(Array.from({ length: inFlight }, async (_x, lane) => {
    while (started < count && Date.now() < deadline) {
      started++
      await echoOnce(conns[lane % conns.length], payload)
      done++
    }
  }))
  const ms = performance.now() - t0
  return { rate: done / (ms / 1000), ms, count: done }
}

/** A V8 CPU profile of this process from now until `stop`, written to `file`; none without a file. */
async function startProfile (file: string | undefined): Promise<{ stop: () => Promise<void> } | undefined> {
  if (file == null || file === '') return undefined
  const session = new Session()
  session.connect()
  await session.post('Profiler.enable')
  // 100 µs rather than V8's 1 ms: a burst is well under a second, and a job's share of any one function is small
  await session.post('Profiler.setSamplingInterval', { interval: 100 })
  await session.post('Profiler.start')
  return {
    stop: async () => {
      const { profile } = await session.post('Profiler.stop')
      writeFileSync(file, JSON.stringify(profile))
      session.disconnect()
      progress(`CPU profile of the first measured burst written to ${file}`)
    }
  }
}

async function main (): Promise<void> {
  await benchMain('bench/throughput', { quick: 180_000, full: 240_000 }, async (args, cleanup) => {
    // broker info lines are counted, not shown: each declined offer is one
    const log = benchLogging({ extraSpec: 'broker=info', count: { busy: /declined: busy/, accepted: /accepted job/ } })
    const root = mkdtempSync(join(tmpdir(), 'wc-bench-tp-'))
    cleanup.add('remove temp dir', () => { rmSync(root, { recursive: true, force: true }) })
    const jobsPerBurst = args.quick ? 40 : 200
    const reps = args.quick ? 2 : 5
    const burstTimeoutMs = 60_000

    progress(`starting a relay, a --no-execute broker and ${DONORS} donors on 127.0.0.1`)
    const relay = await startBenchRelay(join(root, 'relay'), cleanup)
    const donors: BenchDaemon[] = []
    for (let i = 0; i < DONORS; i++) {
      const d = await startBenchDaemon(join(root, `donor${i + 1}`), relay, { listen: DIRECT_AND_RELAY, execute: true }, cleanup)
      await handleEcho(d, cleanup)
      donors.push(d)
    }
    const submitter = await startBenchDaemon(join(root, 'broker'), relay, { listen: DIRECT_AND_RELAY, execute: false }, cleanup)
    await waitForExecutors(submitter, DONORS)
    // only the final answer is timed: the watcher reads no rows (a client waits in a process of its own)
    const watcher = new JobWatcher(submitter, { stages: false })
    cleanup.add('stop job watcher', () => { watcher.stop() })
    const slots = donors.reduce((n, d) => n + (d.executor?.maxConcurrent ?? 0), 0)

    // warm-up: every donor has run the module once (cached, compiled) and holds a direct connection
    const warmDeadline = Date.now() + 60_000
    let warmJobs = 0
    const ranOnce = new Set<string>()
    while (donors.some(d => !ranOnce.has(d.peerId) || connectionTo(submitter, d.peerId, 'direct') == null) && Date.now() < warmDeadline) {
      const b = await burst(submitter, watcher, DONORS * 2, donors, 30_000)
      warmJobs += b.jobs
      donors.forEach((d, i) => { if ((b.perDonor[`donor${i + 1}`] ?? 0) > 0) ranOnce.add(d.peerId) })
    }
    if (donors.some(d => !ranOnce.has(d.peerId))) throw new Error('warm-up: not every donor ran a job within 60 s')
    const payload = new Uint8Array(1024).fill(0x62)
    // one untimed run of each at the measured size: the first measured one is
    // not also the one whose code V8 compiles (a job's path is much more code
    // than an echo's, and a few warm-up jobs left the first bursts slower than the last)
    await burst(submitter, watcher, jobsPerBurst, donors, burstTimeoutMs)
    await bare(submitter, donors, jobsPerBurst * 5, slots, payload)
    progress(`warm-up: ${warmJobs + jobsPerBurst} jobs, ${jobsPerBurst * 5} bare requests; ${slots} job slots over ${DONORS} donors`)

    // capacity announcements the broker hears while jobs run (each one signed, sent, verified, tabled)
    let heard = 0
    let counting = false
    capacityServiceOf(submitter).addEventListener('executor:updated', () => { if (counting) heard++ })
    const problemsBefore = problemsSoFar(log.counts)
    const busyBefore = log.counts.matched.busy
    const acceptedBefore = log.counts.matched.accepted
    const elu = new EluMeter()
    const bursts: Burst[] = []
    const bares: Array<{ rate: number, ms: number, count: number }> = []
    // bounded in count and in time: no new repetition starts after this
    const measureUntil = Date.now() + (args.quick ? 60_000 : 150_000)
    for (let r = 0; r < reps && Date.now() < measureUntil; r++) {
      const order = r % 2 === 0 ? ['jobs', 'bare'] : ['bare', 'jobs']
      for (const what of order) {
        if (what === 'jobs') {
          const profiler = bursts.length === 0 ? await startProfile(process.env.WC_BENCH_CPU_PROFILE) : undefined
          counting = true
          const b = await elu.measure('jobs', async () => await burst(submitter, watcher, jobsPerBurst, donors, burstTimeoutMs))
          counting = false
          await profiler?.stop()
          bursts.push(b)
          progress(`burst ${r + 1}/${reps}: ${b.jobs} jobs in ${num(b.ms)} ms = ${num(b.rate)} jobs/s; per donor ${JSON.stringify(b.perDonor)}; paths ${JSON.stringify(b.paths)}; failed ${b.failed}, retried tasks ${b.retried}`)
        } else {
          const b = await elu.measure('bare', async () => await bare(submitter, donors, jobsPerBurst * 5, slots, payload))
          bares.push(b)
          progress(`bare ${r + 1}/${reps}: ${b.count} requests in ${num(b.ms)} ms = ${num(b.rate)} req/s`)
        }
      }
    }
    const jobs = summarize(bursts.map(b => b.rate))
    const reqs = summarize(bares.map(b => b.rate))
    const rows: BenchRow[] = [
      row({ benchmark: `throughput: ${jobsPerBurst}-job burst, 1 broker → ${DONORS} donors`, baselineName: `bare 1 KiB req/resp, ${slots} in flight`, baseline: reqs, figure: jobs, unit: '/s', ratioLabel: 'jobs/s ÷ req/s', target: { op: '>=', value: 0.5 } })
    ]
    process.stdout.write(`\nthroughput, ${bursts.length} bursts of ${jobsPerBurst} jobs (${bursts.map(b => `${num(b.ms)} ms`).join(', ')}); bare ${bares.map(b => b.count).join('/')} requests\n`)
    process.stdout.write(`  jobs ${fmt(jobs, 'jobs/s')}\n  bare ${fmt(reqs, 'req/s')}\n`)
    const failed = bursts.reduce((n, b) => n + b.failed, 0)
    const retried = bursts.reduce((n, b) => n + b.retried, 0)
    const paths: Record<string, number> = {}
    for (const b of bursts) for (const [k, v] of Object.entries(b.paths)) paths[k] = (paths[k] ?? 0) + v
    const busy = log.counts.matched.busy - busyBefore
    const submitted = log.counts.matched.accepted - acceptedBefore
    process.stdout.write(`  event-loop utilisation of this process: during bursts ${num(elu.utilization('jobs'))}, during bare runs ${num(elu.utilization('bare'))}\n`)
    const jobsRun = bursts.reduce((n, b) => n + b.jobs, 0)
    process.stdout.write(`  CPU of this process: ${num(elu.cpuMs('jobs') / Math.max(1, jobsRun))} ms per job, ${num(elu.cpuMs('bare') / Math.max(1, bares.reduce((n, b) => n + b.count, 0)))} ms per bare request; capacity announcements heard by the broker during bursts: ${heard} (${num(heard / Math.max(1, jobsRun))} per job)\n`)
    const notes = [
      `Throughput: ${DONORS} donors with ${slots} job slot(s) in all (--max-jobs default on this machine), broker started with donor.execute false; jobs submitted through the API client, 8 requests in flight; rate = jobs / (first submit → last final). Dispatch paths: ${JSON.stringify(paths)}; jobs not succeeded: ${failed}; task attempts that failed and were retried: ${retried}. Logging: ${log.spec}; ${describeWarnings(log.counts, problemsBefore)}.`,
      `Scheduling: ${busy} offers were declined as busy for ${submitted} jobs (${num(busy / Math.max(1, submitted))} per job). The broker keeps a ledger of each executor's free slots (announcements, offer answers, its own finished tasks) and offers only where it expects one; waiting jobs queue first come first served and a freed slot wakes the first in line (src/broker/slot-ledger.ts, Broker.pump). ${num(bursts.reduce((n, b) => n + b.jobs, 0) / bursts.reduce((n, b) => n + b.ms / 1000, 0) / slots)} jobs/s per slot against ${num(reqs.median / slots)} bare req/s per in-flight request.`,
      `Where the time goes: every node shares this one process, whose event loop was busy ${num(elu.utilization('jobs'))} of the time during bursts (${num(elu.utilization('bare'))} during bare runs), so the rate is bound by CPU here. CPU of this process (all threads): ${num(elu.cpuMs('jobs') / Math.max(1, bursts.reduce((n, b) => n + b.jobs, 0)))} ms per job against ${num(elu.cpuMs('bare') / Math.max(1, bares.reduce((n, b) => n + b.count, 0)))} ms per bare request/response; a job is an API call (HTTP on 127.0.0.1, a kept-alive connection, + SQLite), its task sent in one write on a dispatch stream kept per donor (dispatch/1.1.0: no stream opened per task) carrying its offer (the task is small: no offer stream), and a signed receipt to verify, plus the donor's sandbox (another process, not counted here) and capacity gossip.`
    ]
    return { bench: 'throughput', rows, notes }
  })
}

if (import.meta.main) await main()
