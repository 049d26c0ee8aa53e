/**
 * Issue #13, goal 3: a mesh of 48 donors in the namespace lab — 12 behind
 * each of a cone NAT, a symmetric NAT, a protocol-inspecting firewall
 * (`inspect-multistream`: TCP out, UDP dropped, libp2p's cleartext
 * negotiation dropped, so only WebSocket over TLS gets through; its router is
 * a cone NAT too) and another cone NAT — two relays (TCP, QUIC, WebSocket and
 * WebSocket over TLS with a certificate from a CA made for the run), and a
 * fifth site holding a `--no-execute` submitter daemon behind a cone NAT.
 * Every daemon bootstraps to both relays, every address of each.
 *
 * Measured (each against a baseline from the same run):
 *   1. all 48 dispatchable within 60 s of the last spawn: donors are spawned
 *      6 at a time (the next 6 once the last logged a reservation, or 60 s
 *      passed), sites interleaved; then each donor's own `status` must show
 *      a reservation. Baseline: one donor alone, started and stopped first.
 *   2. a burst of 400 jobs (hello.wasm, 1 replica, each with its own
 *      GREETING) submitted with the real CLI, `worldcompute job submit … --json`
 *      in the submitter's namespace, 8 processes at a time, each waiting for
 *      its job's final answer. Every job must have succeeded with its own
 *      output, exactly once: one final per job ID in the submitter's log, and
 *      one run, succeeded, in the executors' own records (`donated`).
 *      Baseline: one job alone through the CLI.
 *
 *   node_modules/.bin/node bench/mesh48.ts [--quick] [--json-out FILE]
 *
 * --quick: 2 donors per site (8) and 40 jobs. Needs root (network namespaces,
 * iptables) and openssl; otherwise its rows say skipped. Run it under the lab
 * lock: `flock /tmp/wc-lab.lock node_modules/.bin/node bench/mesh48.ts`.
 * WC_SCALE_KEEP=1 keeps the run folder (logs, data dirs).
 */
import { mkdirSync, readFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { benchMain, progress, row, skippedRow, type BenchRow } from './lib/report.ts'
import { fmt, num, summarize } from './lib/stats.ts'
import { buildTopology, labSkipReason, type Lab, type NatKind, type SiteSpec } from '../test/lab/topology.ts'
import { startDonor, startRelay, statusOf, tail, type DonorNode, type RelayNode } from '../test/lab/processes.ts'
import { issueCert, makeCa } from '../test/helpers/dns-server.ts'
import { checkDispatchable, gitState, interleave, LAB_PUBLIC, countInLogs, logMarks, runFolder, spawnInBatches, stopMesh, udpText, startupFigures, waitBrokerKnows, waitReserved, type MeshDonor } from './lib/lab-mesh.ts'
import { cliBurst, cliJobSucceeded, exactlyOnce, type CliJob } from './lib/cli-burst.ts'
import type { Firewall } from '../test/lab/topology.ts'

const SITES: Array<{ name: string, nat: NatKind, firewall?: Firewall }> = [
  { name: 'cone1', nat: 'cone' },
  { name: 'sym1', nat: 'symmetric' },
  { name: 'inspect1', nat: 'cone', firewall: 'inspect-multistream' },
  { name: 'cone2', nat: 'cone' }
]
/** spawn pacing: 6 donors at a time on 2 cores (a Node start-up costs ~1 s of CPU) */
const BATCH = 6
const BATCH_TIMEOUT_MS = 60_000
/** the goal: every donor dispatchable within this long of the last spawn */
const GOAL_MS = 60_000
const CLI_CONCURRENCY = 8
/** a donor's log line when its watchdog or the connection's end took a reservation away */
const LOST = /lost reservation on relay/

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0)
const load = (): string => loadavg().map(x => x.toFixed(1)).join(' ')

await benchMain('mesh48', { quick: 15 * 60_000, full: 40 * 60_000 }, async (args, cleanup) => {
  const hostsPerSite = args.quick ? 2 : 12
  const donorCount = SITES.length * hostsPerSite
  const jobCount = args.quick ? 40 : 400
  const rows: BenchRow[] = []
  const notes: string[] = []
  const label = `mesh48: ${donorCount} donors (${SITES.map(s => s.firewall ?? s.nat).join(', ')}) + 2 relays`
  const skip = labSkipReason()
  if (skip != null) {
    rows.push(skippedRow(`${label}, all dispatchable within 60 s of the last spawn`, 'one donor alone', skip))
    rows.push(skippedRow(`mesh48: ${jobCount} jobs through the CLI, ${CLI_CONCURRENCY} at a time, each succeeded exactly once`, 'one job alone', skip))
    return { bench: 'mesh48', rows, notes: [`not run: ${skip}`] }
  }
  const code = gitState()
  const { runRoot, runDir, completed } = runFolder('mesh48', cleanup)

  // ---- topology: 2 relays with WSS, 4 donor sites, the submitter's site ----
  const sites: SiteSpec[] = SITES.map((s, k) => ({ ...s, hosts: Array.from({ length: hostsPerSite }, (_x, j) => ({ name: `d${String(k * hostsPerSite + j + 1).padStart(2, '0')}` })) }))
  sites.push({ name: 'submit', nat: 'cone', hosts: [{ name: 'submitter' }] })
  const lab: Lab = await buildTopology({ relays: [{ name: 'relay1', ip: '198.51.100.10' }, { name: 'relay2', ip: '198.51.100.11' }], sites })
  cleanup.add('tear down the lab', async () => {
    if (lab.tornDown) return
    const r = await lab.teardown()
    if (r.namespaces > 0 || r.strays > 0) process.stderr.write(`mesh48: teardown left ${r.namespaces} namespace(s), ${r.strays} stray process(es)\n`)
  })
  const pki = join(runRoot, 'pki')
  mkdirSync(pki, { recursive: true })
  const ca = makeCa(pki, 'WorldCompute Lab Mesh CA')
  const relays: RelayNode[] = []
  for (const r of ['relay1', 'relay2']) {
    relays.push(await startRelay(lab, r, runDir, { args: LAB_PUBLIC, tls: issueCert(ca, r, [`IP:${lab.ip(r)}`]) }))
  }
  progress(`lab: ${sites.length} sites, namespaces up in ${lab.setupMs} ms; relays ${relays.map(r => `${r.host} ${r.peerId.slice(-8)} in ${r.readyMs} ms`).join(', ')}; load ${load()}`)
  const bootstrap = relays.flatMap(r => [r.addr.tcp, r.addr.quic, r.addr.ws, r.addr.wss as string])
  // the relays' certificate is from the run's own CA, as a private relay's would be
  const env = { NODE_EXTRA_CA_CERTS: ca.caCert }
  const start = (host: string, name?: string, extra: { noExecute?: boolean, env?: Record<string, string> } = {}): DonorNode =>
    startDonor(lab, host, runDir, { ...(name != null ? { name } : {}), bootstrap, args: LAB_PUBLIC, noExecute: extra.noExecute, env: { ...env, ...extra.env } })

  // ---- baseline: one donor alone -----------------------------------------
  const soloHost = sites[0].hosts[0].name
  const solo: MeshDonor = { node: start(soloHost, 'solo'), site: sites[0].name, nat: sites[0].nat, batch: -1, relaysReserved: new Map() }
  await waitReserved([solo], BATCH_TIMEOUT_MS)
  await solo.node.proc.stop(10_000)
  if (solo.reservedAt == null) throw new Error(`the solo donor on ${soloHost} never became dispatchable; stderr:\n${tail(solo.node.proc.stderr())}`)
  const soloMs = solo.reservedAt - solo.node.startedAt
  progress(`one donor alone (${soloHost}): dispatchable ${soloMs} ms after spawn`)

  // ---- the submitter, then the donors a batch at a time --------------------
  // capacity at debug: the submitter logs each executor it finds
  const submitter: MeshDonor = { node: start('submitter', 'submitter', { noExecute: true, env: { WORLDCOMPUTE_LOG: 'info,protocols.capacity=debug' } }), site: 'submit', nat: 'cone', batch: -1, relaysReserved: new Map() }
  await waitReserved([submitter], BATCH_TIMEOUT_MS)
  if (submitter.reservedAt == null) throw new Error(`the submitter never became dispatchable; stderr:\n${tail(submitter.node.proc.stderr())}`)
  const submitterPeer = (await statusOf(lab, submitter.node))?.peerId
  if (submitterPeer == null) throw new Error('the submitter\'s status did not answer')

  const loadBefore = load()
  const { donors, firstSpawn, lastSpawn } = await spawnInBatches(interleave(sites.slice(0, SITES.length)), { batch: BATCH, batchTimeoutMs: BATCH_TIMEOUT_MS }, h => start(h.host))
  const explain = await checkDispatchable(lab, donors)
  const fig = startupFigures(donors, firstSpawn, lastSpawn)
  for (const e of explain) progress(`NOT dispatchable: ${e}`)
  const loadStartup = load()
  const peerToDonor = new Map(donors.filter(d => d.peerId != null).map(d => [d.peerId as string, d]))
  // the submitter listens to capacity announcements only while it needs executors (from its first
  // submit on): a warm-up job starts that, then it learns every executor before the figures
  const [warmUp] = await cliBurst(lab, submitter.node, { count: 1, concurrency: 1, tag: 'warm-up', perJobTimeoutMs: 120_000 })
  if (!cliJobSucceeded(warmUp)) progress(`the warm-up job did NOT succeed: ${warmUp.error ?? warmUp.view?.status ?? '?'}`)
  const brokerKnows = await waitBrokerKnows(submitter.node.logFile, fig.dispatchable)
  progress(`the submitter found ${[...brokerKnows.known].filter(p => peerToDonor.has(p)).length}/${donors.length} executors ${brokerKnows.knownAt - lastSpawn} ms after the last spawn; load ${load()}`)

  // ---- one job alone through the CLI, then the burst ---------------------------
  const [one] = await cliBurst(lab, submitter.node, { count: 1, concurrency: 1, tag: 'alone', perJobTimeoutMs: 120_000 })
  const oneMs = cliJobSucceeded(one) ? one.endAt - one.startAt : NaN
  progress(`one job alone through the CLI: ${cliJobSucceeded(one) ? `${oneMs} ms` : `did NOT succeed: ${one.error ?? one.view?.status ?? '?'}`}; load ${load()}`)
  const loadBurstStart = load()
  const marks = logMarks(donors.map(d => d.node))
  const t0 = Date.now()
  const jobs = await cliBurst(lab, submitter.node, { count: jobCount, concurrency: CLI_CONCURRENCY, tag: 'burst', perJobTimeoutMs: 600_000 })
  const burstMs = Math.max(...jobs.map(j => j.endAt)) - t0
  const loadBurstEnd = load()
  const lost = { startup: countInLogs(donors.map(d => d.node), LOST, undefined, marks), burst: countInLogs(donors.map(d => d.node), LOST, marks) }
  const check = analyseBurst(jobs, readFileSync(submitter.node.logFile, 'utf8'))
  const once = await exactlyOnce(lab, donors.map(d => d.node), submitterPeer, check.jobIds)
  const exactlyOk = jobs.filter(j => cliJobSucceeded(j) && check.finals.get(j.view?.jobId ?? '') === 1).length
  const okOnce = once.once === jobCount && once.twice.length === 0 && once.never.length === 0 && once.notOk.length === 0 && once.unreadable.length === 0
  progress(`burst: ${check.succeeded}/${jobCount} succeeded through the CLI in ${burstMs} ms, ${exactlyOk} with exactly one final; executors' records: ${once.once} once, ${once.twice.length} more than once, ${once.never.length} never, ${once.notOk.length} not succeeded; load ${loadBurstEnd}`)

  // ---- stop everything -------------------------------------------------------
  const { td, badExits, leftNs, relayUdp } = await stopMesh(lab, [...donors.map(d => d.node), submitter.node], relays)

  // ---- rows and notes ------------------------------------------------------------
  const allIn = fig.dispatchable.length === donorCount && fig.afterLastSpawnMs <= GOAL_MS
  rows.push(row({
    benchmark: `${label}, all dispatchable within 60 s of the last spawn (${BATCH} started at a time): ${allIn ? 'yes' : 'no'}`,
    baselineName: 'one donor alone, same run, spawn → dispatchable',
    baseline: summarize([soloMs]),
    figure: summarize(Number.isFinite(fig.afterLastSpawnMs) ? [fig.afterLastSpawnMs] : []),
    unit: 'ms after the last spawn',
    ratio: fig.dispatchable.length / donorCount * (fig.afterLastSpawnMs <= GOAL_MS ? 1 : 0),
    ratioLabel: 'dispatchable / started, 0 if the last came after 60 s',
    target: { op: '>=', value: 1 }
  }))
  rows.push(row({
    benchmark: `${label}: each donor's spawn → dispatchable`,
    baselineName: 'one donor alone, same run',
    baseline: summarize([soloMs]),
    figure: summarize(fig.perDonor),
    unit: 'ms',
    ratioLabel: 'median / alone (informational)'
  }))
  rows.push(row({
    benchmark: `mesh48: ${jobCount} jobs through the CLI from a 5th site, ${CLI_CONCURRENCY} at a time, each succeeded exactly once (first submit → last final)`,
    baselineName: 'one job alone through the CLI',
    baseline: summarize([oneMs]),
    figure: summarize([burstMs]),
    unit: 'ms',
    ratio: okOnce ? exactlyOk / jobCount : 0,
    ratioLabel: 'succeeded exactly once / submitted',
    target: { op: '>=', value: 1 }
  }))
  rows.push(row({
    benchmark: `mesh48: ${jobCount}-job CLI burst, per-job CLI wall time`,
    baselineName: 'one job alone through the CLI',
    baseline: summarize([oneMs]),
    figure: summarize(jobs.map(j => j.endAt - j.startAt)),
    unit: 'ms',
    ratioLabel: 'median / alone (informational)'
  }))
  rows.push(row({
    benchmark: `mesh48: ${jobCount}-job CLI burst, throughput`,
    baselineName: `${CLI_CONCURRENCY} CLIs ÷ one job alone`,
    baseline: summarize([CLI_CONCURRENCY / (oneMs / 1000)]),
    figure: summarize([check.succeeded / (burstMs / 1000)]),
    unit: 'jobs/s',
    ratioLabel: 'burst / ideal (informational)'
  }))

  const perBatch = Array.from({ length: Math.ceil(donors.length / BATCH) }, (_x, b) => donors.filter(d => d.batch === b && d.reservedAt != null).map(d => (d.reservedAt as number) - d.node.startedAt))
  notes.push(`Setup (code ${code}): 2 relays (198.51.100.10/.11: TCP+QUIC 4001, WebSocket 80, WebSocket over TLS 443 with a certificate of the run's own CA, --public-range for the lab's TEST-NETs); ${donorCount} donors over ${SITES.map(s => `${s.name} (${s.nat} NAT${s.firewall != null ? `, ${s.firewall} firewall` : ''})`).join(', ')} × ${hostsPerSite}, relay-only, bootstrap = both relays' TCP, QUIC, WS and WSS addresses; a --no-execute submitter behind a cone NAT at site "submit". Load average (1/5/15 min): ${loadBefore} before the donors, ${loadStartup} after start-up, ${loadBurstStart} at the burst's start, ${loadBurstEnd} at its end. Torn down in ${td.ms} ms, ${leftNs.length} namespace(s) and ${td.strays} stray process(es) left; exit codes on SIGTERM not 0: ${badExits.length === 0 ? 'none' : JSON.stringify(Object.fromEntries(badExits))}. Relays' UDP counters at the end (their namespaces' /proc/net/snmp; RcvbufErrors: datagrams dropped on a full socket receive buffer): ${udpText(relayUdp)}.`)
  notes.push(`Start-up: ${BATCH} donors at a time (the next ${BATCH} once the last logged a reservation, or ${BATCH_TIMEOUT_MS / 1000} s), sites interleaved. ${fig.dispatchable.length}/${donorCount} dispatchable (a reservation, and holding one at the \`status\` check, up to 3 looks 2 s apart), ${fig.everReserved.length} ever reserved, ${fig.bothRelays.length} on both relays; the last ${num(fig.afterLastSpawnMs / 1000)} s after the last spawn (${num(fig.allDispatchableMs / 1000)} s after the first); spawn → dispatchable ${fmt(summarize(fig.perDonor), 'ms')}, per batch (median) ${perBatch.map(v => num(summarize(v).median)).join(', ')}; per site ${SITES.map(s => `${s.name} ${fmt(summarize(fig.dispatchable.filter(d => d.site === s.name).map(d => (d.reservedAt as number) - d.node.startedAt)), 'ms')}`).join('; ')}; relay transport per site ${JSON.stringify(transportsPerSite(fig.dispatchable))}; each donor linked to ${fmt(summarize(fig.donorLinks), 'other donors')}. Reservations lost and re-made: ${sum(lost.startup)} from the first spawn to the burst (${lost.startup.filter(n => n > 0).length} donors), ${sum(lost.burst)} during the burst (${lost.burst.filter(n => n > 0).length} donors). The submitter found ${[...brokerKnows.known].filter(p => peerToDonor.has(p)).length}/${donorCount} executors by capacity gossip ${num((brokerKnows.knownAt - lastSpawn) / 1000)} s after the last spawn (a warm-up job first: a broker listens only while it needs executors)${brokerKnows.unknown.length > 0 ? ` (never: ${brokerKnows.unknown.join(', ')})` : ''}.${explain.length > 0 ? ` Not dispatchable (${explain.length}): ${explain.map(e => e.split('\n')[0].slice(0, 400)).join(' | ')}` : ''}`)
  notes.push(`Burst: ${jobCount} × \`worldcompute job submit hello.wasm --arg x --env GREETING=burst-<i> --json\` in the submitter's namespace, ${CLI_CONCURRENCY} at a time, each waiting for its final answer: ${check.succeeded} succeeded with their own GREETING in stdout, ${check.failed.length} not (${check.failed.slice(0, 5).map(j => `#${j.index}: ${j.error ?? `${j.view?.status ?? '?'}: ${j.view?.message ?? ''}`}`).join('; ')}); distinct job IDs ${check.jobIds.length}; finals in the submitter's log: ${check.jobIds.filter(id => check.finals.get(id) === 1).length} exactly once, ${check.jobIds.filter(id => (check.finals.get(id) ?? 0) > 1).length} more than once, ${check.jobIds.filter(id => check.finals.get(id) == null).length} none. Executors' own records (\`donated\` on every donor): ${once.once} jobs ran exactly once and succeeded, ${once.twice.length} ran more than once${once.twice.length > 0 ? ` (${once.twice.slice(0, 5).map(t => `${t.jobId}: ${t.runs.map(r => `${r.donor} ${r.status}`).join(', ')}`).join('; ')})` : ''}, ${once.never.length} no record, ${once.notOk.length} not succeeded, ${once.unreadable.length} donors unreadable${once.unreadable.length > 0 ? ` (${once.unreadable.slice(0, 3).join('; ')})` : ''}; ${once.perDonor.size}/${donorCount} donors ran at least one, ${fmt(summarize([...once.perDonor.values()]), 'jobs')}. Paths ${JSON.stringify(check.paths)}; per executor site ${JSON.stringify(pathsPerSite(jobs, peerToDonor))}. First submit → last final ${num(burstMs / 1000)} s; one job alone through the CLI ${num(oneMs)} ms.`)
  completed()
  return { bench: 'mesh48', rows, notes }
})

/** Counts of the burst from the CLI's answers and the submitter's log ("job <id> finished" once per final). */
function analyseBurst (jobs: CliJob[], submitterLog: string): { succeeded: number, failed: CliJob[], jobIds: string[], finals: Map<string, number>, paths: Record<string, number> } {
  const finals = new Map<string, number>()
  for (const m of submitterLog.matchAll(/ job (job-[0-9a-f]+) finished: /g)) finals.set(m[1], (finals.get(m[1]) ?? 0) + 1)
  const paths: Record<string, number> = {}
  for (const j of jobs) for (const r of j.view?.replicas.filter(x => x.state === 'done') ?? []) paths[String(r.path)] = (paths[String(r.path)] ?? 0) + 1
  return {
    succeeded: jobs.filter(cliJobSucceeded).length,
    failed: jobs.filter(j => !cliJobSucceeded(j)),
    jobIds: [...new Set(jobs.map(j => j.view?.jobId).filter((id): id is string => id != null))],
    finals,
    paths
  }
}

function transportsPerSite (ds: MeshDonor[]): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {}
  for (const d of ds) {
    for (const r of d.status?.relays ?? []) {
      out[d.site] ??= {}
      out[d.site][r.transport] = (out[d.site][r.transport] ?? 0) + 1
    }
  }
  return out
}

function pathsPerSite (jobs: CliJob[], peerToDonor: Map<string, MeshDonor>): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {}
  for (const j of jobs) {
    for (const r of j.view?.replicas.filter(x => x.state === 'done') ?? []) {
      const site = peerToDonor.get(r.executor)?.site ?? 'unknown'
      out[site] ??= {}
      out[site][String(r.path)] = (out[site][String(r.path)] ?? 0) + 1
    }
  }
  return out
}
