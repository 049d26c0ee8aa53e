/**
 * Scale on one machine (benchmarks issue #7): 50 donor daemons and 2 relays,
 * each a real `worldcompute` process in its own network namespace of the lab
 * (test/lab/topology.ts), spread over 5 sites — open network (public
 * addresses, TCP/QUIC listeners), 2 × cone NAT, 2 × symmetric NAT — plus a
 * 51st daemon, the broker (`--no-execute`, behind a cone NAT at its own
 * site), that submits. Every daemon bootstraps to both relays.
 *
 * Measured:
 *   1. start-up: donors are spawned 5 at a time (the next 5 once the last
 *      are dispatchable or 60 s passed), so 2 cores are not swamped by 50
 *      Node start-ups at once; time from the first spawn until every donor
 *      holds a relay reservation, and each donor's spawn → reservation.
 *      Baseline, same run: one donor alone (started and stopped before the 50).
 *   2. the broker learning every executor (capacity gossip through the relays).
 *   3. a burst of 1,000 trivial jobs (hello.wasm, 1 replica) submitted through
 *      the project's API client by bench/lib/scale-burst.ts, which runs inside
 *      the broker's namespace (32 submits in flight), waiting until every
 *      accepted job is final: counts per final status, per-job submit → final,
 *      path (direct/relayed) and executor of each job, first submit → last
 *      final, jobs/s. Every job that did not succeed is listed with its error.
 *   4. CPU per job: utime + stime (and reaped children's) from /proc of every
 *      daemon, sandbox and relay process, before and after the burst, divided
 *      by the number of jobs; the mesh's idle CPU rate, measured just before,
 *      is reported beside it (50 idle daemons are not free).
 *
 *   node_modules/.bin/node bench/scale.ts [--quick] [--json-out FILE]
 *
 * --quick: 10 donors (2 per site) and 100 jobs. Needs root (network
 * namespaces, iptables); otherwise its rows say skipped. Traffic stays inside
 * the namespaces it creates. WC_SCALE_KEEP=1 keeps the run folder (logs, data
 * dirs); WC_SCALE_CPU_PROF=DIR runs the broker, both relays and one donor with --cpu-prof into DIR.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { benchMain, progress, row, skippedRow, within, type BenchRow } from './lib/report.ts'
import { fmt, num, summarize } from './lib/stats.ts'
import { cpuBetween, membersPerGroup, snapshot, type CpuSnapshot } from './lib/proc-cpu.ts'
import { buildTopology, labEnv, labSkipReason, type Lab, type NatKind, type SiteSpec } from '../test/lab/topology.ts'
import { NODE, startDonor, startRelay, statusOf, tail, type RelayNode } from '../test/lab/processes.ts'
import { checkDispatchable, gitState, interleave, LAB_PUBLIC, runFolder, sleep, stopMesh, udpText, spawnInBatches, startupFigures, waitBrokerKnows, waitReserved, type MeshDonor } from './lib/lab-mesh.ts'
import type { BurstOutput } from './lib/scale-burst.ts'

const BURST_SCRIPT = fileURLToPath(new URL('./lib/scale-burst.ts', import.meta.url))
const SITES: Array<{ name: string, nat: NatKind }> = [
  { name: 'open1', nat: 'none' },
  { name: 'cone1', nat: 'cone' },
  { name: 'cone2', nat: 'cone' },
  { name: 'sym1', nat: 'symmetric' },
  { name: 'sym2', nat: 'symmetric' }
]
const BATCH = 5
const BATCH_TIMEOUT_MS = 60_000
const CONCURRENCY = 32
const PROMISE_MS = 3_000

await benchMain('scale', { quick: 15 * 60_000, full: 50 * 60_000 }, async (args, cleanup) => {
  const hostsPerSite = args.quick ? 2 : 10
  const donorCount = SITES.length * hostsPerSite
  const jobCount = args.quick ? 100 : 1000
  const label = `${donorCount} daemons + 2 relays`
  const burstLabel = `${jobCount.toLocaleString('en')}-job burst`
  const rows: BenchRow[] = []
  const notes: string[] = []
  const skip = labSkipReason()
  if (skip != null) {
    rows.push(skippedRow(`scale: ${label}, all dispatchable`, 'one donor alone', skip))
    rows.push(skippedRow(`scale: ${burstLabel} on ${donorCount} donors completes`, 'one job alone', skip))
    notes.push(`not run: ${skip}`)
    return { bench: 'scale', rows, notes }
  }
  const code = gitState()
  const { runDir, completed } = runFolder('scale', cleanup)

  // ---- topology: 2 relays, 5 donor sites, the broker's own site -----------
  const sites: SiteSpec[] = SITES.map((s, k) => ({ name: s.name, nat: s.nat, hosts: Array.from({ length: hostsPerSite }, (_x, j) => ({ name: `d${String(k * hostsPerSite + j + 1).padStart(2, '0')}` })) }))
  sites.push({ name: 'home', nat: 'cone', hosts: [{ name: 'broker' }] })
  const t0Lab = Date.now()
  const lab: Lab = await buildTopology({ relays: [{ name: 'relay1', ip: '198.51.100.10' }, { name: 'relay2', ip: '198.51.100.11' }], sites })
  cleanup.add('tear down the lab', async () => {
    if (lab.tornDown) return
    const r = await lab.teardown()
    if (r.namespaces > 0 || r.strays > 0) process.stderr.write(`scale: teardown left ${r.namespaces} namespace(s), ${r.strays} stray process(es)\n`)
  })
  progress(`lab: ${lab.spec.relays.length} relays, ${sites.length} sites, ${donorCount + 1} daemon hosts; namespaces up in ${lab.setupMs} ms (${Date.now() - t0Lab} ms)`)

  const profDir = process.env.WC_SCALE_CPU_PROF
  const relays: RelayNode[] = []
  for (const r of ['relay1', 'relay2']) {
    // --public-range: the relays' AutoNAT server must count the lab's addresses as public to dial open donors back
    relays.push(await startRelay(lab, r, runDir, { args: LAB_PUBLIC, ...(profDir != null && profDir !== '' ? { env: { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${join(profDir, r)}` } } : {}) }))
  }
  progress(`relays up: ${relays.map(r => `${r.host} ${r.peerId.slice(-8)} in ${r.readyMs} ms`).join(', ')}`)
  const bootstrap = relays.flatMap(r => [r.addr.tcp, r.addr.quic, r.addr.ws])
  const donorOpts = (host: string): { extraListen: string[], args: string[] } => ({
    // open-network donors also listen directly (public addresses), as a donor with a public IP would
    extraListen: lab.siteOf(host)?.nat === 'none' ? [`/ip4/${lab.ip(host)}/tcp/4001`, `/ip4/${lab.ip(host)}/udp/4001/quic-v1`] : [],
    args: LAB_PUBLIC
  })
  // ---- baseline: one donor alone (the machine otherwise idle but for the relays) ----
  const soloHost = sites[1].hosts[0].name
  const solo: MeshDonor = { node: startDonor(lab, soloHost, runDir, { name: 'solo', bootstrap, ...donorOpts(soloHost) }), site: sites[1].name, nat: sites[1].nat, batch: -1, relaysReserved: new Map() }
  await waitReserved([solo], BATCH_TIMEOUT_MS)
  const soloStatus = await statusOf(lab, solo.node)
  await solo.node.proc.stop(10_000)
  const soloSince = soloStatus?.relays.map(r => Date.parse(r.since)).sort((a, b) => a - b)[0] ?? solo.reservedAt
  if (soloSince == null) throw new Error(`the solo donor on ${soloHost} never became dispatchable; stderr:\n${tail(solo.node.proc.stderr())}`)
  const soloMs = soloSince - solo.node.startedAt
  progress(`one donor alone (${soloHost}, ${solo.nat}): dispatchable ${soloMs} ms after spawn`)

  // ---- the broker, then the donors 5 at a time ---------------------------
  const brokerEnv: Record<string, string> = {
    // capacity at debug: the broker logs each executor it finds, which is how the bench knows it knows all of them
    WORLDCOMPUTE_LOG: 'info,protocols.capacity=debug',
    ...(profDir != null && profDir !== '' ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${join(profDir, 'broker')}` } : {})
  }
  const broker: MeshDonor = { node: startDonor(lab, 'broker', runDir, { name: 'broker', bootstrap, noExecute: true, ...donorOpts('broker'), env: brokerEnv }), site: 'home', nat: 'cone', batch: -1, relaysReserved: new Map() }
  await waitReserved([broker], BATCH_TIMEOUT_MS)
  if (broker.reservedAt == null) throw new Error(`the broker never became dispatchable; stderr:\n${tail(broker.node.proc.stderr())}`)
  broker.peerId = (await statusOf(lab, broker.node))?.peerId
  progress(`broker ${broker.peerId ?? '(status did not answer)'} dispatchable ${broker.reservedAt - broker.node.startedAt} ms after spawn`)

  const profiled = (host: string): Record<string, string> | undefined => profDir != null && profDir !== '' && host === soloHost
    // with WC_SCALE_CPU_PROF, one cone-NAT donor is profiled too (its sandbox child inherits the option)
    ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${join(profDir, host)}` }
    : undefined
  const { donors, firstSpawn, lastSpawn } = await spawnInBatches(interleave(sites.slice(0, SITES.length)), { batch: BATCH, batchTimeoutMs: BATCH_TIMEOUT_MS },
    h => startDonor(lab, h.host, runDir, { bootstrap, ...donorOpts(h.host), ...(profiled(h.host) != null ? { env: profiled(h.host) } : {}) }))

  // ---- authoritative check: each donor's own `status` -----------------------
  const explain = await checkDispatchable(lab, donors)
  const { dispatchable, everReserved, bothRelays, donorLinks, allDispatchableMs, perDonor } = startupFigures(donors, firstSpawn, lastSpawn)
  for (const e of explain) progress(`NOT dispatchable: ${e}`)

  // ---- idle CPU of the mesh --------------------------------------------------
  const groups = new Map<number, string>([
    ...relays.map(r => [r.proc.pid, `relay:${r.host}`] as const),
    [broker.node.proc.pid, 'broker'] as const,
    ...donors.filter(d => d.node.proc.running()).map(d => [d.node.proc.pid, `donor:${d.node.name}`] as const)
  ])
  const groupSet = new Set(groups.keys())
  const role = (pgid: number): string => (groups.get(pgid) ?? '?').split(':')[0]
  const byRole = (perGroup: Map<number, number>): Record<string, number> => {
    const out: Record<string, number> = {}
    for (const [pgid, ms] of perGroup) out[role(pgid)] = (out[role(pgid)] ?? 0) + ms
    return out
  }
  const idleMs = args.quick ? 5_000 : 15_000
  const measureIdle = async (): Promise<{ rate: number, perRole: Record<string, number>, ms: number, procs: number, snap: CpuSnapshot }> => {
    const a = snapshot(groupSet)
    await sleep(idleMs)
    const b = snapshot(groupSet)
    const perRole = byRole(cpuBetween(a, b).perGroup)
    const s = (b.at - a.at) / 1000
    return { rate: Object.values(perRole).reduce((x, y) => x + y, 0) / s, perRole: Object.fromEntries(Object.entries(perRole).map(([k, v]) => [k, v / s])), ms: b.at - a.at, procs: b.procs.size, snap: b }
  }
  // ---- one job alone (baseline), then the burst ------------------------------
  const runBurst = async (count: number, timeoutMs: number): Promise<{ out: BurstOutput, cpuA: CpuSnapshot, cpuB: CpuSnapshot }> => {
    if (!broker.node.proc.running()) throw new Error(`the broker exited (${JSON.stringify(await broker.node.proc.exited)}) before the ${count}-job burst; its log ${broker.node.logFile} ends:\n${tail(readFileSync(broker.node.logFile, 'utf8'), 30)}`)
    const cpuA = snapshot(groupSet)
    const p = lab.exec('broker', [NODE, BURST_SCRIPT, '--data-dir', broker.node.dataDir, '--count', String(count), '--concurrency', String(CONCURRENCY), '--timeout-ms', String(timeoutMs)],
      { env: labEnv(), logFile: join(runDir, `burst-${count}.log`), maxBuffer: 64 * 1024 * 1024 })
    const exit = await within(`the ${count}-job burst script`, timeoutMs + 90_000, p.exited)
    const cpuB = snapshot(groupSet)
    await within('the burst script\'s output', 10_000, p.closed)
    if (exit.code !== 0) throw new Error(`the burst script exited ${String(exit.code)} (${String(exit.signal)}); stderr:\n${tail(p.stderr())}\nthe broker (running: ${String(broker.node.proc.running())}) log ends:\n${tail(readFileSync(broker.node.logFile, 'utf8'), 30)}`)
    let out: BurstOutput
    try {
      out = JSON.parse(p.stdout()) as BurstOutput
    } catch (err) {
      throw new Error(`the burst script printed no JSON: ${(err as Error).message}; stdout: ${p.stdout().slice(0, 500)}; stderr:\n${tail(p.stderr())}`)
    }
    return { out, cpuA, cpuB }
  }
  // the broker listens to capacity announcements only while it needs executors (from its first
  // submit on): a warm-up job starts that, then the broker learns every executor before the figures
  const warmUp = await runBurst(1, 60_000)
  if (warmUp.out.jobs[0]?.status !== 'succeeded') progress(`the warm-up job did NOT succeed: ${JSON.stringify(warmUp.out).slice(0, 600)}`)
  const peerToDonor = new Map(donors.filter(d => d.peerId != null).map(d => [d.peerId as string, d]))
  const { known, knownAt, unknown: unknownToBroker } = await waitBrokerKnows(broker.node.logFile, dispatchable)
  progress(`the broker has found ${[...known].filter(p => peerToDonor.has(p)).length}/${donors.length} executors, ${knownAt - lastSpawn} ms after the last spawn${unknownToBroker.length > 0 ? ` (missing: ${unknownToBroker.join(', ')})` : ''}`)

  const idleBefore = await measureIdle()
  const members = membersPerGroup(idleBefore.snap)
  const sandboxes = donors.filter(d => (members.get(d.node.proc.pid)?.length ?? 0) >= 2).length
  const rolesText = (r: Record<string, number>): string => Object.entries(r).map(([k, v]) => `${k} ${num(v)}`).join(', ')
  progress(`idle mesh before the burst: ${num(idleBefore.rate)} CPU ms per s over ${idleBefore.ms} ms (${rolesText(idleBefore.perRole)}; ${idleBefore.procs} processes; ${sandboxes}/${donors.length} donors have a sandbox child)`)

  const one = await runBurst(1, 60_000)
  const oneJob = one.out.jobs[0]
  // a saturated mesh may not finish even one job in the minute: say so and run the burst anyway
  // (its own bound decides), rather than ending the benchmark with no figures at all
  const oneOk = oneJob != null && oneJob.status === 'succeeded' && oneJob.finishedAt != null
  const oneMs = oneOk ? (oneJob.finishedAt as number) - oneJob.submitAt : NaN
  if (!oneOk) progress(`one job alone did NOT succeed within 60 s (the baseline is NaN): ${JSON.stringify(one.out).slice(0, 600)}`)
  else progress(`one job alone: submit → final ${oneMs} ms (${oneJob.replicas[0]?.path ?? '?'} to ${peerToDonor.get(oneJob.replicas[0]?.executor ?? '')?.node.name ?? oneJob.replicas[0]?.executor ?? '?'})`)

  const brokerLogBefore = readFileSync(broker.node.logFile, 'utf8').length
  const donorLogBefore = new Map(donors.map(d => [d.node.name, readFileSync(d.node.logFile, 'utf8').length]))
  const burstTimeoutMs = args.quick ? 240_000 : 900_000
  progress(`burst: ${jobCount} jobs, ${CONCURRENCY} submits in flight, bound ${burstTimeoutMs / 1000} s`)
  const { out, cpuA, cpuB } = await runBurst(jobCount, burstTimeoutMs)
  const donorLogsBurst = donors.map(d => ({ d, text: readFileSync(d.node.logFile, 'utf8').slice(donorLogBefore.get(d.node.name) ?? 0) }))
  const idleAfter = await measureIdle()
  progress(`idle mesh after the burst: ${num(idleAfter.rate)} CPU ms per s (${rolesText(idleAfter.perRole)})`)
  const idleRate = (idleBefore.rate + idleAfter.rate) / 2

  // ---- analysis ---------------------------------------------------------------
  const jobs = out.jobs
  const byStatus: Record<string, number> = {}
  for (const j of jobs) byStatus[j.status] = (byStatus[j.status] ?? 0) + 1
  const succeeded = byStatus.succeeded ?? 0
  const notFinal = jobs.filter(j => !j.final)
  const finals = jobs.filter(j => j.finishedAt != null)
  const firstSubmit = Math.min(...jobs.map(j => j.submitAt))
  const lastFinal = finals.length > 0 ? Math.max(...finals.map(j => j.finishedAt as number)) : NaN
  const wallMs = lastFinal - firstSubmit
  const rate = succeeded / (wallMs / 1000)
  const latencies = finals.map(j => (j.finishedAt as number) - j.submitAt)
  const paths: Record<string, number> = {}
  const perNat: Record<string, Record<string, number>> = {}
  const perExecutor = new Map<string, number>()
  let retriedTasks = 0
  for (const j of jobs) {
    retriedTasks += j.replicas.filter(r => r.state === 'failed').length
    const done = j.replicas.find(r => r.state === 'done')
    if (done == null) continue
    const d = peerToDonor.get(done.executor)
    const key = String(done.path)
    paths[key] = (paths[key] ?? 0) + 1
    const nat = d?.nat ?? (done.executor === broker.peerId ? 'broker' : 'unknown')
    perNat[nat] ??= {}
    perNat[nat][key] = (perNat[nat][key] ?? 0) + 1
    perExecutor.set(done.executor, (perExecutor.get(done.executor) ?? 0) + 1)
  }
  const execCounts = summarize([...perExecutor.values()])
  // which connection the broker holds to each executor now (the transport of a direct path)
  const brokerStatus = await statusOf(lab, broker.node)
  const directTransports: Record<string, number> = {}
  for (const [peer] of perExecutor) {
    const conns = brokerStatus?.connections.filter(c => c.peerId === peer && c.direct) ?? []
    const t = conns.length === 0 ? 'relayed only' : [...new Set(conns.map(c => c.transport))].sort().join('+')
    directTransports[t] = (directTransports[t] ?? 0) + 1
  }
  // CPU: every daemon (with its sandbox), the broker and the relays, over the burst
  const cpu = cpuBetween(cpuA, cpuB)
  const cpuByRole = byRole(cpu.perGroup)
  const cpuTotal = Object.values(cpuByRole).reduce((a, b) => a + b, 0)
  const cpuSpanS = (cpuB.at - cpuA.at) / 1000
  const cpuPerJob = cpuTotal / jobCount
  const idlePerJob = idleRate * cpuSpanS / jobCount
  const brokerLog = readFileSync(broker.node.logFile, 'utf8').slice(brokerLogBefore)
  // the reason only, without the log line's trailing key=value fields
  const declined = [...brokerLog.matchAll(/ declined: (.*?)(?: {2}\w+=.*)?$/gm)].map(m => m[1].trim())
  const declinedBy: Record<string, number> = {}
  for (const r of declined) declinedBy[r] = (declinedBy[r] ?? 0) + 1
  const offerFailed = brokerLog.split('\n').filter(l => /offer to \S+ failed/.test(l))
  const brokerProblems = brokerLog.split('\n').filter(l => /^\S+ +(WARN|ERROR) /.test(l))
  const LOST = /lost reservation on relay/g
  const PING = /did not answer a ping within/g
  const flapsStartup = donors.map(d => [...readFileSync(d.node.logFile, 'utf8').slice(0, donorLogBefore.get(d.node.name) ?? 0).matchAll(LOST)].length)
  const flapsBurst = donorLogsBurst.map(x => [...x.text.matchAll(LOST)].length)
  const pingBurst = donorLogsBurst.map(x => [...x.text.matchAll(PING)].length)
  const donorProblemsBurst = donorLogsBurst.flatMap(x => x.text.split('\n').filter(l => /^\S+ +(WARN|ERROR) /.test(l)).map(l => `${x.d.node.name}: ${l}`))

  progress(`burst: ${JSON.stringify(byStatus)} of ${jobs.length} accepted (${out.submitErrors.length} submits refused), ${notFinal.length} not final; wall ${num(wallMs)} ms = ${num(rate)} jobs/s; paths ${JSON.stringify(paths)}; CPU ${num(cpuPerJob)} ms/job (${JSON.stringify(Object.fromEntries(Object.entries(cpuByRole).map(([k, v]) => [k, Math.round(v)])))})`)

  // ---- stop everything (the lab teardown also runs from cleanup on any failure) ----
  const { td, badExits, leftNs, relayUdp } = await stopMesh(lab, [...donors.map(d => d.node), broker.node], relays)

  // ---- rows and notes -------------------------------------------------------------
  rows.push(row({
    benchmark: `scale: ${label}, all dispatchable (first spawn → last reservation, ${BATCH} started at a time)`,
    baselineName: 'one donor alone, same run',
    baseline: summarize([soloMs]),
    figure: summarize(Number.isFinite(allDispatchableMs) ? [allDispatchableMs] : []),
    unit: 'ms',
    ratio: dispatchable.length / donorCount,
    ratioLabel: 'dispatchable / started',
    target: { op: '>=', value: 1 }
  }))
  rows.push(row({
    benchmark: `scale: each donor's spawn → dispatchable, ${BATCH} at a time among ${donorCount}`,
    baselineName: 'the 3 s promise',
    baseline: summarize([PROMISE_MS]),
    figure: summarize(perDonor),
    unit: 'ms',
    ratioLabel: 'median / 3 s (informational: the promise is for one donor per machine)'
  }))
  rows.push(row({
    benchmark: `scale: ${burstLabel} on ${donorCount} donors completes (first submit → last final)`,
    baselineName: 'one job alone, submit → final',
    baseline: summarize([oneMs]),
    figure: summarize(Number.isFinite(wallMs) ? [wallMs] : []),
    unit: 'ms',
    ratio: succeeded / jobCount,
    ratioLabel: 'succeeded / submitted',
    target: { op: '>=', value: 1 }
  }))
  const slots = dispatchable.reduce((n, d) => n + (d.status?.executor?.maxConcurrent ?? 0), 0)
  const ideal = slots / (oneMs / 1000)
  rows.push(row({
    benchmark: `scale: ${burstLabel}, throughput`,
    baselineName: `${slots} slots ÷ one job alone`,
    baseline: summarize([ideal]),
    figure: summarize(Number.isFinite(rate) ? [rate] : []),
    unit: 'jobs/s',
    ratioLabel: 'burst / ideal (informational)'
  }))
  rows.push(row({
    benchmark: `scale: ${burstLabel}, per-job submit → final`,
    baselineName: 'one job alone',
    baseline: summarize([oneMs]),
    figure: summarize(latencies),
    unit: 'ms',
    ratioLabel: 'median / alone (informational)'
  }))
  rows.push(row({
    benchmark: `scale: ${burstLabel}, CPU per job (all daemons, sandboxes, relays)`,
    baselineName: 'the idle mesh over the same time, per job',
    baseline: summarize([idlePerJob]),
    figure: summarize([cpuPerJob]),
    unit: 'ms',
    ratioLabel: 'burst / idle (informational)'
  }))

  notes.push(`Setup (code ${code}): lab with 2 relays (198.51.100.10/.11: TCP+QUIC 4001, WebSocket 443, --public-range for the lab's TEST-NETs) and ${donorCount} donor daemons over ${SITES.length} sites × ${hostsPerSite} hosts (${SITES.map(s => `${s.name}: ${s.nat === 'none' ? 'open network, public addresses, direct TCP/QUIC listeners too' : `${s.nat} NAT, relay-only`}`).join('; ')}), each in its own namespace with bootstrap = both relays' TCP, QUIC and WS addresses; --max-jobs default (cores − 1 = ${dispatchable[0]?.status?.executor?.maxConcurrent ?? '?'} here), so ${slots} job slots in all. The broker is a 51st daemon (\`--no-execute\`, relay-only, behind a cone NAT at its own site "home"); it submits every job. Namespaces up in ${lab.setupMs} ms; torn down in ${td.ms} ms, ${leftNs.length} namespace(s) and ${td.strays} stray process(es) left; exit codes on SIGTERM not 0: ${badExits.length === 0 ? 'none' : JSON.stringify(Object.fromEntries(badExits))}. Relays' UDP counters at the end (their namespaces' /proc/net/snmp; RcvbufErrors: datagrams dropped on a full socket receive buffer): ${udpText(relayUdp)}.`)
  notes.push(`Start-up: donors spawned ${BATCH} at a time, the next ${BATCH} once the last were dispatchable (or ${BATCH_TIMEOUT_MS / 1000} s passed), sites interleaved in each batch. ${dispatchable.length}/${donorCount} dispatchable (reached a relay reservation — time from the donor's own "reserved on relay" log line — and held one when its \`status\` was read after start-up, up to 3 looks 2 s apart), ${everReserved.length}/${donorCount} ever reached one, ${bothRelays.length}/${donorCount} on both relays; all dispatchable ${num(allDispatchableMs / 1000)} s after the first spawn (${num((lastSpawn - firstSpawn) / 1000)} s of which is spawning in batches); spawn → dispatchable per donor ${fmt(summarize(perDonor), 'ms')}; one donor alone in the same lab ${soloMs} ms. The broker found ${[...known].filter(p => peerToDonor.has(p)).length}/${donors.length} executors by capacity gossip, all of them ${num((knownAt - lastSpawn) / 1000)} s after the last spawn${unknownToBroker.length > 0 ? `; never found: ${unknownToBroker.join(', ')}` : ''}.${explain.length > 0 ? ` Not dispatchable (${explain.length}): ${explain.map(e => e.split('\n')[0].slice(0, 400)).join(' | ')}` : ''}`)
  const perBatch = Array.from({ length: Math.ceil(donors.length / BATCH) }, (_x, b) => donors.filter(d => d.batch === b && d.reservedAt != null).map(d => (d.reservedAt as number) - d.node.startedAt))
  notes.push(`Mesh shape after start-up: each donor has open connections to ${fmt(summarize(donorLinks), 'other donors')} (gossip mesh and direct upgrades, besides its 2 relays and the broker). Reservations lost and re-made (a relay ping unanswered within 2 s drops the connection): ${flapsStartup.reduce((a, b) => a + b, 0)} during start-up and the idle minute (${flapsStartup.filter(n => n > 0).length} donors), ${flapsBurst.reduce((a, b) => a + b, 0)} during the burst (${flapsBurst.filter(n => n > 0).length} donors; ${pingBurst.reduce((a, b) => a + b, 0)} unanswered relay pings); donors' WARN/ERROR lines during the burst: ${donorProblemsBurst.length}${donorProblemsBurst.length > 0 ? `, e.g. ${donorProblemsBurst.slice(0, 3).map(l => JSON.stringify(l.slice(0, 260))).join('; ')}` : ''}.`)
  notes.push(`Spawn → dispatchable per batch (median ms): ${perBatch.map(v => num(summarize(v).median)).join(', ')}; per NAT: ${[...new Set(donors.map(d => d.nat))].map(n => `${n} ${fmt(summarize(dispatchable.filter(d => d.nat === n).map(d => (d.reservedAt as number) - d.node.startedAt)), 'ms')}`).join('; ')}.`)
  notes.push(`Burst: ${jobCount} jobs (hello.wasm, 1 replica, the same module each time) submitted by bench/lib/scale-burst.ts in the broker's namespace through src/api/client.ts, ${CONCURRENCY} in flight; submit phase ${num(out.submitPhaseMs)} ms; ${jobs.length} accepted, ${out.submitErrors.length} refused${out.submitErrors.length > 0 ? ` (${out.submitErrors.slice(0, 5).map(e => `#${e.index}: ${e.error}`).join('; ')})` : ''}; every accepted job final: ${out.allFinal ? 'yes' : `NO, ${notFinal.length} not final: ${notFinal.slice(0, 10).map(j => `${j.jobId} ${j.status}: ${j.message}`).join('; ')}`}. Final statuses: ${JSON.stringify(byStatus)}. First submit → last final ${num(wallMs / 1000)} s = ${num(rate)} jobs/s (${num(rate / Math.max(1, slots))} per slot/s); per job submit → final ${fmt(summarize(latencies), 'ms')}; one job alone before the burst ${oneMs} ms. The burst script polled the job list ${out.polls} times (${out.pollErrors ?? 0} unanswered in time, polled again); sample stdout ${JSON.stringify(out.sampleStdout)}.`)
  notes.push(`Paths: ${JSON.stringify(paths)} (the replica's path as the broker recorded it); per executor NAT: ${JSON.stringify(perNat)}; the broker's connections to those executors after the burst: ${JSON.stringify(directTransports)}. Jobs per executor: ${perExecutor.size}/${dispatchable.length} executors ran at least one, ${fmt(execCounts, 'jobs')}. Task attempts that failed and were retried: ${retriedTasks}.`)
  const failed = jobs.filter(j => j.status !== 'succeeded')
  if (failed.length > 0) {
    const reasons: Record<string, number> = {}
    for (const j of failed) {
      const k = `${j.status}: ${j.error ?? j.message}`.slice(0, 300)
      reasons[k] = (reasons[k] ?? 0) + 1
    }
    notes.push(`Jobs not succeeded (${failed.length}), by status and error: ${Object.entries(reasons).map(([k, v]) => `${v} × ${k}`).join(' | ')}; e.g. ${failed.slice(0, 5).map(j => `${j.jobId}: ${j.replicas.map(r => `${r.executor.slice(-8)} ${r.state}${r.failure != null ? ` (${r.failure})` : ''}`).join(', ')}`).join('; ')}.`)
  }
  notes.push(`CPU (/proc utime+stime of every process in the relays', broker's and donors' process groups, sandboxes included, plus reaped children; ${cpu.procs} processes, ${cpu.exited} exited during the burst): ${num(cpuTotal)} ms over ${num(cpuSpanS)} s = ${num(cpuPerJob)} ms per job gross; by role ${Object.entries(cpuByRole).map(([k, v]) => `${k} ${num(v)} ms (${num(v / jobCount)} ms/job)`).join(', ')}. The idle mesh burns ${num(idleRate)} CPU ms per s (mean of ${num(idleBefore.rate)} over ${num(idleBefore.ms / 1000)} s before the burst — ${rolesText(idleBefore.perRole)} — and ${num(idleAfter.rate)} after it; ${num(idleRate / (donors.length + 3))} per process group: gossip, pings, keep-alives, AutoNAT, direct upgrades), i.e. ${num(idlePerJob)} ms per job over the burst's span, so ≈ ${num(cpuPerJob - idlePerJob)} ms per job is the jobs' own cost. The machine has 2 cores (${num(cpuTotal / (cpuSpanS * 1000) * 100)} % of one core busy on average during the burst). Not counted: the burst script itself (${num(out.selfCpuMs)} ms CPU: submits and ${out.polls} list polls).`)
  const declinedText = Object.entries(declinedBy).sort((a, b) => b[1] - a[1]).slice(0, 5).map(([k, v]) => `${v} × "${k}"`).join(', ')
  notes.push(`Broker during the burst: ${declined.length} declined offers (${num(declined.length / jobCount)} per job${declinedText !== '' ? `: ${declinedText}` : ''}), ${offerFailed.length} failed offers, ${brokerProblems.length} WARN/ERROR lines${brokerProblems.length > 0 ? `, e.g. ${brokerProblems.slice(0, 3).map(l => JSON.stringify(l.slice(0, 300))).join('; ')}` : ''}.`)
  completed()
  return { bench: 'scale', rows, notes }
})
