/**
 * Trivial job round trip through the real daemons, against a bare libp2p echo
 * over the same connections:
 *
 *   direct     a --no-execute submitter and an executing donor that both also
 *              listen on /ip4/127.0.0.1/tcp/0, with a relay; the submitter
 *              dials the executor's TCP address before the first job, so its
 *              tasks and the echoes take one TCP connection (left to itself
 *              the pair may meet through the relay and upgrade to WebRTC, a
 *              different transport from run to run) (checked: the replica's
 *              path is 'direct', the echo's connection TCP)
 *   relayed    the same pair, both relay-only (/p2p-circuit) and --no-direct
 *              (no WebRTC upgrade through the relay): path 'relayed'
 *   bare echo  1 KiB echoed on a new stream over the very connection the jobs
 *              used (the best direct one, as the broker's dispatch picks
 *              it), by a plain handler registered on the same libp2p nodes
 *   kept echo  1 KiB echoed on one stream of that handler kept open across
 *              rounds (informational: jobs go out on a kept dispatch stream,
 *              so this is the echo without a stream's opening and negotiation)
 *
 * Each pair has its own relay so gossip never shows one pair's submitter the
 * other pair's executor. A job is submitted as `job submit` does it, the
 * module named by CID (ApiClient.submitJobByCid; uploaded by the first
 * warm-up job). A job's time is submit (API client, HTTP) → final
 * (seen in-process through broker.onJobEvent, no polling). Jobs run one at a
 * time; the four measurements are interleaved per round, order rotated,
 * each after three turns of the event loop (what the step before left runs).
 *
 *   node_modules/.bin/node bench/round-trip.ts [--quick] [--json-out FILE]
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { multiaddr } from '@multiformats/multiaddr'
import { transportOf } from '../src/net/transport-of.ts'
import { waitFor } from '../test/helpers/wait.ts'
import { benchMain, progress, row, type BenchRow } from './lib/report.ts'
import {
  connectionTo, DIRECT_AND_RELAY, directTcp, ECHO_PROTOCOL, echoOnce, handleEcho, helloRequest, submitHello, jobView, JobWatcher, RELAY_ONLY,
  startBenchDaemon, startBenchRelay, waitForExecutors, type BenchDaemon
} from './lib/mesh.ts'
import { benchLogging, describeWarnings, problemsSoFar } from './lib/log-sink.ts'
import { EluMeter, fmt, num, pairedRatios, rotate, summarize } from './lib/stats.ts'
import type { Cleanup } from './lib/report.ts'
import type { Connection, Stream } from '@libp2p/interface'

type Path = 'direct' | 'relayed'

interface Pair {
  path: Path
  submitter: BenchDaemon
  executor: BenchDaemon
  watcher: JobWatcher
  tasks: TaskEvents
}

interface JobSample { totalMs: number, submitMs: number, offerMs: number, dispatchMs: number, finishMs: number, execMs: number, retried: number }

async function startPair (root: string, path: Path, cleanup: Cleanup): Promise<Pair> {
  const relay = await startBenchRelay(join(root, `${path}-relay`), cleanup)
  const listen = path === 'direct' ? DIRECT_AND_RELAY : RELAY_ONLY
  // the relayed pair stays relayed: without --no-direct a WebRTC upgrade through the relay can make it a direct pair mid-run
  const direct = path === 'direct'
  const executor = await startBenchDaemon(join(root, `${path}-executor`), relay, { listen, execute: true, direct }, cleanup)
  const submitter = await startBenchDaemon(join(root, `${path}-submitter`), relay, { listen, execute: false, direct }, cleanup)
  await waitForExecutors(submitter, 1)
  // the direct pair's jobs and echoes over TCP, whatever the direct upgrade does meanwhile
  if (path === 'direct') await directTcp(submitter, executor)
  await handleEcho(executor, cleanup)
  // final only: the stages come from TaskEvents, which reads no rows while the job runs
  const watcher = new JobWatcher(submitter, { stages: false })
  cleanup.add(`stop ${path} job watcher`, () => { watcher.stop() })
  const tasks = new TaskEvents(submitter)
  cleanup.add(`stop ${path} task events`, () => { tasks.stop() })
  return { path, submitter, executor, watcher, tasks }
}

/**
 * When the submitting broker said a job's tasks changed (its 'task' events),
 * in-process, stamped and nothing else: the broker says so once as a task is
 * dispatched and once when its result is stored. A watcher that read the
 * job's rows at each event (JobWatcher's stages) would add the bench's own
 * SQLite reads to the very job it times, ~0.15 ms each.
 */
class TaskEvents {
  private readonly at = new Map<string, number[]>()
  private readonly off: () => void

  constructor (daemon: BenchDaemon) {
    this.off = daemon.broker.onJobEvent((jobId, change) => {
      if (change !== 'task') return
      const now = performance.now()
      const list = this.at.get(jobId)
      if (list == null) this.at.set(jobId, [now])
      else list.push(now)
    })
  }

  /** The job's first task event (dispatched: for a small task its offer rides the dispatch) and its last (the result stored), forgotten after. */
  take (jobId: string): { placed?: number, done?: number } {
    const list = this.at.get(jobId) ?? []
    this.at.delete(jobId)
    return { placed: list[0], done: list.length > 1 ? list[list.length - 1] : undefined }
  }

  stop (): void {
    this.off()
  }
}

const request = helloRequest()

/**
 * Three turns of the event loop (check phase to check phase) before a timed
 * step: what the step before queued behind its answer (a donor's bookkeeping
 * waits for the check phase after the next poll) runs before the next clock
 * starts, not inside it. Not a sleep: the rounds run back to back as they
 * always have (round-trip-ab, which compares two builds, sleeps 3 ms).
 */
async function drained (): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise<void>(resolve => { setImmediate(resolve) })
}

/** One job, submit → final; checks it succeeded on the pair's executor along the expected path. */
async function runJob (p: Pair, elu: EluMeter): Promise<JobSample> {
  let t0 = 0
  let t1 = 0
  const { accepted, times } = await elu.measure(`job ${p.path}`, async () => {
    t0 = performance.now()
    const accepted = await submitHello(p.submitter.client, request)
    t1 = performance.now()
    const times = p.watcher.track(accepted.jobId)
    await p.watcher.finished(accepted.jobId, 30_000)
    return { accepted, times }
  })
  const view = await jobView(p.submitter.client, accepted.jobId)
  if (view.status !== 'succeeded' || !(view.stdout ?? '').startsWith('hello from wasi')) throw new Error(`${p.path} job ${view.jobId} ended ${view.status}: ${view.message}`)
  const r = view.replicas.find(x => x.state === 'done')
  if (r == null || r.executor !== p.executor.peerId) throw new Error(`${p.path} job ${view.jobId} ran on ${r?.executor ?? 'nobody'}, not on the pair's executor`)
  if (r.path !== p.path) throw new Error(`${p.path} job ${view.jobId} took the ${String(r.path)} path`)
  const tasks = p.submitter.broker.getJob(accepted.jobId).tasks
  const task = tasks.find(x => x.state === 'done')
  const final = times.final as number
  const { placed, done } = p.tasks.take(accepted.jobId)
  return {
    totalMs: final - t0,
    submitMs: t1 - t0,
    // from the submit, not from its answer: a small task is placed (its offer rides the dispatch) before the API call returns
    offerMs: (placed ?? t1) - t0,
    dispatchMs: (done ?? final) - (placed ?? t1),
    finishMs: final - (done ?? final),
    execMs: task?.outcome?.durationMs ?? NaN,
    retried: tasks.filter(x => x.state === 'failed').length
  }
}

/** Connection churn seen by the echo baseline: re-dials before an echo, and echoes cut by a closing connection. */
const churn = { redials: 0, echoRetries: 0 }

/** The pair's open connection of its kind; a relayed one that has gone is dialled again (not timed). */
async function pairConnection (p: Pair): Promise<Connection> {
  // the direct pair's: the one its tasks take (connections.bestDirect: TCP before WebRTC)
  const open = p.path === 'direct' ? p.submitter.donor.mesh.components.connections.bestDirect(p.executor.peerId) : connectionTo(p.submitter, p.executor.peerId, p.path)
  if (open != null && (p.path === 'relayed' || transportOf(open.remoteAddr) === 'tcp')) return open
  if (p.path === 'direct') throw new Error(`the direct TCP connection from the submitter to the executor has gone (best direct: ${open?.remoteAddr.toString() ?? 'none'})`)
  churn.redials++
  const circuit = await waitFor('the executor\'s circuit address', () => p.executor.donor.status().relays.find(r => r.circuitAddr != null)?.circuitAddr ?? undefined, 15_000)
  return await p.submitter.donor.mesh.components.dialler.dial(multiaddr(circuit), { purpose: 'internal', timeoutMs: 10_000 })
}

/** The pair's kept echo stream, opened (not timed) on first use and again when its connection has gone. */
const keptEcho = new Map<Path, Stream>()

/** One timed echo of `payload` on a stream kept across rounds: send, then read as many bytes back. */
async function echoKept (p: Pair, payload: Uint8Array): Promise<number> {
  let stream = keptEcho.get(p.path)
  if (stream == null || stream.status !== 'open') {
    const conn = await pairConnection(p)
    stream = await conn.newStream(ECHO_PROTOCOL, { runOnLimitedConnection: true, signal: AbortSignal.timeout(10_000) })
    keptEcho.set(p.path, stream)
  }
  const signal = AbortSignal.timeout(10_000)
  const t0 = performance.now()
  let got = 0
  const done = new Promise<void>((resolve, reject) => {
    const onMessage = (evt: { data: { byteLength: number } }): void => {
      got += evt.data.byteLength
      if (got >= payload.byteLength) { stream.removeEventListener('message', onMessage); resolve() }
    }
    stream.addEventListener('message', onMessage)
    signal.addEventListener('abort', () => { stream.removeEventListener('message', onMessage); reject(signal.reason as Error) }, { once: true })
  })
  stream.send(payload)
  await done
  const ms = performance.now() - t0
  if (got !== payload.byteLength) throw new Error(`kept echo returned ${got} bytes, expected ${payload.byteLength}`)
  return ms
}

/** One timed echo; a connection closing under it is counted and the echo repeated (at most 3 tries). */
async function echo (p: Pair, payload: Uint8Array): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    const conn = await pairConnection(p)
    try {
      return await echoOnce(conn, payload)
    } catch (err) {
      if (attempt >= 3 || conn.status === 'open') throw err
      churn.echoRetries++
    }
  }
}

async function main (): Promise<void> {
  await benchMain('bench/round-trip', { quick: 120_000, full: 180_000 }, async (args, cleanup) => {
    const log = benchLogging()
    const root = mkdtempSync(join(tmpdir(), 'wc-bench-rt-'))
    cleanup.add('remove temp dir', () => { rmSync(root, { recursive: true, force: true }) })
    const n = args.quick ? 8 : 20
    const warmup = 3

    progress('starting two relays, two submitters, two executors on 127.0.0.1')
    const started = performance.now()
    const pairs: Record<Path, Pair> = { direct: await startPair(root, 'direct', cleanup), relayed: await startPair(root, 'relayed', cleanup) }
    progress(`mesh up in ${num(performance.now() - started)} ms`)
    const payload = new Uint8Array(1024).fill(0x61)

    const jobs: Record<Path, JobSample[]> = { direct: [], relayed: [] }
    const echoes: Record<Path, number[]> = { direct: [], relayed: [] }
    const kept: Record<Path, number[]> = { direct: [], relayed: [] }
    // the warm-up's meter is dropped: its first job of each pair compiles the module, starts a sandbox and
    // (direct) dials, and waiting on those would read as idle time of the measured round trips
    let elu = new EluMeter()
    type Step = () => Promise<void>
    const steps: Step[] = [
      async () => { jobs.direct.push(await runJob(pairs.direct, elu)) },
      async () => { jobs.relayed.push(await runJob(pairs.relayed, elu)) },
      async () => { echoes.direct.push(await elu.measure('echo direct', async () => await echo(pairs.direct, payload))) },
      async () => { echoes.relayed.push(await elu.measure('echo relayed', async () => await echo(pairs.relayed, payload))) },
      async () => { kept.direct.push(await echoKept(pairs.direct, payload)) }
    ]
    // warm-up: module caches, connections (the first direct job dials), JIT
    for (let i = 0; i < warmup; i++) for (const s of steps) await s()
    elu = new EluMeter()
    for (const k of ['direct', 'relayed'] as const) { jobs[k].length = 0; echoes[k].length = 0; kept[k].length = 0 }
    const problemsBefore = problemsSoFar(log.counts)
    const deadline = Date.now() + (args.quick ? 45_000 : 90_000)
    for (let i = 0; i < n && Date.now() < deadline; i++) {
      for (const s of rotate(steps, i)) {
        await drained()
        await s()
      }
      if ((i + 1) % 5 === 0 || i + 1 === n) progress(`round ${i + 1}/${n}: direct ${num(jobs.direct[i].totalMs)} ms, relayed ${num(jobs.relayed[i].totalMs)} ms, echo ${num(echoes.direct[i])}/${num(echoes.relayed[i])} ms`)
    }

    const s = {
      direct: summarize(jobs.direct.map(j => j.totalMs)),
      relayed: summarize(jobs.relayed.map(j => j.totalMs)),
      echoDirect: summarize(echoes.direct),
      echoRelayed: summarize(echoes.relayed),
      keptDirect: summarize(kept.direct)
    }
    const rows: BenchRow[] = [
      row({ benchmark: 'round trip: relayed vs direct job', baselineName: 'direct job', baseline: s.direct, figure: s.relayed, unit: 'ms', ratioLabel: 'relayed / direct', target: { op: '<=', value: 1.5 } }),
      row({ benchmark: 'round trip: direct job vs bare echo', baselineName: '1 KiB echo, direct', baseline: s.echoDirect, figure: s.direct, unit: 'ms', ratioLabel: 'direct job / echo', target: { op: '<=', value: 2 } }),
      row({ benchmark: 'round trip: relayed job vs bare echo', baselineName: '1 KiB echo, relayed', baseline: s.echoRelayed, figure: s.relayed, unit: 'ms', ratioLabel: 'relayed job / echo' }),
      row({ benchmark: 'round trip: direct job vs echo on a kept stream', baselineName: '1 KiB echo, direct, kept stream', baseline: s.keptDirect, figure: s.direct, unit: 'ms', ratioLabel: 'direct job / kept-stream echo' }),
      row({ benchmark: 'round trip: relayed vs direct echo', baselineName: '1 KiB echo, direct', baseline: s.echoDirect, figure: s.echoRelayed, unit: 'ms', ratioLabel: 'relayed / direct echo' })
    ]
    process.stdout.write(`\nround trips, ${jobs.direct.length} rounds after ${warmup} warm-up; hello.wasm, 1 replica, one job at a time\n`)
    const notes: string[] = []
    for (const k of ['direct', 'relayed'] as const) {
      const j = jobs[k]
      const part = (f: (x: JobSample) => number): string => fmt(summarize(j.map(f)), 'ms')
      const line = `${k} job ${part(x => x.totalMs)} = submit until placed (the API call, then the offer answered, or for a small task its dispatch sent with the offer in it) ${part(x => x.offerMs)} + dispatch (send, execute, receipt) ${part(x => x.dispatchMs)} + until final ${part(x => x.finishMs)}; the submit API call alone ${part(x => x.submitMs)} (placing can start before it returns); executor durationMs ${part(x => x.execMs)}`
      process.stdout.write(`  ${line}\n`)
      notes.push(`Breakdown (medians, min–max): ${line}.`)
    }
    const retriedJobs = (k: Path): number => jobs[k].filter(j => j.retried > 0).length
    notes.push(`Connection churn while measuring: ${retriedJobs('direct')} direct and ${retriedJobs('relayed')} relayed job(s) had a task fail and retried (counted in the figures); relayed echo connection re-dialled ${churn.redials} time(s) (not timed), ${churn.echoRetries} echo(es) cut by a closing connection and repeated.`)
    process.stdout.write(`  echo direct ${fmt(s.echoDirect, 'ms')}, relayed ${fmt(s.echoRelayed, 'ms')}; direct on a kept stream ${fmt(s.keptDirect, 'ms')}\n`)
    const utilisation = (k: Path): string => `${k} job ${num(elu.utilization(`job ${k}`))}, ${k} echo ${num(elu.utilization(`echo ${k}`))}`
    process.stdout.write(`  event-loop utilisation of this process over the measured rounds: ${utilisation('direct')}; ${utilisation('relayed')}\n`)
    notes.push(`Event-loop utilisation of the one process hosting relays, submitters and executors (the sandboxes are separate processes), over the measured rounds (warm-up left out), from submit to final and during echoes: ${utilisation('direct')}; ${utilisation('relayed')}. Near 1: the round trip is bound by CPU work in this process, not by waiting; a job's idle time is its wait on the sandbox process.`)
    const pr = pairedRatios(jobs.relayed.map(j => j.totalMs), jobs.direct.map(j => j.totalMs))
    process.stdout.write(`  relayed/direct per round ${num(pr.median)} (${num(pr.min)}–${num(pr.max)})\n`)
    notes.push(`Round trip: submit through the API client (HTTP on 127.0.0.1) to the job being final in the submitting broker (broker.onJobEvent, in-process); every job checked afterwards: succeeded, ran on the pair's executor, replica path 'direct'/'relayed' as labelled. Echo: new stream + multistream-select + 1 KiB each way over the same connection; kept echo: 1 KiB each way on one echo stream kept open across rounds (jobs go out on a kept dispatch stream, /worldcompute/dispatch/1.1.0, so that row leaves the stream's opening out of both sides). All nodes share this one process (and its event loop) on 127.0.0.1. Logging: ${log.spec}; ${describeWarnings(log.counts, problemsBefore)}.`)
    return { bench: 'round-trip', rows, notes }
  })
}

if (import.meta.main) await main()
