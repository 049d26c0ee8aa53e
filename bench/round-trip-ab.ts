/**
 * A direct job's round trip in this checkout against another checkout of the
 * repository, both in this one process, paired round by round: on a machine
 * other work shares, separate runs of bench/round-trip.ts move with the load
 * more than with a change; here both sides see the same load.
 *
 *   WC_AB_BASE=/path/to/other/checkout node_modules/.bin/node bench/round-trip-ab.ts [--quick] [--json-out FILE]
 *
 * Each side runs its own relay, executing donor and --no-execute submitter on
 * 127.0.0.1 (its own daemon code, loaded from its checkout, and its own
 * JobWatcher and echo helpers: bench/lib/mesh.ts of that checkout). A round
 * runs one trivial job on each side (order alternating), each timed as
 * bench/round-trip.ts does (API submit by CID → final seen in-process) and
 * checked to have succeeded, then a 1 KiB echo on a new stream over that
 * side's direct connection, each after a 3 ms pause. Rows: this side's job against the other's
 * (the median of the per-round ratios), and each side's job against its own
 * echo.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { performance } from 'node:perf_hooks'
import { benchMain, progress, row, type BenchRow, type Cleanup } from './lib/report.ts'
import { benchLogging } from './lib/log-sink.ts'
import { fmt, pairedRatios, summarize } from './lib/stats.ts'
import * as here from './lib/mesh.ts'
import { pause } from '../src/core/async.ts'

type Mesh = typeof here

interface Side {
  name: string
  mesh: Mesh
  submitter: here.BenchDaemon
  executor: here.BenchDaemon
  watcher: here.JobWatcher
}

async function startSide (name: string, mesh: Mesh, root: string, cleanup: Cleanup): Promise<Side> {
  const relay = await mesh.startBenchRelay(join(root, `${name}-relay`), cleanup)
  const executor = await mesh.startBenchDaemon(join(root, `${name}-executor`), relay, { listen: mesh.DIRECT_AND_RELAY, execute: true }, cleanup)
  const submitter = await mesh.startBenchDaemon(join(root, `${name}-submitter`), relay, { listen: mesh.DIRECT_AND_RELAY, execute: false }, cleanup)
  await mesh.waitForExecutors(submitter, 1)
  await mesh.handleEcho(executor, cleanup)
  // stamps final only: reading the job's rows at its task events would be the bench's own SQLite work inside the timed job
  const watcher = new mesh.JobWatcher(submitter, { stages: false })
  cleanup.add(`stop the ${name} job watcher`, () => { watcher.stop() })
  return { name, mesh, submitter, executor, watcher }
}

/**
 * A pause before each timed step: what the step before left to run (either
 * side's donor bookkeeping after its answer, which in a mesh of processes is
 * off the broker's path) runs before the next clock starts, not inside it.
 */
const SETTLE_MS = 3

/** One job submit → final on a side, checked; then one echo over its direct connection. */
async function round (side: Side): Promise<{ job: number, echo: number }> {
  await pause(SETTLE_MS)
  const t0 = performance.now()
  const accepted = await side.mesh.submitHello(side.submitter.client)
  const times = side.watcher.track(accepted.jobId)
  await side.watcher.finished(accepted.jobId, 30_000)
  const job = (times.final as number) - t0
  const final = side.submitter.broker.getJob(accepted.jobId).job.final
  if (final?.status !== 'succeeded') throw new Error(`${side.name} job ${accepted.jobId} ended ${String(final?.status)}: ${String(final?.message)}`)
  const conn = side.mesh.connectionTo(side.submitter, side.executor.peerId, 'direct')
  if (conn == null) throw new Error(`${side.name}: the submitter has no direct connection to its executor`)
  await pause(SETTLE_MS)
  return { job, echo: await side.mesh.echoOnce(conn, new Uint8Array(1024)) }
}

await benchMain('bench/round-trip-ab', { quick: 180_000, full: 300_000 }, async (args, cleanup) => {
  const other = process.env.WC_AB_BASE
  if (other == null || other === '') throw new Error('set WC_AB_BASE to the other checkout (e.g. a `git worktree add` of the base commit, with node_modules)')
  const there = await import(join(resolve(other), 'bench/lib/mesh.ts')) as Mesh
  const log = benchLogging()
  // the other checkout's modules have their own logger: configured the same way
  const otherLog = await import(join(resolve(other), 'bench/lib/log-sink.ts')) as { benchLogging: typeof benchLogging }
  otherLog.benchLogging()
  const root = mkdtempSync(join(tmpdir(), 'wc-bench-ab-'))
  cleanup.add('remove temp dir', () => { rmSync(root, { recursive: true, force: true }) })
  progress(`starting both sides on 127.0.0.1: this checkout and ${other}`)
  const sides = [await startSide('base', there, root, cleanup), await startSide('this', here, root, cleanup)]
  const n = args.quick ? 100 : 300
  const warmup = 10
  const jobs: Record<string, number[]> = { base: [], this: [] }
  const echoes: Record<string, number[]> = { base: [], this: [] }
  for (let i = 0; i < n + warmup; i++) {
    for (const side of i % 2 === 0 ? sides : [...sides].reverse()) {
      const { job, echo } = await round(side)
      if (i < warmup) continue
      jobs[side.name].push(job)
      echoes[side.name].push(echo)
    }
  }
  const s = { base: summarize(jobs.base), this: summarize(jobs.this), echoBase: summarize(echoes.base), echoThis: summarize(echoes.this) }
  const paired = pairedRatios(jobs.this, jobs.base)
  const rows: BenchRow[] = [
    row({ benchmark: 'round trip A/B: this checkout vs the other, direct job', baselineName: 'the other checkout', baseline: s.base, figure: s.this, unit: 'ms', ratioLabel: 'this / other, median of per-round ratios', ratio: paired.median }),
    row({ benchmark: 'round trip A/B: direct job vs bare echo, the other checkout', baselineName: '1 KiB echo, direct', baseline: s.echoBase, figure: s.base, unit: 'ms', ratioLabel: 'direct job / echo', target: { op: '<=', value: 2 } }),
    row({ benchmark: 'round trip A/B: direct job vs bare echo, this checkout', baselineName: '1 KiB echo, direct', baseline: s.echoThis, figure: s.this, unit: 'ms', ratioLabel: 'direct job / echo', target: { op: '<=', value: 2 } })
  ]
  process.stdout.write(`\n${n} rounds after ${warmup} warm-up; per-round this/other ${fmt(paired, '×')}\n`)
  const notes = [`Same process, both checkouts' daemons (other: ${other}), a job on each per round, order alternating; per-round ratio this/other ${fmt(paired, '×')}. Logging: ${log.spec}.`]
  return { bench: 'round-trip-ab', rows, notes }
})
