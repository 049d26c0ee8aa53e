/**
 * Where one trivial job's time goes, phase by phase (a diagnostic, not a
 * benchmark row): one broker and one executing donor on 127.0.0.1 with a
 * direct connection, N jobs one at a time, each phase timed by wrapping the
 * methods that carry it (API submit, offer, dispatch on both sides, the
 * executor's sandbox call), plus a bare echo over the same connection. Jobs
 * alternate between the two ways a module is submitted: named by CID (as
 * `job submit` does it) and inline base64 in the JSON body; the submit's
 * spans are shown for each way, the rest over all jobs.
 *
 *   node_modules/.bin/node bench/trace-job.ts [--quick]
 *
 * Then the same marks as a timeline: when each wrapped call began (>) and
 * ended (<), as the median time since the job's submit call over the
 * measured jobs (its first call of each per job), in order: the job's
 * critical path, with what ran in between on the one event loop every node
 * shares.
 *
 * WC_TRACE_CPU_PROFILE=FILE also writes a V8 CPU profile of the measured jobs
 * only (the warm-up and the mesh's start left out), for DevTools or a script;
 * WC_TRACE_CPU_INTERVAL_US sets its sampling interval (default 100 µs).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import { benchMain, progress } from './lib/report.ts'
import { directTcp, DIRECT_AND_RELAY, echoOnce, handleEcho, HELLO, helloRequest, submitHello, JobWatcher, startBenchDaemon, startBenchRelay, waitForExecutors } from './lib/mesh.ts'
import { benchLogging } from './lib/log-sink.ts'
import { fmt, summarize } from './lib/stats.ts'
import type { Connection } from '@libp2p/interface'
import { DispatchService } from '../src/protocols/dispatch/dispatch.ts'
import { OfferService } from '../src/protocols/offer/offer.ts'
import { Executor } from '../src/executor/executor.ts'
import { Broker } from '../src/broker/broker.ts'
import { MeshTaskNetwork } from '../src/broker/mesh-task-network.ts'
import { ApiServer } from '../src/api/server.ts'

const spans = new Map<string, number[]>()
/** how the job under way was submitted: the submit's own spans are kept apart per way */
let submitWay: 'by CID' | 'inline' = 'by CID'
const PER_WAY = new Set(['broker: Broker.submit (checks, SQLite)', 'API server: body read, parsed, handled, answered'])
/** performance.now() at the submit call of the job under way; marks are times since then */
let jobStart = 0
/** this job's marks, the first of each kind */
let jobMarks = new Map<string, number>()
/** from the submit call to the job's final answer (the echo after it is not the job's) */
let marking = false
function mark (name: string): void {
  if (marking && !jobMarks.has(name)) jobMarks.set(name, performance.now() - jobStart)
}
/** per mark, its time in each measured job submitted by CID */
const timeline = new Map<string, number[]>()
function record (span: string, ms: number): void {
  const label = PER_WAY.has(span) ? `${span} [${submitWay}]` : span
  const list = spans.get(label) ?? []
  list.push(ms)
  spans.set(label, list)
}
/** Times each call of `proto[method]`, synchronous or not (a synchronous one stays synchronous). */
function wrap (proto: Record<string, unknown>, method: string, label: string): void {
  const original = proto[method] as (...args: unknown[]) => unknown
  proto[method] = function (this: unknown, ...args: unknown[]): unknown {
    const t0 = performance.now()
    mark(`${label} >`)
    const out = original.apply(this, args)
    if (!(out instanceof Promise)) {
      record(label, performance.now() - t0)
      mark(`${label} <`)
      return out
    }
    return out.finally(() => {
      record(label, performance.now() - t0)
      mark(`${label} <`)
    })
  }
}
wrap(OfferService.prototype as unknown as Record<string, unknown>, 'offer', 'broker: offer round trip')
wrap(DispatchService.prototype as unknown as Record<string, unknown>, 'dispatch', 'broker: dispatch round trip (send, run, receipt verified)')
// the donor's whole answer is not wrapped: on a kept session stream it also waits for the next task's header
wrap(DispatchService.prototype as unknown as Record<string, unknown>, 'execute', 'donor: execute + sign receipt')
wrap(Executor.prototype as unknown as Record<string, unknown>, 'execute', 'donor: Executor.execute (sandbox process)')
wrap(DispatchService.prototype as unknown as Record<string, unknown>, 'send', 'broker: dispatch send (header, payload, half-close)')
wrap(DispatchService.prototype as unknown as Record<string, unknown>, 'receive', 'broker: dispatch execute + receive (result header, outputs)')
wrap(DispatchService.prototype as unknown as Record<string, unknown>, 'verifyResult', 'broker: receipt verified (Ed25519, output CID)')
wrap(DispatchService.prototype as unknown as Record<string, unknown>, 'seal', 'donor: receipt signed (output CID, Ed25519)')
wrap(DispatchService.prototype as unknown as Record<string, unknown>, 'sendAnswer', 'donor: answer sent (result header, outputs, close)')
wrap(Broker.prototype as unknown as Record<string, unknown>, 'submit', 'broker: Broker.submit (checks, SQLite)')
wrap(ApiServer.prototype as unknown as Record<string, unknown>, 'dispatch', 'API server: body read, parsed, handled, answered')
wrap(MeshTaskNetwork.prototype as unknown as Record<string, unknown>, 'dispatch', 'broker: task network dispatch (connect + dispatch)')
wrap(Broker.prototype as unknown as Record<string, unknown>, 'persist', 'broker: a task result persisted (SQLite)')

await benchMain('trace-job', { quick: 120_000, full: 240_000 }, async (args, cleanup) => {
  benchLogging({})
  const root = mkdtempSync(join(tmpdir(), 'wc-trace-'))
  cleanup.add('remove temp dir', () => { rmSync(root, { recursive: true, force: true }) })
  const relay = await startBenchRelay(join(root, 'relay'), cleanup)
  const executor = await startBenchDaemon(join(root, 'executor'), relay, { listen: DIRECT_AND_RELAY, execute: true }, cleanup)
  const submitter = await startBenchDaemon(join(root, 'submitter'), relay, { listen: DIRECT_AND_RELAY, execute: false }, cleanup)
  await waitForExecutors(submitter, 1)
  await handleEcho(executor, cleanup)
  // jobs and echoes over one TCP connection, whatever the direct upgrade does (bench/lib/mesh.ts directTcp)
  await directTcp(submitter, executor)
  const direct = (): Connection | undefined => submitter.donor.mesh.components.connections.bestDirect(executor.peerId)
  const watcher = new JobWatcher(submitter)
  cleanup.add('stop watcher', () => { watcher.stop() })
  const request = helloRequest()
  const n = args.quick ? 15 : 50
  const submits = { 'by CID': [] as number[], inline: [] as number[] }
  const totals = { 'by CID': [] as number[], inline: [] as number[] }
  const inlineRequest = { ...request, module: HELLO.toString('base64') }
  const echoes: number[] = []
  const profile = process.env.WC_TRACE_CPU_PROFILE
  const session = profile != null ? new Session() : undefined
  for (let i = 0; i < n + 5; i++) {
    if (i === 5) {
      // the broker's connection to the executor exists now: time every stream it opens on it
      const conn = direct()
      if (conn != null) wrap(conn as unknown as Record<string, unknown>, 'newStream', 'broker: newStream on the direct connection (any protocol)')
      if (session != null) {
        session.connect()
        await session.post('Profiler.enable')
        // V8's default 1 ms sampling sees a ~6 ms job in a handful of samples
        await session.post('Profiler.setSamplingInterval', { interval: Number(process.env.WC_TRACE_CPU_INTERVAL_US ?? 100) })
        await session.post('Profiler.start')
      }
    }
    submitWay = i % 2 === 0 ? 'by CID' : 'inline'
    jobMarks = new Map()
    marking = true
    const t0 = performance.now()
    jobStart = t0
    const accepted = submitWay === 'by CID' ? await submitHello(submitter.client, request) : await submitter.client.call('submitJob', inlineRequest)
    const t1 = performance.now()
    mark('API client: the submit answered')
    watcher.track(accepted.jobId)
    await watcher.finished(accepted.jobId, 30_000)
    const t2 = performance.now()
    mark('the job seen final (JobWatcher)')
    marking = false
    if (i >= 5 && submitWay === 'by CID') {
      for (const [name, ms] of jobMarks) timeline.set(name, [...(timeline.get(name) ?? []), ms])
    }
    const conn = direct()
    const e0 = performance.now()
    if (conn != null) await echoOnce(conn, new Uint8Array(1024))
    const e1 = performance.now()
    if (i === 4) spans.clear() // the first five warm up (module compiled, direct connection made)
    if (i >= 5) {
      submits[submitWay].push(t1 - t0)
      totals[submitWay].push(t2 - t0)
      if (conn != null) echoes.push(e1 - e0)
    }
  }
  if (session != null && profile != null) {
    const { profile: cpu } = await session.post('Profiler.stop')
    writeFileSync(profile, JSON.stringify(cpu))
    session.disconnect()
    progress(`CPU profile of the measured jobs written to ${profile}`)
  }
  for (const way of ['by CID', 'inline'] as const) {
    progress(`job total [${way}]          ${fmt(summarize(totals[way]), 'ms')}`)
    progress(`API submit call [${way}]    ${fmt(summarize(submits[way]), 'ms')}`)
  }
  for (const [label, list] of spans) progress(`${label.padEnd(58)} ${fmt(summarize(list), 'ms')}`)
  progress(`bare 1 KiB echo    ${fmt(summarize(echoes), 'ms')}`)
  progress('timeline of a job submitted by CID (median ms since the submit call; > a call began, < it ended; the step from the line above in brackets):')
  let before = 0
  for (const [name, at] of [...timeline].map(([k, v]) => [k, summarize(v).median] as const).sort((a, b) => a[1] - b[1])) {
    progress(`  ${at.toFixed(3).padStart(7)} (+${(at - before).toFixed(3)})  ${name}`)
    before = at
  }
  return { bench: 'trace-job', rows: [], notes: [] }
})
