/**
 * One cell of the direct-path matrix: two relays on the lab's internet (two
 * IPs, so the donors' STUN probe can tell address dependence), a submitting
 * donor behind NAT kind A and an executing donor behind kind B, both
 * relay-only; a warm-up job makes the submitter's broker hear the executor,
 * and from then the submitter's status is polled until it holds a direct
 * connection to the executor, or its direct-path view says it gave up (a
 * skip for a reason that is not "not measured yet", or two failed WebRTC
 * dials), or `waitMs` passes. Shared by bench/nat-matrix.ts (the full matrix)
 * and test/lab/nat-matrix.test.ts (the pairs that must go direct).
 */
import { join } from 'node:path'
import { dialsOf, startDonor, startRelay, statusOf, submitJob, tail, waitDispatchable, type DonorNode, type RelayNode } from './processes.ts'
import { buildTopology, type Lab, type NatKind } from './topology.ts'
import type { DaemonStatus } from '../../src/core/types.ts'

/** the lab's "internet" is TEST-NET, which js-libp2p calls private: declared public so public addresses count */
export const LAB_PUBLIC = ['--public-range', '198.51.100.0/24', '--public-range', '192.0.2.0/24', '--public-range', '203.0.113.0/24']

export const PRIMES_MODULE = new URL('../fixtures/wasm/primes.wasm', import.meta.url).pathname

export interface PairOutcome {
  submitter: NatKind
  executor: NatKind
  direct: boolean
  /** the direct connection's transport (webrtc, tcp, quic) */
  transport?: string
  /** from the end of the warm-up job to the direct connection seen in status, ms */
  msToDirect?: number
  /** the submitter's direct-path view of the executor, in words (why it went direct or not) */
  reason: string
  /** the NAT each donor measured: `mapping/filtering` */
  measured: { submitter: string, executor: string }
  /** WebRTC dials the submitter made (upgrade purpose), and how many failed */
  webrtcDials: number
  webrtcFailures: number
  /** the cell could not be measured (a donor never got a reservation, a job failed …) */
  error?: string
}

export interface PairRunOptions {
  runDir: string
  /** the longest wait for a direct connection after the warm-up job @default 30000 */
  waitMs?: number
  /** progress lines */
  log?: (line: string) => void
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

function natText (s: DaemonStatus | undefined): string {
  return `${s?.natMapping ?? '?'}/${s?.natFiltering ?? '?'}`
}

/** Whether the submitter's view of the executor says it stopped trying for now (a decision to report, not a wait). */
function gaveUp (view: NonNullable<DaemonStatus['directPaths']>[number] | undefined, webrtcFailures: number): boolean {
  if (view == null) return false
  if (view.state === 'skipped') return !/not measured yet|not pre-warmed/.test(view.reason)
  return view.state === 'failed' && webrtcFailures >= 2
}

/** Waits for both NAT verdicts (bounded; the cell is reported with `?` otherwise). */
async function natVerdicts (lab: Lab, donors: DonorNode[], timeoutMs: number): Promise<Array<DaemonStatus | undefined>> {
  const deadline = Date.now() + timeoutMs
  let last: Array<DaemonStatus | undefined> = []
  while (Date.now() < deadline) {
    last = await Promise.all(donors.map(async d => await statusOf(lab, d).catch(() => undefined)))
    if (last.every(s => s?.natMapping != null && s.natMapping !== 'unknown')) return last
    await sleep(500)
  }
  return last
}

/** Polls the submitter until it is direct with the executor or gave up; bounded by `waitMs`. */
async function watchUpgrade (lab: Lab, submitter: DonorNode, exec: string, waitMs: number): Promise<Omit<PairOutcome, 'submitter' | 'executor' | 'measured'>> {
  const started = Date.now()
  let last: DaemonStatus | undefined
  let rtc: Array<{ outcome: string }> = []
  while (Date.now() - started < waitMs) {
    last = await statusOf(lab, submitter).catch(() => undefined)
    rtc = (await dialsOf(lab, submitter).catch(() => ({ attempts: [] }))).attempts.filter(a => a.transport === 'webrtc' && a.purpose === 'upgrade')
    const failures = rtc.filter(a => a.outcome === 'failure').length
    const conn = last?.connections.find(c => c.peerId === exec && c.direct && c.transport !== 'circuit')
    const view = last?.directPaths?.find(p => p.peerId === exec)
    if (conn != null) {
      return { direct: true, transport: conn.transport, msToDirect: Date.now() - started, reason: view?.reason ?? 'connected directly (by the other side)', webrtcDials: rtc.length, webrtcFailures: failures }
    }
    if (gaveUp(view, failures)) return { direct: false, reason: view?.reason ?? '?', webrtcDials: rtc.length, webrtcFailures: failures }
    await sleep(500)
  }
  const view = last?.directPaths?.find(p => p.peerId === exec)
  return { direct: false, reason: `no direct connection within ${waitMs} ms; last view: ${view != null ? `${view.state}: ${view.reason}` : 'none'}`, webrtcDials: rtc.length, webrtcFailures: rtc.filter(a => a.outcome === 'failure').length }
}

/** One cell of the matrix, in a topology of its own, torn down before it returns. */
export async function runNatPair (a: NatKind, b: NatKind, opts: PairRunOptions): Promise<PairOutcome> {
  const log = opts.log ?? (() => {})
  const lab = await buildTopology({
    relays: [{ name: 'relay', ip: '198.51.100.10' }, { name: 'relay2', ip: '198.51.100.11' }],
    sites: [{ name: 'sitea', nat: a, hosts: [{ name: 'submitter' }] }, { name: 'siteb', nat: b, hosts: [{ name: 'executor' }] }]
  })
  const relays: RelayNode[] = []
  const donors: DonorNode[] = []
  const outcome: PairOutcome = { submitter: a, executor: b, direct: false, reason: '', measured: { submitter: '?', executor: '?' }, webrtcDials: 0, webrtcFailures: 0 }
  try {
    for (const name of ['relay', 'relay2']) relays.push(await startRelay(lab, name, opts.runDir, { args: LAB_PUBLIC }))
    const bootstrap = relays.flatMap(r => [r.addr.tcp, r.addr.quic, r.addr.ws])
    const listen = (kind: NatKind, host: string): string[] => kind === 'none' ? [`/ip4/${lab.ip(host)}/tcp/4001`, `/ip4/${lab.ip(host)}/udp/4001/quic-v1`] : []
    const submitter = startDonor(lab, 'submitter', opts.runDir, { bootstrap, noExecute: true, extraListen: listen(a, 'submitter'), args: LAB_PUBLIC })
    const executor = startDonor(lab, 'executor', opts.runDir, { bootstrap, extraListen: listen(b, 'executor'), args: LAB_PUBLIC })
    donors.push(submitter, executor)
    await Promise.all(donors.map(async d => await waitDispatchable(lab, d, { timeoutMs: 40_000 })))
    const [s, e] = await natVerdicts(lab, donors, 20_000)
    outcome.measured = { submitter: natText(s), executor: natText(e) }
    const exec = e?.peerId
    if (exec == null) throw new Error('the executor answers no status')
    log(`${a} → ${b}: NATs measured ${outcome.measured.submitter} and ${outcome.measured.executor}; warm-up job`)
    const job = await submitJob(lab, submitter, PRIMES_MODULE, '100000\n', opts.runDir, 60_000)
    if (job.view.status !== 'succeeded') throw new Error(`the warm-up job did not succeed: ${job.view.status} ${job.view.message ?? ''}`)
    Object.assign(outcome, await watchUpgrade(lab, submitter, exec, opts.waitMs ?? 30_000))
  } catch (err) {
    outcome.error = (err as Error).message.split('\n')[0]
    for (const p of [...donors]) log(`--- ${p.name} (${p.logFile}):\n${tail(p.proc.stderr(), 15)}`)
  } finally {
    await Promise.all(donors.map(async d => await d.proc.stop(10_000)))
    await Promise.all(relays.map(async r => await r.proc.stop(10_000)))
    await lab.teardown()
  }
  return outcome
}

export function pairRunDir (root: string, a: NatKind, b: NatKind, attempt: number): string {
  return join(root, `${a}--${b}--${attempt}`)
}
