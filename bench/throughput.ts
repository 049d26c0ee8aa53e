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
 *          stream kept per donor), from the same submitter node over the
 *          connection its tasks take to each of the same four donors (the
 *          best direct one: TCP before WebRTC), with as many requests
 *          in flight as the donors have job slots (the concurrency a
 *          perfect scheduler would keep busy)
 *
 * Before the warm-up the submitter dials each donor's TCP address, so that
 * tasks and bare requests all go over TCP (checked before every bare run).
 * Left to itself a pair that met through the relay may hold only a WebRTC
 * connection (the direct upgrade dials no loopback address as a public
 * one), and which pairs did changed from run to run: one of four lanes on
 * WebRTC put the bare side's CPU per request at 1.56 ms against 1.02-1.11
 * with all four on TCP (runs of 2026-12-07 on an idle machine), where the
 * runs before this read 1.0-1.2 ms in some runs and 1.7-2.3 in others.
 *
 * All nodes listen on 127.0.0.1 TCP as well as through one relay, so the
 * broker dispatches over direct connections. One untimed burst and one
 * untimed bare run at the measured sizes come first (V8 compiles each path
 * before it is timed). The job watcher reads no job rows:
 * it stamps a job final on the broker's 'final' event, costing the process
 * it measures nothing a client in a process of its own would not.
 *
 * Every node's JS runs in this one process, so a timed phase inherits what
 * the phase before it left: garbage to collect, V8's heap sizing, code
 * compiled for the other kind of work. The figures therefore come only from
 * phases that follow a phase of their own kind: each repetition runs three
 * bursts then three bare runs (or the other way round), and the first phase
 * after a switch (the lead-in) is left out. Each side then pays for what its
 * own kind of work leaves, as it would running alone, and a build whose jobs
 * leave less garbage cannot make its own baseline cheaper. In the same
 * repetitions the method used before 2026-12-07 also runs, for comparison
 * while this one is new: bursts and bare runs alternating (jobs, bare, bare,
 * jobs), every phase timed. The rows "right after a burst / a bare run" give
 * each kind's CPU per unit right after the other kind against right after its
 * own: what a phase pays for following the other kind. A row also gives the
 * two sides' CPU per unit: this process's event loop is saturated in both,
 * so their ratio is what the rates' would be with a core to itself. The
 * printed summary adds the ratio taken per repetition (the two sides of one
 * repetition ran seconds apart, under the same load from the rest of the
 * machine); over 8 runs at load 3-5 it varied no less than the ratio of the
 * run's medians, which the row keeps.
 *
 * Fencing each phase with full GCs instead (one before it, untimed, and one
 * right after it, timed) was tried (WC_BENCH_TP_FENCED=1 adds it as a third
 * method) and is not used: a full GC marks the whole live heap, which every
 * node holds whatever ran, so the GC after a phase took as long as a second,
 * empty one right after it (medians, 35 vs 39 ms after a burst and 41 vs 56
 * ms after a bare run at load 1.8-2.3; 138 vs 160 and 141 vs 159 ms at load
 * 1.6-2.8). It charged each phase a load-dependent constant rather than its
 * garbage, a larger share of the shorter burst than of the bare run (in that
 * second run: ratio 0.48x fenced, 0.60x by the method above).
 *
 *   node_modules/.bin/node bench/throughput.ts [--quick] [--json-out FILE]
 *
 * WC_BENCH_CPU_PROFILE=FILE also writes a V8 CPU profile of the first timed
 * burst of the steady method (start-up, warm-up and bare runs left out).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { Session } from 'node:inspector/promises'
import { benchMain, progress, row, within, type BenchRow, type Cleanup } from './lib/report.ts'
import { fullGc, GcLog } from './lib/gc.ts'
import { getHeapStatistics } from 'node:v8'
import { transportOf } from '../src/net/transport-of.ts'
import {
  capacityServiceOf, connectionTo, DIRECT_AND_RELAY, directTcp, echoOnce, handleEcho, helloRequest, submitHello, jobView, JobWatcher,
  startBenchDaemon, startBenchRelay, waitForExecutors, type BenchDaemon
} from './lib/mesh.ts'
import { benchLogging, describeWarnings, problemsSoFar } from './lib/log-sink.ts'
import { fmt, num, rotate, summarize, type Summary } from './lib/stats.ts'

const DONORS = 4
const request = helloRequest()

/** The nodes and settings every phase of the run shares. */
interface Mesh {
  submitter: BenchDaemon
  watcher: JobWatcher
  donors: BenchDaemon[]
  /** job slots over all donors: the bare side's requests in flight */
  slots: number
  payload: Uint8Array
}

type Kind = 'jobs' | 'bare'
/**
 * How the phases of a repetition are laid out and timed:
 * - 'steady': each kind in a run of its own, jobs, jobs, jobs then bare,
 *   bare, bare (or the other way round), and the first phase after a switch
 *   (the lead-in) left out of the figures: a timed phase follows a phase of
 *   its own kind, so it inherits (and pays for) only what its own kind of
 *   work leaves behind — garbage, heap sizing, compiled code — as it would
 *   running alone;
 * - 'plain': jobs and bare alternating, every phase timed (each then pays
 *   for some of what the other kind left): the method before 2026-12-07,
 *   run beside for comparison;
 * - 'fenced': alternating, with a full GC right before each phase (untimed)
 *   and one right after it (timed); WC_BENCH_TP_FENCED=1 only (see the
 *   header: it charges every phase a constant, not its garbage).
 */
type Method = 'steady' | 'plain' | 'fenced'
/** A method's phases in repetition `r` (kinds alternate which goes first). */
function blockOf (method: Method, r: number): Kind[] {
  const [a, b]: Kind[] = r % 2 === 0 ? ['jobs', 'bare'] : ['bare', 'jobs']
  if (method === 'steady') return [a, a, a, b, b, b]
  // the pattern the alternating method always ran: each kind after itself and after the other
  if (method === 'plain') return [a, b, b, a]
  return ['jobs', 'bare', 'bare', 'jobs', 'jobs', 'bare']
}
/** After a fenced phase, how long (untimed) the CPU of work it left running is read. */
const SPILL_MS = 100

interface Phase {
  kind: Kind
  method: Method
  /** the repetition it ran in */
  rep: number
  /** the kind of the phase run just before (whatever its method) */
  after: Kind
  /** steady: the first phase after a switch of kind, not in the figures */
  lead: boolean
  count: number
  /** performance.now() at the phase's start and at its last job final / last answer (before any fence) */
  start: number
  end: number
  /** the rate's time: a burst's first submit to its last job final, a bare run's first request to last answer; fenced: + the GC after it */
  ms: number
  /** CPU of this process (all threads) over the phase; fenced: with the GC after it; plain: with a burst's check after it (as the method always had) */
  cpuMs: number
  /** CPU of this process's main thread over the same span: the one event loop every node shares, and what bounds the rates */
  mainCpuMs: number
  /** event-loop busy and idle time over the phase */
  active: number
  idle: number
  /** fenced: the timed full GC after the phase; else 0 */
  gcMs: number
  /** fenced: a second full GC right after that one (untimed), with nothing left to collect: the fence's fixed part; else NaN */
  gcEmptyMs: number
  /** fenced: what the GC after the phase freed, MB; else NaN */
  freedMb: number
  /** fenced: CPU in the SPILL_MS after the phase (untimed); else NaN */
  spillCpuMs: number
  burst?: Burst
}

type Measured = Omit<Phase, 'method' | 'rep' | 'after' | 'lead'>

/** One phase of either kind; `fenced` collects all garbage before it (untimed) and after it (timed). */
async function runPhase (m: Mesh, size: { jobs: number, timeoutMs: number }, kind: Kind, method: Method): Promise<Measured> {
  const fenced = method === 'fenced'
  if (fenced) fullGc()
  const cpu0 = process.cpuUsage()
  const main0 = process.threadCpuUsage()
  const elu0 = performance.eventLoopUtilization()
  const start = performance.now()
  const jobs = kind === 'jobs' ? await burstRun(m, size.jobs, size.timeoutMs) : undefined
  const run = jobs ?? await bare(m, size.jobs * 5)
  const heap = fenced ? getHeapStatistics().used_heap_size : NaN
  const gcMs = fenced ? fullGc() : 0
  const freedMb = (heap - getHeapStatistics().used_heap_size) / 2 ** 20
  let burst = jobs != null && method === 'plain' ? await burstCheck(m, jobs) : undefined
  const cpu = process.cpuUsage(cpu0)
  const main = process.threadCpuUsage(main0)
  const elu = performance.eventLoopUtilization(elu0)
  const gcEmptyMs = fenced ? fullGc() : NaN
  const spillCpuMs = fenced ? await cpuOver(SPILL_MS) : NaN
  if (jobs != null) burst ??= await burstCheck(m, jobs)
  return { kind, count: run.count, start, end: start + run.ms, ms: run.ms + gcMs, cpuMs: (cpu.user + cpu.system) / 1000, mainCpuMs: (main.user + main.system) / 1000, active: elu.active, idle: elu.idle, gcMs, gcEmptyMs, freedMb, spillCpuMs, burst }
}

/** CPU of this process over the next `ms` of wall time, ms. */
async function cpuOver (ms: number): Promise<number> {
  const c0 = process.cpuUsage()
  await new Promise(resolve => setTimeout(resolve, ms))
  const c = process.cpuUsage(c0)
  return (c.user + c.system) / 1000
}

interface BurstRun {
  ids: string[]
  count: number
  ms: number
}

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

/** The timed part of a burst: from the first submit to the last job final, as a client sees it. */
async function burstRun (m: Mesh, count: number, timeoutMs: number): Promise<BurstRun> {
  const ids: string[] = []
  const t0 = performance.now()
  // 8 submits in flight: enough that the API client is not what limits the rate
  await pool(count, 8, async () => {
    const accepted = await submitHello(m.submitter.client, request)
    m.watcher.track(accepted.jobId)
    ids.push(accepted.jobId)
  })
  const finals = await within(`${count} jobs to finish`, timeoutMs, Promise.all(ids.map(async id => await m.watcher.finished(id, timeoutMs))))
  const end = Math.max(...finals.map(t => t.final as number))
  return { ids, count, ms: end - t0 }
}

/** What a burst's jobs ended as, read from the broker's rows and once through the API. */
async function burstCheck (m: Mesh, run: BurstRun): Promise<Burst> {
  const { ids, count, ms } = run
  const paths: Record<string, number> = {}
  const perDonor: Record<string, number> = {}
  const names = new Map(m.donors.map((d, i) => [d.peerId, `donor${i + 1}`]))
  let failed = 0
  let retried = 0
  for (const id of ids) {
    const { job, tasks } = m.submitter.broker.getJob(id)
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
  const v = await jobView(m.submitter.client, ids[ids.length - 1])
  if (v.status !== 'succeeded' || !(v.stdout ?? '').startsWith('hello from wasi')) throw new Error(`job ${v.jobId} ended ${v.status}: ${v.message}`)
  return { jobs: count, ms, rate: count / (ms / 1000), failed, paths, perDonor, retried }
}

async function burst (m: Mesh, count: number, timeoutMs: number): Promise<Burst> {
  return await burstCheck(m, await burstRun(m, count, timeoutMs))
}

async function bare (m: Mesh, count: number): Promise<{ rate: number, ms: number, count: number }> {
  const { submitter, slots: inFlight, payload } = m
  // the connection a task to that donor goes out on (the broker's dispatch takes the best direct one:
  // TCP before WebRTC), not merely the first direct one open, which may be a WebRTC one beside the TCP one
  const conns = m.donors.map(d => {
    const c = submitter.donor.mesh.components.connections.bestDirect(d.peerId)
    if (c == null) throw new Error(`no direct connection from the submitter to ${d.peerId}`)
    return c
  })
  const notTcp = conns.filter(c => transportOf(c.remoteAddr) !== 'tcp')
  // the WebRTC connection a direct upgrade makes is not what the bench measures (see the header)
  if (notTcp.length > 0) throw new Error(`bare run: connection(s) not TCP: ${notTcp.map(c => c.remoteAddr.toString()).join(', ')}`)
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

/** The phases a method's figures are made of: a steady run's lead-ins are left out. */
function timed (phases: readonly Phase[], kind: Kind, method: Method): Phase[] {
  return phases.filter(p => p.kind === kind && p.method === method && !p.lead)
}

/** Rates of a method's timed phases of one kind, per second. */
function rates (phases: readonly Phase[], kind: Kind, method: Method): Summary {
  return summarize(timed(phases, kind, method).map(p => p.count / (p.ms / 1000)))
}

/** CPU per unit (ms per job or per request) of the chosen phases, each phase one value. */
function cpuPer (phases: readonly Phase[], pick: (p: Phase) => boolean): Summary {
  return summarize(phases.filter(pick).map(p => p.cpuMs / p.count))
}

/** CPU per unit over all of a method's timed phases of one kind (total CPU ÷ total count): the process's, or with `of` the main thread's. */
function cpuPerUnit (phases: readonly Phase[], kind: Kind, method: Method, of: 'cpuMs' | 'mainCpuMs' = 'cpuMs'): number {
  const t = timed(phases, kind, method)
  return t.reduce((n, p) => n + p[of], 0) / Math.max(1, t.reduce((n, p) => n + p.count, 0))
}

const RATIO_LABEL = 'jobs/s ÷ req/s'

/**
 * The ratio per repetition (its timed bursts' jobs/s ÷ its timed bare runs'
 * req/s, each over the phases' summed time), summarised: the two sides of a
 * repetition ran within seconds of each other, so they saw the same load on
 * the shared machine, which the whole run's medians do not.
 */
function pairedRatio (phases: readonly Phase[], method: Method): Summary {
  const reps = [...new Set(phases.map(p => p.rep))]
  const rate = (kind: Kind, rep: number): number => {
    const t = timed(phases, kind, method).filter(p => p.rep === rep)
    return t.reduce((n, p) => n + p.count, 0) / (t.reduce((n, p) => n + p.ms, 0) / 1000)
  }
  return summarize(reps.map(r => rate('jobs', r) / rate('bare', r)).filter(Number.isFinite))
}

/** How much a phase's CPU per unit depends on the kind run before it: right after the other kind ÷ right after its own. */
function carryRow (phases: readonly Phase[], kind: Kind, fenced: boolean): BenchRow {
  const pick = (after: Kind) => (p: Phase) => p.kind === kind && (p.method === 'fenced') === fenced && p.after === after
  const other: Kind = kind === 'jobs' ? 'bare' : 'jobs'
  const unit = kind === 'jobs' ? 'job' : 'bare request'
  return row({
    benchmark: `throughput: CPU per ${unit} right after ${other === 'jobs' ? 'a burst' : 'a bare run'} (${fenced ? 'GC-fenced phases' : 'unfenced phases, steady and alternating'})`,
    baselineName: `right after ${kind === 'jobs' ? 'a burst' : 'a bare run'}`,
    baseline: cpuPer(phases, pick(kind)),
    figure: cpuPer(phases, pick(other)),
    unit: 'ms',
    ratioLabel: 'after the other kind ÷ after its own'
  })
}

/** The run's rows: the ratio by each method, and how much a phase's cost depends on what ran before it. */
function resultRows (phases: readonly Phase[], jobsPerBurst: number, slots: number): BenchRow[] {
  const base = `bare 1 KiB req/resp, ${slots} in flight`
  const ratioRow = (method: Method, benchmark: string, target?: { op: '>=', value: number }): BenchRow =>
    row({ benchmark, baselineName: base, baseline: rates(phases, 'bare', method), figure: rates(phases, 'jobs', method), unit: '/s', ratioLabel: RATIO_LABEL, ...(target != null ? { target } : {}) })
  const rows = [
    ratioRow('steady', `throughput: ${jobsPerBurst}-job burst, 1 broker → ${DONORS} donors (each side timed after its own kind)`, { op: '>=', value: 0.5 }),
    row({
      benchmark: 'throughput: the same phases by this process\'s CPU (each side timed after its own kind)',
      baselineName: 'CPU per job',
      baseline: cpuPer(phases, p => p.method === 'steady' && p.kind === 'jobs' && !p.lead),
      figure: cpuPer(phases, p => p.method === 'steady' && p.kind === 'bare' && !p.lead),
      unit: 'ms',
      ratioLabel: 'CPU per bare request ÷ per job: jobs/s ÷ req/s if this process had a core of its own'
    }),
    ratioRow('plain', 'throughput: same, bursts and bare runs alternating (the method before 2026-12-07, for comparison)'),
    carryRow(phases, 'bare', false),
    carryRow(phases, 'jobs', false)
  ]
  if (phases.some(p => p.method === 'fenced')) rows.push(ratioRow('fenced', 'throughput: same, alternating, each phase between full GCs (the one after it timed)'), carryRow(phases, 'bare', true), carryRow(phases, 'jobs', true))
  return rows
}

function perRep (s: Summary): string {
  return `${num(s.median)}× (${num(s.min)}–${num(s.max)})`
}

/** A method's figures on stdout: rates, ratio, CPU per unit, and (fenced) the fences' GCs. */
function methodLines (phases: readonly Phase[], method: Method, gcs: GcLog): string {
  const jobs = rates(phases, 'jobs', method)
  const reqs = rates(phases, 'bare', method)
  const cpuJob = cpuPerUnit(phases, 'jobs', method)
  const cpuReq = cpuPerUnit(phases, 'bare', method)
  const mainJob = cpuPerUnit(phases, 'jobs', method, 'mainCpuMs')
  const mainReq = cpuPerUnit(phases, 'bare', method, 'mainCpuMs')
  const elu = (kind: Kind): number => {
    const t = timed(phases, kind, method)
    return t.reduce((n, p) => n + p.active, 0) / t.reduce((n, p) => n + p.active + p.idle, 0)
  }
  const lines = [`  ${method}: jobs ${fmt(jobs, 'jobs/s')}, bare ${fmt(reqs, 'req/s')}, ratio ${num(jobs.median / reqs.median)}× (per repetition ${perRep(pairedRatio(phases, method))}); ` +
    `CPU ${num(cpuJob)} ms per job, ${num(cpuReq)} ms per bare request (their ratio ${num(cpuReq / cpuJob)}×); main thread ${num(mainJob)} ms per job, ${num(mainReq)} ms per bare request (${num(mainReq / mainJob)}×); event loop busy ${num(elu('jobs'))} / ${num(elu('bare'))}`]
  for (const kind of ['bare', 'jobs'] as const) {
    const of = (after: Kind) => (p: Phase) => p.kind === kind && p.method === method && p.after === after
    // V8's own collections inside the phases (not the fences'), medians per phase
    const gc = (after: Kind): string => {
      const inside = phases.filter(of(after)).map(p => gcs.between(p.start, p.end))
      return `scavenges ${num(summarize(inside.map(g => g.minorMs)).median)} ms, mark-compact ${num(summarize(inside.map(g => g.majorMs)).median)} ms (${inside.map(g => g.majors).join('/')})`
    }
    const a = cpuPer(phases, of('jobs'))
    const b = cpuPer(phases, of('bare'))
    lines.push(`    ${kind}: CPU per ${kind === 'jobs' ? 'job' : 'request'} after a burst ${fmt(a, 'ms')} [GC inside: ${gc('jobs')}], after a bare run ${fmt(b, 'ms')} [${gc('bare')}] (×${num(a.median / b.median)})`)
  }
  if (method === 'fenced') {
    const of = (kind: Kind, pick: (p: Phase) => number): string => fmt(summarize(phases.filter(p => p.method === method && p.kind === kind).map(pick)), '')
    for (const kind of ['jobs', 'bare'] as const) {
      lines.push(`    ${kind}: the timed GC after ${of(kind, p => p.gcMs)} ms, an empty one right after it ${of(kind, p => p.gcEmptyMs)} ms, freed ${of(kind, p => p.freedMb)} MB; CPU in the ${SPILL_MS} ms after (untimed) ${of(kind, p => p.spillCpuMs)} ms`)
    }
  }
  return lines.join('\n') + '\n'
}

/** Starts the relay, the donors and the --no-execute broker, and warms every path up. */
async function startMesh (root: string, jobsPerBurst: number, cleanup: Cleanup): Promise<Mesh & { warmJobs: number }> {
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
  // every task and every bare request over TCP, whatever the direct upgrades do meanwhile
  for (const d of donors) await directTcp(submitter, d)
  // only the final answer is timed: the watcher reads no rows (a client waits in a process of its own)
  const watcher = new JobWatcher(submitter, { stages: false })
  cleanup.add('stop job watcher', () => { watcher.stop() })
  const slots = donors.reduce((n, d) => n + (d.executor?.maxConcurrent ?? 0), 0)
  const m: Mesh = { submitter, watcher, donors, slots, payload: new Uint8Array(1024).fill(0x62) }

  // warm-up: every donor has run the module once (cached, compiled) and holds a direct connection
  const warmDeadline = Date.now() + 60_000
  let warmJobs = 0
  const ranOnce = new Set<string>()
  while (donors.some(d => !ranOnce.has(d.peerId) || connectionTo(submitter, d.peerId, 'direct') == null) && Date.now() < warmDeadline) {
    const b = await burst(m, DONORS * 2, 30_000)
    warmJobs += b.jobs
    donors.forEach((d, i) => { if ((b.perDonor[`donor${i + 1}`] ?? 0) > 0) ranOnce.add(d.peerId) })
  }
  if (donors.some(d => !ranOnce.has(d.peerId))) throw new Error('warm-up: not every donor ran a job within 60 s')
  // one untimed run of each at the measured size: the first measured one is
  // not also the one whose code V8 compiles (a job's path is much more code
  // than an echo's, and a few warm-up jobs left the first bursts slower than the last)
  await burst(m, jobsPerBurst, 60_000)
  await bare(m, jobsPerBurst * 5)
  return { ...m, warmJobs: warmJobs + jobsPerBurst }
}

function phaseLine (p: Phase, r: number, reps: number): string {
  const head = `${p.method} ${p.kind} ${r + 1}/${reps} (after ${p.after}${p.lead ? ", a lead-in, not in the figures" : ""}): ${p.count} ${p.kind === 'jobs' ? 'jobs' : 'requests'} in ${num(p.ms)} ms = ${num(p.count / (p.ms / 1000))}/s, CPU ${num(p.cpuMs / p.count)} ms each`
  const gc = p.method === 'fenced' ? `; GC after ${num(p.gcMs)} ms (freed ${num(p.freedMb)} MB; an empty one ${num(p.gcEmptyMs)} ms), CPU in the ${SPILL_MS} ms after ${num(p.spillCpuMs)} ms` : ''
  const b = p.burst
  const detail = b == null ? '' : `; per donor ${JSON.stringify(b.perDonor)}; paths ${JSON.stringify(b.paths)}; failed ${b.failed}, retried tasks ${b.retried}`
  return head + gc + detail
}

async function main (): Promise<void> {
  await benchMain('bench/throughput', { quick: 180_000, full: 240_000 }, async (args, cleanup) => {
    // broker info lines are counted, not shown: each declined offer is one
    const log = benchLogging({ extraSpec: 'broker=info', count: { busy: /declined: busy/, accepted: /accepted job/ } })
    const root = mkdtempSync(join(tmpdir(), 'wc-bench-tp-'))
    cleanup.add('remove temp dir', () => { rmSync(root, { recursive: true, force: true }) })
    const size = { jobs: args.quick ? 40 : 200, timeoutMs: 60_000 }
    const reps = args.quick ? 2 : 5
    const m = await startMesh(root, size.jobs, cleanup)
    progress(`warm-up: ${m.warmJobs} jobs, ${size.jobs * 5} bare requests; ${m.slots} job slots over ${DONORS} donors`)

    // capacity announcements the broker hears while jobs run (each one signed, sent, verified, tabled)
    let heard = 0
    let counting = false
    capacityServiceOf(m.submitter).addEventListener('executor:updated', () => { if (counting) heard++ })
    const problemsBefore = problemsSoFar(log.counts)
    const busyBefore = log.counts.matched.busy
    const acceptedBefore = log.counts.matched.accepted
    const phases: Phase[] = []
    const gcs = new GcLog()
    cleanup.add('stop the GC log', () => { gcs.stop() })
    const methods: Method[] = process.env.WC_BENCH_TP_FENCED === '1' ? ['steady', 'plain', 'fenced'] : ['steady', 'plain']
    // the warm-up ended with a bare run
    let prev: Kind = 'bare'
    // bounded in count and in time: no new repetition starts after this
    const measureUntil = Date.now() + (args.quick ? 60_000 : 150_000)
    for (let r = 0; r < reps && Date.now() < measureUntil; r++) {
      // the methods take turns going first, so none always follows the same one
      for (const method of rotate(methods, r)) {
        for (const kind of blockOf(method, r)) {
          const lead = method === 'steady' && prev !== kind
          const first = method === 'steady' && kind === 'jobs' && !lead && !phases.some(p => p.method === 'steady' && p.kind === 'jobs' && !p.lead)
          const profiler = first ? await startProfile(process.env.WC_BENCH_CPU_PROFILE) : undefined
          counting = kind === 'jobs'
          const p: Phase = { ...await runPhase(m, size, kind, method), method, rep: r, after: prev, lead }
          counting = false
          await profiler?.stop()
          phases.push(p)
          progress(phaseLine(p, r, reps))
          prev = kind
        }
      }
    }
    const rows = resultRows(phases, size.jobs, m.slots)
    const bursts = phases.filter(p => p.kind === 'jobs')
    const jobsRun = bursts.reduce((n, p) => n + p.count, 0)
    // the GC log's entries arrive a tick after each collection
    await new Promise(resolve => setTimeout(resolve, 20))
    process.stdout.write(`\nthroughput: bursts of ${size.jobs} jobs, bare runs of ${size.jobs * 5} requests; ${reps} repetitions of ${methods.join(', ')}\n`)
    for (const method of methods) process.stdout.write(methodLines(phases, method, gcs))
    process.stdout.write(`  capacity announcements heard by the broker during bursts: ${heard} (${num(heard / Math.max(1, jobsRun))} per job)\n`)
    const failed = bursts.reduce((n, p) => n + (p.burst?.failed ?? 0), 0)
    const retried = bursts.reduce((n, p) => n + (p.burst?.retried ?? 0), 0)
    const paths: Record<string, number> = {}
    for (const b of bursts) for (const [k, v] of Object.entries(b.burst?.paths ?? {})) paths[k] = (paths[k] ?? 0) + v
    const busy = log.counts.matched.busy - busyBefore
    const submitted = log.counts.matched.accepted - acceptedBefore
    const steadyJobs = rates(phases, 'jobs', 'steady')
    const steadyReqs = rates(phases, 'bare', 'steady')
    const notes = [
      `Throughput: ${DONORS} donors with ${m.slots} job slot(s) in all (--max-jobs default on this machine), broker started with donor.execute false; jobs submitted through the API client, 8 requests in flight; rate = jobs / (first submit → last final). Dispatch paths: ${JSON.stringify(paths)}; jobs not succeeded: ${failed}; task attempts that failed and were retried: ${retried}. Logging: ${log.spec}; ${describeWarnings(log.counts, problemsBefore)}.`,
      `Method: every node shares this one process, so a phase inherits what the one before it left: garbage to collect, V8's heap sizing, code compiled for the other kind of work. Figures come from phases that follow a phase of their own kind (each repetition runs three bursts then three bare runs, or the other way round, and the first after a switch is left out), so each side pays for what its own kind of work leaves, as it would running alone. The alternating method (the one before 2026-12-07) is run in the same repetitions for comparison; its bursts' CPU includes reading the burst's rows afterwards. The "right after" rows show what a phase pays for following the other kind.`,
      `Scheduling: ${busy} offers were declined as busy for ${submitted} jobs (${num(busy / Math.max(1, submitted))} per job). The broker keeps a ledger of each executor's free slots (announcements, offer answers, its own finished tasks) and offers only where it expects one; waiting jobs queue first come first served and a freed slot wakes the first in line (src/broker/slot-ledger.ts, Broker.pump). ${num(steadyJobs.median / m.slots)} jobs/s per slot against ${num(steadyReqs.median / m.slots)} bare req/s per in-flight request.`,
      `Where the time goes: the event loop of this one process is near saturated in both kinds of phase, so the rate is bound by its CPU; a job is an API call (HTTP on 127.0.0.1, a kept-alive connection, + SQLite), its task sent in one write on a dispatch stream kept per donor (dispatch/1.1.0: no stream opened per task) carrying its offer (the task is small: no offer stream), and a signed receipt to verify, plus the donor's sandbox (another process, not counted here) and capacity gossip.`
    ]
    return { bench: 'throughput', rows, notes }
  })
}

if (import.meta.main) await main()
