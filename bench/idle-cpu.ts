/**
 * Idle CPU per donor on loopback: one `worldcompute relay` and N `worldcompute
 * daemon` processes on 127.0.0.1 (no namespaces), each donor listening on TCP
 * and through the relay, every one bootstrapped to the relay. Once every
 * donor holds its reservation the mesh is left to settle (capacity gossip,
 * direct upgrades — WebRTC here, since loopback addresses are never public),
 * then utime + stime of every donor's process group (the daemon and its
 * sandbox child) is read from /proc at the start and end of a window in which
 * nothing is asked of them (no status polls either). Reported per donor in CPU
 * ms per wall second, for each N, and the ratio to one donor alone: a donor
 * that costs more the more peers it hears of does work per peer while idle.
 * At the end of the window the resident memory of each donor's process group
 * (VmRSS of the daemon plus its sandbox, when one runs) is read too. Targets
 * (issue 13): ≤ 2 ms/s per donor, ≤ 1.2× the single donor's figure at any
 * N, ≤ 150 MB per donor.
 *
 *   node_modules/.bin/node bench/idle-cpu.ts [--quick] [--json-out FILE]
 *
 * Environment:
 *   WC_IDLE_SIZES=1,8,24,48   donor counts (default 1,8,24,48; --quick 1,8)
 *   WC_IDLE_SETTLE_S=30       wait after the last reservation (default 30; --quick 20)
 *   WC_IDLE_WINDOW_S=30       measured window (default 30; --quick 20)
 *   WC_IDLE_WINDOWS=1         consecutive windows per mesh (default 1): the
 *                             first starts after the settle, each later one
 *                             where the last ended; a one-off clean-up that
 *                             lands late (a baseline whose memory reducer
 *                             waits for its 100 s watchdog: docs/scale.md)
 *                             shows in the first, the steady state in the
 *                             later ones
 *   WC_IDLE_BASELINE_BIN=PATH another checkout's bin/worldcompute: every size
 *                             is run with both, interleaved (alternating which
 *                             goes first), and rows compare them
 *   WC_IDLE_CPU_PROF=DIR      the first donor of the largest mesh runs with
 *                             `--cpu-prof --cpu-prof-dir=DIR` (NODE_OPTIONS; the
 *                             sandbox gets none of our environment) and is
 *                             stopped with SIGTERM so the profile is written; its
 *                             summary, restricted to the measured window, is
 *                             printed in the notes
 *   WC_IDLE_KEEP=1            keep the run folder (logs, data dirs)
 *
 * Then the price of the sandbox started on demand: the first job's latency
 * through an Executor whose sandbox starts at that job (as the daemon runs
 * it) against one whose sandbox was started beforehand, rounds interleaved,
 * in this process (WC_IDLE_FIRST_JOB_ROUNDS, default 5; --quick 3).
 *
 * Traffic stays on 127.0.0.1. Every process is its own process group, killed
 * (SIGTERM, then SIGKILL) on every exit path.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createSocket } from 'node:dgram'
import { mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, closeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { benchMain, progress, row, within, type BenchRow, type Cleanup } from './lib/report.ts'
import { fmt, summarize, type Summary } from './lib/stats.ts'
import { CLK_TCK, cpuBetween, parseStat, snapshot, type CpuSnapshot } from './lib/proc-cpu.ts'
import { ApiClient } from '../src/api/client.ts'
import { Executor } from '../src/executor/executor.ts'
import { request } from '../test/executor/helpers/fixtures.ts'
import type { DaemonStatus } from '../src/core/types.ts'

const BIN = fileURLToPath(new URL('../bin/worldcompute', import.meta.url))

interface Proc {
  name: string
  child: ChildProcess
  /** process group id (= pid: spawned detached) */
  pgid: number
  stdout: string[]
  exited: Promise<number | null>
  logFile: string
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

function envList (name: string, fallback: number[]): number[] {
  const v = process.env[name]
  if (v == null || v.trim() === '') return fallback
  const out = v.split(',').map(s => Number(s.trim()))
  if (out.some(n => !Number.isInteger(n) || n < 1 || n > 64)) throw new Error(`${name}=${v}: expected comma-separated integers 1..64`)
  return out
}

function envSeconds (name: string, fallback: number): number {
  const v = process.env[name]
  if (v == null || v.trim() === '') return fallback
  const n = Number(v)
  if (!Number.isFinite(n) || n < 1 || n > 600) throw new Error(`${name}=${v}: expected seconds 1..600`)
  return n
}

/** Free UDP ports for the relay's STUN responder (its default 3478/3479 may be taken by another run on this machine). */
async function freeUdpPort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createSocket('udp4')
    s.once('error', reject)
    s.bind(0, '127.0.0.1', () => {
      const port = s.address().port
      s.close(() => { resolve(port) })
    })
  })
}

/** A worldcompute process in its own process group, its stderr into `logFile`; stopped by `cleanup`. */
function startProc (name: string, bin: string, args: string[], logFile: string, env: Record<string, string>, cleanup: Cleanup): Proc {
  const fd = openSync(logFile, 'a')
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env }
  // nothing inherited may point the process elsewhere
  delete childEnv.WORLDCOMPUTE_BOOTSTRAP
  delete childEnv.WORLDCOMPUTE_DATA_DIR
  delete childEnv.WORLDCOMPUTE_API_PORT
  if (env.NODE_OPTIONS == null) delete childEnv.NODE_OPTIONS
  const child = spawn(bin, args, { env: childEnv, stdio: ['ignore', 'pipe', fd], detached: true })
  closeSync(fd)
  if (child.pid == null) throw new Error(`${name}: spawn ${bin} gave no pid`)
  const stdout: string[] = []
  let partial = ''
  child.stdout?.setEncoding('utf8')
  child.stdout?.on('data', (d: string) => {
    const lines = (partial + d).split('\n')
    partial = lines.pop() ?? ''
    stdout.push(...lines)
  })
  const exited = new Promise<number | null>(resolve => { child.once('exit', (code) => { resolve(code) }) })
  const p: Proc = { name, child, pgid: child.pid, stdout, exited, logFile }
  cleanup.add(`stop ${name}`, async () => { await stopProc(p, 10_000) })
  return p
}

function running (p: Proc): boolean {
  return p.child.exitCode == null && p.child.signalCode == null
}

/** SIGTERM to the whole group (daemon and sandbox), SIGKILL after `graceMs`; the exit code (null when killed). */
async function stopProc (p: Proc, graceMs: number): Promise<number | null> {
  const signalGroup = (sig: NodeJS.Signals): void => {
    try {
      process.kill(-p.pgid, sig)
    } catch (err) {
      // ESRCH: the group is gone already, which is what we want
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw new Error(`kill ${sig} process group ${p.pgid} (${p.name}): ${(err as Error).message}`)
    }
  }
  if (running(p)) {
    signalGroup('SIGTERM')
    const timer = setTimeout(() => { signalGroup('SIGKILL') }, graceMs)
    await p.exited
    clearTimeout(timer)
  }
  // a sandbox child that outlived its daemon
  signalGroup('SIGKILL')
  return p.child.exitCode
}

function tailOf (file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch (err) {
    return `(cannot read ${file}: ${(err as Error).message})`
  }
}

/**
 * CPU ticks per thread of the given processes (/proc/PID/task/TID/stat), keyed
 * by tid and start time: which threads spend — the main (JavaScript) thread,
 * libuv's pool, V8's GC helpers, node-datachannel's native threads.
 */
function threadTicks (procs: CpuSnapshot): Map<string, { comm: string, ticks: number }> {
  const out = new Map<string, { comm: string, ticks: number }>()
  for (const p of procs.procs.values()) {
    let tids: string[]
    try {
      tids = readdirSync(`/proc/${p.pid}/task`)
    } catch (err) {
      // the process exited since the snapshot: its threads are not counted
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue
      throw new Error(`listing /proc/${p.pid}/task: ${(err as Error).message}`)
    }
    for (const tid of tids) {
      let text: string
      try {
        text = readFileSync(`/proc/${p.pid}/task/${tid}/stat`, 'utf8')
      } catch (err) {
        // the thread ended between listing and reading
        if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ESRCH') continue
        throw new Error(`reading /proc/${p.pid}/task/${tid}/stat: ${(err as Error).message}`)
      }
      const t = parseStat(text)
      // the sandbox's threads are told apart from the daemon's
      const comm = p.pid === p.pgid ? t.comm : `sandbox:${t.comm}`
      out.set(`${tid}:${t.start}`, { comm, ticks: t.self })
    }
  }
  return out
}

/** CPU ms per wall second per thread name, summed over all threads of that name, between two thread readings. */
function threadShare (a: Map<string, { comm: string, ticks: number }>, b: Map<string, { comm: string, ticks: number }>, seconds: number): Array<[string, number]> {
  const byComm = new Map<string, number>()
  for (const [key, t] of b) {
    const ticks = t.ticks - (a.get(key)?.ticks ?? 0)
    byComm.set(t.comm, (byComm.get(t.comm) ?? 0) + ticks * 1000 / CLK_TCK / seconds)
  }
  return [...byComm].sort((x, y) => y[1] - x[1])
}

interface Relay { proc: Proc, peerId: string, tcp: string }

async function startRelay (bin: string, dir: string, cleanup: Cleanup): Promise<Relay> {
  const stun = [await freeUdpPort(), await freeUdpPort()]
  const args = ['relay', '--data-dir', join(dir, 'relay'), '--json', '--listen', '/ip4/127.0.0.1/tcp/0',
    '--stun-port', String(stun[0]), '--stun-port', String(stun[1])]
  const proc = startProc('relay', bin, args, join(dir, 'relay.log'), {}, cleanup)
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    const line = proc.stdout.find(l => l.startsWith('{'))
    if (line != null) {
      const info = JSON.parse(line) as { peerId: string, announceAddrs: string[] }
      const tcp = info.announceAddrs.find(a => a.startsWith('/ip4/127.0.0.1/tcp/'))
      if (tcp == null) throw new Error(`relay announces no 127.0.0.1 TCP address: ${info.announceAddrs.join(' ')}`)
      return { proc, peerId: info.peerId, tcp: tcp.includes('/p2p/') ? tcp : `${tcp}/p2p/${info.peerId}` }
    }
    if (!running(proc)) break
    await sleep(100)
  }
  throw new Error(`relay printed no JSON start-up line within 30 s (running: ${running(proc)}); log:\n${tailOf(proc.logFile)}`)
}

interface Donor { proc: Proc, dataDir: string, client: ApiClient }

function startDonor (bin: string, dir: string, name: string, relay: Relay, env: Record<string, string>, cleanup: Cleanup): Donor {
  const dataDir = join(dir, name)
  mkdirSync(dataDir, { recursive: true })
  const args = ['daemon', '--data-dir', dataDir, '--api-port', '0',
    '--listen', '/ip4/127.0.0.1/tcp/0', '--listen', '/p2p-circuit', '--bootstrap', relay.tcp]
  const proc = startProc(name, bin, args, join(dir, `${name}.log`), env, cleanup)
  return { proc, dataDir, client: new ApiClient({ dataDir, timeoutMs: 10_000 }) }
}

async function statusOf (d: Donor, quiet = false): Promise<DaemonStatus | undefined> {
  try {
    return await d.client.call('status', {})
  } catch (err) {
    // not up yet (no port file) or busy starting: the caller polls again, bounded
    if (!quiet) progress(`status of ${d.proc.name}: ${(err as Error).message.split('\n')[0]}`)
    return undefined
  }
}

async function waitReserved (d: Donor, relayPeerId: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (!running(d.proc)) throw new Error(`${d.proc.name} exited (${String(d.proc.child.exitCode)}) before reserving; log:\n${tailOf(d.proc.logFile)}`)
    // quiet: until the daemon has written its API port file every call fails
    const s = await statusOf(d, true)
    if (s?.relays.some(r => r.peerId === relayPeerId) === true) return
    await sleep(300)
  }
  throw new Error(`${d.proc.name} held no reservation on the relay within ${timeoutMs} ms; log:\n${tailOf(d.proc.logFile)}`)
}

interface MeshShape { connections: number, direct: number, directByTransport: Record<string, number>, paths: Record<string, number> }

function shapeOf (s: DaemonStatus | undefined): MeshShape | undefined {
  if (s == null) return undefined
  const directByTransport: Record<string, number> = {}
  for (const c of s.connections) if (c.direct) directByTransport[c.transport] = (directByTransport[c.transport] ?? 0) + 1
  const paths: Record<string, number> = {}
  for (const p of s.directPaths ?? []) paths[p.state] = (paths[p.state] ?? 0) + 1
  return { connections: s.connections.length, direct: s.connections.filter(c => c.direct).length, directByTransport, paths }
}

function describeShapes (shapes: Array<MeshShape | undefined>): string {
  const ok = shapes.filter((s): s is MeshShape => s != null)
  if (ok.length === 0) return 'no status'
  const conns = summarize(ok.map(s => s.connections))
  const direct = summarize(ok.map(s => s.direct))
  const byT: Record<string, number> = {}
  const paths: Record<string, number> = {}
  for (const s of ok) {
    for (const [k, v] of Object.entries(s.directByTransport)) byT[k] = (byT[k] ?? 0) + v
    for (const [k, v] of Object.entries(s.paths)) paths[k] = (paths[k] ?? 0) + v
  }
  return `connections per donor ${fmt(conns, '')}, of which direct ${fmt(direct, '')} (all donors: ${JSON.stringify(byT)}); direct-path states over all donors ${JSON.stringify(paths)}`
}

interface RunResult {
  /** idle CPU per donor, ms per wall second */
  perDonor: number[]
  /** resident memory per donor's process group (daemon + sandbox) at the end of the window, MB */
  rssMb: number[]
  /** processes per donor's group at the end of the window (1: no sandbox running) */
  procsPerDonor: number[]
  relayMsPerS: number
  shapeBefore: string
  shapeAfter: string
  profile?: string[]
  /** CPU ms/s per donor by thread name (mean over donors) */
  threads: Array<[string, number]>
  /** the windows after the first (WC_IDLE_WINDOWS), in order */
  later: LaterWindow[]
}

/** One window after the first: the same figures, taken on the same processes. */
interface LaterWindow {
  perDonor: number[]
  rssMb: number[]
  threads: Array<[string, number]>
}

/** One mesh of `n` donors built from `bin`: settle, measure, stop. */
async function runMesh (bin: string, label: string, n: number, root: string, settleS: number, windowS: number, windows: number, profDir: string | undefined, cleanup: Cleanup): Promise<RunResult> {
  const dir = join(root, `${label}-n${n}-${Date.now()}`)
  mkdirSync(dir, { recursive: true })
  // stopped at the end of this mesh; `cleanup` stops them too on an early exit (stopping twice is harmless)
  const procs: Proc[] = []
  try {
    const relay = await startRelay(bin, dir, cleanup)
    procs.push(relay.proc)
    const donors: Donor[] = []
    // 4 at a time: 16 Node start-ups at once on 2 cores would be measured as slow joins, not idle cost
    for (let i = 0; i < n; i += 4) {
      const batch: Donor[] = []
      for (let j = i; j < Math.min(n, i + 4); j++) {
        const env: Record<string, string> = profDir != null && j === 0 ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${profDir}` } : {}
        const d = startDonor(bin, dir, `donor${j}`, relay, env, cleanup)
        procs.push(d.proc)
        batch.push(d)
      }
      await within(`${label} donors ${i}..${i + batch.length - 1} reserving`, 90_000, Promise.all(batch.map(async d => { await waitReserved(d, relay.peerId, 80_000) })))
      donors.push(...batch)
    }
    progress(`${label} N=${n}: all ${n} donor(s) reserved; settling ${settleS} s`)
    await sleep(settleS * 1000)
    const shapeBefore = describeShapes(await Promise.all(donors.map(async d => await statusOf(d))).then(ss => ss.map(shapeOf)))
    // nothing is asked of the donors during the window: a status call costs CPU too
    await sleep(2_000)
    const groups = new Set(procs.map(p => p.pgid))
    const donorGroups = new Set((profDir != null && donors.length > 1 ? donors.slice(1) : donors).map(d => d.proc.pgid))
    const monoFrom = process.hrtime.bigint()
    const a = snapshot(groups)
    const threadsA = threadTicks(snapshot(donorGroups))
    await sleep(windowS * 1000)
    const b = snapshot(groups)
    const threadsB = threadTicks(snapshot(donorGroups))
    const monoTo = process.hrtime.bigint()
    const seconds = (b.at - a.at) / 1000
    const { perGroup } = cpuBetween(a, b)
    for (const p of procs) if (!running(p)) throw new Error(`${p.name} exited during the window (${String(p.child.exitCode)}); log:\n${tailOf(p.logFile)}`)
    // the profiled donor pays for the profiler (sampling thread, larger heap): it is left out of the figures
    const measured = profDir != null && donors.length > 1 ? donors.slice(1) : donors
    const perDonor = measured.map(d => (perGroup.get(d.proc.pgid) ?? 0) / seconds)
    const rssMb = measured.map(d => groupRssMb(b, d.proc.pgid))
    const procsPerDonor = measured.map(d => [...b.procs.values()].filter(p => p.pgid === d.proc.pgid).length)
    if (profDir != null) progress(`${label} N=${n}: profiled donor0 used ${((perGroup.get(donors[0].proc.pgid) ?? 0) / seconds).toFixed(1)} ms/s${measured === donors ? ' (it is the only donor, so it is in the figures)' : ' (left out of the figures)'}`)
    const relayMsPerS = (perGroup.get(relay.proc.pgid) ?? 0) / seconds
    // per donor: the threads' CPU summed over all donors, divided by their number
    const threads = threadShare(threadsA, threadsB, seconds).map(([k, v]) => [k, v / donorGroups.size] as [string, number]).filter(([, v]) => v >= 0.05)
    progress(`${label} N=${n}: idle CPU per donor ${fmt(summarize(perDonor), 'ms/s')}, relay ${relayMsPerS.toFixed(1)} ms/s`)
    const later: LaterWindow[] = []
    for (let w = 2; w <= windows; w++) {
      later.push(await laterWindow(measured.map(d => d.proc.pgid), windowS))
      progress(`${label} N=${n}: window ${w}, idle CPU per donor ${fmt(summarize(later[later.length - 1].perDonor), 'ms/s')}`)
    }
    for (const p of procs) if (!running(p)) throw new Error(`${p.name} exited during a later window (${String(p.child.exitCode)}); log:\n${tailOf(p.logFile)}`)
    const shapeAfter = describeShapes(await Promise.all(donors.map(async d => await statusOf(d))).then(ss => ss.map(shapeOf)))
    // stop every donor (SIGTERM: the profiled one writes its profile on a clean exit), then the relay
    const codes = await Promise.all(donors.map(async d => await stopProc(d.proc, 15_000)))
    const bad = codes.map((c, i) => [donors[i].proc.name, c] as const).filter(([, c]) => c !== 0)
    if (bad.length > 0) progress(`${label} N=${n}: exit codes on SIGTERM not 0: ${JSON.stringify(bad)}`)
    await stopProc(relay.proc, 10_000)
    let profile: string[] | undefined
    if (profDir != null) profile = summarizeWindow(profDir, donors[0].proc.pgid, Number(monoFrom / 1000n), Number(monoTo / 1000n))
    return { perDonor, rssMb, procsPerDonor, relayMsPerS, shapeBefore, shapeAfter, profile, threads, later }
  } finally {
    await Promise.all(procs.map(async p => { await stopProc(p, 5_000) }))
  }
}

/** One more window on the donors' process groups: CPU per donor, RSS at its end, threads (mean over donors). */
async function laterWindow (pgids: number[], windowS: number): Promise<LaterWindow> {
  const groups = new Set(pgids)
  const a = snapshot(groups)
  const threadsA = threadTicks(a)
  await sleep(windowS * 1000)
  const b = snapshot(groups)
  const threadsB = threadTicks(b)
  const seconds = (b.at - a.at) / 1000
  const { perGroup } = cpuBetween(a, b)
  return {
    perDonor: pgids.map(g => (perGroup.get(g) ?? 0) / seconds),
    rssMb: pgids.map(g => groupRssMb(b, g)),
    threads: threadShare(threadsA, threadsB, seconds).map(([k, v]) => [k, v / groups.size] as [string, number]).filter(([, v]) => v >= 0.05)
  }
}

/** VmRSS summed over the processes of one group in a snapshot, MB; a process gone since the snapshot counts 0. */
function groupRssMb (snap: CpuSnapshot, pgid: number): number {
  let kb = 0
  for (const p of snap.procs.values()) {
    if (p.pgid !== pgid) continue
    try {
      const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${p.pid}/status`, 'utf8'))
      kb += Number(m?.[1] ?? 0)
    } catch (err) {
      // the process exited since the snapshot: nothing resident any more
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' && (err as NodeJS.ErrnoException).code !== 'ESRCH') throw err
    }
  }
  return kb / 1024
}

/** A row of figures against a fixed budget (the issue's targets): met when the median is within it. */
function budgetRow (benchmark: string, budget: number, unit: string, values: number[], what: string): BenchRow {
  return row({
    benchmark,
    baselineName: `the ${budget} ${unit} budget`,
    baseline: summarize([budget]),
    figure: summarize(values),
    unit,
    ratioLabel: `${what} / ${budget} ${unit}`,
    target: { op: '<=', value: 1 }
  })
}

/**
 * One job (`hello.wasm`) timed from `execute()` to its result on a fresh
 * executor: started on demand (the sandbox spawns for the job) or started
 * beforehand (the sandbox already up). Alternating which goes first.
 */
async function firstJobLatency (rounds: number): Promise<{ onDemand: number[], warm: number[] }> {
  const onDemand: number[] = []
  const warm: number[] = []
  for (let i = 0; i < rounds; i++) {
    const order: Array<'onDemand' | 'warm'> = i % 2 === 0 ? ['onDemand', 'warm'] : ['warm', 'onDemand']
    for (const kind of order) {
      const executor = new Executor({ maxConcurrent: 1, startOnDemand: kind === 'onDemand' })
      try {
        await executor.start()
        const t0 = performance.now()
        const result = await executor.execute(request('hello', { jobId: `first-${kind}-${i}` }))
        const ms = performance.now() - t0
        if (result.status !== 'succeeded') throw new Error(`first job (${kind}) ended ${result.status}: ${result.error ?? ''}`)
        ;(kind === 'onDemand' ? onDemand : warm).push(ms)
      } finally {
        await executor.stop()
      }
    }
  }
  return { onDemand, warm }
}

interface ProfileNode { id: number, callFrame: { functionName: string, url: string, lineNumber: number }, children?: number[] }
interface CpuProfile { nodes: ProfileNode[], startTime: number, endTime: number, samples: number[], timeDeltas: number[] }

function shortUrl (url: string): string {
  if (url.includes('/node_modules/')) return url.replace(/^.*\/node_modules\//, '')
  const src = url.indexOf('/src/')
  return src >= 0 ? url.slice(src + 1) : url.replace(/^file:\/\//, '')
}

function packageOf (url: string, name: string): string {
  if (url === '') return name
  const nm = /node_modules\/((@[^/]+\/)?[^/]+)/.exec(url)
  if (nm != null) return nm[1]
  if (url.startsWith('node:')) return url.split('/').slice(0, 2).join('/')
  const src = url.indexOf('/src/')
  return src >= 0 ? `src/${url.slice(src + 5).split('/')[0]}` : shortUrl(url)
}

/**
 * The profile of process `pid` (file CPU.<date>.<time>.<pid>.<tid>.<seq>.cpuprofile),
 * restricted to samples inside [fromUs, toUs]: start-up and shutdown are not
 * idle. V8 stamps samples with its monotonic clock in µs, which on Linux is
 * CLOCK_MONOTONIC, the clock of process.hrtime() too.
 */
function summarizeWindow (dir: string, pid: number, from: number, to: number, top = 14): string[] {
  const file = readdirSync(dir).find(f => f.endsWith('.cpuprofile') && f.split('.')[3] === String(pid))
  if (file == null) return [`no .cpuprofile of pid ${pid} in ${dir} (files: ${readdirSync(dir).join(', ') || 'none'})`]
  const p = JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile
  const byId = new Map(p.nodes.map(n => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const times: number[] = []
  let t = p.startTime
  for (const d of p.timeDeltas) { t += d; times.push(t) }
  if (from < p.startTime || to > p.endTime) return [`profile ${file} (${p.startTime}..${p.endTime} µs) does not cover the window ${from}..${to} µs: not the same monotonic clock?`]
  const self = new Map<string, number>()
  const inclusive = new Map<string, number>()
  let total = 0
  for (let i = 0; i < p.samples.length; i++) {
    if (times[i] < from || times[i] > to) continue
    const us = p.timeDeltas[i] ?? 0
    total += us
    const leaf = byId.get(p.samples[i])
    if (leaf == null) continue
    const cf = leaf.callFrame
    const key = `${cf.functionName === '' ? '(anonymous)' : cf.functionName} ${cf.url === '' ? '' : `${shortUrl(cf.url)}:${cf.lineNumber + 1}`}`.trim()
    self.set(key, (self.get(key) ?? 0) + us)
    const seen = new Set<string>()
    for (let id: number | undefined = leaf.id; id != null; id = parent.get(id)) {
      const node = byId.get(id)
      if (node == null) break
      seen.add(packageOf(node.callFrame.url, node.callFrame.functionName))
    }
    for (const k of seen) inclusive.set(k, (inclusive.get(k) ?? 0) + us)
  }
  const idle = self.get('(idle)') ?? 0
  const busy = Math.max(1, total - idle)
  const list = (m: Map<string, number>, skip: Set<string>): string => [...m].filter(([k]) => !skip.has(k)).sort((x, y) => y[1] - x[1]).slice(0, top)
    .map(([k, us]) => `${k} ${(us / 1000).toFixed(0)} ms (${(100 * us / busy).toFixed(0)}%)`).join('; ')
  return [
    `profile ${join(dir, file)} (window ${from}..${to} µs, monotonic), window of ${((to - from) / 1e6).toFixed(1)} s: ${(busy / 1000).toFixed(0)} ms busy on the main thread (${(busy / 1000 / ((to - from) / 1e6)).toFixed(1)} ms/s), GC ${((self.get('(garbage collector)') ?? 0) / 1000).toFixed(0)} ms; % of busy time`,
    `most self time: ${list(self, new Set(['(idle)']))}`,
    `most inclusive time by package/source folder: ${list(inclusive, new Set(['(root)', '(idle)', '(program)', 'node:internal/process', 'runMicrotasks', 'node:internal/timers', 'node:internal/modules', 'node:internal/main']))}`
  ]
}

await benchMain('idle-cpu', { quick: 900_000, full: 2_400_000 }, async (args, cleanup) => {
  const sizes = envList('WC_IDLE_SIZES', args.quick ? [1, 8] : [1, 8, 24, 48])
  const settleS = envSeconds('WC_IDLE_SETTLE_S', args.quick ? 20 : 30)
  const windowS = envSeconds('WC_IDLE_WINDOW_S', args.quick ? 20 : 30)
  const windows = envList('WC_IDLE_WINDOWS', [1])[0]
  const baselineBin = process.env.WC_IDLE_BASELINE_BIN != null && process.env.WC_IDLE_BASELINE_BIN !== '' ? process.env.WC_IDLE_BASELINE_BIN : undefined
  const profDir = process.env.WC_IDLE_CPU_PROF != null && process.env.WC_IDLE_CPU_PROF !== '' ? process.env.WC_IDLE_CPU_PROF : undefined
  if (profDir != null) mkdirSync(profDir, { recursive: true })
  const root = mkdtempSync(join(tmpdir(), 'wc-bench-idle-cpu-'))
  if (process.env.WC_IDLE_KEEP === '1') progress(`run folder ${root} (kept)`)
  else cleanup.add('remove the run folder', () => { rmSync(root, { recursive: true, force: true }) })

  const builds: Array<{ label: string, bin: string }> = [{ label: 'this', bin: BIN }, ...(baselineBin != null ? [{ label: 'baseline', bin: baselineBin }] : [])]
  const results = new Map<string, RunResult>()
  const notes: string[] = []
  const largest = Math.max(...sizes)
  for (let i = 0; i < sizes.length; i++) {
    const n = sizes[i]
    // alternate which build goes first, so neither always gets the warmer machine
    const order = i % 2 === 0 ? builds : [...builds].reverse()
    for (const b of order) {
      const prof = profDir != null && n === largest ? join(profDir, b.label) : undefined
      if (prof != null) mkdirSync(prof, { recursive: true })
      const r = await runMesh(b.bin, b.label, n, root, settleS, windowS, windows, prof, cleanup)
      results.set(`${b.label}:${n}`, r)
      notes.push(`${b.label} (${b.bin}), N=${n}: idle CPU per donor ${fmt(summarize(r.perDonor), 'ms/s')} [${r.perDonor.map(x => x.toFixed(1)).join(', ')}], RSS per donor ${fmt(summarize(r.rssMb), 'MB')} (processes per donor: ${[...new Set(r.procsPerDonor)].join('/')}), relay ${r.relayMsPerS.toFixed(1)} ms/s; before the window: ${r.shapeBefore}; after: ${r.shapeAfter}`)
      notes.push(`${b.label} N=${n}: per donor by thread (ms/s, mean over donors): ${r.threads.map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')}`)
      r.later.forEach((w, i) => {
        notes.push(`${b.label} N=${n}, window ${i + 2} (${settleS + (i + 1) * windowS}–${settleS + (i + 2) * windowS} s after the last reservation): idle CPU per donor ${fmt(summarize(w.perDonor), 'ms/s')}, RSS ${fmt(summarize(w.rssMb), 'MB')}; by thread: ${w.threads.map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')}`)
      })
      if (r.profile != null) notes.push(...r.profile.map(l => `${b.label} N=${n} donor0 ${l}`))
    }
  }

  const rows: BenchRow[] = []
  const smallest = Math.min(...sizes)
  for (const label of ['this', ...(baselineBin != null ? ['baseline'] : [])]) {
    const one = results.get(`${label}:${smallest}`)
    if (one == null) continue
    const base: Summary = summarize(one.perDonor)
    for (const n of sizes) {
      const r = results.get(`${label}:${n}`)
      if (r == null) continue
      rows.push(row({
        benchmark: `idle CPU per donor, ${n} donor(s) + 1 relay on loopback${baselineBin != null ? ` (${label} build)` : ''}`,
        baselineName: `${smallest} donor(s)`,
        baseline: base,
        figure: summarize(r.perDonor),
        unit: 'ms/s',
        ratioLabel: `${n} / ${smallest} donor(s)`,
        target: { op: '<=', value: 1.2 }
      }))
      const build = baselineBin != null ? ` (${label} build)` : ''
      rows.push(budgetRow(`idle CPU per donor ≤ 2 ms/s, ${n} donor(s)${build}`, 2, 'ms/s', r.perDonor, 'donor'))
      rows.push(budgetRow(`idle memory per donor (daemon + sandbox, RSS) ≤ 150 MB, ${n} donor(s)${build}`, 150, 'MB', r.rssMb, 'donor'))
      r.later.forEach((w, i) => {
        rows.push(budgetRow(`idle CPU per donor ≤ 2 ms/s, ${n} donor(s)${build}, window ${i + 2}`, 2, 'ms/s', w.perDonor, 'donor'))
        rows.push(budgetRow(`idle memory per donor (daemon + sandbox, RSS) ≤ 150 MB, ${n} donor(s)${build}, end of window ${i + 2}`, 150, 'MB', w.rssMb, 'donor'))
      })
    }
  }
  if (baselineBin != null) {
    for (const n of sizes) {
      const t = results.get(`this:${n}`)
      const b = results.get(`baseline:${n}`)
      if (t == null || b == null) continue
      rows.push(row({
        benchmark: `idle CPU per donor, ${n} donor(s): this build vs baseline build`,
        baselineName: 'baseline build',
        baseline: summarize(b.perDonor),
        figure: summarize(t.perDonor),
        unit: 'ms/s',
        ratioLabel: 'this / baseline'
      }))
    }
  }
  const firstRounds = envList('WC_IDLE_FIRST_JOB_ROUNDS', [args.quick ? 3 : 5])[0]
  progress(`first job latency: ${firstRounds} round(s), sandbox on demand vs started beforehand`)
  const first = await firstJobLatency(firstRounds)
  const firstExtra = summarize(first.onDemand.map((ms, i) => ms - first.warm[i]))
  rows.push(row({
    benchmark: 'first job latency, sandbox started at the job (as the daemon runs it) vs already running (in-process Executor, hello.wasm)',
    baselineName: 'sandbox already running',
    baseline: summarize(first.warm),
    figure: summarize(first.onDemand),
    unit: 'ms',
    ratioLabel: 'on demand / running'
  }))
  notes.push(`first job: the on-demand start adds ${fmt(firstExtra, 'ms')} to the first job after an idle stop (rounds paired); later jobs find the sandbox running until it has been idle for the executor's idleStopMs (5 min in the daemon)`)
  notes.unshift(`Setup: 1 relay (TCP on 127.0.0.1, STUN on free UDP ports) and N donors (\`daemon --listen /ip4/127.0.0.1/tcp/0 --listen /p2p-circuit --bootstrap <relay>\`, started 4 at a time, each waited for until it holds its reservation), then ${settleS} s to settle, then utime+stime of each donor's process group (daemon + sandbox) over ${windowS} s, nothing asked of them meanwhile. Loopback addresses are never public, so direct upgrades between donors are private-to-private WebRTC (both "no NAT"). Idle CPU is ms of CPU per wall second (100 ms/s = 10% of a core). ${process.env.WC_IDLE_CPU_PROF != null ? `Profiles in ${profDir}.` : ''}`)
  return { bench: 'idle-cpu', rows, notes }
})
