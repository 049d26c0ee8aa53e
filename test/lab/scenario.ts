/**
 * The shared machinery of the namespace-lab scenarios (issue 6): a run
 * folder, the summary table, and `pairScenario` — a relay (or several) on the
 * lab's "internet", a submitting donor at site A and an executing donor at
 * site B, each relay-only; both must become dispatchable, a job submitted at
 * A must run at B, and every failed dial must say where and why it failed.
 * Each `test/lab/*.test.ts` file builds its scenarios from this.
 *
 * Environment:
 *   WC_LAB_ONLY=cone,relay-restart …   run only these scenarios (keys)
 *   WC_LAB_KEEP=1 …                    keep the run folder (logs, data dirs) even when everything passed
 *   WC_LAB_LOG=info,net=debug …        WORLDCOMPUTE_LOG for every lab process
 */
import assert from 'node:assert/strict'
import { appendFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, describe, type TestContext } from 'node:test'
import { buildTopology, labEnv, labSkipReason, namespacesWithPrefix, RUN_PREFIX, type Lab, type NatKind, type Firewall, type RelaySpec, type SiteSpec, type TeardownReport } from './topology.ts'
import type { DoctorReport } from '../../src/core/doctor.ts'
import {
  BIN, startRelay, startDonor, waitDispatchable, submitJob, dialsOf, statusOf, unexplainedFailures, unrecordedTargets, describeAttempt,
  problemLines, tail, type DonorNode, type RelayNode, type Dispatchable, type JobRun
} from './processes.ts'

export const SKIP = labSkipReason()
const ONLY = (process.env.WC_LAB_ONLY ?? '').split(',').map(s => s.trim()).filter(s => s !== '')

/**
 * Every scenario key of every lab file (`npm run test:lab -- --only <key>`);
 * a file's `scenarioKeys` must only use these, so a typo in WC_LAB_ONLY fails
 * loudly instead of running nothing.
 */
export const SCENARIOS = ['network', 'open', 'cone', 'symmetric', '443-only', 'relay-restart', 'dns-filtered', 'inspecting-firewall', 'proxy-only', 'proxy-socks5', 'nat-type', 'autonat-open', 'relay-failover', 'relay-replace', 'cone-direct', 'cone-symmetric', 'open-direct', 'lan-direct', 'lossy-link', 'slow-link', 'mtu-1280', 'tls-inspecting', 'doctor-open', 'doctor-443-only', 'doctor-symmetric', 'doctor-inspecting-firewall', 'doctor-dns-filtered', 'doctor-proxy-only', 'replicas', 'wpad', 'wpad-pac-flag', 'proxy-ntlm', 'https-poll', 'captive-portal', 'captive-open', 'ipv6-only', 'ipv6-nat64', 'ipv6-dual', 'ipv6-blocked', 'portmap-upnp', 'portmap-natpmp', 'portmap-pcp', 'portmap-granted', 'portmap-refused', 'nat-matrix'] as const
for (const k of ONLY) {
  if (!(SCENARIOS as readonly string[]).includes(k)) throw new Error(`WC_LAB_ONLY: unknown scenario "${k}" (known: ${SCENARIOS.join(', ')})`)
}

/** A file's scenario keys; returns the per-test skip reason (undefined: run it). */
export function scenarioKeys<K extends typeof SCENARIOS[number]> (keys: readonly K[]): (key: K) => string | undefined {
  void keys
  return (key: K) => ONLY.length === 0 || ONLY.includes(key) ? undefined : `not in WC_LAB_ONLY=${ONLY.join(',')}`
}

export const PRIMES = fileURLToPath(new URL('../fixtures/wasm/primes.wasm', import.meta.url))
export const PROBE = fileURLToPath(new URL('./probe.ts', import.meta.url))
export const RUN_ROOT = SKIP == null ? mkdtempSync(join(tmpdir(), `wc-lab-${RUN_PREFIX}`)) : ''
export const TEST_TIMEOUT_MS = 150_000
let anyFailed = false
export function markFailed (): void { anyFailed = true }
if (RUN_ROOT !== '') {
  // an interrupted run (SIGINT/SIGTERM: topology.ts tears down, then exits) leaves no run folder behind either
  process.on('exit', () => {
    if (!anyFailed && process.env.WC_LAB_KEEP !== '1') rmSync(RUN_ROOT, { recursive: true, force: true })
  })
}

export interface Row {
  scenario: string
  dispatchable: string
  time: string
  path: string
  job: string
  /** the doctor's verdict on the executor's network, where the scenario runs it */
  doctor?: string
  lab: string
}
export const rows: Row[] = []

function summaryLines (): string[] {
  const head: Required<Row> = { scenario: 'scenario', dispatchable: 'dispatchable?', time: 'time to dispatchable (uplink)', path: 'path', job: 'job round trip', doctor: 'doctor (executor)', lab: 'netns up / down' }
  const cell = (r: Row, k: keyof Row): string => r[k] ?? '-'
  const all: Row[] = [head, ...rows]
  const keys = Object.keys(head) as Array<keyof Row>
  const width = (k: keyof Row): number => Math.max(...all.map(r => cell(r, k).length))
  const line = (r: Row): string => `| ${keys.map(k => cell(r, k).padEnd(width(k))).join(' | ')} |`
  return [line(head), `|${keys.map(k => '-'.repeat(width(k) + 2)).join('|')}|`, ...rows.map(line)]
}

/**
 * Prints this file's summary table; with WC_LAB_EVIDENCE=DIR also appends it to
 * DIR/summary.md (every lab file runs in its own process), next to the
 * scenarios' evidence bundles.
 */
function printSummary (): void {
  if (rows.length === 0) return
  const lines = summaryLines()
  console.log(['', 'Network-namespace lab summary', ...lines, ''].join('\n'))
  const dir = process.env.WC_LAB_EVIDENCE
  if (dir != null && dir !== '') {
    mkdirSync(dir, { recursive: true })
    appendFileSync(join(dir, 'summary.md'), [...lines, '', ''].join('\n'))
  }
}

export const secs = (ms: number): string => `${(ms / 1000).toFixed(2)} s`

// ---------------------------------------------------------------------------

/** Stops donors before relays (so donors do not log a lost relay during a clean stop), then tears the topology down. */
async function shutdown (lab: Lab, donors: DonorNode[], relays: RelayNode[]): Promise<{ report: TeardownReport, exitCodes: Record<string, number | null>, stragglers: string[] }> {
  const exitCodes: Record<string, number | null> = {}
  await Promise.all(donors.map(async d => { exitCodes[d.name] = await d.proc.stop(10_000) }))
  await Promise.all(relays.map(async r => { exitCodes[r.host] = await r.proc.stop(10_000) }))
  const stragglers = [...donors.map(d => d.proc), ...relays.map(r => r.proc)].flatMap(p => p.stragglers.map(s => `${p.host}: ${s}`))
  const report = await lab.teardown()
  return { report, exitCodes, stragglers }
}

export interface Side {
  nat: NatKind
  firewall?: Firewall
  /** for the `proxy-only` firewall: the one TCP `ip:port` the site may reach */
  proxy?: string
}

export interface PairOptions {
  key: string
  submitter: Side
  executor: Side
  /** both donors are hosts on one LAN, behind the submitter's side (its NAT and firewall); `executor` is then not used */
  sameSite?: boolean
  /** extra direct listen addresses for a donor, given its own IP */
  extraListen?: (ip: string) => string[]
  dispatchTimeoutMs?: number
  /** per donor name, bootstrap addresses that cannot work from its network and must leave a dial record */
  mustExplain?: (relay: RelayNode) => Record<string, string[]>
  /** prefix of the final job's figures in the summary */
  jobLabel?: string
  /**
   * after the job, `worldcompute doctor` runs on the executor's host with the
   * executor's bootstrap list and environment; it must say the executor can
   * donate and write an evidence bundle that validates (default); false: skip
   */
  doctor?: false
  /** more expectations on the doctor's report than "can donate" (e.g. the interceptor's name) */
  doctorExpect?: (report: DoctorReport) => void
  /** between "both dispatchable" and the job */
  during?: (ctx: PairContext) => Promise<void>
  /** relays on the internet (default: one, "relay" at 198.51.100.10); each runs `worldcompute relay` */
  relays?: RelaySpec[]
  /** more `worldcompute relay` arguments for every relay (e.g. --public-range) */
  relayArgs?: string[]
  /** a certificate for a relay (its IP as SAN): it then also listens for WebSocket over TLS on 443 (plain WebSocket on 80) */
  relayTls?: (ctx: { lab: Lab, runDir: string, relay: RelaySpec }) => { cert: string, key: string } | undefined
  /** other internet hosts (proxy, DoH, STUN …) that the scenario starts itself in `beforeDonors` */
  services?: RelaySpec[]
  /** the donors' bootstrap list (default: every relay's TCP, QUIC and WebSocket/443 addresses, in that order) */
  bootstrap?: (relays: RelayNode[], lab: Lab) => string[]
  /** extra environment / arguments per donor */
  donorEnv?: (name: 'submitter' | 'executor', lab: Lab) => Record<string, string>
  donorArgs?: (name: 'submitter' | 'executor', lab: Lab) => string[]
  /** after the relays are up, before the donors start (start a proxy, a DoH server …); may return a clean-up */
  beforeDonors?: (ctx: { t: TestContext, lab: Lab, runDir: string, relays: RelayNode[] }) => Promise<(() => Promise<void>) | undefined>
}

export interface PairContext {
  t: TestContext
  lab: Lab
  runDir: string
  relay: RelayNode
  relays: RelayNode[]
  submitter: DonorNode
  executor: DonorNode
  row: Row
}

function siteSpec (name: string, side: Side, host: string): SiteSpec {
  return { name, nat: side.nat, ...(side.firewall != null ? { firewall: side.firewall } : {}), ...(side.proxy != null ? { proxy: side.proxy } : {}), hosts: [{ name: host }] }
}

function uplinkText (d: Dispatchable): string { return `${secs(d.ms)} (${d.transport})` }

/**
 * The core of every scenario: a relay on the "internet", a submitting donor
 * (--no-execute) at site A and an executing donor at site B (or on A's LAN
 * too: `sameSite`), both relay-only;
 * both must become dispatchable, a job submitted at A must run at B, and
 * every failed dial either donor recorded must say where and why it failed.
 */
export async function pairScenario (t: TestContext, opts: PairOptions): Promise<void> {
  const row: Row = { scenario: opts.key, dispatchable: 'no', time: '-', path: '-', job: '-', lab: '-' }
  rows.push(row)
  const runDir = join(RUN_ROOT, opts.key)
  const lab = await buildTopology({
    relays: [...(opts.relays ?? [{ name: 'relay', ip: '198.51.100.10' }]), ...(opts.services ?? [])],
    sites: opts.sameSite === true
      ? [{ ...siteSpec('sitea', opts.submitter, 'submitter'), hosts: [{ name: 'submitter' }, { name: 'executor' }] }]
      : [siteSpec('sitea', opts.submitter, 'submitter'), siteSpec('siteb', opts.executor, 'executor')]
  })
  t.diagnostic(`namespaces up in ${lab.setupMs} ms (prefix ${lab.prefix}); run folder ${runDir}`)
  const donors: DonorNode[] = []
  const relays: RelayNode[] = []
  let cleanup: (() => Promise<void>) | undefined
  let failure: unknown
  try {
    for (const spec of opts.relays ?? [{ name: 'relay', ip: '198.51.100.10' }]) {
      const tls = opts.relayTls?.({ lab, runDir, relay: spec })
      const relay = await startRelay(lab, spec.name, runDir, { ...(tls != null ? { tls } : {}), ...(opts.relayArgs != null ? { args: opts.relayArgs } : {}) })
      relays.push(relay)
      t.diagnostic(`${spec.name} ${relay.peerId} ready ${relay.readyMs} ms after spawn`)
    }
    const relay = relays[0]
    cleanup = await opts.beforeDonors?.({ t, lab, runDir, relays })
    // what a user copies from the relay's start-up output, in that order: TCP, QUIC, WebSocket/443
    const bootstrap = opts.bootstrap?.(relays, lab) ?? relays.flatMap(r => [r.addr.tcp, r.addr.quic, r.addr.ws])
    const donorOpts = (name: 'submitter' | 'executor'): { extraListen?: string[], env?: Record<string, string>, args?: string[] } => ({
      extraListen: opts.extraListen?.(lab.ip(name)),
      env: opts.donorEnv?.(name, lab),
      args: opts.donorArgs?.(name, lab)
    })
    const submitter = startDonor(lab, 'submitter', runDir, { bootstrap, noExecute: true, ...donorOpts('submitter') })
    const executor = startDonor(lab, 'executor', runDir, { bootstrap, ...donorOpts('executor') })
    donors.push(submitter, executor)

    const timeoutMs = opts.dispatchTimeoutMs ?? 30_000
    const [ds, de] = await Promise.allSettled([waitDispatchable(lab, submitter, { timeoutMs }), waitDispatchable(lab, executor, { timeoutMs })])
    const times = [ds, de].map(r => r.status === 'fulfilled' ? uplinkText(r.value) : 'never')
    row.dispatchable = ds.status === 'fulfilled' && de.status === 'fulfilled' ? 'yes' : `no (${[ds.status === 'rejected' ? 'submitter' : '', de.status === 'rejected' ? 'executor' : ''].filter(Boolean).join(', ')})`
    row.time = `A ${times[0]}, B ${times[1]}`
    for (const [name, r] of [['submitter', ds], ['executor', de]] as const) {
      if (r.status === 'fulfilled') t.diagnostic(`${name} dispatchable ${r.value.ms} ms after spawn (${r.value.sinceDaemonStartMs} ms after the daemon's own startedAt) over ${r.value.transport}; seen by a status poll at ${r.value.seenMs} ms`)
    }
    if (ds.status === 'rejected') throw ds.reason
    if (de.status === 'rejected') throw de.reason

    const ctx: PairContext = { t, lab, runDir, relay, relays, submitter, executor, row }
    if (opts.during != null) await opts.during(ctx)
    await runJobAcross(ctx, opts.jobLabel)
    await checkDials(t, lab, [submitter, executor], opts.mustExplain?.(relay) ?? {})
    if (opts.doctor !== false) await doctorOnExecutor(ctx, bootstrap, opts.donorEnv?.('executor', lab) ?? {}, opts.donorArgs?.('executor', lab) ?? [], opts.doctorExpect)
  } catch (err) {
    failure = err
    anyFailed = true
  } finally {
    await cleanup?.().catch((err: unknown) => { t.diagnostic(`scenario clean-up failed: ${String(err)}`) })
    const { report, exitCodes, stragglers } = await shutdown(lab, donors, relays)
    row.lab = `${lab.setupMs} ms / ${report.ms} ms`
    t.diagnostic(`torn down in ${report.ms} ms (${report.killed} processes killed, ${report.leftovers} leftovers in namespaces, ${report.strays} strays); exit codes ${JSON.stringify(exitCodes)}`)
    if (stragglers.length > 0) t.diagnostic(`processes left in a daemon's process group after it exited: ${stragglers.join('; ')}`)
    for (const p of [...relays.map(r => ({ name: r.host, proc: r.proc })), ...donors]) {
      const problems = problemLines(p.proc.stderr())
      if (problems.length > 0) t.diagnostic(`${p.name}: ${problems.length} WARN/ERROR log lines:\n${problems.slice(0, 12).join('\n')}`)
    }
    if (failure != null) {
      for (const p of [...relays, ...donors]) t.diagnostic(`--- ${p.host} log (${p.logFile}), last lines:\n${tail(p.proc.stderr(), 25)}`)
    }
    assert.deepEqual(namespacesWithPrefix(lab.prefix), [], 'no namespace of this scenario is left')
    assert.equal(report.strays, 0, 'no process is left inside a deleted namespace of this scenario')
    if (failure == null) {
      for (const [name, code] of Object.entries(exitCodes)) assert.equal(code, 0, `${name} exits 0 on SIGTERM`)
    }
  }
  if (failure != null) throw failure
}

/**
 * `worldcompute doctor --json --evidence …` on the executor's host, with what
 * the executor was given (bootstrap, environment, --doh): the doctor must
 * agree that this network can donate, exit 0, and write an evidence bundle
 * that `worldcompute evidence validate` accepts. With WC_LAB_EVIDENCE=DIR the
 * bundle goes to DIR/<scenario>/ (a reference run to keep), else into the
 * scenario's run folder.
 */
async function doctorOnExecutor (ctx: PairContext, bootstrap: string[], env: Record<string, string>, daemonArgs: string[], expect?: (report: DoctorReport) => void): Promise<void> {
  const { t, lab, row } = ctx
  const dohArgs = daemonArgs.flatMap((a, i) => a === '--doh' && daemonArgs[i + 1] != null ? ['--doh', daemonArgs[i + 1]] : [])
  const base = process.env.WC_LAB_EVIDENCE
  const evidenceDir = base != null && base !== '' ? join(base, row.scenario) : join(ctx.runDir, 'evidence')
  const argv = [BIN, 'doctor', '--json', '--data-dir', ctx.executor.dataDir, '--evidence', evidenceDir, ...bootstrap.flatMap(b => ['--bootstrap', b]), ...dohArgs]
  const res = await lab.run('executor', argv, { env: labEnv(env), timeoutMs: 60_000 })
  let report: DoctorReport
  try {
    report = JSON.parse(res.stdout) as DoctorReport
  } catch (err) {
    throw new Error(`doctor on the executor printed no JSON report (exit ${String(res.code)}); stderr:\n${tail(res.stderr)}`, { cause: err })
  }
  row.doctor = `${report.canDonate ? 'can donate' : 'CANNOT donate'}${report.path != null ? ` via ${report.path.transport}${report.path.viaProxy ? ' (proxy)' : ''}` : ''}; NAT ${report.natMapping}`
  t.diagnostic(`doctor on the executor: exit ${String(res.code)} in ${res.ms} ms: ${report.verdict}`)
  t.diagnostic(`doctor checks: ${report.checks.map(c => `${c.name}=${c.value}`).join(' ')}${report.allowlist.length > 0 ? `; allowlist: ${report.allowlist.join(' | ')}` : ''}`)
  assert.equal(report.canDonate, true, `the doctor agrees the executor can donate: ${report.verdict}`)
  assert.equal(res.code, 0, 'doctor exits 0 when donating is possible')
  expect?.(report)
  assert.ok(report.evidence != null, 'the doctor wrote an evidence bundle')
  const v = await lab.run('executor', [BIN, 'evidence', 'validate', report.evidence, '--json'], { env: labEnv(), timeoutMs: 20_000 })
  assert.equal(v.code, 0, `evidence validate accepts the bundle: ${v.stdout} ${v.stderr}`)
}

/** Submits primes(100000) at the submitter; it must run on the executor at the other site. */
export async function runJobAcross (ctx: PairContext, label = ''): Promise<JobRun> {
  const { t, lab, runDir, submitter, executor, row } = ctx
  const job = await submitJob(lab, submitter, PRIMES, '100000\n', runDir, 60_000)
  const v = job.view
  const executorId = (await statusOf(lab, executor))?.peerId
  assert.equal(job.code, 0, `job submit exits 0; stderr: ${job.stderr}; ${JSON.stringify(v)}`)
  assert.equal(v.status, 'succeeded', v.message)
  assert.equal(v.stdout, 'primes below 100000: 9592\n')
  assert.equal(v.replicas.length, 1)
  const replica = v.replicas[0]
  assert.equal(replica.executor, executorId, 'the job ran on the donor at the other site')
  assert.equal(replica.receiptVerified, true, 'the receipt was verified')
  // which connection carried it, as the submitter sees it
  const s = await statusOf(lab, submitter)
  // the one the broker picks (mesh-task-network.ts): TCP/QUIC before WebRTC, direct before relayed
  const mine = s?.connections.filter(c => c.peerId === executorId && c.direct === (replica.path === 'direct')) ?? []
  const conn = mine.find(c => c.transport !== 'webrtc') ?? mine[0] ?? s?.connections.find(c => c.peerId === executorId)
  const e = await statusOf(lab, executor)
  const upA = s?.relays[0]?.transport ?? '?'
  const upB = e?.relays[0]?.transport ?? '?'
  const path = replica.path === 'relayed'
    ? `relayed (A→relay ${upA}, relay→B ${upB})`
    : `${replica.path ?? 'unknown'}${conn != null ? ` over ${conn.transport}` : ''}`
  row.path = `${row.path === '-' ? '' : `${row.path}; `}${label}${path}`
  const rt = `${secs(job.ms)} (broker ${v.durationMs} ms)`
  row.job = `${row.job === '-' ? '' : `${row.job}; `}${label}${rt}`
  t.diagnostic(`${label}job ${v.jobId}: ${v.status} on ${replica.executor.slice(0, 16)}…, path ${path}; submitter↔executor connection: ${conn != null ? `${conn.transport} ${conn.remoteAddr}` : 'none open now'}; round trip ${job.ms} ms wall (one CLI start-up included), broker ${v.durationMs} ms`)
  const brokerLines = submitter.proc.stderr().split('\n').filter(l => l.includes(v.jobId))
  t.diagnostic(`${label}submitter's log for ${v.jobId}:\n${brokerLines.join('\n')}`)
  return job
}

/**
 * Every failed dial a donor recorded names a phase and a cause, and every
 * cancelled one was cancelled by a winner; `mustExplain` lists, per donor,
 * bootstrap addresses that cannot work from its network: each must have left
 * a record (failed with a cause, or cancelled by the winner).
 */
export async function checkDials (t: TestContext, lab: Lab, donors: DonorNode[], mustExplain: Record<string, string[]> = {}): Promise<void> {
  for (const d of donors) {
    const { attempts, total } = await dialsOf(lab, d)
    const unrecorded = unrecordedTargets(attempts, mustExplain[d.name] ?? [])
    const failed = attempts.filter(a => a.outcome === 'failure')
    const cancelled = attempts.filter(a => a.outcome === 'cancelled')
    t.diagnostic(`${d.name}: ${total} dial attempts recorded, ${failed.length} failed, ${cancelled.length} cancelled`)
    for (const a of [...failed, ...cancelled].slice(0, 10)) t.diagnostic(`  ${describeAttempt(a)}`)
    const unexplained = [
      ...unexplainedFailures(attempts).map(a => `unexplained: ${describeAttempt(a)}`),
      ...unrecorded.map(addr => `no dial record at all for ${addr}, which cannot work from this network`)
    ]
    assert.deepEqual(unexplained, [], `${d.name}: every failed dial has a phase and a cause, every cancelled one lost to a winner, and every rung that cannot work left a record`)
  }
}


/**
 * A lab suite: skipped with one line when the lab cannot run here; after the
 * file's scenarios, prints the summary table, checks that no namespace of this
 * process is left, and removes the run folder unless something failed.
 */
export function labSuite (title: string, fn: () => void): void {
  describe(title, { skip: SKIP, timeout: 15 * 60_000 }, () => {
    after(() => {
      printSummary()
      const left = namespacesWithPrefix(RUN_PREFIX)
      if (left.length > 0) console.log(`LAB LEAK: namespaces left: ${left.join(', ')}`)
      if (anyFailed || process.env.WC_LAB_KEEP === '1') {
        console.log(`lab run folder kept (logs, data dirs): ${RUN_ROOT}`)
      } else {
        rmSync(RUN_ROOT, { recursive: true, force: true })
      }
      assert.deepEqual(left, [], 'no lab namespace is left after the run')
    })
    fn()
  })
}
