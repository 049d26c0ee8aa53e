/**
 * The relay side of the scale benchmarks (bench/relay-scale.ts,
 * bench/scale-model.ts): one real `worldcompute relay` process on 127.0.0.1
 * and lightweight clients (bench/lib/light-reservers.ts) in a few client
 * processes, climbing a ladder of held reservations (e.g. 10 → 1,000 →
 * 10,000). At each rung: the relay's CPU over an idle window (from
 * /proc/<pid>/stat: nothing but the held reservations is happening), its
 * RSS, and the time of new reservations taken one at a time while the rung's
 * reservations are held (dial + Noise + yamux + RESERVE until the relay's OK).
 */
import { fork, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { DEFAULT_PING_INTERVAL_MS } from '../../src/donor/reservation-manager.ts'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { CLK_TCK, parseStat } from './proc-cpu.ts'
import { cleanEnv, firstJsonLine, readMem, spawnProc, type Proc } from './proc-mem.ts'
import { progress, within, type Cleanup } from './report.ts'
import { num } from './stats.ts'
import type { LightReply, LightRequest } from './light-reservers.ts'

/** WC_BENCH_RELAY_BIN: another build's bin/worldcompute, to measure it against this one on the same machine */
const OWN_BIN = fileURLToPath(new URL('../../bin/worldcompute', import.meta.url))
const BIN = process.env.WC_BENCH_RELAY_BIN ?? OWN_BIN
const NODE = fileURLToPath(new URL('../../node_modules/.bin/node', import.meta.url))
const CLIENT = fileURLToPath(new URL('./light-reservers.ts', import.meta.url))
/** clients per client process: 10,000 over 4 processes */
const PER_PROCESS = 2_500
/**
 * reservations in flight while climbing, over all client processes: js-libp2p
 * upgrades at most maxIncomingPendingConnections (10) inbound connections at once
 */
const CLIMB_CONCURRENCY = 8

export interface RungResult {
  /** reservations the clients hold at this rung (confirmed open connections) */
  held: number
  /** relay CPU over the idle window, ms per second */
  cpuMsPerS: number
  idleMs: number
  /** relay VmRSS at the end of the idle window, MB */
  rssMb: number
  /** times of the reservations taken while climbing to this rung (CLIMB_CONCURRENCY at once), ms */
  climbMs: number[]
  /** times of new reservations taken one at a time with the rung held, ms */
  probeMs: number[]
  failed: number
  errors: string[]
  /** RSS of the client processes, MB */
  clientRssMb: number[]
  /** the clients' watchdog pings so far, and how many went unanswered within 2 s (first client process) */
  watchdog: { pings: number, failures: number }
}

export interface LadderInit {
  dir: string
  rungs: readonly number[]
  idleMs: number
  probes: number
  cleanup: Cleanup
  /** extra `worldcompute relay` flags */
  relayArgs?: readonly string[]
  /** each client's watchdog ping interval, as a donor's; 0 for none @default DEFAULT_PING_INTERVAL_MS (15 s) */
  watchdogMs?: number
  /** extra environment of the relay, e.g. NODE_OPTIONS=--cpu-prof to profile it */
  relayEnv?: Record<string, string>
}

interface Client { child: ChildProcess, held: number, rssKb: number }

export interface Ladder { relayPid: number, relayArgs: string[], watchdogMs: number, rungs: Array<{ n: number, result: RungResult }> }

/** Starts the relay, climbs the rungs, stops everything (through `cleanup` too, if it throws). */
export async function climbRelayLadder (init: LadderInit): Promise<Ladder> {
  const top = Math.max(...init.rungs) + init.probes * init.rungs.length
  const relayArgs = ['relay', '--data-dir', join(init.dir, 'relay'), '--json', '--listen', '/ip4/127.0.0.1/tcp/0', '--no-stun',
    // no address exempt, so the per-IP accounting runs as on a public relay; the per-IP limits raised
    // above the ladder's top instead (the clients come from 127.x.y.z, up to 250 per /24 but each its own IP)
    '--per-ip-exempt', 'none', '--max-reservations', String(top + 100), '--max-reservations-per-ip', String(top + 100),
    '--max-connections-per-ip', String(top + 100), ...(init.relayArgs ?? [])]
  const relay = spawnProc(BIN, relayArgs, { env: cleanEnv(init.relayEnv), logFile: join(init.dir, 'relay.log') })
  init.cleanup.add(`stop relay (pid ${relay.pid})`, async () => { await relay.stop() })
  const addr = await relayAddr(relay)
  const clients: Client[] = []
  const rungs: Ladder['rungs'] = []
  try {
    for (const n of init.rungs) {
      rungs.push({ n, result: await rung(n, addr, relay, clients, init) })
    }
  } finally {
    for (const c of clients) if (c.child.connected) c.child.disconnect()
    await relay.stop()
  }
  return { relayPid: relay.pid, relayArgs: relayArgs.slice(1), watchdogMs: init.watchdogMs ?? DEFAULT_PING_INTERVAL_MS, rungs }
}

async function relayAddr (relay: Proc): Promise<string> {
  const info = await firstJsonLine<{ peerId: string, listenAddrs: string[] }>(relay, 'relay', 30_000)
  const tcp = info.listenAddrs.find(a => a.startsWith('/ip4/127.0.0.1/tcp/'))
  if (tcp == null) throw new Error(`relay listens on no 127.0.0.1 TCP address: ${info.listenAddrs.join(' ')}`)
  return tcp.includes('/p2p/') ? tcp : `${tcp}/p2p/${info.peerId}`
}

function cpuTicks (pid: number): number {
  return parseStat(readFileSync(`/proc/${pid}/stat`, 'utf8')).self
}

async function rung (n: number, addr: string, relay: Proc, clients: Client[], init: LadderInit): Promise<RungResult> {
  const have = clients.reduce((s, c) => s + c.held, 0)
  const climb = await climbTo(n, have, addr, clients, init)
  progress(`relay ladder: ${clients.reduce((s, c) => s + c.held, 0)} reservations held (${climb.failed} failed); idling ${init.idleMs / 1000} s`)
  const t0 = Date.now()
  const c0 = cpuTicks(relay.pid)
  await new Promise(resolve => setTimeout(resolve, init.idleMs))
  const cpuMs = (cpuTicks(relay.pid) - c0) * 1000 / CLK_TCK
  const idleMs = Date.now() - t0
  const rssMb = readMem(relay.pid).rssKb / 1024
  // the probes: one at a time, from the first client process, with the rung held
  const probe = await ask(clients[0], { type: 'reserve', count: init.probes, concurrency: 1 }, init.probes * 30_000)
  clients[0].held = probe.held
  return {
    held: clients.reduce((s, c) => s + c.held, 0) - probe.ms.length,
    cpuMsPerS: cpuMs / (idleMs / 1000),
    idleMs,
    rssMb,
    climbMs: climb.ms,
    probeMs: probe.ms,
    failed: climb.failed + probe.failed,
    errors: [...climb.errors, ...probe.errors].slice(0, 5),
    clientRssMb: clients.map(c => c.rssKb / 1024),
    watchdog: { pings: probe.watchdogPings, failures: probe.watchdogFailures }
  }
}

/** Adds reservations until `n` are held, spread over client processes of at most PER_PROCESS each. */
async function climbTo (n: number, have: number, addr: string, clients: Client[], init: LadderInit): Promise<{ ms: number[], failed: number, errors: string[] }> {
  const out = { ms: [] as number[], failed: 0, errors: [] as string[] }
  let missing = n - have
  while (clients.length * PER_PROCESS < n) clients.push(startClient(addr, clients.length, init))
  const jobs: Array<Promise<void>> = []
  const share = Math.max(1, Math.floor(CLIMB_CONCURRENCY / clients.length))
  for (const c of clients) {
    const count = Math.min(missing, Math.max(0, PER_PROCESS - c.held))
    if (count === 0) continue
    missing -= count
    jobs.push(ask(c, { type: 'reserve', count, concurrency: share }, 30 * 60_000).then((r) => {
      c.held = r.held
      out.ms.push(...r.ms)
      out.failed += r.failed
      out.errors.push(...r.errors)
    }))
  }
  await Promise.all(jobs)
  return out
}

function startClient (addr: string, index: number, { cleanup, watchdogMs }: LadderInit): Client {
  const child = fork(CLIENT, [addr, String(index), String(watchdogMs ?? DEFAULT_PING_INTERVAL_MS)], { execPath: NODE, env: cleanEnv(), stdio: ['ignore', 'ignore', 'inherit', 'ipc'] })
  cleanup.add(`stop client process ${index}`, () => { if (child.connected) child.disconnect(); child.kill() })
  return { child, held: 0, rssKb: 0 }
}

async function ask (c: Client, req: LightRequest, ms: number): Promise<Extract<LightReply, { type: 'reserved' }>> {
  const reply = new Promise<LightReply>((resolve, reject) => {
    c.child.once('message', resolve)
    c.child.once('exit', (code) => { reject(new Error(`client process exited (code ${String(code)}) during a request`)) })
  })
  c.child.send(req)
  const r = await within(`${req.count} reservations`, ms, reply)
  if (r.type === 'fatal') throw new Error(`client process: ${r.error}`)
  c.rssKb = r.rssKb
  return r
}

/** p-th percentile (nearest rank) of a list of numbers; NaN when empty. */
export function percentile (values: readonly number[], p: number): number {
  if (values.length === 0) return NaN
  const s = [...values].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p / 100 * s.length) - 1))]
}

export function rungNote (n: number, r: RungResult): string {
  const climb = r.climbMs.length > 0 ? `climbing to it ${r.climbMs.length} reservations, p50 ${num(percentile(r.climbMs, 50))} ms, p99 ${num(percentile(r.climbMs, 99))} ms; ` : ''
  return `${n.toLocaleString('en-US')}: ${r.held} held; idle CPU ${num(r.cpuMsPerS)} ms/s over ${Math.round(r.idleMs / 1000)} s; RSS ${num(r.rssMb)} MB; ${climb}${r.probeMs.length} new ones one at a time: p50 ${num(percentile(r.probeMs, 50))} ms, p99 ${num(percentile(r.probeMs, 99))} ms; ${r.failed} failed${r.errors.length > 0 ? ` (${r.errors.slice(0, 2).join(' | ')})` : ''}; client processes ${r.clientRssMb.map(m => num(m)).join('/')} MB; watchdog pings (first client process, so far) ${r.watchdog.pings}, unanswered within 2 s ${r.watchdog.failures}`
}

export function ladderNotes (ladder: Ladder, idleMs: number): string[] {
  return [
    `One \`${BIN === OWN_BIN ? 'worldcompute' : BIN} ${ladder.relayArgs.join(' ')}\` (default limits otherwise; no address exempt from the per-IP accounting, its limits above the ladder). Clients: bench/lib/light-reservers.ts, each one TCP connection from its own 127.x.y.z address (the relay's per-host connection rate limit), js-libp2p's TCP transport, multistream-select, Noise XX with its own Ed25519 identity, yamux, one hop stream RESERVE → STATUS OK; they answer the relay's pings, refuse other protocols (identify), keep yamux's 30 s keep-alive and, like a donor's reservation watchdog, send a yamux ping frame every ${ladder.watchdogMs} ms. Not full libp2p nodes: one of those is ~1.5 MB in a client process (bench/memory.ts), 15 GB for 10,000. Nor gossipsub: a real donor's gossip with its relay is not in these figures.`,
    `Per rung: reservations added ${CLIMB_CONCURRENCY} at a time until the rung is held, then the relay's utime+stime from /proc/<pid>/stat over an idle window of ${idleMs / 1000} s (the relay checks each connection once a minute, spread over the minute: a 60 s window holds one full round), VmRSS at its end, then new reservations one at a time with the rung held.`,
    ...ladder.rungs.map(({ n, result }) => rungNote(n, result))
  ]
}
