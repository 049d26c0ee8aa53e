/**
 * Memory (benchmarks issue, two rows), as the kernel counts it: VmRSS from
 * /proc/PID/status of real `bin/worldcompute` processes on 127.0.0.1.
 *
 * 1. Idle daemon ≤ 150 MB. A relay (`worldcompute relay`, TCP/QUIC/WebSocket
 *    and STUN on free loopback ports) and a donor started as users start it:
 *    `bin/worldcompute daemon --listen <the default set, on 127.0.0.1>
 *    --bootstrap <relay TCP>`, fresh data dir. Once `status` shows the granted
 *    reservation, it idles (30 s full, 10 s quick) while VmRSS is sampled 10
 *    times. The daemon process itself is what the target is about; the
 *    sandbox process it forks for jobs (found through /proc/*\/stat's ppid)
 *    and the total are reported beside it. Baseline in the same run,
 *    interleaved: a bare js-libp2p node (bench/lib/bare-node.ts: TCP, QUIC,
 *    WebSockets, Noise, yamux, identify, ping) holding one connection to the
 *    same relay, idle for as long. Informational: the same daemon with V8's
 *    young generation capped (NODE_OPTIONS=--max-semi-space-size=1), to show
 *    how much of the figure is V8 heap headroom rather than live data.
 *
 * 2. Relay with 1,000 reservations ≤ 500 MB. A fresh `worldcompute relay`
 *    per round; VmRSS with 0 reservations, then 1,000 lightweight js-libp2p
 *    clients (bench/lib/reservation-clients.ts: 8 processes × 125 nodes, each
 *    node on its own 127.x.y.z source address) take a reservation each; every
 *    grant is counted, and after a ~10 s hold VmRSS is sampled again and the
 *    clients confirm they still hold theirs. Quick: 200 clients, 1 round.
 *
 *   node_modules/.bin/node bench/memory.ts [--quick] [--json-out FILE]
 *
 * MB here is 10^6 bytes (the stricter reading of the budgets; /proc counts KiB).
 * Traffic stays on 127.0.0.0/8. Every process started here is stopped on
 * every exit path (cleanup), and its stderr is kept in the run folder until
 * the end.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import * as os from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ApiClient } from '../src/api/client.ts'
import { benchMain, progress, row, within, type BenchRow, type Cleanup } from './lib/report.ts'
import { fmt, num, summarize, type Summary } from './lib/stats.ts'
import { cleanEnv, cmdline, descendants, firstJsonLine, freeUdpPort, logTail, readMem, readMemIfLive, spawnProc, type MemSample, type Proc } from './lib/proc-mem.ts'
import type { ClientMessage } from './lib/reservation-clients.ts'

const BIN = fileURLToPath(new URL('../bin/worldcompute', import.meta.url))
const NODE = fileURLToPath(new URL('../node_modules/.bin/node', import.meta.url))
const BARE_NODE = fileURLToPath(new URL('./lib/bare-node.ts', import.meta.url))
const CLIENTS = fileURLToPath(new URL('./lib/reservation-clients.ts', import.meta.url))

const DAEMON_BUDGET_MB = 150
const RELAY_BUDGET_MB = 500
const MB = (kb: number): number => kb * 1024 / 1e6
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

interface RelayProc { proc: Proc, tcp: string, peerId: string }

/** `worldcompute relay` on free 127.0.0.1 ports: the default listen set (TCP, QUIC, WebSocket) plus STUN. */
async function startRelay (dir: string, name: string, cleanup: Cleanup, extraArgs: string[] = []): Promise<RelayProc> {
  const stun = [await freeUdpPort(), await freeUdpPort()]
  const args = ['relay', '--data-dir', join(dir, name), '--json',
    '--listen', '/ip4/127.0.0.1/tcp/0', '--listen', '/ip4/127.0.0.1/udp/0/quic-v1', '--listen', '/ip4/127.0.0.1/tcp/0/ws',
    '--stun-port', String(stun[0]), '--stun-port', String(stun[1]), ...extraArgs]
  const proc = spawnProc(BIN, args, { env: cleanEnv(), logFile: join(dir, `${name}.log`) })
  cleanup.add(`stop relay ${name} (pid ${proc.pid})`, async () => { await proc.stop() })
  const info = await firstJsonLine<{ peerId: string, announceAddrs: string[] }>(proc, `relay ${name}`, 30_000)
  const tcp = info.announceAddrs.find(a => a.startsWith('/ip4/127.0.0.1/tcp/') && !a.includes('/ws'))
  if (tcp == null) throw new Error(`relay ${name} announces no 127.0.0.1 TCP address: ${info.announceAddrs.join(' ')}`)
  return { proc, tcp, peerId: info.peerId }
}

/** Samples a process (and, for the daemon, its children) `n` times evenly over `ms`. */
async function sampleIdle (pid: number, ms: number, n: number, withChildren: boolean): Promise<{ self: MemSample[], children: number[], childCmds: string[], childPids: number }> {
  const self: MemSample[] = []
  const children: number[] = []
  const childCmds = new Set<string>()
  const childPids = new Set<number>()
  for (let i = 0; i < n; i++) {
    await sleep(ms / n)
    self.push(readMem(pid))
    if (withChildren) {
      let kb = 0
      for (const c of descendants(pid)) {
        // a child may exit between listing and reading (a sandbox restart); it then holds no memory
        const m = readMemIfLive(c)
        if (m == null) continue
        kb += m.rssKb
        childPids.add(c)
        childCmds.add(cmdline(c).replace(/--allow-fs-read=\S+ /g, '').slice(0, 140))
      }
      children.push(kb)
    }
  }
  return { self, children, childCmds: [...childCmds], childPids: childPids.size }
}

type Variant = 'daemon' | 'bare' | 'daemon-semi1'

interface DaemonRun { childPids: number[], rss: number[], anon: number[], file: number[], hwm: number[], children: number[], total: number[], childCmds: string[], threads: number[] }

const emptyRun = (): DaemonRun => ({ childPids: [], rss: [], anon: [], file: [], hwm: [], children: [], total: [], childCmds: [], threads: [] })

/** Polls the daemon's API (what `worldcompute status --json` prints) until it holds a reservation. */
async function waitReserved (proc: Proc, dataDir: string, relayPeerId: string, timeoutMs: number): Promise<number> {
  const client = new ApiClient({ dataDir, timeoutMs: 5_000 })
  const t0 = Date.now()
  let last = ''
  while (Date.now() - t0 < timeoutMs) {
    if (!proc.running()) throw new Error(`daemon in ${dataDir} exited before reserving: ${JSON.stringify(await proc.exited)}; its log ends:\n${logTail(proc.logFile)}`)
    try {
      const s = await client.call('status', {})
      if (s.relays.some(r => r.peerId === relayPeerId)) return Date.now() - t0
      last = `no reservation yet (bootstrap: ${JSON.stringify(s.bootstrap)})`
    } catch (err) {
      // the API is not up yet in the first second or so
      last = (err as Error).message
    }
    await sleep(200)
  }
  throw new Error(`daemon in ${dataDir} held no reservation on ${relayPeerId} within ${timeoutMs} ms; last: ${last}`)
}

async function runVariant (v: Variant, dir: string, name: string, relay: RelayProc, idleMs: number, cleanup: Cleanup): Promise<DaemonRun & { readyMs: number }> {
  let proc: Proc
  let readyMs: number
  if (v === 'bare') {
    proc = spawnProc(NODE, [BARE_NODE, relay.tcp], { env: cleanEnv(), logFile: join(dir, `${name}.log`) })
    cleanup.add(`stop ${name} (pid ${proc.pid})`, async () => { await proc.stop() })
    const t0 = Date.now()
    try {
      await firstJsonLine(proc, name, 30_000)
    } catch (err) {
      await proc.stop()
      throw err
    }
    readyMs = Date.now() - t0
  } else {
    const dataDir = join(dir, name)
    // the daemon's default listen set (TCP, QUIC, /p2p-circuit), bound to loopback instead of 0.0.0.0
    const args = ['daemon', '--data-dir', dataDir, '--api-port', '0',
      '--listen', '/ip4/127.0.0.1/tcp/0', '--listen', '/ip4/127.0.0.1/udp/0/quic-v1', '--listen', '/p2p-circuit',
      '--bootstrap', relay.tcp]
    const env = cleanEnv(v === 'daemon-semi1' ? { NODE_OPTIONS: '--max-semi-space-size=1' } : {})
    proc = spawnProc(BIN, args, { env, logFile: join(dir, `${name}.log`) })
    cleanup.add(`stop ${name} (pid ${proc.pid})`, async () => { await proc.stop() })
    try {
      readyMs = await waitReserved(proc, dataDir, relay.peerId, 60_000)
    } catch (err) {
      await proc.stop()
      throw err
    }
  }
  try {
    const s = await sampleIdle(proc.pid, idleMs, 10, v !== 'bare')
    const run = emptyRun()
    run.rss = s.self.map(x => x.rssKb)
    run.anon = s.self.map(x => x.anonKb)
    run.file = s.self.map(x => x.fileKb)
    run.hwm = [s.self[s.self.length - 1].hwmKb]
    run.threads = s.self.map(x => x.threads)
    run.children = s.children
    run.total = s.children.length > 0 ? s.self.map((x, i) => x.rssKb + s.children[i]) : []
    run.childCmds = s.childCmds
    run.childPids = [s.childPids]
    return { ...run, readyMs }
  } finally {
    await proc.stop()
  }
}

function merge (a: DaemonRun, b: DaemonRun): DaemonRun {
  return {
    childPids: [...a.childPids, ...b.childPids],
    rss: [...a.rss, ...b.rss],
    anon: [...a.anon, ...b.anon],
    file: [...a.file, ...b.file],
    hwm: [...a.hwm, ...b.hwm],
    children: [...a.children, ...b.children],
    total: [...a.total, ...b.total],
    childCmds: [...new Set([...a.childCmds, ...b.childCmds])],
    threads: [...a.threads, ...b.threads]
  }
}

const mb = (kbs: number[]): Summary => summarize(kbs.map(MB))

// ---- relay ------------------------------------------------------------------

/** ESTABLISHED TCP connections whose local port is `port` (the relay's side), from /proc/net/tcp. */
function establishedOn (port: number): number {
  const hex = port.toString(16).toUpperCase().padStart(4, '0')
  let n = 0
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/)
    if (f.length > 3 && f[1].endsWith(`:${hex}`) && f[3] === '01') n++
  }
  return n
}

interface ClientProc { child: ChildProcess, done?: Extract<ClientMessage, { type: 'done' }>, fatal?: string, held?: Extract<ClientMessage, { type: 'held' }>, granted: number }

async function relayRound (dir: string, r: number, clients: number, procs: number, idleMs: number, holdMs: number, deadline: number, cleanup: Cleanup): Promise<{ idle: number[], loaded: number[], hwm: number, granted: number, failed: number, held: number, heldAtStart: number, established: number, connectMs: number, halted: boolean, errors: string[], clientRssKb: number[] }> {
  const relay = await startRelay(dir, `relay-load-${r}`, cleanup)
  const port = Number(/\/tcp\/(\d+)/.exec(relay.tcp)?.[1])
  const kids: ClientProc[] = []
  try {
    // 0 reservations: the relay as it idles after start
    const idle = (await sampleIdle(relay.proc.pid, idleMs, 5, false)).self.map(x => x.rssKb)
    const per = Math.ceil(clients / procs)
    const t0 = Date.now()
    for (let p = 0; p < procs; p++) {
      const count = Math.min(per, clients - p * per)
      if (count <= 0) break
      // one reservation in flight per process: procs ≤ 10 keeps the relay under its 10 pending inbound upgrades
      const child = fork(CLIENTS, [relay.tcp, String(count), String(p), '1'], { execPath: NODE, env: cleanEnv(), stdio: ['ignore', 'ignore', 'pipe', 'ipc'] })
      const k: ClientProc = { child, granted: 0 }
      let stderr = ''
      child.stderr?.setEncoding('utf8')
      child.stderr?.on('data', (s: string) => { stderr = (stderr + s).slice(-4_000) })
      child.on('message', (m: ClientMessage) => {
        switch (m.type) {
          case 'progress': k.granted = m.granted; break
          case 'done': k.done = m; k.granted = m.granted; break
          case 'held': k.held = m; break
          case 'fatal': k.fatal = m.error; break
        }
      })
      child.on('exit', (code, signal) => { if (k.done == null && k.fatal == null) k.fatal = `exited (${String(code)}, ${String(signal)}) before finishing; stderr: ${stderr}` })
      cleanup.add(`stop client process ${p} of round ${r} (pid ${String(child.pid)})`, async () => { await stopClient(child) })
      kids.push(k)
    }
    let lastReport = 0
    let halted = false
    // bounded by the round's deadline: past it the clients take no new
    // reservations, and the round measures what was granted (and says so)
    await within(`round ${r + 1}: ${clients} reservations`, Math.max(0, deadline - Date.now()) + 30_000, (async () => {
      while (kids.some(k => k.done == null && k.fatal == null)) {
        await sleep(250)
        if (!halted && Date.now() > deadline) {
          halted = true
          progress(`round ${r + 1}: out of time with ${kids.reduce((s, k) => s + k.granted, 0)}/${clients} granted; halting the clients`)
          for (const k of kids) if (k.child.connected) k.child.send({ type: 'halt' })
        }
        if (Date.now() - lastReport > 10_000) {
          lastReport = Date.now()
          progress(`round ${r + 1}: ${kids.reduce((s, k) => s + k.granted, 0)}/${clients} reservations granted after ${Math.round((Date.now() - t0) / 1000)} s; relay RSS ${num(MB(readMem(relay.proc.pid).rssKb))} MB`)
        }
      }
    })())
    const connectMs = Date.now() - t0
    const fatal = kids.filter(k => k.fatal != null)
    if (fatal.length > 0) throw new Error(`client process(es) failed: ${fatal.map(k => k.fatal).join(' | ')}`)
    const granted = kids.reduce((s, k) => s + (k.done?.granted ?? 0), 0)
    const failed = kids.reduce((s, k) => s + (k.done?.failed ?? 0), 0)
    const errors = kids.flatMap(k => k.done?.errors ?? [])
    // how many are held as the hold starts (the relay may already have dropped some)
    for (const k of kids) { k.held = undefined; k.child.send({ type: 'check' }) }
    await within('clients to confirm their reservations', 20_000, (async () => {
      while (kids.some(k => k.held == null)) await sleep(100)
    })())
    const heldAtStart = kids.reduce((s, k) => s + (k.held?.granted ?? 0), 0)
    for (const k of kids) k.held = undefined
    // hold, sampling the relay
    const loaded = (await sampleIdle(relay.proc.pid, holdMs, 10, false)).self
    const established = establishedOn(port)
    for (const k of kids) k.child.send({ type: 'check' })
    await within('clients to confirm their reservations', 20_000, (async () => {
      while (kids.some(k => k.held == null)) await sleep(100)
    })())
    const held = kids.reduce((s, k) => s + (k.held?.granted ?? 0), 0)
    return {
      idle,
      loaded: loaded.map(x => x.rssKb),
      hwm: loaded[loaded.length - 1].hwmKb,
      granted,
      failed,
      held,
      heldAtStart,
      established,
      connectMs,
      halted,
      errors,
      clientRssKb: kids.map(k => k.done?.rssKb ?? NaN)
    }
  } finally {
    // the clients first (each stops its nodes and exits), then the relay: the next round starts clean
    await Promise.all(kids.map(async k => { await stopClient(k.child) }))
    await relay.proc.stop()
  }
}

/** Disconnects a client process (it then stops its nodes and exits); SIGKILL if it is still there after 8 s. */
async function stopClient (child: ChildProcess): Promise<void> {
  if (child.connected) child.disconnect()
  const deadline = Date.now() + 8_000
  while (child.exitCode == null && child.signalCode == null && Date.now() < deadline) await sleep(50)
  if (child.exitCode == null && child.signalCode == null) child.kill('SIGKILL')
}

await benchMain('memory', { quick: 240_000, full: 600_000 }, async (args, cleanup) => {
  const rows: BenchRow[] = []
  const notes: string[] = []
  const started = Date.now()
  const runRoot = mkdtempSync(join(os.tmpdir(), 'wc-bench-memory-'))
  cleanup.add('remove the run folder', () => { rmSync(runRoot, { recursive: true, force: true }) })

  // ---- 1. idle daemon ----
  const rounds = args.quick ? 1 : 2
  const idleMs = args.quick ? 10_000 : 30_000
  const dDir = join(runRoot, 'daemon')
  mkdirSync(dDir, { recursive: true })
  const relay = await startRelay(dDir, 'relay', cleanup)
  const runs: Record<Variant, DaemonRun> = { daemon: emptyRun(), bare: emptyRun(), 'daemon-semi1': emptyRun() }
  const ready: number[] = []
  const failedStarts: string[] = []
  const variants: Variant[] = ['daemon', 'bare', 'daemon-semi1']
  for (let r = 0; r < rounds; r++) {
    // a different variant goes first each round: none always gets the quieter machine
    const order = r % 2 === 0 ? variants : [...variants].reverse()
    for (const v of order) {
      let res: Awaited<ReturnType<typeof runVariant>> | undefined
      // at most 2 starts: on an overloaded machine the daemon can exit at start
      // ("sandbox process did not start: no ready within 15 s"); that is
      // reported, and the memory of the daemon that did start is measured
      for (let attempt = 1; res == null; attempt++) {
        try {
          res = await runVariant(v, dDir, `${v}-${r}${attempt > 1 ? `-retry${attempt}` : ''}`, relay, idleMs, cleanup)
        } catch (err) {
          if (attempt >= 2) throw err
          failedStarts.push(`${v} round ${r + 1}: ${(err as Error).message.split('\n').slice(-1)[0]}`)
          progress(`${v} round ${r + 1} failed to start, once more: ${(err as Error).message.split('\n').slice(-1)[0]}`)
        }
      }
      runs[v] = merge(runs[v], res)
      if (v === 'daemon') ready.push(res.readyMs)
      progress(`daemon round ${r + 1}/${rounds} ${v}: RSS ${fmt(mb(res.rss), 'MB')}${res.children.length > 0 ? `, children ${fmt(mb(res.children), 'MB')}` : ''} over ${idleMs / 1000} s idle (ready after ${res.readyMs} ms)`)
    }
  }
  await relay.proc.stop()
  const d = runs.daemon
  const bare = runs.bare
  const semi = runs['daemon-semi1']
  rows.push(row({
    benchmark: 'memory: idle daemon RSS vs bare js-libp2p',
    baselineName: 'bare js-libp2p node (same transports), idle',
    baseline: mb(bare.rss),
    figure: mb(d.rss),
    unit: 'MB',
    ratioLabel: 'daemon / bare libp2p'
  }))
  rows.push(row({
    benchmark: 'memory: idle daemon RSS ≤ 150 MB',
    baselineName: 'the 150 MB budget',
    baseline: summarize([DAEMON_BUDGET_MB]),
    figure: mb(d.rss),
    unit: 'MB',
    ratioLabel: 'daemon / 150 MB',
    target: { op: '<=', value: 1 }
  }))
  rows.push(row({
    benchmark: 'memory: idle daemon\'s sandbox process(es), RSS',
    baselineName: 'the daemon process itself',
    baseline: mb(d.rss),
    figure: mb(d.children),
    unit: 'MB',
    ratioLabel: 'sandbox / daemon'
  }))
  rows.push(row({
    benchmark: 'memory: idle daemon + sandbox, total RSS',
    baselineName: 'the 150 MB budget',
    baseline: summarize([DAEMON_BUDGET_MB]),
    figure: mb(d.total),
    unit: 'MB',
    ratioLabel: 'total / 150 MB'
  }))
  rows.push(row({
    benchmark: 'memory: idle daemon RSS with NODE_OPTIONS=--max-semi-space-size=1 (not the default)',
    baselineName: 'the daemon as started by users',
    baseline: mb(d.rss),
    figure: mb(semi.rss),
    unit: 'MB',
    ratioLabel: 'capped young generation / default'
  }))
  const nodeVersion = process.version
  notes.push(`Idle daemon: ${rounds} round(s), each a fresh \`bin/worldcompute daemon\` (data dir new, \`--listen /ip4/127.0.0.1/tcp/0 --listen /ip4/127.0.0.1/udp/0/quic-v1 --listen /p2p-circuit --bootstrap <relay TCP>\`, API on a free port, jobs on: its sandbox process is forked at start) and a bare js-libp2p node, interleaved; each idles ${idleMs / 1000} s after it is ready (the daemon: its reservation granted, ${fmt(summarize(ready), 'ms')} after spawn, read from the status API) and VmRSS is read 10 times evenly over that time; figures are the median (min–max) of all samples. Node ${nodeVersion} (${NODE}), the same binary for every process.`)
  if (failedStarts.length > 0) notes.push(`Start-ups that failed and were repeated (machine load average ${os.loadavg().map(x => x.toFixed(1)).join('/')} at the end): ${failedStarts.join(' | ')}`)
  notes.push(`Where the daemon's RSS is (medians, MB): anonymous ${num(summarize(d.anon.map(MB)).median)} (V8 heap, code, malloc, thread stacks) + file-backed ${num(summarize(d.file.map(MB)).median)} (pages of the node binary and native libraries: shared with every other Node process, yet counted in each one's RSS); bare node: anonymous ${num(summarize(bare.anon.map(MB)).median)} + file ${num(summarize(bare.file.map(MB)).median)}; capped young generation: anonymous ${num(summarize(semi.anon.map(MB)).median)} + file ${num(summarize(semi.file.map(MB)).median)}. Peak RSS (VmHWM) at the end of the idle window: daemon ${fmt(mb(d.hwm), 'MB')}, bare ${fmt(mb(bare.hwm), 'MB')}. Threads: daemon ${summarize(d.threads).median}, bare ${summarize(bare.threads).median}. Children of the daemon: ${d.childCmds.join('; ') || 'none'} (distinct child processes seen per idle window: ${d.childPids.join(', ')}; more than 1 means the sandbox was restarted while idling).`)

  // ---- 2. relay with N reservations ----
  const clients = args.quick ? 200 : 1_000
  const procs = args.quick ? 4 : 8
  const relayRounds = args.quick ? 1 : 3
  const rDir = join(runRoot, 'relay')
  mkdirSync(rDir, { recursive: true })
  const idle: number[] = []
  const loaded: number[] = []
  const perRes: number[] = []
  const detail: string[] = []
  let short = 0
  const heldCounts: number[] = []
  let done = 0
  let lastRoundMs = 0
  // the whole run must end within its bound (bench/run.ts kills it a little
  // after): a round starts only if the last one's duration still fits, and a
  // round's clients stop reserving when its share of the time is up
  const endBy = started + (args.quick ? 240_000 : 600_000) - 45_000
  for (let r = 0; r < relayRounds; r++) {
    if (r > 0 && Date.now() + lastRoundMs * 1.1 > endBy) {
      progress(`relay: no time for round ${r + 1} (the last took ${Math.round(lastRoundMs / 1000)} s)`)
      break
    }
    const t0 = Date.now()
    const holdAndStop = 40_000
    const res = await relayRound(rDir, r, clients, procs, args.quick ? 5_000 : 10_000, 10_000, endBy - holdAndStop, cleanup)
    lastRoundMs = Date.now() - t0
    done++
    idle.push(...res.idle)
    loaded.push(...res.loaded)
    // KiB per reservation held as the hold began: the loaded median minus the idle median, shared out
    const inc = (summarize(res.loaded).median - summarize(res.idle).median) / Math.max(1, res.heldAtStart)
    perRes.push(inc)
    if (res.held < clients) short++
    heldCounts.push(res.held, res.heldAtStart)
    detail.push(`round ${r + 1}: ${res.granted}/${clients} granted in ${(res.connectMs / 1000).toFixed(1)} s (${res.failed} failed after 3 attempts${res.halted ? `, ${clients - res.granted - res.failed} not attempted: out of time` : ''}), ${res.heldAtStart} held as the 10 s hold began and ${res.held} at its end, ${res.established} ESTABLISHED TCP connections on the relay's port; relay RSS idle ${fmt(mb(res.idle), 'MB')}, loaded ${fmt(mb(res.loaded), 'MB')}, peak ${num(MB(res.hwm))} MB; ${num(inc)} KiB per reservation; client processes' RSS ${res.clientRssKb.map(k => num(MB(k))).join('/')} MB${res.errors.length > 0 ? `; first errors: ${res.errors.slice(0, 3).join(' | ')}` : ''}`)
    progress(detail[detail.length - 1])
  }
  const minHeld = Math.min(...heldCounts)
  const maxHeld = Math.max(...heldCounts)
  const label = (clients === 1_000 ? '1,000' : `${clients} (quick; the target is for 1,000)`) +
    (minHeld < clients ? `, of which only ${minHeld === maxHeld ? minHeld : `${minHeld}–${maxHeld}`} held` : '')
  rows.push(row({
    benchmark: `memory: relay with ${label} reservations vs none`,
    baselineName: 'the same relay, 0 reservations',
    baseline: mb(idle),
    figure: mb(loaded),
    unit: 'MB',
    ratioLabel: 'loaded / idle relay'
  }))
  rows.push(row({
    benchmark: `memory: relay with ${label} reservations ≤ 500 MB`,
    baselineName: 'the 500 MB budget',
    baseline: summarize([RELAY_BUDGET_MB]),
    figure: mb(loaded),
    unit: 'MB',
    ratioLabel: 'relay / 500 MB',
    target: { op: '<=', value: 1 }
  }))
  notes.push(`Relay: ${done} round(s) (of ${relayRounds} planned), each a fresh \`bin/worldcompute relay\` (TCP, QUIC, WebSocket, STUN on free 127.0.0.1 ports, default limits: --max-reservations 1024, maxConnections 4096). VmRSS read 5 times over ${args.quick ? 5 : 10} s with 0 reservations, then ${clients} clients reserve (${procs} client processes, one reservation in flight each, every node from its own 127.x.y.z source address; each node: TCP, Noise, yamux, identify, ping, circuit relay v2 transport listening on <relay>/p2p-circuit; not gossipsub, which real donors also run, so the relay's per-donor gossip state is not in the figure; the clients' own connection monitors off, the relay's on), then 10 readings over a 10 s hold. Per-reservation increment: ${fmt(summarize(perRes), 'KiB')}${short > 0 ? `. ${short} round(s) ended with fewer than ${clients} reservations held: the figure is for what was held` : ''}.`)
  notes.push(...detail)
  return { bench: 'memory', rows, notes }
})
