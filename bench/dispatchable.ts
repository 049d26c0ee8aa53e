/**
 * Start → dispatchable per lab network (benchmarks issue, first row): a real
 * `worldcompute daemon` process in a network namespace behind a real NAT or
 * firewall, bootstrap list = the relay's TCP, QUIC and WebSocket/443
 * addresses (what a user copies from the relay's output), measured from the
 * process spawn to the relay reservation being granted (`status`: the
 * reservation's `since`). Baseline, same run, interleaved: the same daemon
 * started by bench/lib/default-dial-daemon.ts, which injects a relay dialler
 * making one js-libp2p `dial()` over all the relay's addresses instead of our
 * dial ladder (`startDaemon`'s `relayDialler` seam). Every round uses
 * a fresh data directory, so no remembered rung helps: this is a first join.
 *
 *   node_modules/.bin/node bench/dispatchable.ts [--quick] [--json-out FILE]
 *
 * Needs root (network namespaces, iptables); otherwise its rows say skipped.
 * Sends traffic only inside the namespaces it creates.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { benchMain, progress, row, skippedRow, type BenchRow } from './lib/report.ts'
import { fmt, summarize } from './lib/stats.ts'
import { buildTopology, labEnv, labSkipReason, type Firewall, type Lab, type NatKind } from '../test/lab/topology.ts'
import { NODE, startDonor, startRelay, waitDispatchable, type DonorNode } from '../test/lab/processes.ts'

interface Network { key: string, title: string, nat: NatKind, firewall?: Firewall, blackholed: boolean }

const NETWORKS: Network[] = [
  { key: 'open', title: 'open network, public address', nat: 'none', blackholed: false },
  { key: 'cone', title: 'cone NAT', nat: 'cone', blackholed: false },
  { key: 'symmetric', title: 'symmetric NAT', nat: 'symmetric', blackholed: false },
  { key: '443-only', title: 'TCP 80/443 only, UDP and TCP 4001 dropped silently', nat: 'cone', firewall: 'tcp-80-443-only', blackholed: true }
]
type Strategy = 'ladder' | 'libp2p-default'
const TARGET_MS = 3_000
/** the baseline's entry point: the product daemon with js-libp2p's default dial injected */
const BASELINE_DAEMON = fileURLToPath(new URL('./lib/default-dial-daemon.ts', import.meta.url))

/**
 * A relay-only donor as `startDonor` starts it, dialling its relays with
 * `strategy`: the product CLI for the ladder, the baseline entry point for
 * js-libp2p's default dial (same Node flags as bin/worldcompute).
 */
function startStrategyDonor (lab: Lab, runDir: string, name: string, bootstrap: string[], strategy: Strategy): DonorNode {
  if (strategy === 'ladder') return startDonor(lab, 'donor', runDir, { name, bootstrap })
  const dataDir = join(runDir, name)
  const logFile = join(runDir, `${name}.log`)
  mkdirSync(runDir, { recursive: true })
  const args = ['--data-dir', dataDir, '--api-port', '0', '--listen', '/p2p-circuit', ...bootstrap.flatMap(a => ['--bootstrap', a])]
  const log = process.env.WC_LAB_LOG
  const env = labEnv(log != null && log !== '' ? { WORLDCOMPUTE_LOG: log } : {})
  const proc = lab.exec('donor', [NODE, '--max-semi-space-size=1', BASELINE_DAEMON, ...args], { env, logFile })
  return { name, host: 'donor', dataDir, logFile, args, proc, startedAt: proc.startedAt }
}

interface Sample { ms: number, sinceDaemonStartMs: number, transport: string }

await benchMain('dispatchable', { quick: 240_000, full: 600_000 }, async (args, cleanup) => {
  const rows: BenchRow[] = []
  const notes: string[] = []
  const skip = labSkipReason()
  if (skip != null) {
    for (const n of NETWORKS) rows.push(skippedRow(`start → dispatchable: ${n.title}`, 'js-libp2p default dial', skip))
    notes.push(`not run: ${skip}`)
    return { bench: 'dispatchable', rows, notes }
  }
  const rounds = args.quick ? 1 : 3
  const runRoot = mkdtempSync(join(tmpdir(), 'wc-bench-dispatchable-'))
  cleanup.add('remove the run folder', () => { rmSync(runRoot, { recursive: true, force: true }) })
  const detail: string[] = []
  for (const net of NETWORKS) {
    const lab = await buildTopology({
      relays: [{ name: 'relay', ip: '198.51.100.10' }],
      sites: [{ name: 'site', nat: net.nat, ...(net.firewall != null ? { firewall: net.firewall } : {}), hosts: [{ name: 'donor' }] }]
    })
    cleanup.add(`tear down the ${net.key} lab`, async () => { if (!lab.tornDown) await lab.teardown() })
    const samples: Record<Strategy, Sample[]> = { ladder: [], 'libp2p-default': [] }
    const runDir = join(runRoot, net.key)
    try {
      const relay = await startRelay(lab, 'relay', runDir)
      const bootstrap = [relay.addr.tcp, relay.addr.quic, relay.addr.ws]
      for (let r = 0; r < rounds; r++) {
        // alternate which strategy goes first: neither always gets the warmer machine
        const order: Strategy[] = r % 2 === 0 ? ['ladder', 'libp2p-default'] : ['libp2p-default', 'ladder']
        for (const strategy of order) {
          const name = `${strategy}-${r}`
          const donor = startStrategyDonor(lab, runDir, name, bootstrap, strategy)
          try {
            const d = await waitDispatchable(lab, donor, { timeoutMs: 90_000 })
            samples[strategy].push({ ms: d.ms, sinceDaemonStartMs: d.sinceDaemonStartMs, transport: d.transport })
            progress(`${net.key} round ${r + 1}/${rounds} ${strategy}: dispatchable ${d.ms} ms after spawn (${d.sinceDaemonStartMs} ms after the daemon's startedAt) over ${d.transport}`)
          } finally {
            await donor.proc.stop(10_000)
          }
        }
      }
    } finally {
      await lab.teardown()
    }
    const ladder = summarize(samples.ladder.map(s => s.ms))
    const base = summarize(samples['libp2p-default'].map(s => s.ms))
    rows.push(row({
      benchmark: `start → dispatchable: ${net.title}`,
      baselineName: 'js-libp2p default dial',
      baseline: base,
      figure: ladder,
      unit: 'ms',
      ratio: base.median / ladder.median,
      ratioLabel: 'default / ladder: speed-up',
      ...(net.blackholed ? { target: { op: '>=' as const, value: 3 } } : {})
    }))
    // the same comparison without Node's start-up and module loading, which both strategies share
    const ladderDaemon = summarize(samples.ladder.map(s => s.sinceDaemonStartMs))
    const baseDaemon = summarize(samples['libp2p-default'].map(s => s.sinceDaemonStartMs))
    rows.push(row({
      benchmark: `daemon start → dispatchable (process start-up excluded): ${net.title}`,
      baselineName: 'js-libp2p default dial',
      baseline: baseDaemon,
      figure: ladderDaemon,
      unit: 'ms',
      ratio: baseDaemon.median / ladderDaemon.median,
      ratioLabel: 'default / ladder: speed-up'
    }))
    rows.push(row({
      benchmark: `start → dispatchable ≤ 3 s: ${net.title}`,
      baselineName: 'the 3 s promise',
      baseline: summarize([TARGET_MS]),
      figure: ladder,
      unit: 'ms',
      ratioLabel: 'ladder / 3 s',
      target: { op: '<=', value: 1 }
    }))
    const transports = (s: Sample[]): string => [...new Set(s.map(x => x.transport))].join('/')
    detail.push(`${net.key}: ladder over ${transports(samples.ladder)}, ${fmt(ladder, 'ms')} from spawn, of which after the daemon's own start ${fmt(summarize(samples.ladder.map(s => s.sinceDaemonStartMs)), 'ms')}; default over ${transports(samples['libp2p-default'])}, ${fmt(base, 'ms')} (${fmt(summarize(samples['libp2p-default'].map(s => s.sinceDaemonStartMs)), 'ms')} after start)`)
  }
  notes.push(`Setup: one relay (TCP 4001, QUIC 4001, WebSocket 443) on the lab's internet and one relay-only donor (\`--listen /p2p-circuit\`) per network, bootstrap = the relay's TCP, QUIC and WS addresses in that order; ${rounds} round(s) per strategy, interleaved, each with a fresh data dir (no remembered rung). Time from the daemon process spawn (Node start-up and module loading included) to the reservation being granted, read from \`status --json\`.`)
  notes.push(...detail)
  return { bench: 'dispatchable', rows, notes }
})
