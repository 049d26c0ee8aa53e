/**
 * A broker through many tiny jobs (issue 15: "10,000 inputs without the
 * broker's memory or its SQLite file growing out of proportion"): does what
 * it holds grow with the jobs it has seen, or stay at what it keeps?
 *
 * Real `bin/worldcompute` processes on 127.0.0.1: a relay, one donor
 * (`daemon --max-jobs 4`, direct TCP and the relay) and a broker
 * (`daemon --no-execute --keep-jobs K`). Through the broker's API, tiny jobs
 * (hello.wasm, each with its own 8-byte input, so every job stores its own
 * input blob) run 16 in flight, each waited for until final. After N1 jobs
 * and again after N2 = 10 × N1: the broker's VmRSS (/proc) and the size of
 * its jobs.sqlite (+ -wal), and the broker's live JavaScript heap: the sum of
 * a heap snapshot's objects (the broker writes one on SIGUSR2, after a full
 * garbage collection; taken after the RSS reading, since writing it costs
 * memory of its own). RSS also counts what V8 and the allocator keep from
 * earlier peaks (and, in the second reading, what writing the first
 * snapshot left behind: that row has no target); the live heap is what the
 * broker still holds. With K = N1 the store keeps as many jobs at both
 * points, so the live heap's and the file's ratios (after N2 ÷ after N1)
 * should stay near 1; one that grows with N is a leak. Full: N1 = 1,000,
 * N2 = 10,000; quick: 200 and 2,000.
 *
 *   node_modules/.bin/node bench/batch-scale.ts [--quick] [--json-out FILE]
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ApiClient } from '../src/api/client.ts'
import { benchMain, progress, row, type BenchRow, type Cleanup } from './lib/report.ts'
import { cleanEnv, firstJsonLine, readMem, spawnProc, type Proc } from './lib/proc-mem.ts'
import { HELLO } from './lib/mesh.ts'
import { num, summarize } from './lib/stats.ts'

const BIN = fileURLToPath(new URL('../bin/worldcompute', import.meta.url))
const IN_FLIGHT = 16

interface Point { jobs: number, rssMb: number, dbMb: number, heapMb: number }

async function spawnNode (dir: string, name: string, args: string[], cleanup: Cleanup, env: Record<string, string> = {}): Promise<Proc> {
  const proc = spawnProc(BIN, args, { env: cleanEnv(env), logFile: join(dir, `${name}.log`) })
  cleanup.add(`stop ${name} (pid ${proc.pid})`, async () => { await proc.stop() })
  return proc
}

async function until<T> (what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const v = await probe()
      if (v !== undefined) return v
    } catch (err) {
      last = err
    }
    await new Promise(resolve => setTimeout(resolve, 200))
  }
  throw new Error(`${what}: not within ${ms} ms${last != null ? ` (last error: ${(last as Error).message})` : ''}`)
}

/** Relay, donor and broker; the broker's API client and PID. */
async function startMesh (dir: string, keepJobs: number, cleanup: Cleanup): Promise<{ client: ApiClient, broker: Proc, dataDir: string }> {
  const relay = await spawnNode(dir, 'relay', ['relay', '--data-dir', join(dir, 'relay'), '--json', '--listen', '/ip4/127.0.0.1/tcp/0', '--no-stun'], cleanup)
  const info = await firstJsonLine<{ announceAddrs: string[] }>(relay, 'relay', 30_000)
  const addr = info.announceAddrs.find(a => a.startsWith('/ip4/127.0.0.1/tcp/'))
  if (addr == null) throw new Error('the relay announced no 127.0.0.1 TCP address')
  const common = ['--bootstrap', addr, '--api-port', '0', '--no-direct', '--listen', '/ip4/127.0.0.1/tcp/0', '--listen', '/p2p-circuit']
  await spawnNode(dir, 'donor', ['daemon', '--data-dir', join(dir, 'donor'), '--max-jobs', '4', ...common], cleanup)
  const dataDir = join(dir, 'broker')
  mkdirSync(join(dir, 'snapshots'))
  const snapshots = { NODE_OPTIONS: `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${join(dir, 'snapshots')}` }
  const broker = await spawnNode(dir, 'broker', ['daemon', '--data-dir', dataDir, '--no-execute', '--keep-jobs', String(keepJobs), ...common], cleanup, snapshots)
  const client = new ApiClient({ dataDir })
  // an idle broker does not listen to capacity announcements: its first job makes it listen and find the
  // donor, so both being reserved on the relay is what "ready" means here
  const donorClient = new ApiClient({ dataDir: join(dir, 'donor') })
  await until('the broker and the donor to hold a reservation', 60_000, async () => {
    const [b, d] = await Promise.all([client.call('status', {}), donorClient.call('status', {})])
    return b.relays.length > 0 && d.relays.length > 0 ? true : undefined
  })
  return { client, broker, dataDir }
}

/** Runs jobs `from`..`to`-1, IN_FLIGHT at a time, each waited for until final; how many did not succeed. */
async function runJobs (client: ApiClient, from: number, to: number): Promise<number> {
  let next = from
  let failed = 0
  const module = HELLO.toString('base64')
  const lane = async (): Promise<void> => {
    while (next < to) {
      const i = next++
      const input = Buffer.alloc(8)
      input.writeBigUInt64BE(BigInt(i))
      const { jobId } = await client.call('submitJob', { module, input: input.toString('base64'), moduleName: 'hello.wasm', args: [], env: [], replicas: 1, limits: {} })
      const v = await until(`job ${jobId} to finish`, 120_000, async () => {
        const view = await client.call('job', { id: jobId, full: false })
        return view.final ? view : undefined
      })
      if (v.status !== 'succeeded') failed++
      if ((i + 1) % 500 === 0) progress(`${i + 1} jobs`)
    }
  }
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane))
  return failed
}

/** The broker's live heap: it writes a snapshot on SIGUSR2 (after a full GC); the sum of its objects' own sizes, MB. */
async function liveHeapMb (broker: Proc, dir: string): Promise<number> {
  const folder = join(dir, 'snapshots')
  process.kill(broker.pid, 'SIGUSR2')
  let last = -1
  type Snapshot = { snapshot: { meta: { node_fields: string[] } }, nodes: number[] }
  const snap = await until('the heap snapshot', 120_000, async () => {
    const name = readdirSync(folder).find(f => f.endsWith('.heapsnapshot'))
    if (name == null) return undefined
    // done when its size holds still and it parses (a half-written one throws, and is read again)
    const size = statSync(join(folder, name)).size
    const settled = size > 0 && size === last
    last = size
    if (!settled) return undefined
    const parsed = JSON.parse(readFileSync(join(folder, name), 'utf8')) as Snapshot
    rmSync(join(folder, name))
    return parsed
  })
  const fields = snap.snapshot.meta.node_fields
  const self = fields.indexOf('self_size')
  let bytes = 0
  for (let i = self; i < snap.nodes.length; i += fields.length) bytes += snap.nodes[i]
  return bytes / 1e6
}

async function measure (jobs: number, broker: Proc, dataDir: string, dir: string): Promise<Point> {
  const db = join(dataDir, 'jobs.sqlite')
  const bytes = statSync(db).size + (statSync(`${db}-wal`, { throwIfNoEntry: false })?.size ?? 0)
  const rssMb = readMem(broker.pid).rssKb * 1024 / 1e6
  return { jobs, rssMb, dbMb: bytes / 1e6, heapMb: await liveHeapMb(broker, dir) }
}

async function main (): Promise<void> {
  await benchMain('bench/batch-scale', { quick: 600_000, full: 1_800_000 }, async (args, cleanup) => {
    const n1 = args.quick ? 200 : 1_000
    const n2 = n1 * 10
    const dir = mkdtempSync(join(tmpdir(), 'wc-bench-batch-'))
    cleanup.add('remove temp dir', () => { rmSync(dir, { recursive: true, force: true }) })
    progress(`relay, donor and broker (--keep-jobs ${n1}) on 127.0.0.1`)
    const { client, broker, dataDir } = await startMesh(dir, n1, cleanup)
    const t0 = Date.now()
    let failed = await runJobs(client, 0, n1)
    const first = await measure(n1, broker, dataDir, dir)
    progress(`after ${n1} jobs: broker RSS ${num(first.rssMb)} MB, live heap ${num(first.heapMb)} MB, jobs.sqlite ${num(first.dbMb)} MB`)
    failed += await runJobs(client, n1, n2)
    const seconds = (Date.now() - t0) / 1000
    const second = await measure(n2, broker, dataDir, dir)
    progress(`after ${n2} jobs: broker RSS ${num(second.rssMb)} MB, live heap ${num(second.heapMb)} MB, jobs.sqlite ${num(second.dbMb)} MB (${num(n2 / seconds)} jobs/s)`)
    const kept = (await client.call('jobs', { limit: 1000 })).jobs.length
    const rows: BenchRow[] = [
      // informational: the first heap snapshot's own memory is in the second reading
      row({ benchmark: `broker RSS after ${n2} tiny jobs (--keep-jobs ${n1})`, baselineName: `after ${n1}`, baseline: summarize([first.rssMb]), figure: summarize([second.rssMb]), unit: 'MB', ratioLabel: `after ${n2} ÷ after ${n1}` }),
      row({ benchmark: `broker live JS heap after ${n2} tiny jobs (--keep-jobs ${n1})`, baselineName: `after ${n1}`, baseline: summarize([first.heapMb]), figure: summarize([second.heapMb]), unit: 'MB', ratioLabel: `after ${n2} ÷ after ${n1}`, target: { op: '<=', value: 1.5 } }),
      row({ benchmark: `jobs.sqlite after ${n2} tiny jobs (--keep-jobs ${n1})`, baselineName: `after ${n1}`, baseline: summarize([first.dbMb]), figure: summarize([second.dbMb]), unit: 'MB', ratioLabel: `after ${n2} ÷ after ${n1}`, target: { op: '<=', value: 1.5 } })
    ]
    const notes = [
      `Batch scale: real processes on 127.0.0.1 (relay, one donor with --max-jobs 4, a --no-execute broker with --keep-jobs ${n1}); hello.wasm with an 8-byte input of its own per job, ${IN_FLIGHT} in flight through the broker's API, each polled until final; ${n2} jobs in ${num(seconds)} s, ${failed} did not succeed. The first heap snapshot is written between the two RSS readings and costs memory of its own, so the second RSS reading includes what that left behind. Per 1,000 jobs seen: RSS ${num(first.rssMb / n1 * 1000)} MB after ${n1}, ${num(second.rssMb / n2 * 1000)} MB after ${n2}; jobs.sqlite ${num(first.dbMb / n1 * 1000)} MB and ${num(second.dbMb / n2 * 1000)} MB. The store pruned to the newest ${n1} finished jobs every 100 (the API's list shows ${kept} of at most 1,000).`
    ]
    return { bench: 'batch-scale', rows, notes }
  })
}

if (import.meta.main) await main()
