/**
 * The distinct-network rule in the namespace lab (issue #12, item 6): two
 * donors behind ONE NAT and one donor behind another NAT serve 2-replica jobs
 * submitted from a third site; the two behind the same NAT never both serve
 * one job. The relay is the only one that sees where each donor connects
 * from (its NAT's WAN address), and tells the submitting broker over
 * observed-addr. Every site router of the lab has its WAN address in one
 * /24 (203.0.113.10+k), so the submitter counts networks by /32 here
 * (`--replica-network-prefix 32,128`), as a private deployment might.
 *
 *   node_modules/.bin/node --test test/lab/replicas.test.ts
 *   WC_LAB_ONLY=replicas …
 */
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { it, type TestContext } from 'node:test'
import { buildTopology, namespacesWithPrefix, type Lab } from './topology.ts'
import { cliJson, problemLines, startDonor, startRelay, statusOf, tail, waitDispatchable, type DonorNode, type RelayNode } from './processes.ts'
import { labSuite, markFailed, PRIMES, rows, RUN_ROOT, scenarioKeys, secs, TEST_TIMEOUT_MS, type Row } from './scenario.ts'
import type { JobView } from '../../src/core/job.ts'

const only = scenarioKeys(['replicas'] as const)

/** Two-replica jobs run with all three executors up. */
const JOBS = 4

interface Nodes {
  relay: RelayNode
  submitter: DonorNode
  /** the two behind one NAT, then the one behind the other */
  sameNat: [DonorNode, DonorNode]
  otherNat: DonorNode
  /** PeerId by donor name */
  ids: Map<string, string>
}

async function startAll (t: TestContext, lab: Lab, runDir: string, relays: RelayNode[], donors: DonorNode[]): Promise<Nodes> {
  const relay = await startRelay(lab, 'relay', runDir)
  relays.push(relay)
  const bootstrap = [relay.addr.tcp, relay.addr.quic, relay.addr.ws]
  const submitter = startDonor(lab, 'submitter', runDir, {
    bootstrap,
    noExecute: true,
    args: ['--replica-network-prefix', '32,128'],
    // the broker's placement decisions ("network … already runs a replica") are debug lines
    env: { WORLDCOMPUTE_LOG: 'info,broker=debug' }
  })
  const executors = ['onea', 'oneb', 'twoa'].map(host => startDonor(lab, host, runDir, { bootstrap }))
  donors.push(submitter, ...executors)
  const ready = await Promise.all(donors.map(async d => await waitDispatchable(lab, d, { timeoutMs: 45_000 })))
  t.diagnostic(`dispatchable: ${donors.map((d, i) => `${d.name} ${secs(ready[i].ms)} (${ready[i].transport})`).join(', ')}`)
  const ids = new Map<string, string>()
  for (const d of donors) {
    const s = await statusOf(lab, d)
    assert.ok(s != null, `status of ${d.name}`)
    ids.set(d.name, s.peerId)
  }
  return { relay, submitter, sameNat: [executors[0], executors[1]], otherNat: executors[2], ids }
}

async function submitReplicated (lab: Lab, n: Nodes, runDir: string, detach: boolean): Promise<JobView> {
  const input = join(runDir, `input-${Date.now()}.txt`)
  writeFileSync(input, '100000\n')
  const res = await cliJson<JobView>(lab, n.submitter, ['job', 'submit', PRIMES, '--input', input, '--replicas', '2', ...(detach ? ['--detach'] : [])], 90_000)
  assert.ok(res.value != null, `job submit printed JSON (exit ${String(res.code)}): ${res.stderr}`)
  return res.value
}

/** Names of the executors holding a replica of the job (a task that did not fail). */
function holders (view: JobView, n: Nodes): string[] {
  const byId = new Map([...n.ids].map(([name, id]) => [id, name]))
  return view.replicas.filter(r => r.state !== 'failed').map(r => byId.get(r.executor) ?? r.executor)
}

async function shutdown (lab: Lab, donors: DonorNode[], relays: RelayNode[]): Promise<Record<string, number | null>> {
  const codes: Record<string, number | null> = {}
  await Promise.all(donors.map(async d => { codes[d.name] = await d.proc.stop(10_000) }))
  await Promise.all(relays.map(async r => { codes[r.host] = await r.proc.stop(10_000) }))
  return codes
}

labSuite('Network-namespace lab: replicas of one job in distinct networks', () => {
  it('Two donors behind one NAT never both serve one 2-replica job; the donor behind the other NAT serves each', { skip: only('replicas'), timeout: TEST_TIMEOUT_MS }, async (t) => {
    const row: Row = { scenario: 'replicas', dispatchable: 'no', time: '-', path: '-', job: '-', lab: '-' }
    rows.push(row)
    const runDir = join(RUN_ROOT, 'replicas')
    const lab = await buildTopology({
      relays: [{ name: 'relay', ip: '198.51.100.10' }],
      sites: [
        { name: 'subs', nat: 'cone', hosts: [{ name: 'submitter' }] },
        { name: 'natone', nat: 'cone', hosts: [{ name: 'onea' }, { name: 'oneb' }] },
        { name: 'nattwo', nat: 'cone', hosts: [{ name: 'twoa' }] }
      ]
    })
    t.diagnostic(`namespaces up in ${lab.setupMs} ms; onea and oneb behind ${lab.publicIp('onea')}, twoa behind ${lab.publicIp('twoa')}`)
    assert.equal(lab.publicIp('onea'), lab.publicIp('oneb'))
    const relays: RelayNode[] = []
    const donors: DonorNode[] = []
    let failure: unknown
    try {
      const n = await startAll(t, lab, runDir, relays, donors)
      row.dispatchable = 'yes'
      const started = Date.now()
      for (let i = 0; i < JOBS; i++) {
        const v = await submitReplicated(lab, n, runDir, false)
        const who = holders(v, n)
        t.diagnostic(`job ${v.jobId}: ${v.status} on ${who.join(' + ')} (${v.replicas.map(r => r.path ?? '?').join(', ')}): ${v.message}`)
        assert.equal(v.status, 'succeeded', v.message)
        assert.equal(v.stdout, 'primes below 100000: 9592\n')
        assert.match(v.message, /^2\/2 agree, receipts verified/)
        assert.ok(!(who.includes('onea') && who.includes('oneb')), `both donors behind one NAT served job ${v.jobId}`)
        assert.ok(who.includes('twoa'), `the donor behind the other NAT served job ${v.jobId}: ${who.join(', ')}`)
      }
      row.job = `${JOBS} × 2 replicas in ${secs(Date.now() - started)}`

      // with the other NAT's donor gone, only the two behind one NAT are left:
      // the job gets one replica there and waits for a second network
      const code = await n.otherNat.proc.stop(10_000)
      assert.equal(code, 0, 'twoa exits 0 on SIGTERM')
      donors.splice(donors.indexOf(n.otherNat), 1)
      const pending = await submitReplicated(lab, n, runDir, true)
      await new Promise(resolve => setTimeout(resolve, 12_000))
      const later = await cliJson<JobView>(lab, n.submitter, ['job', 'status', pending.jobId], 20_000)
      assert.ok(later.value != null, later.stderr)
      const who = holders(later.value, n)
      t.diagnostic(`with only one NAT left, job ${pending.jobId} after 12 s: ${later.value.status}, replicas on ${who.join(' + ') || 'nobody'}: ${later.value.message}`)
      assert.equal(later.value.final, false, 'the job waits for another network instead of finishing on one')
      // both are up with free slots: one takes a replica, the other is refused for its network
      assert.equal(who.filter(w => w === 'onea' || w === 'oneb').length, 1, `exactly one donor behind the shared NAT holds a replica: ${who.join(', ') || 'none'}`)
      const skipped = n.submitter.proc.stderr().split('\n').filter(l => l.includes('already runs a replica'))
      t.diagnostic(`the broker's log names a donor skipped for its network ${skipped.length} time(s); e.g. ${skipped[0] ?? '-'}`)
      row.path = 'same NAT never both'
    } catch (err) {
      failure = err
      markFailed()
    } finally {
      const codes = await shutdown(lab, donors, relays)
      const report = await lab.teardown()
      row.lab = `${lab.setupMs} ms / ${report.ms} ms`
      for (const p of [...relays.map(r => ({ name: r.host, proc: r.proc })), ...donors]) {
        const problems = problemLines(p.proc.stderr())
        if (problems.length > 0) t.diagnostic(`${p.name}: ${problems.length} WARN/ERROR log lines:\n${problems.slice(0, 8).join('\n')}`)
        if (failure != null) t.diagnostic(`--- ${p.name} log, last lines:\n${tail(p.proc.stderr(), 25)}`)
      }
      assert.deepEqual(namespacesWithPrefix(lab.prefix), [], 'no namespace of this scenario is left')
      assert.equal(report.strays, 0, 'no process is left inside a deleted namespace of this scenario')
      if (failure == null) for (const [name, code] of Object.entries(codes)) assert.equal(code, 0, `${name} exits 0 on SIGTERM`)
    }
    if (failure != null) throw failure
  })
})
