/**
 * Job continuity across relay loss (traversal issue, "relays, plural"): a task
 * dispatched over relay R1 keeps going when R1 stops mid-task — the broker
 * sends the same task ID to the same executor through R2 and the executor
 * answers from the run already under way. Real relays, daemons and executor
 * in one process on 127.0.0.1.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { relayPeerOf, transportOf } from '../../src/net/transport-of.ts'
import { executorsSeen, finished, submit } from '../helpers/jobs.ts'
import { stopAfterEach } from '../helpers/cleanup.ts'
import { startTestDonor, startTestRelay, tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'
import type { RelayHandle } from '../../src/daemon/daemon.ts'

const dir = tempDir('wc-failover-')
const track = stopAfterEach()
after(() => { dir.cleanup() })

async function daemon (name: string, bootstrap: string[], noExecute: boolean): Promise<Awaited<ReturnType<typeof startTestDonor>>> {
  // noDirect: this test is about the relayed path; a WebRTC upgrade would take the job off the relays
  return track(await startTestDonor(join(dir.path, name), bootstrap, ['/p2p-circuit'], { noExecute, noDirect: true }))
}

// primes below 150 million: a sieve that runs for seconds in the sandbox, long enough to stop a relay under it
const N = 150_000_000
const EXPECTED = `primes below ${N}: 8444396\n`

describe('job continuity when a relay dies mid-job', () => {
  it('a job whose relay stops mid-task completes through the second relay, as the same task on the same executor', async (t) => {
    const relays: RelayHandle[] = [track(await startTestRelay(join(dir.path, 'r1'))), track(await startTestRelay(join(dir.path, 'r2')))]
    const bootstrap = relays.flatMap(r => r.info.announceAddrs.filter(a => a.includes('/tcp/')))
    const submitter = await daemon('submitter', bootstrap, true)
    const executor = await daemon('executor', bootstrap, false)
    for (const d of [submitter, executor]) {
      await waitFor(`${d.peerId} reserved on both relays`, async () => (await d.client.call('status', {})).relays.length === 2 ? true : undefined, 15_000)
    }
    await executorsSeen(submitter, 1)

    const accepted = await submit(submitter.client, 'primes.wasm', { input: `${N}\n`, limits: { deadlineMs: 120_000 } })
    // the relay that carries the task, as the submitter's open connections show it
    const carrier = await waitFor('the submitter to open a relayed connection to the executor', () => {
      const conn = submitter.donor.mesh.components.connections.open(executor.peerId).find(c => transportOf(c.remoteAddr) === 'circuit')
      return conn != null ? relayPeerOf(conn.remoteAddr) : undefined
    }, 15_000)
    await waitFor('the task to be dispatched', async () => {
      const v = await submitter.client.call('job', { id: accepted.jobId, full: false })
      return v.replicas.some(r => r.state === 'offered' || r.state === 'running') ? true : undefined
    }, 15_000)
    // the module and input (a few KiB) are on the executor well within this; the sieve runs for seconds
    await new Promise(resolve => setTimeout(resolve, 500))
    const dead = relays.find(r => r.info.peerId === carrier)
    assert.ok(dead != null, `the carrying relay ${String(carrier)} is one of ours`)
    const stoppedAt = Date.now()
    await dead.stop()
    const view = await finished(submitter.client, accepted.jobId, 120_000)
    t.diagnostic(`job done ${Date.now() - stoppedAt} ms after relay ${carrier} stopped`)

    assert.equal(view.status, 'succeeded', view.message)
    assert.equal(view.stdout, EXPECTED)
    assert.equal(view.replicas.length, 1)
    assert.equal(view.replicas[0].executor, executor.peerId)
    assert.equal(view.replicas[0].receiptVerified, true)
    // one task, never failed over to a new attempt: the same task ID was sent again and answered by the run under way
    const { tasks } = submitter.broker.getJob(accepted.jobId)
    assert.deepEqual(tasks.map(x => [x.attempt, x.state]), [[1, 'done']])
    // the submitter now reaches the executor through the surviving relay
    const survivor = relays.find(r => r !== dead)?.info.peerId
    const now = submitter.donor.mesh.components.connections.open(executor.peerId).map(c => c.remoteAddr.toString())
    assert.ok(now.some(a => relayPeerOf(a) === survivor), `connected to the executor through ${String(survivor)}: ${now.join(' ')}`)
  })
})
