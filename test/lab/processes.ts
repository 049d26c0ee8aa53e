/**
 * The real `bin/worldcompute` relay and daemon processes, run inside lab
 * hosts with `ip netns exec`, and the CLI calls that ask them what they are
 * doing. A daemon's local API listens on 127.0.0.1 of its own namespace, so
 * every `status` / `dials` / `job submit` runs inside that namespace too.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { labEnv, type Lab, type LabProcess } from './topology.ts'
import type { DaemonStatus, DialAttempt } from '../../src/core/types.ts'
import type { JobView } from '../../src/core/job.ts'
import type { DialsResponse } from '../../src/api/routes.ts'

/** the CLI under test; WC_LAB_BIN points the lab at another checkout's bin/worldcompute (e.g. to compare builds) */
export const BIN = process.env.WC_LAB_BIN != null && process.env.WC_LAB_BIN !== ''
  ? process.env.WC_LAB_BIN
  : fileURLToPath(new URL('../../bin/worldcompute', import.meta.url))
/** the pinned Node 24 (the system Node may be 20) */
export const NODE = fileURLToPath(new URL('../../node_modules/.bin/node', import.meta.url))

/** Extra environment for every worldcompute process of the lab, e.g. WC_LAB_LOG=info,net=debug. */
function wcEnv (): NodeJS.ProcessEnv {
  const log = process.env.WC_LAB_LOG
  return labEnv(log != null && log !== '' ? { WORLDCOMPUTE_LOG: log } : {})
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

export interface RelayNode {
  host: string
  dataDir: string
  logFile: string
  listen: string[]
  peerId: string
  announceAddrs: string[]
  /** bootstrap multiaddrs (with /p2p/<relay>), per transport; `wss` when started with `tls` */
  addr: { tcp: string, quic: string, ws: string, wss?: string }
  proc: LabProcess
  /** from spawn to the JSON start-up line, ms */
  readyMs: number
  /** the certificate it serves WebSocket over TLS with, if any (kept across a restart) */
  tls?: { cert: string, key: string }
}

export interface DonorNode {
  name: string
  host: string
  dataDir: string
  logFile: string
  args: string[]
  proc: LabProcess
  /** Date.now() at spawn */
  startedAt: number
}

function withPeer (addr: string, peerId: string): string {
  return addr.includes('/p2p/') ? addr : `${addr}/p2p/${peerId}`
}

/**
 * The relay: TCP and QUIC on 4001 and plain WebSocket on 443, announcing the
 * same. With `tls` (a certificate naming the relay's IP), WebSocket over TLS
 * takes 443 and plain WebSocket moves to 80, as README's "relay on 443" does.
 */
export async function startRelay (lab: Lab, host: string, runDir: string, opts: { dataDir?: string, logFile?: string, tls?: { cert: string, key: string }, /** more `worldcompute relay` arguments, e.g. --public-range */ args?: string[], /** more environment, e.g. NODE_OPTIONS for a CPU profile */ env?: Record<string, string> } = {}): Promise<RelayNode> {
  const ip = lab.ip(host)
  const listen = opts.tls != null
    ? [`/ip4/${ip}/tcp/4001`, `/ip4/${ip}/udp/4001/quic-v1`, `/ip4/${ip}/tcp/80/ws`, `/ip4/${ip}/tcp/443/tls/ws`]
    : [`/ip4/${ip}/tcp/4001`, `/ip4/${ip}/udp/4001/quic-v1`, `/ip4/${ip}/tcp/443/ws`]
  const dataDir = opts.dataDir ?? join(runDir, host)
  const logFile = opts.logFile ?? join(runDir, `${host}.log`)
  mkdirSync(runDir, { recursive: true })
  const args = ['relay', '--data-dir', dataDir, '--json', ...listen.flatMap(a => ['--listen', a]), ...listen.flatMap(a => ['--announce', a]),
    ...(opts.tls != null ? ['--tls-cert', opts.tls.cert, '--tls-key', opts.tls.key] : []), ...(opts.args ?? [])]
  const proc = lab.exec(host, [BIN, ...args], { env: { ...wcEnv(), ...opts.env }, logFile })
  const deadline = Date.now() + 30_000
  let info: { peerId: string, announceAddrs: string[] } | undefined
  while (Date.now() < deadline && info == null) {
    const line = proc.stdoutLines.find(l => l.startsWith('{'))
    if (line != null) info = JSON.parse(line)
    else if (!proc.running()) break
    else await sleep(50)
  }
  if (info == null) throw new Error(`relay on ${host} printed no JSON start-up line within 30 s (running: ${proc.running()}); stderr:\n${tail(proc.stderr())}`)
  const peerId = info.peerId
  const find = (re: RegExp): string => {
    const a = info.announceAddrs.find(x => x.startsWith(`/ip4/${ip}/`) && re.test(x))
    if (a == null) throw new Error(`relay announces no ${String(re)} address on ${ip}: ${info.announceAddrs.join(' ')}`)
    return withPeer(a, peerId)
  }
  return {
    host,
    dataDir,
    logFile,
    listen,
    peerId,
    announceAddrs: info.announceAddrs,
    addr: opts.tls != null
      ? { tcp: find(/\/tcp\/4001(\/p2p\/|$)/), quic: find(/\/quic-v1/), ws: find(/\/tcp\/80\/ws/), wss: find(/\/tcp\/443\/tls\/ws/) }
      : { tcp: find(/\/tcp\/4001(\/p2p\/|$)/), quic: find(/\/quic-v1/), ws: find(/\/tcp\/443\/ws/) },
    proc,
    readyMs: Date.now() - proc.startedAt,
    ...(opts.tls != null ? { tls: opts.tls } : {})
  }
}

/** Stops the relay (SIGTERM) and starts it again with the same data directory, so the same PeerId. */
export async function restartRelay (lab: Lab, relay: RelayNode, runDir: string, downMs = 0): Promise<{ relay: RelayNode, stopMs: number, exitCode: number | null }> {
  const t0 = Date.now()
  const exitCode = await relay.proc.stop(10_000)
  const stopMs = Date.now() - t0
  if (downMs > 0) await sleep(downMs)
  const again = await startRelay(lab, relay.host, runDir, { dataDir: relay.dataDir, logFile: relay.logFile, ...(relay.tls != null ? { tls: relay.tls } : {}) })
  if (again.peerId !== relay.peerId) throw new Error(`restarted relay has a new PeerId ${again.peerId} (was ${relay.peerId})`)
  return { relay: again, stopMs, exitCode }
}

/** A relay-only donor daemon. */
export function startDonor (lab: Lab, host: string, runDir: string, opts: { name?: string, bootstrap: string[], noExecute?: boolean, extraListen?: string[], args?: string[], env?: Record<string, string> }): DonorNode {
  const name = opts.name ?? host
  const dataDir = join(runDir, name)
  const logFile = join(runDir, `${name}.log`)
  mkdirSync(runDir, { recursive: true })
  const args = [
    'daemon', '--data-dir', dataDir, '--api-port', '0',
    '--listen', '/p2p-circuit', ...(opts.extraListen ?? []).flatMap(a => ['--listen', a]),
    ...opts.bootstrap.flatMap(a => ['--bootstrap', a]),
    ...(opts.noExecute === true ? ['--no-execute'] : []),
    ...(opts.args ?? [])
  ]
  const proc = lab.exec(host, [BIN, ...args], { env: { ...wcEnv(), ...opts.env }, logFile })
  return { name, host, dataDir, logFile, args, proc, startedAt: proc.startedAt }
}

/** Runs `worldcompute <args> --data-dir <donor> --json` inside the donor's namespace and parses stdout. */
export async function cliJson<T> (lab: Lab, donor: DonorNode, args: string[], timeoutMs = 20_000): Promise<{ code: number | null, value?: T, stdout: string, stderr: string, ms: number }> {
  const res = await lab.run(donor.host, [BIN, ...args, '--data-dir', donor.dataDir, '--json'], { env: wcEnv(), timeoutMs })
  let value: T | undefined
  try {
    value = res.stdout.trim() !== '' ? JSON.parse(res.stdout) as T : undefined
  } catch {
    value = undefined
  }
  return { code: res.code, value, stdout: res.stdout, stderr: res.stderr, ms: res.ms }
}

export async function statusOf (lab: Lab, donor: DonorNode): Promise<DaemonStatus | undefined> {
  const res = await cliJson<DaemonStatus>(lab, donor, ['status'])
  return res.code === 0 ? res.value : undefined
}

export async function dialsOf (lab: Lab, donor: DonorNode): Promise<DialsResponse> {
  const res = await cliJson<DialsResponse>(lab, donor, ['dials', '--limit', '500'])
  if (res.code !== 0 || res.value == null) throw new Error(`worldcompute dials failed on ${donor.name} (${String(res.code)}): ${res.stderr}`)
  return res.value
}

export interface Dispatchable {
  status: DaemonStatus
  /** from process start to the reservation being granted (the reservation's `since`), ms */
  ms: number
  /** from process start to our poll seeing it, ms (an upper bound; each poll is a CLI process) */
  seenMs: number
  /** from the daemon's own `startedAt` (after Node and module loading) to the reservation, ms */
  sinceDaemonStartMs: number
  transport: string
}

/**
 * Polls `status --json` until the donor holds a relay reservation (granted
 * at or after `after`, when given). Bounded by `timeoutMs`; fails early if the
 * daemon exits.
 */
export async function waitDispatchable (lab: Lab, donor: DonorNode, opts: { timeoutMs?: number, after?: number, relayPeerId?: string } = {}): Promise<Dispatchable> {
  const timeoutMs = opts.timeoutMs ?? 30_000
  const from = opts.after ?? donor.startedAt
  const deadline = Date.now() + timeoutMs
  let last: DaemonStatus | undefined
  while (Date.now() < deadline) {
    if (!donor.proc.running()) throw new Error(`daemon ${donor.name} exited (${String((await donor.proc.exited).code)}) before becoming dispatchable; stderr:\n${tail(donor.proc.stderr())}`)
    const s = await statusOf(lab, donor).catch(() => undefined)
    if (s != null) {
      last = s
      const r = s.relays.find(x => (opts.relayPeerId == null || x.peerId === opts.relayPeerId) && Date.parse(x.since) >= from)
      if (r != null) return { status: s, ms: Date.parse(r.since) - from, seenMs: Date.now() - from, sinceDaemonStartMs: Date.parse(r.since) - Date.parse(s.startedAt), transport: r.transport }
    }
    await sleep(200)
  }
  throw new Error(`daemon ${donor.name} was not dispatchable within ${timeoutMs} ms; last status: ${JSON.stringify(last?.bootstrap ?? null)}; stderr:\n${tail(donor.proc.stderr())}`)
}

export interface JobRun {
  view: JobView
  /** wall time of `job submit` (includes one CLI start-up), ms */
  ms: number
  code: number | null
  stderr: string
}

/** `job submit MODULE --input FILE --json` from the donor; waits for the answer, bounded. */
export async function submitJob (lab: Lab, donor: DonorNode, modulePath: string, input: string, runDir: string, timeoutMs = 60_000): Promise<JobRun> {
  const inputFile = join(runDir, `input-${Date.now()}.txt`)
  writeFileSync(inputFile, input)
  const res = await cliJson<JobView>(lab, donor, ['job', 'submit', modulePath, '--input', inputFile], timeoutMs)
  if (res.value == null) throw new Error(`job submit on ${donor.name} printed no JSON (exit ${String(res.code)}): ${res.stderr}`)
  return { view: res.value, ms: res.ms, code: res.code, stderr: res.stderr }
}

const endOf = (a: DialAttempt): number => Date.parse(a.ts) + a.duration_ms

/**
 * Dial attempts that are not explained:
 * - a failure without a phase or a cause;
 * - a cancellation without a phase or a cause, or one that no winner explains:
 *   "cancelled (another attempt won …)" must coincide with a successful dial
 *   to the same peer that ended while it ran (or within 2 s of its end).
 *   Otherwise it was something else — typically a timeout — mislabelled.
 */
export function unexplainedFailures (attempts: DialAttempt[]): DialAttempt[] {
  const missing = (a: DialAttempt): boolean => typeof a.cause !== 'string' || a.cause.trim() === '' || typeof a.phase !== 'string' || a.phase.trim() === ''
  const wins = attempts.filter(a => a.outcome === 'success' && a.phase !== 'reservation')
  return attempts.filter(a => {
    if (a.outcome === 'failure') return missing(a)
    if (a.outcome !== 'cancelled') return false
    if (missing(a)) return true
    const start = Date.parse(a.ts)
    const end = endOf(a)
    return !wins.some(w => w.peerId === a.peerId && w !== a && endOf(w) >= start && endOf(w) <= end + 2_000)
  })
}

/** Bootstrap addresses that have no dial record at all (an attempt that left no trace), among `expected`. */
export function unrecordedTargets (attempts: DialAttempt[], expected: string[]): string[] {
  return expected.filter(addr => !attempts.some(a => a.target === addr && a.phase !== 'reservation'))
}

export function describeAttempt (a: DialAttempt): string {
  return `${a.ts} ${a.purpose} ${a.transport} ${a.target} → ${a.outcome} at ${a.phase || '(no phase)'} after ${a.duration_ms} ms: ${a.cause || '(no cause)'} [${a.code}]`
}

/** The log lines of a process that look like warnings or errors (text log format). */
export function problemLines (text: string): string[] {
  return text.split('\n').filter(l => /^\S*\s*(WARN|ERROR)\b|\b(WARN|ERROR)\s/.test(l))
}

export function tail (text: string, lines = 30): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n')
}
