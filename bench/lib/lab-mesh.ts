/**
 * The many-daemon lab meshes of bench/scale.ts and bench/mesh48.ts: relays
 * and donor daemons as real `worldcompute` processes in the namespace lab
 * (test/lab/topology.ts, test/lab/processes.ts), donors spawned a batch at a
 * time, each donor's first reservation read from its own log, and an
 * authoritative look at each donor's `status` once all are spawned, with the
 * reasons of every donor that is not dispatchable.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { progress, type Cleanup } from './report.ts'
import { summarize, fmt } from './stats.ts'
import { dialsOf, describeAttempt, statusOf, tail, type DonorNode, type RelayNode } from '../../test/lab/processes.ts'
import { namespacesWithPrefix, type Lab, type NatKind, type TeardownReport } from '../../test/lab/topology.ts'
import type { DaemonStatus } from '../../src/core/types.ts'

/** the lab's "internet" is TEST-NET, which js-libp2p calls private: declare it public, as test/lab/direct.test.ts does */
export const LAB_PUBLIC = ['--public-range', '198.51.100.0/24', '--public-range', '192.0.2.0/24', '--public-range', '203.0.113.0/24']

export const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

export interface MeshDonor {
  node: DonorNode
  site: string
  nat: NatKind
  batch: number
  /** from the log line "reserved on relay …" (ms since the epoch), first and per relay */
  reservedAt?: number
  relaysReserved: Map<string, number>
  /** from `status` after start-up (authoritative: the reservation's `since`) */
  status?: DaemonStatus
  /** why the last `status` call failed (e.g. it did not finish on a saturated machine) */
  statusError?: string
  peerId?: string
}

/** "HH:MM:SS.mmm" (UTC, the text log's clock) on the day of `near`, ms since the epoch */
export function logTime (hms: string, near: number): number {
  const [h, m, s] = hms.split(':')
  const d = new Date(near)
  let t = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate(), Number(h), Number(m), Number(s.slice(0, 2)), Number(s.slice(3)))
  if (t < near - 12 * 3600_000) t += 24 * 3600_000 // the log line is from just after midnight
  return t
}

const RESERVED = /^(\d\d:\d\d:\d\d\.\d{3}) +INFO +\S+: reserved on relay (\S+) over ([^:]+):/gm

/** Reads new "reserved on relay" lines from the donor's stderr (kept in memory by the lab). */
export function scanReservations (d: MeshDonor): void {
  for (const m of d.node.proc.stderr().matchAll(RESERVED)) {
    const at = logTime(m[1], d.node.startedAt)
    if (!d.relaysReserved.has(m[2])) d.relaysReserved.set(m[2], at)
    d.reservedAt = Math.min(d.reservedAt ?? Infinity, at)
  }
}

/** Until every donor of `ds` has logged a reservation (or exited), bounded by `timeoutMs`. */
export async function waitReserved (ds: MeshDonor[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    for (const d of ds) scanReservations(d)
    if (ds.every(d => d.reservedAt != null || !d.node.proc.running())) return
    await sleep(100)
  }
}

/** Runs `fn` over `items` with at most `limit` at once. */
export async function pool<T> (items: T[], limit: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++])
  }))
}

/** Distinct executors the broker's capacity table has found so far (its debug log). */
export function executorsFound (logFile: string): Set<string> {
  const text = readFileSync(logFile, 'utf8')
  return new Set([...text.matchAll(/protocols\.capacity: executor (\S+) found/g)].map(m => m[1]))
}

export function gitState (): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { timeout: 5_000 }).toString().trim()
    const dirty = execFileSync('git', ['status', '--short', '--', 'src'], { timeout: 5_000 }).toString().trim()
    return dirty === '' ? head : `${head} with uncommitted changes in src (${dirty.split('\n').map(l => l.trim()).join(', ')})`
  } catch (err) {
    return `unknown (${(err as Error).message})`
  }
}

export interface SpawnHost { host: string, site: string, nat: NatKind }

/** The hosts of `sites` in spawn order: sites interleaved, so every batch mixes NAT types. */
export function interleave (sites: Array<{ name: string, nat: NatKind, hosts: Array<{ name: string }> }>): SpawnHost[] {
  const most = Math.max(...sites.map(s => s.hosts.length))
  return Array.from({ length: most }, (_x, j) => sites.flatMap(s => s.hosts[j] != null ? [{ host: s.hosts[j].name, site: s.name, nat: s.nat }] : [])).flat()
}

export interface SpawnPacing {
  /** donors started at once */
  batch: number
  /** the next batch starts once the last is dispatchable, or after this long */
  batchTimeoutMs: number
}

/**
 * Starts the donors `pacing.batch` at a time, the next batch once the last
 * one logged its reservations (or `batchTimeoutMs` passed), so 2 cores are not
 * swamped by dozens of Node start-ups at once.
 */
export async function spawnInBatches (order: SpawnHost[], pacing: SpawnPacing, start: (h: SpawnHost) => DonorNode): Promise<{ donors: MeshDonor[], firstSpawn: number, lastSpawn: number }> {
  const donors: MeshDonor[] = []
  const firstSpawn = Date.now()
  const batches = Math.ceil(order.length / pacing.batch)
  for (let b = 0; b < batches; b++) {
    const batch = order.slice(b * pacing.batch, (b + 1) * pacing.batch).map((h): MeshDonor => ({ node: start(h), site: h.site, nat: h.nat, batch: b, relaysReserved: new Map<string, number>() }))
    donors.push(...batch)
    const t = Date.now()
    await waitReserved(batch, pacing.batchTimeoutMs)
    const missing = batch.filter(d => d.reservedAt == null).map(d => d.node.name)
    progress(`batch ${b + 1}/${batches}: ${batch.length - missing.length}/${batch.length} dispatchable in ${Date.now() - t} ms${missing.length > 0 ? ` (not: ${missing.join(', ')})` : ''}`)
  }
  // a last look for late reservations (donors of a timed-out batch may have made it since)
  await waitReserved(donors, 5_000)
  return { donors, firstSpawn, lastSpawn: Math.max(...donors.map(d => d.node.startedAt)) }
}

/**
 * Each donor's own `status` (authoritative: does it hold a reservation now?),
 * up to 3 looks 2 s apart, 4 donors at a time. Returns one explanation per
 * donor that is not dispatchable: its state, bootstrap, failed dials and
 * stderr tail.
 */
export async function checkDispatchable (lab: Lab, donors: MeshDonor[]): Promise<string[]> {
  const explain: string[] = []
  await pool(donors, 4, async (d) => {
    // a reservation can be lost and re-made under load (a ping that times out drops the connection)
    for (let i = 0; i < 3; i++) {
      if (i > 0) await sleep(2_000)
      try {
        d.status = await statusOf(lab, d.node)
      } catch (err) {
        // a saturated machine: the `status` CLI itself may not finish in time; that is a finding, not the end of the run
        d.status = undefined
        d.statusError = (err as Error).message.split('\n')[0]
        continue
      }
      d.peerId ??= d.status?.peerId
      if (d.status != null && d.status.relays.length > 0) {
        for (const r of d.status.relays) if (!d.relaysReserved.has(r.peerId)) d.relaysReserved.set(r.peerId, Date.parse(r.since))
        // the first reservation is the log's (the status shows the current one, which may be a later re-reservation)
        d.reservedAt ??= Math.min(...d.status.relays.map(r => Date.parse(r.since)))
        return
      }
    }
    explain.push(await whyNotDispatchable(lab, d))
  })
  return explain
}

async function whyNotDispatchable (lab: Lab, d: MeshDonor): Promise<string> {
  const why: string[] = [`${d.node.name} (${d.site}, ${d.nat}): ${d.node.proc.running() ? 'running' : `exited ${String((await d.node.proc.exited).code)}`}, ${d.reservedAt != null ? `had a reservation ${d.reservedAt - d.node.startedAt} ms after spawn and lost it` : 'never reserved'}`]
  if (d.status != null) why.push(`bootstrap ${JSON.stringify(d.status.bootstrap.map(b => ({ addr: b.addr, state: b.state, failures: b.failures, lastError: b.lastError })))}`)
  else why.push(`status did not answer${d.statusError != null ? ` (${d.statusError})` : ''}`)
  if (d.node.proc.running()) {
    try {
      const dials = await dialsOf(lab, d.node)
      why.push(...dials.attempts.filter(a => a.outcome !== 'success').slice(-5).map(describeAttempt))
    } catch (err) {
      why.push(`dials failed: ${(err as Error).message}`)
    }
  }
  why.push(`stderr tail: ${tail(d.node.proc.stderr(), 8)}`)
  return why.join('; ')
}

export interface StartupFigures {
  /** reached a reservation (its time from the donor's log) and held one at the check */
  dispatchable: MeshDonor[]
  everReserved: MeshDonor[]
  bothRelays: MeshDonor[]
  /** first spawn → the last dispatchable donor's first reservation, ms (NaN: none) */
  allDispatchableMs: number
  /** last spawn → the last dispatchable donor's first reservation, ms (NaN: none) */
  afterLastSpawnMs: number
  /** each dispatchable donor's spawn → first reservation, ms */
  perDonor: number[]
  /** per donor, how many other donors it holds a connection to (gossip mesh, direct upgrades) */
  donorLinks: number[]
}

export function startupFigures (donors: MeshDonor[], firstSpawn: number, lastSpawn: number): StartupFigures {
  const dispatchable = donors.filter(d => d.reservedAt != null && d.status != null && d.status.relays.length > 0)
  const donorPeers = new Set(donors.map(d => d.peerId).filter((p): p is string => p != null))
  const lastReserved = dispatchable.length > 0 ? Math.max(...dispatchable.map(d => d.reservedAt as number)) : NaN
  const f: StartupFigures = {
    dispatchable,
    everReserved: donors.filter(d => d.reservedAt != null),
    bothRelays: donors.filter(d => d.relaysReserved.size >= 2),
    allDispatchableMs: lastReserved - firstSpawn,
    afterLastSpawnMs: lastReserved - lastSpawn,
    perDonor: dispatchable.map(d => (d.reservedAt as number) - d.node.startedAt),
    donorLinks: donors.map(d => new Set((d.status?.connections ?? []).filter(c => donorPeers.has(c.peerId)).map(c => c.peerId)).size)
  }
  progress(`${dispatchable.length}/${donors.length} dispatchable at the check, ${f.everReserved.length} ever (${f.bothRelays.length} on both relays); all within ${f.allDispatchableMs} ms of the first spawn, ${f.afterLastSpawnMs} ms of the last; per donor ${fmt(summarize(f.perDonor), 'ms')}`)
  return f
}

/** Waits (up to `timeoutMs`) until the broker's log shows it found every dispatchable donor as an executor. */
export async function waitBrokerKnows (brokerLog: string, dispatchable: MeshDonor[], timeoutMs = 60_000): Promise<{ known: Set<string>, knownAt: number, unknown: string[] }> {
  const deadline = Date.now() + timeoutMs
  let known = executorsFound(brokerLog)
  while (Date.now() < deadline && dispatchable.some(d => !known.has(d.peerId as string))) {
    await sleep(500)
    known = executorsFound(brokerLog)
  }
  return { known, knownAt: Date.now(), unknown: dispatchable.filter(d => !known.has(d.peerId as string)).map(d => d.node.name) }
}

/**
 * The run's folder (logs, data dirs), removed by `cleanup` once the run
 * completed, kept when it did not (the logs are the evidence) or when
 * WC_SCALE_KEEP=1 asks.
 */
export function runFolder (bench: string, cleanup: Cleanup): { runRoot: string, runDir: string, completed: () => void } {
  const runRoot = mkdtempSync(join(tmpdir(), `wc-bench-${bench}-`))
  let done = false
  cleanup.add('remove the run folder', () => {
    if (process.env.WC_SCALE_KEEP === '1' || !done) process.stderr.write(`${bench}: run folder kept (logs, data dirs): ${runRoot}\n`)
    else rmSync(runRoot, { recursive: true, force: true })
  })
  const runDir = join(runRoot, 'run')
  mkdirSync(runDir, { recursive: true })
  return { runRoot, runDir, completed: () => { done = true } }
}

/**
 * The kernel's UDP counters of a lab host's namespace (/proc/net/snmp is per
 * network namespace): datagrams dropped because the socket's receive buffer
 * was full (`RcvbufErrors`) say that a process read its QUIC socket too late.
 */
export async function udpCounters (lab: Lab, host: string): Promise<Record<string, number> | string> {
  const res = await lab.run(host, ['cat', '/proc/net/snmp'], { timeoutMs: 10_000 })
  const lines = res.stdout.split('\n').filter(l => l.startsWith('Udp:'))
  if (res.code !== 0 || lines.length < 2) return `unreadable (exit ${String(res.code)}): ${res.stderr.trim().slice(0, 200)}`
  const names = lines[0].split(/\s+/).slice(1)
  const values = lines[1].split(/\s+/).slice(1).map(Number)
  return Object.fromEntries(names.map((n, i) => [n, values[i]]))
}

/** Stops every daemon, then the relays (SIGTERM, 10 s grace), then tears the lab down; what was left behind, and each relay's UDP counters just before. */
export async function stopMesh (lab: Lab, daemons: DonorNode[], relays: RelayNode[]): Promise<{ td: TeardownReport, badExits: Array<[string, number | null]>, leftNs: string[], relayUdp: Record<string, Record<string, number> | string> }> {
  const relayUdp: Record<string, Record<string, number> | string> = {}
  for (const r of relays) relayUdp[r.host] = await udpCounters(lab, r.host).catch((err: Error) => `unreadable: ${err.message}`)
  const exitCodes: Record<string, number | null> = {}
  await Promise.all(daemons.map(async n => { exitCodes[n.name] = await n.proc.stop(10_000) }))
  await Promise.all(relays.map(async r => { exitCodes[r.host] = await r.proc.stop(10_000) }))
  const td = await lab.teardown()
  return { td, badExits: Object.entries(exitCodes).filter(([, c]) => c !== 0), leftNs: namespacesWithPrefix(lab.prefix), relayUdp }
}

/** Each daemon's log length now: where a later `linesSince` starts reading. */
export function logMarks (nodes: DonorNode[]): Map<string, number> {
  return new Map(nodes.map(n => [n.name, readFileSync(n.logFile, 'utf8').length]))
}

/** Per daemon, how many times `pattern` occurs in its log between `from` (its start when absent) and `to` (its end when absent). */
export function countInLogs (nodes: DonorNode[], pattern: RegExp, from?: Map<string, number>, to?: Map<string, number>): number[] {
  return nodes.map(n => [...readFileSync(n.logFile, 'utf8').slice(from?.get(n.name) ?? 0, to?.get(n.name)).matchAll(new RegExp(pattern.source, 'g'))].length)
}

/** `relay1 InDatagrams 123, RcvbufErrors 0, …` for a note. */
export function udpText (perHost: Record<string, Record<string, number> | string>): string {
  return Object.entries(perHost).map(([h, c]) => typeof c === 'string' ? `${h} ${c}` : `${h} ${['InDatagrams', 'OutDatagrams', 'RcvbufErrors', 'SndbufErrors', 'InErrors'].map(k => `${k} ${String(c[k])}`).join(', ')}`).join('; ')
}
