/**
 * Start-up time (issue #14, item 3): how long a short `worldcompute` command
 * takes against a bare `node -e 0` on the same machine, and how long a
 * relay-only donor takes from its process spawn to being dispatchable.
 *
 * - Short commands, through bin/worldcompute as a user runs them (the shell
 *   wrapper, the pinned Node, the compile cache in a folder of this run, filled
 *   by one unmeasured warm-up run): `--help`, `id`, `status` and `dials`
 *   against a running daemon. Interleaved with `node -e 0` over N rounds, the
 *   order rotated each round; the ratio is per round, summarised. Goal ≤ 4×.
 * - Spawn → dispatchable on loopback: a relay (`relay --listen
 *   /ip4/127.0.0.1/tcp/0`) runs; each round spawns `daemon --listen
 *   /p2p-circuit --bootstrap RELAY --api-port 0` with a fresh data directory
 *   and reads `status` until it shows a reservation; the figure is the
 *   reservation's `since` minus the spawn time. Goal ≤ 1.0 s.
 *
 *   node_modules/.bin/node bench/startup.ts [--quick] [--json-out FILE]
 *
 * Prints figures, never asserts on time. Loopback only.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { ApiClient } from '../src/api/client.ts'
import { benchMain, progress, row, within, type BenchRow, type Cleanup } from './lib/report.ts'
import { fmt, pairedRatios, rotate, summarize, type Summary } from './lib/stats.ts'

const ROOT = fileURLToPath(new URL('../', import.meta.url))
const BIN = join(ROOT, 'bin/worldcompute')
const NODE = join(ROOT, 'node_modules/.bin/node')
const SHORT_GOAL = 4
const DISPATCHABLE_GOAL_MS = 1_000

interface Env { root: string, env: NodeJS.ProcessEnv }

/** A long-lived child (the relay, the daemon the short commands talk to), stopped by the cleanup. */
function spawnLogged (e: Env, name: string, args: string[], cleanup: Cleanup): ChildProcess {
  const fd = openSync(join(e.root, `${name}.log`), 'a')
  const proc = spawn(BIN, args, { stdio: ['ignore', 'pipe', fd], env: e.env })
  closeSync(fd)
  cleanup.add(`stop ${name}`, async () => { await stop(proc) })
  return proc
}

async function stop (proc: ChildProcess): Promise<void> {
  if (proc.exitCode != null || proc.signalCode != null) return
  const exited = new Promise<void>(resolve => proc.once('exit', () => { resolve() }))
  proc.kill('SIGTERM')
  const timer = setTimeout(() => { proc.kill('SIGKILL') }, 10_000)
  await exited
  clearTimeout(timer)
}

/** The relay's loopback TCP address, from the first JSON line `relay --json` prints. */
async function startRelay (e: Env, cleanup: Cleanup): Promise<string> {
  const relay = spawnLogged(e, 'relay', ['relay', '--json', '--data-dir', join(e.root, 'relay'), '--listen', '/ip4/127.0.0.1/tcp/0'], cleanup)
  const rl = createInterface({ input: relay.stdout! })
  const first = within('the relay reporting its addresses', 30_000, (async () => {
    for await (const line of rl) if (line.startsWith('{')) return JSON.parse(line) as { announceAddrs: string[] }
    throw new Error(`the relay exited (${String(relay.exitCode)}); see ${join(e.root, 'relay.log')}`)
  })())
  const info = await first.finally(() => { relay.stdout?.resume() })
  const addr = info.announceAddrs.find(a => a.startsWith('/ip4/127.0.0.1/tcp/') && !a.includes('/ws'))
  if (addr == null) throw new Error(`the relay announced no loopback TCP address: ${info.announceAddrs.join(' ')}`)
  return addr
}

function donorArgs (dataDir: string, relay: string): string[] {
  return ['daemon', '--data-dir', dataDir, '--listen', '/p2p-circuit', '--bootstrap', relay, '--api-port', '0']
}

interface Joined { spawnToDispatchableMs: number, spawnToStartedAtMs: number }

/** Polls `status` through the API until a reservation granted after `spawnedAt` shows. */
async function waitDispatchable (dataDir: string, proc: ChildProcess, spawnedAt: number): Promise<Joined> {
  const client = new ApiClient({ dataDir, timeoutMs: 2_000 })
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    if (proc.exitCode != null) throw new Error(`the daemon in ${dataDir} exited with code ${proc.exitCode}`)
    const s = await client.call('status', {}).catch(() => undefined) // its API is not up yet
    const r = s?.relays.find(x => Date.parse(x.since) >= spawnedAt - 5)
    if (s != null && r != null) return { spawnToDispatchableMs: Date.parse(r.since) - spawnedAt, spawnToStartedAtMs: Date.parse(s.startedAt) - spawnedAt }
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  throw new Error(`the daemon in ${dataDir} was not dispatchable within 30 s`)
}

/** Wall time of one command run to its end, ms. */
function timeRun (file: string, args: string[], env: NodeJS.ProcessEnv): number {
  const t0 = performance.now()
  const r = spawnSync(file, args, { env, stdio: ['ignore', 'ignore', 'pipe'], timeout: 30_000 })
  const ms = performance.now() - t0
  if (r.status !== 0) throw new Error(`${file} ${args.join(' ')} exited ${String(r.status)}: ${r.stderr.toString().trim()}`)
  return ms
}

interface Variant { name: string, file: string, args: string[] }

function shortVariants (idDir: string, daemonDir: string): Variant[] {
  return [
    { name: 'node -e 0', file: NODE, args: ['-e', '0'] },
    { name: '--help', file: BIN, args: ['--help'] },
    { name: 'id', file: BIN, args: ['id', '--data-dir', idDir] },
    { name: 'status', file: BIN, args: ['status', '--data-dir', daemonDir] },
    { name: 'dials', file: BIN, args: ['dials', '--data-dir', daemonDir] }
  ]
}

function measureShort (e: Env, variants: Variant[], rounds: number): Map<string, number[]> {
  const times = new Map(variants.map(v => [v.name, [] as number[]]))
  for (const v of variants) timeRun(v.file, v.args, e.env) // fills the compile cache; not counted
  for (let r = 0; r < rounds; r++) {
    for (const v of rotate(variants, r)) times.get(v.name)!.push(timeRun(v.file, v.args, e.env))
  }
  return times
}

async function measureDispatchable (e: Env, relay: string, rounds: number, prefix = 'donor'): Promise<Joined[]> {
  const out: Joined[] = []
  for (let r = 0; r < rounds; r++) {
    const dataDir = join(e.root, `${prefix}-${r}`)
    const spawnedAt = Date.now()
    const fd = openSync(join(e.root, `${prefix}-${r}.log`), 'a')
    const proc = spawn(BIN, donorArgs(dataDir, relay), { stdio: ['ignore', 'ignore', fd], env: e.env })
    closeSync(fd)
    try {
      const j = await waitDispatchable(dataDir, proc, spawnedAt)
      progress(`round ${r + 1}/${rounds}: dispatchable ${j.spawnToDispatchableMs} ms after spawn (the daemon's startedAt at ${j.spawnToStartedAtMs} ms)`)
      out.push(j)
    } finally {
      await stop(proc)
    }
  }
  return out
}

function shortRows (times: Map<string, number[]>): { rows: BenchRow[], notes: string[] } {
  const base = times.get('node -e 0')!
  const baseline = summarize(base)
  const rows: BenchRow[] = []
  for (const [name, ms] of times) {
    if (name === 'node -e 0') continue
    const ratios = pairedRatios(ms, base)
    rows.push(row({
      benchmark: `short command: worldcompute ${name}`,
      baselineName: 'node -e 0',
      baseline,
      figure: summarize(ms),
      unit: 'ms',
      ratio: ratios.median,
      ratioLabel: `command / node -e 0, per round; ${ratios.min.toFixed(2)}–${ratios.max.toFixed(2)}×`,
      target: { op: '<=', value: SHORT_GOAL }
    }))
  }
  return { rows, notes: [] }
}

function dispatchableRow (joined: Joined[]): BenchRow {
  const figure: Summary = summarize(joined.map(j => j.spawnToDispatchableMs))
  return row({
    benchmark: 'spawn → dispatchable on loopback (relay-only donor, fresh data dir)',
    baselineName: 'the 1.0 s goal',
    baseline: summarize([DISPATCHABLE_GOAL_MS]),
    figure,
    unit: 'ms',
    ratioLabel: 'figure / 1.0 s',
    target: { op: '<=', value: 1 }
  })
}

await benchMain('startup', { quick: 150_000, full: 420_000 }, async (args, cleanup) => {
  const root = mkdtempSync(join(tmpdir(), 'wc-bench-startup-'))
  cleanup.add('remove the run folder', () => { rmSync(root, { recursive: true, force: true }) })
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_COMPILE_CACHE: join(root, 'compile-cache'), WORLDCOMPUTE_BOOTSTRAP: '', WORLDCOMPUTE_DATA_DIR: '', WORLDCOMPUTE_LOG: '' }
  delete env.NODE_DISABLE_COMPILE_CACHE
  const e: Env = { root, env }
  const relay = await startRelay(e, cleanup)
  progress(`relay at ${relay}`)
  // the daemon the short commands talk to
  const daemonDir = join(root, 'daemon')
  const daemon = spawnLogged(e, 'daemon', donorArgs(daemonDir, relay), cleanup)
  await waitDispatchable(daemonDir, daemon, 0)
  const rounds = args.quick ? 5 : 15
  const joinRounds = args.quick ? 3 : 7
  // the first spawn also fills the compile cache: one unmeasured round
  await measureDispatchable(e, relay, 1, 'warm-up').catch((err: Error) => { progress(`warm-up: ${err.message}`) })
  const joined = await measureDispatchable(e, relay, joinRounds)
  const times = measureShort(e, shortVariants(join(root, 'id'), daemonDir), rounds)
  const short = shortRows(times)
  const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' / ')
  const moduleLoad = summarize(joined.map(j => j.spawnToStartedAtMs))
  return {
    bench: 'startup',
    rows: [...short.rows, dispatchableRow(joined)],
    notes: [
      `Short commands: ${rounds} interleaved rounds (order rotated), each through bin/worldcompute with a compile cache of this run filled by one unmeasured run; \`status\` and \`dials\` against a relay-only donor daemon on loopback. Load average at the end: ${load}.`,
      `Spawn → dispatchable: ${joinRounds} rounds, each a fresh data directory (new identity, no remembered rung), one relay on 127.0.0.1 TCP; of it, spawn → the daemon's \`startedAt\` (Node start-up, module loading, the data-directory lock): ${fmt(moduleLoad, 'ms')}.`
    ]
  }
})
