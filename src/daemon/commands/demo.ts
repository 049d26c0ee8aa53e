import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'
import { commonOptions, parse } from '../../cli/args.ts'
import { ApiClient } from '../../api/client.ts'
import { WorldComputeError } from '../../core/errors.ts'
import type { Output } from '../../cli/output.ts'
import { delay } from '../../core/async.ts'
import { shortPeerId } from '../../core/format.ts'
import { siblingModuleUrl } from '../../core/module-url.ts'
import type { DaemonStatus, DialAttempt } from '../../core/types.ts'

export const help = `worldcompute demo [--keep]

Brings up a small mesh on loopback (127.0.0.1 only): one relay and two donor
daemons that listen only through the relay. Prints which transport each donor
used to reach the relay, its circuit address and how long joining took, pings
one donor from the other through the relay, runs a WASI job (examples/primes.wasm)
submitted to one donor on the other, then stops everything and exits 0.

  --keep   leave the mesh running until Ctrl-C (prints the data directories)`

const CLI_ENTRY = fileURLToPath(siblingModuleUrl('../main.ts', import.meta.url))
const JOIN_TIMEOUT_MS = 20_000
const JOB_TIMEOUT_MS = 60_000
/** a sieve of Eratosthenes in C, built for wasm32-wasi (source beside it) */
const DEMO_MODULE = fileURLToPath(new URL('../../../examples/primes.wasm', import.meta.url))
const RELAY_START_TIMEOUT_MS = 20_000

class DemoError extends WorldComputeError {
  constructor (message: string) {
    super(message, 'DEMO_FAILED')
  }
}

interface Child {
  name: string
  proc: ChildProcess
  logFile: string
}

function spawnCli (name: string, args: string[], dir: string): Child {
  const logFile = join(dir, `${name}.log`)
  const fd = openSync(logFile, 'a')
  // the same Node binary that runs us: the pinned Node 24
  const proc = spawn(process.execPath, [CLI_ENTRY, ...args], {
    stdio: ['ignore', 'pipe', fd],
    env: { ...process.env, WORLDCOMPUTE_BOOTSTRAP: '', WORLDCOMPUTE_DATA_DIR: '' }
  })
  closeSync(fd)
  return { name, proc, logFile }
}

async function firstJsonLine (child: Child, timeoutMs: number): Promise<Record<string, unknown>> {
  const stdout = child.proc.stdout
  if (stdout == null) throw new DemoError(`${child.name} has no stdout`)
  const rl = createInterface({ input: stdout })
  const timer = setTimeout(() => { rl.close() }, timeoutMs)
  try {
    for await (const line of rl) {
      if (line.startsWith('{')) return JSON.parse(line) as Record<string, unknown>
    }
  } finally {
    clearTimeout(timer)
    rl.close()
    stdout.resume()
  }
  throw new DemoError(`${child.name} did not report its addresses within ${timeoutMs / 1000} s (exit code ${child.proc.exitCode ?? 'none yet'}); its log:\n${tail(child.logFile)}`)
}

function tail (file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).map(l => `    ${l}`).join('\n')
  } catch (err) {
    return `    (no log: ${(err as Error).message})`
  }
}

async function stopChild (child: Child): Promise<void> {
  const { proc } = child
  if (proc.exitCode != null || proc.signalCode != null) return
  const exited = new Promise<void>(resolve => proc.once('exit', () => resolve()))
  proc.kill('SIGTERM')
  const timer = setTimeout(() => { proc.kill('SIGKILL') }, 5_000)
  await exited
  clearTimeout(timer)
}

async function waitForReservation (client: ApiClient, child: Child, started: number): Promise<DaemonStatus> {
  const deadline = started + JOIN_TIMEOUT_MS
  let last: unknown
  while (Date.now() < deadline) {
    if (child.proc.exitCode != null) {
      throw new DemoError(`${child.name} exited with code ${child.proc.exitCode}; its log:\n${tail(child.logFile)}`)
    }
    try {
      const status = await client.call('status', {}, { timeoutMs: 2_000 })
      if (status.relays.length > 0) return status
    } catch (err) {
      last = err // the daemon is still starting: its API is not up yet
    }
    await delay(50)
  }
  throw new DemoError(`${child.name} did not get a relay reservation within ${JOIN_TIMEOUT_MS / 1000} s${last instanceof Error ? ` (last API error: ${last.message})` : ''}; its log:\n${tail(child.logFile)}`)
}

interface DemoDonor {
  name: string
  child: Child
  started: number
  client: ApiClient
}

interface JoinedDonor extends DemoDonor {
  status: DaemonStatus
  /** ms from spawn to its first reservation */
  elapsed: number
  dials: DialAttempt[]
}

/** The relay on loopback, with TCP, QUIC and WebSocket; resolves with its loopback addresses once it reports them. */
async function startDemoRelay (dir: string, children: Child[], o: Output): Promise<string[]> {
  o.out('Starting a relay on 127.0.0.1 (TCP, QUIC and WebSocket)…')
  const relay = spawnCli('relay', [
    'relay', '--data-dir', join(dir, 'relay'), '--json',
    '--listen', '/ip4/127.0.0.1/tcp/0',
    '--listen', '/ip4/127.0.0.1/udp/0/quic-v1',
    '--listen', '/ip4/127.0.0.1/tcp/0/ws'
  ], dir)
  children.push(relay)
  const info = await firstJsonLine(relay, RELAY_START_TIMEOUT_MS)
  const relayId = String(info.peerId)
  const addrs = (info.announceAddrs as string[]).filter(a => a.startsWith('/ip4/127.0.0.1/'))
  o.out(`  relay ${relayId}`)
  for (const a of addrs) o.out(`    ${a}`)
  return addrs
}

/** The relay's addresses of one transport. */
function addrsOf (addrs: string[], transport: string): string[] {
  return addrs.filter(a => transport === 'quic' ? a.includes('/quic-v1') : transport === 'ws' ? a.includes('/ws') : !a.includes('/ws') && a.includes('/tcp/'))
}

/** Two relay-only donors, each given the relay's addresses in another order. */
function startDemoDonors (dir: string, relayAddrs: string[], children: Child[], o: Output): DemoDonor[] {
  // each donor is given the relay's addresses in a different order, so the
  // demo shows two transports; a donor uses the first one that works
  const plans = [
    { name: 'donor-1', order: ['quic', 'tcp', 'ws'] },
    { name: 'donor-2', order: ['ws', 'tcp', 'quic'] }
  ]
  o.out('Starting two donors that listen only through the relay (--listen /p2p-circuit)…')
  return plans.map(plan => {
    const bootstrap = plan.order.flatMap(t => addrsOf(relayAddrs, t))
    const started = Date.now()
    const child = spawnCli(plan.name, [
      'daemon', '--data-dir', join(dir, plan.name), '--listen', '/p2p-circuit', '--api-port', '0',
      ...bootstrap.flatMap(b => ['--bootstrap', b])
    ], dir)
    children.push(child)
    return { name: plan.name, child, started, client: new ApiClient({ dataDir: join(dir, plan.name) }) }
  })
}

async function joined (d: DemoDonor): Promise<JoinedDonor> {
  const status = await waitForReservation(d.client, d.child, d.started)
  const elapsed = Date.now() - d.started
  const dials = await d.client.call('dials', { limit: 50 })
  return { ...d, status, elapsed, dials: dials.attempts }
}

function reportJoined (o: Output, d: JoinedDonor): void {
  const r = d.status.relays[0]
  const dial = d.dials.find(a => a.purpose === 'bootstrap' && a.outcome === 'success')
  const reservation = d.dials.find(a => a.phase === 'reservation' && a.outcome === 'success')
  o.out(`  ${d.name} ${d.status.peerId} joined: reached relay ${shortPeerId(r.peerId)} over ${r.transport}` +
    `${dial != null ? ` (dial ${Math.round(dial.duration_ms)} ms` : ' ('}` +
    `${reservation != null ? `, reservation ${Math.round(reservation.duration_ms)} ms)` : ')'}` +
    `, ${(d.elapsed / 1000).toFixed(2)} s after the process started`)
  o.out(`    circuit address: ${r.circuitAddr}`)
  o.out(`    reachability: ${d.status.reachability} (${d.status.reachabilityReason})`)
}

async function pingThroughRelay (o: Output, a: JoinedDonor, b: JoinedDonor): Promise<void> {
  o.out(`Pinging ${b.name} from ${a.name} by PeerId (through the relay)…`)
  const pong = await a.client.call('ping', { target: b.status.peerId, count: 2 }, { timeoutMs: 30_000 })
  for (const p of pong.probes) {
    if (!p.ok) throw new DemoError(`ping ${p.seq} from ${a.name} to ${b.name} failed: ${p.error ?? 'unknown'}`)
    o.out(`  pong ${p.seq} in ${p.rttMs} ms via ${p.path === 'relay' ? `relay ${shortPeerId(p.relay ?? '')}` : `a direct ${p.transport ?? ''} connection`}`)
  }
}

/** A real WASI job (C compiled to wasm32-wasi) submitted to `a`, whose only other executor is `b`. */
async function runDemoJob (o: Output, a: JoinedDonor, b: JoinedDonor): Promise<void> {
  const module = readFileSync(DEMO_MODULE)
  const input = Buffer.from('1000000\n')
  o.out(`Submitting examples/primes.wasm (stdin "1000000") from ${a.name}; ${b.name} is the only other executor…`)
  const submitted = Date.now()
  const accepted = await a.client.call('submitJob', {
    module: module.toString('base64'),
    input: input.toString('base64'),
    moduleName: 'primes.wasm',
    args: [],
    env: [],
    replicas: 1,
    limits: { deadlineMs: 30_000 }
  })
  let view = accepted
  const jobDeadline = Date.now() + JOB_TIMEOUT_MS
  while (!view.final) {
    if (Date.now() > jobDeadline) throw new DemoError(`job ${accepted.jobId} did not finish within ${JOB_TIMEOUT_MS / 1000} s: ${view.message}`)
    await delay(50)
    view = await a.client.call('job', { id: accepted.jobId, full: true })
  }
  const replica = view.replicas.find(r => r.state === 'done')
  if (view.status !== 'succeeded' || replica == null) {
    throw new DemoError(`job ${view.jobId} ended ${view.status}: ${view.message}\n${b.name} log:\n${tail(b.child.logFile)}`)
  }
  o.out(`  output: ${(view.stdout ?? '').trim()}`)
  o.out(`  ran on ${replica.executor === b.status.peerId ? b.name : replica.executor} over a ${replica.path} connection, receipt ${replica.receiptVerified ? 'verified' : 'NOT verified'}; ` +
    `fuel ${view.fuelUsed ?? '?'}; ${Date.now() - submitted} ms from submit to verified result`)
}

async function untilSignal (): Promise<void> {
  await new Promise<void>(resolve => {
    process.once('SIGINT', () => resolve())
    process.once('SIGTERM', () => resolve())
  })
}

export async function run (argv: string[], o: Output): Promise<number> {
  const { values } = parse(argv, { ...commonOptions, keep: { type: 'boolean', default: false } }, 'demo')
  if (values.help) { o.out(help); return 0 }
  const dir = mkdtempSync(join(tmpdir(), 'worldcompute-demo-'))
  const children: Child[] = []
  let ok = false
  try {
    const relayAddrs = await startDemoRelay(dir, children, o)
    const donors = startDemoDonors(dir, relayAddrs, children, o)
    const [a, b] = await Promise.all(donors.map(joined))
    for (const d of [a, b]) reportJoined(o, d)
    await pingThroughRelay(o, a, b)
    await runDemoJob(o, a, b)
    o.out(`Both donors joined the mesh through the relay and ran a job; logs in ${values.keep ? dir : 'the demo folder (removed)'}.`)
    ok = true
    if (values.keep) {
      o.out(`Mesh left running (--keep). Data directories under ${dir}; press Ctrl-C to stop.`)
      await untilSignal()
    }
    return 0
  } finally {
    await Promise.all(children.map(stopChild))
    if (ok && !values.keep) rmSync(dir, { recursive: true, force: true })
    else if (!ok) o.err(`demo failed; logs kept in ${dir}`)
  }
}
