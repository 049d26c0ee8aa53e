/**
 * A relay holding thousands of reservations: one `worldcompute relay` on
 * 127.0.0.1 and lightweight clients (bench/lib/light-reservers.ts: one TCP
 * connection each, Noise, yamux, hop RESERVE, answering the relay's pings;
 * no libp2p node around them, so 10,000 fit in a few processes) climbing a
 * ladder of held reservations (bench/lib/relay-ladder.ts). At each rung the
 * relay's CPU over an idle window, its RSS, and new reservations taken one at
 * a time; every ratio is against the 10-reservation rung of the same relay.
 *
 *   node_modules/.bin/node bench/relay-scale.ts [--quick] [--json-out FILE]
 *
 * Targets (issue 13, goal 2): idle below 5% of one core (50 ms/s) at 1,000
 * reservations; new reservations p99 < 1 s and RSS < 1.5 GB at 10,000.
 * Quick: 10 and 300 reservations. WC_RELAY_SCALE_RUNGS=10,1000,3000 sets
 * the ladder; WC_BENCH_RELAY_BIN another build's bin/worldcompute;
 * WC_RELAY_SCALE_WATCHDOG_MS the clients' watchdog ping interval (default a
 * donor's, 15,000; 1500 measures donors that ping every 1.5 s);
 * WC_RELAY_SCALE_IDLE_MS the idle window per rung (default 60 s, quick 30 s);
 * WC_RELAY_SCALE_CPU_PROF=DIR runs the relay under `node --cpu-prof` writing
 * its profile into DIR when it stops (the profiler inflates the CPU figures);
 * WC_RELAY_SCALE_SEMI_SPACE_MB the relay's V8 young generation
 * (WORLDCOMPUTE_SEMI_SPACE_MB of bin/worldcompute, default 1 MB there).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DEFAULT_PING_INTERVAL_MS } from '../src/donor/reservation-manager.ts'
import { climbRelayLadder, ladderNotes, percentile, type RungResult } from './lib/relay-ladder.ts'
import { benchMain, row, type BenchRow } from './lib/report.ts'
import { summarize, type Summary } from './lib/stats.ts'

const one = (x: number): Summary => ({ n: 1, median: x, min: x, max: x })

function rungRows (n: number, r: RungResult, base: RungResult, quick: boolean, variant: string): BenchRow[] {
  const label = n.toLocaleString('en-US')
  const rows: BenchRow[] = [row({
    benchmark: `relay scale: idle relay CPU, ${label} reservations held${variant}`,
    baselineName: '10 reservations, same relay',
    baseline: one(base.cpuMsPerS),
    figure: one(r.cpuMsPerS),
    unit: 'ms/s',
    ratioLabel: `${label} / 10`
  }), row({
    benchmark: `relay scale: relay RSS, ${label} reservations held${variant}`,
    baselineName: '10 reservations, same relay',
    baseline: one(base.rssMb),
    figure: one(r.rssMb),
    unit: 'MB',
    ratioLabel: `${label} / 10`
  }), row({
    benchmark: `relay scale: new reservation p99 (one at a time), ${label} held${variant}`,
    baselineName: '10 held, p99',
    baseline: one(percentile(base.probeMs, 99)),
    figure: { ...summarize(r.probeMs), median: percentile(r.probeMs, 99) },
    unit: 'ms',
    ratioLabel: `${label} / 10`
  })]
  if (n === 1_000 || (quick && n === 300)) {
    rows.push(row({
      benchmark: `relay scale: idle relay CPU at ${label} reservations < 5% of a core${quick ? ' (quick: the target is for 1,000)' : ''}${variant}`,
      baselineName: 'the 50 ms/s budget',
      baseline: one(50),
      figure: one(r.cpuMsPerS),
      unit: 'ms/s',
      ratioLabel: 'relay / budget',
      target: { op: '<=', value: 1 }
    }))
  }
  if (n === 10_000) {
    rows.push(row({ benchmark: `relay scale: new reservation p99 at 10,000 held < 1 s${variant}`, baselineName: 'the 1 s budget', baseline: one(1_000), figure: one(percentile(r.probeMs, 99)), unit: 'ms', ratioLabel: 'p99 / budget', target: { op: '<=', value: 1 } }))
    rows.push(row({ benchmark: `relay scale: relay RSS at 10,000 held < 1.5 GB${variant}`, baselineName: 'the 1.5 GB budget', baseline: one(1_536), figure: one(r.rssMb), unit: 'MB', ratioLabel: 'RSS / budget', target: { op: '<=', value: 1 } }))
  }
  return rows
}

await benchMain('relay-scale', { quick: 300_000, full: 1_500_000 }, async (args, cleanup) => {
  const dir = mkdtempSync(join(tmpdir(), 'wc-bench-relay-scale-'))
  cleanup.add('remove the run folder', () => { rmSync(dir, { recursive: true, force: true }) })
  // WC_RELAY_SCALE_RUNGS=10,1000,3000: a shorter ladder (the climb to 10,000 takes minutes)
  const rungs = process.env.WC_RELAY_SCALE_RUNGS?.split(',').map(Number) ?? (args.quick ? [10, 300] : [10, 1_000, 3_000, 10_000])
  const idleMs = Number(process.env.WC_RELAY_SCALE_IDLE_MS ?? (args.quick ? 30_000 : 60_000))
  const profDir = process.env.WC_RELAY_SCALE_CPU_PROF
  const semiSpace = process.env.WC_RELAY_SCALE_SEMI_SPACE_MB
  const relayEnv = {
    ...(profDir != null ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${profDir}` } : {}),
    ...(semiSpace != null ? { WORLDCOMPUTE_SEMI_SPACE_MB: semiSpace } : {})
  }
  // WC_RELAY_SCALE_WATCHDOG_MS: the clients' watchdog ping interval (a donor's by default), to see the relay's cost with another
  const watchdogMs = Number(process.env.WC_RELAY_SCALE_WATCHDOG_MS ?? DEFAULT_PING_INTERVAL_MS)
  const variant = [watchdogMs !== DEFAULT_PING_INTERVAL_MS ? `clients ping every ${watchdogMs / 1000} s` : '', semiSpace != null ? `relay semi-space ${semiSpace} MB` : ''].filter(x => x !== '').map(x => ` (${x})`).join('')
  const ladder = await climbRelayLadder({ dir, rungs, idleMs, probes: args.quick ? 50 : 200, cleanup, watchdogMs, relayEnv })
  const base = ladder.rungs[0].result
  return {
    bench: 'relay-scale',
    rows: ladder.rungs.slice(1).flatMap(({ n, result }) => rungRows(n, result, base, args.quick, variant)),
    notes: [...ladderNotes(ladder, idleMs), `Relay process: bin/worldcompute's V8 young generation ${semiSpace ?? 1} MB per semi-space${semiSpace != null ? ' (WORLDCOMPUTE_SEMI_SPACE_MB)' : ' (its default)'}; clients' watchdog every ${watchdogMs} ms.`]
  }
})
