/**
 * Paths through the network-namespace lab (benchmarks issue #7): real
 * `worldcompute relay|daemon` processes and small endpoint programs run
 * inside namespaces with real NATs and firewalls (test/lab/topology.ts).
 *
 * 1. Relay throughput: 64 MiB through a circuit (sender → relay → receiver,
 *    both legs TCP, libp2p built with the product's own MeshNode: Noise,
 *    Yamux, circuit-relay-v2) against a plain node:net socket between the
 *    same two namespaces, plus libp2p over direct TCP (no relay) so the cost
 *    splits into "libp2p stack" and "relay hop". Same rounds, rotated order.
 * 2. A job between donors at two firewalled sites (A: cone NAT, TCP 80/443
 *    only; B: symmetric NAT), end to end: wall time of `worldcompute job
 *    submit` (CLI start-up included), the same job through the local API
 *    from inside A's namespace (no CLI process), and the broker's own
 *    createdAt → finishedAt; the path each job took.
 * 3. Failover: a donor holding reservations on two relays loses one to
 *    SIGKILL; its status is sampled every ~150 ms through its local API:
 *    did it hold a reservation on a live relay at every sample, and how long
 *    until it held two again (on a third relay it learned from the mesh)?
 *
 *   node_modules/.bin/node bench/lab-paths.ts [--quick] [--json-out FILE]
 *
 * Needs root (network namespaces, iptables); otherwise its rows say skipped.
 * Sends traffic only inside the namespaces it creates. Never asserts on time.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { availableParallelism, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { benchMain, progress, row, skippedRow, targetText, type BenchRow, type Cleanup } from './lib/report.ts'
import { fmt, num, rotate, summarize } from './lib/stats.ts'
import { buildTopology, labEnv, labSkipReason, type LabProcess } from '../test/lab/topology.ts'
import { cliJson, NODE, startDonor, startRelay, statusOf, submitJob, tail, waitDispatchable, type DonorNode, type RelayNode } from '../test/lab/processes.ts'
import type { JobView } from '../src/core/job.ts'

const STREAM_ENDPOINT = fileURLToPath(new URL('./lib/stream-endpoint.ts', import.meta.url))
const LAB_AGENT = fileURLToPath(new URL('./lib/lab-agent.ts', import.meta.url))
const PRIMES = fileURLToPath(new URL('../test/fixtures/wasm/primes.wasm', import.meta.url))
const PRIMES_INPUT = '100000\n'
const PRIMES_OUTPUT = 'primes below 100000: 9592\n'
const MiB = 1024 * 1024
/** above the payload plus Noise/Yamux framing, so the relay's per-connection limit (64 MiB by default) never cuts a transfer */
const RELAY_DATA_LIMIT = '1GiB'
const JOB_TARGET_MS = 1_000
const FAILOVER_TARGET_MS = 5_000
const SAMPLE_MS = 150

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
const errText = (err: unknown): string => (err as Error)?.message ?? String(err)

/** CPU seconds (user + system) of one process, from /proc; undefined when it is gone. */
function cpuSeconds (pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // fields after the command name (which may hold spaces) start after the last ')'
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / 100 // utime, stime in clock ticks (USER_HZ = 100)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

/** Waits (bounded) for the first stdout line of `proc` that parses as JSON and satisfies `ok`. */
async function jsonLine<T> (proc: LabProcess, what: string, timeoutMs: number, ok: (v: T) => boolean = () => true, from = 0): Promise<T> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    for (const l of proc.stdoutLines.slice(from)) {
      if (!l.startsWith('{')) continue
      const v = JSON.parse(l) as T
      if (ok(v)) return v
    }
    if (!proc.running()) throw new Error(`${what}: the process exited (${String((await proc.exited).code)}); stderr:\n${tail(proc.stderr())}`)
    await sleep(50)
  }
  throw new Error(`${what}: nothing within ${timeoutMs} ms; stderr:\n${tail(proc.stderr())}`)
}

const shareText = (xs: number[]): string => xs.length === 0 ? 'n/a' : summarize(xs).median.toFixed(2)

// ---------------------------------------------------------------------------
// 1. relay throughput

/**
 * tcp: plain node:net socket. direct:shipped / circuit:shipped: libp2p as the
 * daemon builds it. circuit:no-ping-abort: the same, except that libp2p's
 * connection monitor does not abort a connection whose keep-alive ping timed
 * out (bench/lib/stream-endpoint.ts NodeConfig), at both ends; the relay is
 * the unmodified `worldcompute relay` in every case.
 */
type Mode = 'tcp' | 'direct:shipped' | 'circuit:shipped' | 'circuit:no-ping-abort'
const MODES: Mode[] = ['tcp', 'direct:shipped', 'circuit:shipped', 'circuit:no-ping-abort']
interface Transfer { mode: Mode, bytes: number, ms: number, cpuMs: number, remoteAddr: string, limited?: boolean, warmup?: boolean, failed?: boolean, afterMs?: number, error?: string }
interface Received { received: boolean, mode: Mode, bytes: number, wallMs: number, cpuMs: number, got?: number, error?: string }
const perMode = <T>(make: () => T): Record<Mode, T> => ({ tcp: make(), 'direct:shipped': make(), 'circuit:shipped': make(), 'circuit:no-ping-abort': make() })

async function throughput (quick: boolean, runRoot: string, cleanup: Cleanup, rows: BenchRow[], notes: string[]): Promise<void> {
  // quick mode: 16 MiB and one round, so the whole quick bench stays short
  const bytes = (quick ? 16 : 64) * MiB
  const rounds = quick ? 1 : 5
  const size = `${bytes / MiB} MiB`
  const runDir = join(runRoot, 'throughput')
  mkdirSync(runDir, { recursive: true })
  const lab = await buildTopology({
    relays: [{ name: 'relay', ip: '198.51.100.10' }],
    sites: [
      { name: 'sitea', nat: 'none', hosts: [{ name: 'sender' }] },
      { name: 'siteb', nat: 'none', hosts: [{ name: 'receiver' }] }
    ]
  })
  cleanup.add('tear down the throughput lab', async () => { if (!lab.tornDown) await lab.teardown() })
  const loadAtStart = loadavg()
  const samples = perMode<number[]>(() => [])
  // CPU time / transfer time per process and mode: ≈1 means that process was CPU bound (each is single-threaded JS)
  const share = { sender: perMode<number[]>(() => []), receiver: perMode<number[]>(() => []), relay: [] as number[] }
  const remote = perMode<Set<string>>(() => new Set())
  const failures = perMode<string[]>(() => [])
  const brokeAfter = perMode<number[]>(() => [])
  let limited = false
  try {
    const relay = await startRelay(lab, 'relay', runDir, { args: ['--relay-data-limit', RELAY_DATA_LIMIT] })
    const receiver = lab.exec('receiver', [NODE, STREAM_ENDPOINT, 'receive', '--ip', lab.ip('receiver'), '--relay', relay.addr.tcp], { env: labEnv(), logFile: join(runDir, 'receiver.log') })
    const ready = await jsonLine<{ ready: boolean, targets: Record<string, string> }>(receiver, 'receiver start-up (listen, reservations on the relay)', 60_000, v => v.ready)
    progress(`throughput: receiver ready: ${JSON.stringify(ready.targets)}`)
    for (let r = 0; r < rounds; r++) {
      const plan = rotate(MODES, r)
      const relayCpu0 = cpuSeconds(relay.proc.pid)
      const receivedFrom = receiver.stdoutLines.length
      const res = await lab.run('sender', [NODE, STREAM_ENDPOINT, 'send', '--plan', plan.join(','), '--bytes', String(bytes), '--warmup', String(4 * MiB),
        '--targets', JSON.stringify(ready.targets)], { env: labEnv(), logFile: join(runDir, 'sender.log'), timeoutMs: 900_000 })
      const relayCpu1 = cpuSeconds(relay.proc.pid)
      if (res.code !== 0) throw new Error(`sender round ${r + 1} exited ${String(res.code)}: ${tail(res.stderr)}`)
      const all = res.stdout.split('\n').filter(l => l.startsWith('{')).map(l => JSON.parse(l) as Transfer)
      const got = all.filter(t => t.warmup !== true)
      const received = receiver.stdoutLines.slice(receivedFrom).filter(l => l.startsWith('{')).map(l => JSON.parse(l) as Received)
      for (const mode of plan) {
        const t = got.find(x => x.mode === mode)
        if (t == null) throw new Error(`sender round ${r + 1} reported no ${mode} transfer: ${res.stdout}`)
        if (t.failed === true) {
          const rec = received.find(x => !x.received && x.mode === mode)
          brokeAfter[mode].push(t.afterMs ?? NaN)
          failures[mode].push(`round ${r + 1}: broke after ${Math.round(t.afterMs ?? NaN)} ms (sender: ${t.error ?? '?'}${rec != null ? `; receiver had ${rec.got ?? '?'} of ${bytes} bytes: ${rec.error ?? '?'}` : ''})`)
          progress(`throughput round ${r + 1}: ${mode} transfer broke: ${failures[mode][failures[mode].length - 1]}`)
          continue
        }
        samples[mode].push(t.bytes / MiB / (t.ms / 1000))
        remote[mode].add(t.remoteAddr)
        if (t.limited === true) limited = true
        share.sender[mode].push(t.cpuMs / t.ms)
        const rec = received.find(x => x.received && x.mode === mode && x.bytes === bytes)
        if (rec != null) share.receiver[mode].push(rec.cpuMs / rec.wallMs)
        else progress(`throughput round ${r + 1}: the receiver reported no ${mode} transfer of ${bytes} bytes`)
      }
      // the relay works only for circuit transfers (timed and warm-up, both configurations): its CPU time over their summed time
      const circuitMs = all.filter(x => x.mode.startsWith('circuit')).reduce((a, x) => a + (x.failed === true ? (x.afterMs ?? 0) : x.ms), 0)
      if (relayCpu0 != null && relayCpu1 != null && circuitMs > 0) share.relay.push((relayCpu1 - relayCpu0) * 1000 / circuitMs)
      progress(`throughput round ${r + 1}/${rounds} (${plan.join(' → ')}): ${plan.map(m => `${m} ${got.find(x => x.mode === m)?.failed === true ? 'broke' : `${num(samples[m][samples[m].length - 1])} MiB/s`}`).join(', ')}`)
    }
    await receiver.stop(10_000)
    await relay.proc.stop(10_000)
  } finally {
    await lab.teardown()
  }
  const tcp = summarize(samples.tcp)
  const direct = summarize(samples['direct:shipped'])
  const shipped = summarize(samples['circuit:shipped'])
  const noAbort = summarize(samples['circuit:no-ping-abort'])
  // a transfer that broke has no throughput: a figure covers the ones that completed, and the name says how many
  const done = (m: Mode): string => failures[m].length > 0 ? ` [${samples[m].length} of ${rounds} completed]` : ''
  const target = { op: '>=' as const, value: 0.5 }
  const shippedName = `relay throughput: ${size} through a circuit (TCP both legs), libp2p as shipped${done('circuit:shipped')}`
  if (samples['circuit:shipped'].length > 0) {
    rows.push(row({ benchmark: shippedName, baselineName: 'direct TCP, plain socket', baseline: tcp, figure: shipped, unit: 'MiB/s', ratioLabel: 'circuit / plain TCP', target }))
  } else {
    // nothing to take a median of: the row says why, and counts as a missed target
    rows.push({ benchmark: shippedName, baseline: `direct TCP, plain socket: ${fmt(tcp, 'MiB/s')}`, figure: `every transfer broke (after ${fmt(summarize(brokeAfter['circuit:shipped']), 'ms')}): libp2p's connection monitor aborted the circuit`, ratio: NaN, ratioLabel: '', target: targetText(target), met: false })
  }
  rows.push(row({
    benchmark: `relay throughput: ${size} through a circuit, connection monitor not aborting on a late ping${done('circuit:no-ping-abort')}`,
    baselineName: 'direct TCP, plain socket',
    baseline: tcp,
    figure: noAbort,
    unit: 'MiB/s',
    ratioLabel: 'circuit / plain TCP'
  }))
  rows.push(row({
    benchmark: `libp2p stack: ${size} over direct TCP (Noise + Yamux, no relay)${done('direct:shipped')}`,
    baselineName: 'direct TCP, plain socket',
    baseline: tcp,
    figure: direct,
    unit: 'MiB/s',
    ratioLabel: 'libp2p direct / plain TCP'
  }))
  rows.push(row({
    benchmark: `relay hop: ${size} through a circuit (monitor not aborting) vs libp2p direct`,
    baselineName: 'libp2p over direct TCP',
    baseline: direct,
    figure: noAbort,
    unit: 'MiB/s',
    ratioLabel: 'circuit / libp2p direct'
  }))
  notes.push(`Throughput setup: sender and receiver at two sites with NAT 'none' (public 192.0.2.x addresses, no firewall), one unmodified \`worldcompute relay\` on the lab internet started with \`--relay-data-limit ${RELAY_DATA_LIMIT}\` (its default of 64 MiB per relayed connection is below ${size} plus Noise/Yamux framing). ${rounds} round(s) of ${size}${quick ? ' (quick mode: 16 MiB instead of 64 MiB)' : ''} per mode, each round one sender process doing ${MODES.join(', ')} in rotated order, each on a fresh connection after an untimed 4 MiB warm-up per mode. Timed: first byte written → the receiver's one-byte answer that all bytes are in; connection set-up excluded. libp2p endpoints (bench/lib/stream-endpoint.ts) are the product's own MeshNode (src/net/mesh-node.ts), not a reduced node; the receiver reserves on the relay over TCP, the sender dials the circuit address over TCP. "no-ping-abort" = the same MeshNode with js-libp2p's ConnectionMonitor.abortConnectionOnPingFailure switched off at both ends (the monitor pings every connection every 10 s with an adaptive timeout of at least 5 s and, by default, aborts the connection when a ping fails; through a relay the ping queues behind megabytes of buffered data).`)
  for (const m of MODES) {
    if (failures[m].length > 0) notes.push(`Throughput: ${failures[m].length} of ${rounds} timed ${m} transfer(s) of ${size} broke and are not in its figure: ${failures[m].join('; ')}.`)
  }
  notes.push(`Throughput medians: ${MODES.map(m => `${m} ${fmt(summarize(samples[m]), 'MiB/s')}`).join(', ')}; circuit connections ${limited ? 'are limited (the relay\'s data/duration limits apply)' : 'unlimited'}: ${[...remote['circuit:no-ping-abort']].join(' ')}. CPU time / transfer time per process (median over rounds; ≈1.00 means that single-threaded process was CPU bound; the machine has ${availableParallelism()} cores, shared with other work: 1/5/15-min load average ${loadAtStart.map(x => x.toFixed(2)).join(' / ')} at the start of this part, ${loadavg().map(x => x.toFixed(2)).join(' / ')} at its end, so a share well below 1 can also mean the process was waiting for a core): ${MODES.map(m => `${m}: sender ${shareText(share.sender[m])}, receiver ${shareText(share.receiver[m])}`).join('; ')}; relay ${shareText(share.relay)} (its CPU from /proc over all circuit transfers of a round, warm-ups included; it strips one Noise+Yamux layer per leg and forwards the end-to-end Noise+Yamux stream inside).`)
}

// ---------------------------------------------------------------------------
// 2. job across two firewalled sites

async function jobAcross (quick: boolean, runRoot: string, cleanup: Cleanup, rows: BenchRow[], notes: string[]): Promise<void> {
  const jobs = quick ? 3 : 10
  const runDir = join(runRoot, 'job')
  mkdirSync(runDir, { recursive: true })
  const lab = await buildTopology({
    relays: [{ name: 'relay', ip: '198.51.100.10' }],
    sites: [
      { name: 'sitea', nat: 'cone', firewall: 'tcp-80-443-only', hosts: [{ name: 'submitter' }] },
      { name: 'siteb', nat: 'symmetric', hosts: [{ name: 'executor' }] }
    ]
  })
  cleanup.add('tear down the job lab', async () => { if (!lab.tornDown) await lab.teardown() })
  const cliMs: number[] = []
  const apiMs: number[] = []
  const apiSubmitMs: number[] = []
  const brokerMs: number[] = []
  const statusMs: number[] = []
  const paths: string[] = []
  let connectionText = ''
  let warmupText = ''
  const donors: DonorNode[] = []
  let relay: RelayNode | undefined
  try {
    relay = await startRelay(lab, 'relay', runDir)
    const bootstrap = [relay.addr.tcp, relay.addr.quic, relay.addr.ws]
    const submitter = startDonor(lab, 'submitter', runDir, { bootstrap, noExecute: true })
    const executor = startDonor(lab, 'executor', runDir, { bootstrap })
    donors.push(submitter, executor)
    const [ds, de] = await Promise.all([waitDispatchable(lab, submitter, { timeoutMs: 60_000 }), waitDispatchable(lab, executor, { timeoutMs: 60_000 })])
    progress(`job: submitter dispatchable over ${ds.transport} (${ds.ms} ms), executor over ${de.transport} (${de.ms} ms)`)
    const executorId = de.status.peerId
    const check = (v: JobView | undefined, what: string): void => {
      if (v == null) throw new Error(`${what}: no job view`)
      if (v.status !== 'succeeded' || v.stdout !== PRIMES_OUTPUT) throw new Error(`${what}: job ${v.jobId} ${v.status}: ${v.message} (stdout ${JSON.stringify(v.stdout)})`)
      if (v.replicas[0]?.executor !== executorId) throw new Error(`${what}: job ${v.jobId} ran on ${String(v.replicas[0]?.executor)}, not on the executor ${executorId}`)
    }
    // warm-up: the first job also finds the executor (gossip) and opens the connection; bounded retries
    for (let attempt = 1; ; attempt++) {
      const w = await submitJob(lab, submitter, PRIMES, PRIMES_INPUT, runDir, 60_000)
      if (w.view.status === 'succeeded') {
        check(w.view, 'warm-up job')
        warmupText = `warm-up job ${w.ms} ms (attempt ${attempt}, path ${String(w.view.replicas[0]?.path)})`
        break
      }
      if (attempt >= 5) throw new Error(`warm-up job did not succeed in 5 attempts: ${w.view.status}: ${w.view.message}`)
      progress(`job: warm-up attempt ${attempt}: ${w.view.status}: ${w.view.message}; retrying in 2 s`)
      await sleep(2_000)
    }
    progress(`job: ${warmupText}`)
    for (let i = 0; i < jobs; i++) {
      // alternate which variant goes first: neither always gets the warmer machine
      const order = i % 2 === 0 ? ['cli', 'api', 'status'] : ['api', 'cli', 'status']
      for (const v of order) {
        if (v === 'cli') {
          const j = await submitJob(lab, submitter, PRIMES, PRIMES_INPUT, runDir, 60_000)
          check(j.view, `CLI job ${i + 1}`)
          cliMs.push(j.ms)
          brokerMs.push(j.view.durationMs)
          paths.push(String(j.view.replicas[0].path))
        } else if (v === 'api') {
          const res = await lab.run('submitter', [NODE, LAB_AGENT, 'job', '--data-dir', submitter.dataDir, '--module', PRIMES, '--input', PRIMES_INPUT], { env: labEnv(), timeoutMs: 90_000 })
          const out = res.stdout.split('\n').find(l => l.startsWith('{'))
          if (res.code !== 0 || out == null) throw new Error(`API job ${i + 1}: lab-agent exited ${String(res.code)}: ${tail(res.stderr)}`)
          const a = JSON.parse(out) as { submitMs: number, finalMs: number, view: JobView }
          check(a.view, `API job ${i + 1}`)
          apiMs.push(a.finalMs)
          apiSubmitMs.push(a.submitMs)
          brokerMs.push(a.view.durationMs)
          paths.push(String(a.view.replicas[0].path))
        } else {
          // the CLI's own cost: one `status --json` process in the same namespace
          const s = await cliJson(lab, submitter, ['status'])
          if (s.code !== 0) throw new Error(`status --json exited ${String(s.code)}: ${s.stderr}`)
          statusMs.push(s.ms)
        }
      }
      progress(`job ${i + 1}/${jobs}: CLI ${cliMs[cliMs.length - 1]} ms, API ${num(apiMs[apiMs.length - 1])} ms, broker ${brokerMs.slice(-2).join('/')} ms, status CLI ${statusMs[statusMs.length - 1]} ms`)
    }
    const s = await statusOf(lab, submitter)
    const conns = s?.connections.filter(c => c.peerId === executorId) ?? []
    connectionText = conns.length > 0 ? conns.map(c => `${c.transport} ${c.remoteAddr}`).join('; ') : 'none open'
  } finally {
    await Promise.all(donors.map(async d => await d.proc.stop(10_000)))
    await relay?.proc.stop(10_000)
    await lab.teardown()
  }
  const target = summarize([JOB_TARGET_MS])
  const cli = summarize(cliMs)
  rows.push(row({
    benchmark: 'job between donors at two firewalled sites, end to end (`worldcompute job submit`, CLI start-up included) < 1 s',
    baselineName: 'the 1 s target',
    baseline: target,
    figure: cli,
    unit: 'ms',
    ratioLabel: 'CLI wall / 1 s',
    target: { op: '<=', value: 1 }
  }))
  rows.push(row({
    benchmark: 'job between donors at two firewalled sites, through the local API (no CLI process)',
    baselineName: 'the 1 s target',
    baseline: target,
    figure: summarize(apiMs),
    unit: 'ms',
    ratioLabel: 'API submit → final seen / 1 s'
  }))
  rows.push(row({
    benchmark: 'job between donors at two firewalled sites, broker createdAt → finishedAt',
    baselineName: 'the 1 s target',
    baseline: target,
    figure: summarize(brokerMs),
    unit: 'ms',
    ratioLabel: 'broker / 1 s'
  }))
  const pathCounts: Record<string, number> = {}
  for (const p of paths) pathCounts[p] = (pathCounts[p] ?? 0) + 1
  notes.push(`Job setup: one relay; site A cone NAT + 'tcp-80-443-only' firewall (UDP and every TCP port but 80/443 dropped) with a --no-execute submitter daemon, site B symmetric NAT with an executor daemon (--max-jobs default); both dispatchable first, one warm-up job (${warmupText}), then ${jobs} round(s) of: one \`worldcompute job submit primes.wasm\` (input ${JSON.stringify(PRIMES_INPUT.trim())}, the lab scenarios' fixture), one job through the daemon's local API from a helper process in A's namespace (bench/lib/lab-agent.ts: ApiClient submit, then \`job\` polled every 10 ms), and one \`worldcompute status --json\` (the CLI's own cost), in alternating order. Every job checked: succeeded, right stdout, ran on B's executor.`)
  notes.push(`Job target row: on the CLI wall time, because that is what a user at site A waits for from typing the command to the answer; it includes a Node process start-up and module loading (a bare \`status --json\` CLI call in the same namespace: ${fmt(summarize(statusMs), 'ms')}) and the CLI's 200 ms polling of the job. Through the local API without a CLI process: ${fmt(summarize(apiMs), 'ms')} (of which the submit call ${fmt(summarize(apiSubmitMs), 'ms')}); the broker's own createdAt → finishedAt (millisecond ISO timestamps, both jobs kinds): ${fmt(summarize(brokerMs), 'ms')}.`)
  notes.push(`Job paths (replica path as the broker reports it, all ${paths.length} measured jobs): ${Object.entries(pathCounts).map(([p, n]) => `${p} ×${n}`).join(', ')}; submitter ↔ executor connection(s) at the end: ${connectionText}.`)
}

// ---------------------------------------------------------------------------
// 3. failover: a relay killed

interface Sample { t: number, done: number, relays?: Array<{ peerId: string, since: string, source: string | null }>, error?: string }
interface FailoverRound { detectMs?: number, backMs?: number, backSeenMs?: number, throughout: boolean, longestGapMs: number, samples: number, errors: number, maxIntervalMs: number, replacement?: string, minLive: number }

async function failover (quick: boolean, runRoot: string, cleanup: Cleanup, rows: BenchRow[], notes: string[]): Promise<void> {
  const rounds = quick ? 1 : 3
  const runDir = join(runRoot, 'failover')
  mkdirSync(runDir, { recursive: true })
  const lab = await buildTopology({
    relays: [{ name: 'relay1', ip: '198.51.100.10' }, { name: 'relay2', ip: '198.51.100.20' }, { name: 'relay3', ip: '198.51.100.30' }],
    sites: [
      { name: 'sitea', nat: 'cone', hosts: [{ name: 'donor' }] },
      { name: 'siteb', nat: 'cone', hosts: [{ name: 'helper' }] }
    ]
  })
  cleanup.add('tear down the failover lab', async () => { if (!lab.tornDown) await lab.teardown() })
  const results: FailoverRound[] = []
  const relays: RelayNode[] = []
  const live: DonorNode[] = []
  try {
    for (const name of ['relay1', 'relay2', 'relay3']) relays.push(await startRelay(lab, name, runDir))
    const addrs = (r: RelayNode): string[] => [r.addr.tcp, r.addr.quic, r.addr.ws]
    for (let round = 0; round < rounds; round++) {
      const [relay1, relay2, relay3] = relays
      // the measured donor is told of relay 1 and 2 only; the helper of all three, so relay 3's
      // announcements reach the mesh the donor is on (as in test/lab/relay-failover.test.ts)
      const donor = startDonor(lab, 'donor', runDir, { name: `donor-${round}`, bootstrap: [...addrs(relay1), ...addrs(relay2)] })
      const helper = startDonor(lab, 'helper', runDir, { name: `helper-${round}`, bootstrap: [...addrs(relay1), ...addrs(relay2), ...addrs(relay3)], noExecute: true })
      live.push(donor, helper)
      try {
        await Promise.all([waitDispatchable(lab, donor, { timeoutMs: 60_000 }), waitDispatchable(lab, helper, { timeoutMs: 60_000 })])
        // two reservations (relay 1 and 2) and relay 3 learned from gossip, bounded
        const ready = Date.now() + 90_000
        let last: Awaited<ReturnType<typeof statusOf>>
        for (;;) {
          last = await statusOf(lab, donor)
          const ids = new Set(last?.relays.map(r => r.peerId) ?? [])
          if (ids.has(relay1.peerId) && ids.has(relay2.peerId) && (last?.knownRelays ?? []).some(k => k.peerId === relay3.peerId)) break
          if (Date.now() > ready) throw new Error(`round ${round + 1}: the donor did not hold relay 1 + 2 and know relay 3 within 90 s: ${JSON.stringify({ relays: last?.relays.map(r => r.peerId), known: last?.knownRelays })}`)
          await sleep(500)
        }
        const poller = lab.exec('donor', [NODE, LAB_AGENT, 'status-poll', '--data-dir', donor.dataDir, '--interval-ms', String(SAMPLE_MS), '--max-ms', '120000'], { env: labEnv(), logFile: join(runDir, `poll-${round}.log`) })
        try {
          await jsonLine<Sample>(poller, 'status poller start-up', 30_000, s => s.relays != null)
          // SIGKILL to the relay's process group: no goodbye to anyone, as when a host dies
          const killedAt = Date.now()
          process.kill(-relay2.proc.pid, 'SIGKILL')
          const killedBy = Date.now() + 10_000
          while (relay2.proc.running() && Date.now() < killedBy) await sleep(20)
          if (relay2.proc.running()) throw new Error('relay 2 still runs 10 s after SIGKILL')
          // until two reservations on live relays are seen, then 1 s more (bounded 30 s)
          const recovered = (s: Sample): boolean => (s.relays ?? []).filter(r => r.peerId !== relay2.peerId).length >= 2
          let seenAt: number | undefined
          const until = killedAt + 30_000
          while (Date.now() < until) {
            const samples = poller.stdoutLines.filter(l => l.startsWith('{')).map(l => JSON.parse(l) as Sample).filter(s => s.t >= killedAt)
            const hit = samples.find(recovered)
            if (hit != null && seenAt == null) seenAt = hit.done
            if (seenAt != null && Date.now() > seenAt + 1_000) break
            await sleep(100)
          }
          await poller.stop(5_000)
          const samples = poller.stdoutLines.filter(l => l.startsWith('{')).map(l => JSON.parse(l) as Sample).filter(s => s.t >= killedAt)
          results.push({ ...analyse(samples, killedAt, relay2.peerId, recovered), ...lossSeen(donor.proc.stderr(), relay2.peerId, killedAt) })
          const r = results[results.length - 1]
          progress(`failover round ${round + 1}/${rounds}: loss noticed ${r.detectMs != null ? `${r.detectMs} ms` : '(no log line)'} after the kill, second reservation back ${r.backMs != null ? `${r.backMs} ms (granted; seen ${r.backSeenMs} ms)` : 'NOT within 30 s'} after the kill, on ${r.replacement ?? '?'}; live reservation at every sample: ${r.throughout ? 'yes' : 'no'} (${r.samples} samples, ${r.errors} unanswered, longest gap ${r.longestGapMs} ms)`)
        } finally {
          if (poller.running()) await poller.stop(5_000)
        }
      } finally {
        await Promise.all([donor, helper].map(async d => await d.proc.stop(10_000)))
        live.splice(0)
      }
      // the killed relay back (same data dir, same PeerId) for the next round
      relays[1] = await startRelay(lab, relay2.host, runDir, { dataDir: relay2.dataDir, logFile: join(runDir, `${relay2.host}-revived-${round}.log`) })
      if (relays[1].peerId !== relay2.peerId) throw new Error(`revived relay 2 has a new PeerId ${relays[1].peerId}`)
    }
  } finally {
    await Promise.all(live.map(async d => await d.proc.stop(10_000)))
    await Promise.all(relays.map(async r => await r.proc.stop(10_000)))
    await lab.teardown()
  }
  const back = results.map(r => r.backMs ?? Infinity)
  const backSummary = summarize(back)
  rows.push(row({
    benchmark: 'failover: relay killed (SIGKILL) → second reservation back ≤ 5 s',
    baselineName: 'the 5 s target',
    baseline: summarize([FAILOVER_TARGET_MS]),
    figure: backSummary,
    unit: 'ms',
    ratioLabel: 'time / 5 s',
    target: { op: '<=', value: 1 }
  }))
  const throughout = results.filter(r => r.throughout).length
  rows.push(row({
    benchmark: 'failover: dispatchable throughout (a reservation on a live relay at every status sample); figure = longest gap without one',
    baselineName: 'longest interval between status samples',
    baseline: summarize(results.map(r => r.maxIntervalMs)),
    figure: summarize(results.map(r => r.longestGapMs)),
    unit: 'ms',
    ratio: results.length > 0 ? throughout / results.length : NaN,
    ratioLabel: `rounds dispatchable throughout: ${throughout} of ${results.length}`,
    target: { op: '>=', value: 1 }
  }))
  notes.push(`Failover setup: three relays; the measured donor (site A, cone NAT) bootstraps on relay 1 and 2, a helper donor (site B, cone NAT) on all three so relay 3's gossip announcement reaches the donor's mesh. Per round (${rounds}): fresh donors, wait until the donor holds reservations on relay 1 and 2 and knows relay 3, start a status poller inside its namespace (bench/lib/lab-agent.ts, the daemon's local API every ${SAMPLE_MS} ms, no CLI process per sample), SIGKILL relay 2's process group, sample until the donor holds two reservations on live relays (bounded 30 s), then revive relay 2 (same PeerId) for the next round. "Back" = the new reservation's own \`since\` (granted) minus the kill time; the first sample that showed it is given too. A reservation on the killed relay that the donor still lists is not counted as live.`)
  notes.push(`Failover rounds: ${results.map((r, i) => `#${i + 1}: loss in the donor's log ${r.detectMs != null ? `${r.detectMs} ms` : 'not found'} after the kill, back ${r.backMs != null ? `${r.backMs} ms granted / ${r.backSeenMs} ms seen` : 'never (30 s)'} on ${r.replacement ?? '?'}, ${r.samples} samples (${r.errors} unanswered, max interval ${r.maxIntervalMs} ms), fewest live reservations at a sample ${r.minLive}, longest gap without one ${r.longestGapMs} ms`).join('; ')}.`)
}

/**
 * When the donor noticed the loss, from its own log: the first "lost
 * connection/reservation … relay <killed>" line after the kill (the text log
 * stamps each line with the UTC time of day, to the millisecond).
 */
function lossSeen (log: string, killed: string, killedAt: number): { detectMs?: number } {
  const day = new Date(killedAt).toISOString().slice(0, 11)
  for (const l of log.split('\n')) {
    if (!l.includes(killed) || !/lost (connection to|reservation on) relay/.test(l)) continue
    let t = Date.parse(`${day}${l.slice(0, 12)}Z`)
    if (Number.isNaN(t)) continue
    if (t < killedAt - 12 * 3600_000) t += 24 * 3600_000 // the run crossed midnight (UTC)
    if (t >= killedAt) return { detectMs: t - killedAt }
  }
  return {}
}

/** Reads one round's samples: when two live reservations were back, and whether one was held at every sample. */
function analyse (samples: Sample[], killedAt: number, killed: string, recovered: (s: Sample) => boolean): FailoverRound {
  const answered = samples.filter(s => s.relays != null)
  const hit = answered.find(recovered)
  const end = hit ?? answered[answered.length - 1]
  const window = answered.filter(s => end == null || s.t <= end.t)
  let longestGapMs = 0
  let gapStart: number | undefined
  let minLive = Infinity
  for (const s of window) {
    const liveCount = (s.relays ?? []).filter(r => r.peerId !== killed).length
    minLive = Math.min(minLive, liveCount)
    if (liveCount === 0) gapStart ??= s.t
    else if (gapStart != null) {
      longestGapMs = Math.max(longestGapMs, s.t - gapStart)
      gapStart = undefined
    }
  }
  if (gapStart != null) longestGapMs = Math.max(longestGapMs, (end?.t ?? gapStart) - gapStart)
  let maxIntervalMs = 0
  for (let i = 1; i < samples.length; i++) maxIntervalMs = Math.max(maxIntervalMs, samples[i].t - samples[i - 1].t)
  // the reservation that made it two again: the newest one not on the killed relay
  const fresh = hit?.relays?.filter(r => r.peerId !== killed).sort((a, b) => Date.parse(b.since) - Date.parse(a.since))[0]
  return {
    ...(fresh != null ? { backMs: Date.parse(fresh.since) - killedAt, replacement: `${fresh.peerId.slice(-8)} (${fresh.source ?? '?'})` } : {}),
    ...(hit != null ? { backSeenMs: hit.done - killedAt } : {}),
    throughout: window.length > 0 && minLive >= 1 && answered.length === samples.length,
    longestGapMs,
    samples: samples.length,
    errors: samples.length - answered.length,
    maxIntervalMs,
    minLive: Number.isFinite(minLive) ? minLive : 0
  }
}

// ---------------------------------------------------------------------------

await benchMain('lab-paths', { quick: 900_000, full: 2_400_000 }, async (args, cleanup) => {
  const rows: BenchRow[] = []
  const notes: string[] = []
  const skip = labSkipReason()
  const parts = [
    { key: 'throughput', name: 'relay throughput', run: throughput, rows: ['relay throughput: 64 MiB through a circuit'] },
    { key: 'job', name: 'job across firewalled sites', run: jobAcross, rows: ['job between donors at two firewalled sites, end to end < 1 s'] },
    { key: 'failover', name: 'failover', run: failover, rows: ['failover: relay killed → second reservation back ≤ 5 s'] }
  ]
  if (skip != null) {
    for (const p of parts) for (const r of p.rows) rows.push(skippedRow(r, '—', skip))
    notes.push(`not run: ${skip}`)
    return { bench: 'lab-paths', rows, notes }
  }
  const runLoad = loadavg()
  const runRoot = mkdtempSync(join(tmpdir(), 'wc-bench-lab-paths-'))
  // WC_BENCH_KEEP=1 keeps the logs and data dirs (to read a relay's or a daemon's log after a run)
  if (process.env.WC_BENCH_KEEP === '1') progress(`run folder (kept): ${runRoot}`)
  else cleanup.add('remove the run folder', () => { rmSync(runRoot, { recursive: true, force: true }) })
  // WC_LAB_PATHS_ONLY=throughput,job,failover runs only those parts (to look at one closely)
  const only = (process.env.WC_LAB_PATHS_ONLY ?? '').split(',').map(x => x.trim()).filter(x => x !== '')
  for (const p of parts) {
    if (only.length > 0 && !only.includes(p.key)) continue
    const started = Date.now()
    try {
      await p.run(args.quick, runRoot, cleanup, rows, notes)
      progress(`${p.name}: done in ${Math.round((Date.now() - started) / 1000)} s`)
    } catch (err) {
      // one part failing must not hide the others' rows: report it as a skipped row with the reason
      process.stderr.write(`lab-paths: ${p.name} failed: ${(err as Error).stack ?? String(err)}\n`)
      for (const r of p.rows) rows.push(skippedRow(r, '—', `failed: ${errText(err).split('\n')[0]}`))
      notes.push(`${p.name} failed after ${Math.round((Date.now() - started) / 1000)} s: ${errText(err).split('\n').slice(0, 6).join(' / ')}`)
    }
  }
  // the machine is shared: say how busy it was, since every figure here is wall-clock time
  notes.push(`Machine load while this ran (1/5/15-min load average on ${availableParallelism()} cores): ${runLoad.map(x => x.toFixed(2)).join(' / ')} at the start, ${loadavg().map(x => x.toFixed(2)).join(' / ')} at the end.`)
  return { bench: 'lab-paths', rows, notes }
})
