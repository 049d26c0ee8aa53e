/**
 * The scale model: a relay and a broker against N simulated donors, N up to
 * 10,000, on this machine, to say what saturates first at 100,000 (docs/scale.md).
 *
 * Relay: one real `worldcompute relay` and N lightweight clients speaking the
 * real protocol (bench/lib/relay-ladder.ts, bench/lib/light-reservers.ts):
 * idle CPU, RSS and new-reservation latency at each N.
 * Broker: one real Broker choosing among N executors announced to the real
 * CapacityService in this process (bench/lib/broker-model.ts): CPU to take
 * in one announce round, the table's heap, `executors()` per call, and
 * submit → final of 3-replica jobs with executors that answer at once.
 * Every ratio is against the smallest N of the same run.
 *
 *   node_modules/.bin/node bench/scale-model.ts [--quick] [--json-out FILE]
 *
 * Quick: N = 10, 100, 300 for the relay; 100 and 1,000 for the broker.
 * WC_SCALE_MODEL_RELAY_RUNGS=10,100,1000 sets the relay's ladder.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { brokerPoint, type BrokerPoint } from './lib/broker-model.ts'
import { climbRelayLadder, ladderNotes, percentile, type Ladder } from './lib/relay-ladder.ts'
import { benchMain, progress, row, type BenchRow } from './lib/report.ts'
import { num, summarize, type Summary } from './lib/stats.ts'

/** the announce interval (src/protocols/capacity/constants.ts): a broker takes in N announcements per interval */
const ANNOUNCE_S = 5

const one = (x: number): Summary => ({ n: 1, median: x, min: x, max: x })
const label = (n: number): string => n.toLocaleString('en-US')

/** A note holding a markdown table: indented under its list item so it renders inside it. */
function table (title: string, lines: string[]): string {
  return [title, '', ...lines.map(l => `  ${l}`)].join('\n')
}

function relayTable (ladder: Ladder): string[] {
  return [
    '| N reservations | relay idle CPU (ms/s) | relay RSS (MB) | new reservation p50 / p99 (ms) | climb p99 (ms) |',
    '|---|---|---|---|---|',
    ...ladder.rungs.map(({ n, result: r }) => `| ${label(n)} | ${num(r.cpuMsPerS)} | ${num(r.rssMb)} | ${num(percentile(r.probeMs, 50))} / ${num(percentile(r.probeMs, 99))} | ${r.climbMs.length > 0 ? num(percentile(r.climbMs, 99)) : '— (held already)'} |`)
  ]
}

function brokerTable (points: BrokerPoint[]): string[] {
  return [
    `| N executors | announcements in, CPU ms/s (of which signature checks) | table heap (MB) | executors() per call (ms) | job submit → final p50 / p99 (ms) | broker CPU per job (ms) |`,
    '|---|---|---|---|---|---|',
    ...points.map(p => `| ${label(p.n)} | ${num(p.roundCpuMs / ANNOUNCE_S)} (${num(p.verifyCpuMs / ANNOUNCE_S)}) | ${num(p.heapMb)} | ${num(p.executorsMs)} | ${num(percentile(p.jobMs, 50))} / ${num(percentile(p.jobMs, 99))} | ${num(p.cpuPerJobMs)} |`)
  ]
}

function brokerRows (points: BrokerPoint[]): BenchRow[] {
  const base = points[0]
  const baseName = `${label(base.n)} executors`
  return points.slice(1).flatMap(p => [
    row({ benchmark: `scale model: broker CPU taking in announcements, ${label(p.n)} executors (one per ${ANNOUNCE_S} s each)`, baselineName: baseName, baseline: one(base.roundCpuMs / ANNOUNCE_S), figure: one(p.roundCpuMs / ANNOUNCE_S), unit: 'ms/s', ratioLabel: `${label(p.n)} / ${label(base.n)}` }),
    row({ benchmark: `scale model: broker executors() per call, ${label(p.n)} executors`, baselineName: baseName, baseline: one(base.executorsMs), figure: one(p.executorsMs), unit: 'ms', ratioLabel: `${label(p.n)} / ${label(base.n)}` }),
    row({ benchmark: `scale model: 3-replica job submit → final, ${label(p.n)} executors`, baselineName: baseName, baseline: summarize(base.jobMs), figure: summarize(p.jobMs), unit: 'ms', ratioLabel: `${label(p.n)} / ${label(base.n)}` })
  ])
}

function relayRows (ladder: Ladder): BenchRow[] {
  const base = ladder.rungs[0]
  const baseName = `${label(base.n)} reservations`
  return ladder.rungs.slice(1).flatMap(({ n, result: r }) => [
    row({ benchmark: `scale model: relay idle CPU, ${label(n)} reservations`, baselineName: baseName, baseline: one(base.result.cpuMsPerS), figure: one(r.cpuMsPerS), unit: 'ms/s', ratioLabel: `${label(n)} / ${label(base.n)}` }),
    row({ benchmark: `scale model: relay RSS, ${label(n)} reservations`, baselineName: baseName, baseline: one(base.result.rssMb), figure: one(r.rssMb), unit: 'MB', ratioLabel: `${label(n)} / ${label(base.n)}` })
  ])
}

await benchMain('scale-model', { quick: 300_000, full: 1_800_000 }, async (args, cleanup) => {
  const dir = mkdtempSync(join(tmpdir(), 'wc-bench-scale-model-'))
  cleanup.add('remove the run folder', () => { rmSync(dir, { recursive: true, force: true }) })
  const brokerNs = args.quick ? [100, 1_000] : [100, 1_000, 3_000, 10_000]
  const points: BrokerPoint[] = []
  for (const n of brokerNs) {
    progress(`broker model: ${label(n)} executors`)
    points.push(await brokerPoint(n, dir, { rounds: 3, jobs: args.quick ? 20 : 50 }))
  }
  const idleMs = args.quick ? 20_000 : 40_000
  // WC_SCALE_MODEL_RELAY_RUNGS=10,100,1000: a shorter relay ladder (the climb to 10,000 takes minutes)
  const relayRungs = process.env.WC_SCALE_MODEL_RELAY_RUNGS?.split(',').map(Number) ?? (args.quick ? [10, 100, 300] : [10, 100, 1_000, 3_000, 10_000])
  const ladder = await climbRelayLadder({ dir, rungs: relayRungs, idleMs, probes: args.quick ? 30 : 100, cleanup })
  return {
    bench: 'scale-model',
    rows: [...relayRows(ladder), ...brokerRows(points)],
    notes: [
      table(`Relay side, one relay against N lightweight clients (idle window ${idleMs / 1000} s per N; the clients as in relay-scale's notes):`, relayTable(ladder)),
      table('Broker side: the real CapacityService fed N announcements per round through its gossip message event, each after an Ed25519 signature check like the one gossipsub makes (3 rounds, the last two timed; heap measured after a full GC); the real Broker and JobStore, executors that accept and answer at once, each in its own /24; jobs of 3 replicas one after another:', brokerTable(points)),
      ...ladderNotes(ladder, idleMs).slice(2)
    ]
  }
})
