import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { executorsSeen, finished, submit } from '../helpers/jobs.ts'
import { stopAfterEach } from '../helpers/cleanup.ts'
import { reservedStatus, startTestDonor, startTestRelay, tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'
import { MeshNode } from '../../src/net/mesh-node.ts'
import type { CancelService } from '../../src/protocols/cancel/index.ts'
import type { CapacityService } from '../../src/protocols/capacity/index.ts'
import type { DaemonHandle } from '../../src/daemon/daemon.ts'
import type { JobView } from '../../src/core/job.ts'

/**
 * `job cancel` on loopback with the real executor: a module that loops until
 * its deadline runs on another donor (relayed, or over a direct connection),
 * and the cancel must end it everywhere — the job `cancelled`, the donor's
 * slot free again in what it announces, its sandbox no longer burning CPU.
 */

const dir = tempDir('wc-cancel-')
const track = stopAfterEach()
after(() => { dir.cleanup() })

type Donor = Awaited<ReturnType<typeof startTestDonor>>

async function mesh (name: string, donors: number, direct: boolean): Promise<{ relayAddr: string, donors: Donor[] }> {
  const relay = track(await startTestRelay(join(dir.path, `${name}-relay`)))
  const bootstrap = relay.info.announceAddrs.filter(a => a.includes('/tcp/'))
  const handles: Donor[] = []
  for (let i = 0; i < donors; i++) {
    const listen = direct ? ['/ip4/127.0.0.1/tcp/0', '/p2p-circuit'] : ['/p2p-circuit']
    const d = track(await startTestDonor(join(dir.path, `${name}-donor-${i}`), bootstrap, listen, { noDirect: true }))
    await waitFor(`donor ${i} reservation`, async () => await reservedStatus(d.client, relay.info.peerId))
    handles.push(d)
  }
  return { relayAddr: bootstrap[0], donors: handles }
}

function serviceOf<T> (handle: DaemonHandle, name: string): T {
  const node = handle.donor.mesh
  assert.ok(node instanceof MeshNode)
  const service = (node.services as Record<string, unknown>)[name]
  assert.ok(service != null, `the daemon's node has the ${name} service`)
  return service as T
}

/** CPU seconds the process has used (user + system), from /proc. */
function cpuSeconds (pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

async function cpuOver (pid: number, ms: number): Promise<number> {
  const before = cpuSeconds(pid)
  await new Promise(resolve => setTimeout(resolve, ms))
  return cpuSeconds(pid) - before
}

/** How many runs the donor's executor has under way. */
async function runningOn (donor: Donor): Promise<number | undefined> {
  const { executor } = await donor.client.call('status', {})
  return executor != null && 'running' in executor ? executor.running : undefined
}

/** Submits the endless loop from `a` and waits until it runs on `b`; the running view. */
async function startLoop (a: Donor, b: Donor): Promise<JobView> {
  await executorsSeen(a, 1)
  const accepted = await submit(a.client, 'infinite-loop.wasm', { limits: { deadlineMs: 60_000 } })
  await waitFor('the loop to run on the other donor', async () => {
    return await runningOn(b) === 1 ? true : undefined
  }, 15_000)
  return accepted
}

/** Cancels through the API and checks what `job cancel` promises: cancelled within 2 s, the slot free, the sandbox idle. */
async function cancelAndCheck (a: Donor, b: Donor, jobId: string, expectPath: 'direct' | 'relayed'): Promise<void> {
  const sandbox = b.executor?.sandboxPid
  assert.ok(sandbox != null)
  // the path the task (and so the cancel) takes: a relay-only donor has no direct connection to the broker
  const direct = a.donor.mesh.components.connections.bestDirect(b.peerId) != null
  assert.equal(direct ? 'direct' : 'relayed', expectPath)
  const busy = await cpuOver(sandbox, 2_000)
  const started = Date.now()
  const done = await a.client.call('cancelJob', { id: jobId })
  const took = Date.now() - started
  assert.equal(done.outcome, 'cancelled')
  assert.equal(done.stopped, 1)
  assert.deepEqual(done.unreached, [])
  assert.equal(done.job.status, 'cancelled')
  assert.ok(took < 2_000, `cancel took ${took} ms`)
  const view = await finished(a.client, jobId, 2_000)
  assert.equal(view.status, 'cancelled')
  // the donor stopped the run: its executor runs nothing, and the broker hears its slot is free again
  assert.equal(await runningOn(b), 0)
  const capacity = serviceOf<CapacityService>(a, 'capacity')
  await waitFor('the freed slot to be announced', () => {
    const c = capacity.capacityOf(b.peerId)
    return c != null && c.freeSlots === c.slots ? true : undefined
  }, 5_000)
  // the sandbox replaces the stopped worker thread: let that start-up pass before measuring
  await new Promise(resolve => setTimeout(resolve, 500))
  // a loop still running would take about the share of a core it took before (on a loaded machine, far from all of it)
  const idle = await cpuOver(sandbox, 2_000)
  assert.ok(idle < busy / 2, `the sandbox used ${idle.toFixed(2)} s of CPU in 2 s after the cancel, ${busy.toFixed(2)} s in 2 s before it`)
  // idempotent: a second cancel changes nothing
  const again = await a.client.call('cancelJob', { id: jobId })
  assert.equal(again.outcome, 'already-cancelled')
}

describe('job cancel on loopback (real executor)', () => {
  it('cancels a task running on a relay-only donor through the relay, within 2 s, freeing its slot and its CPU', async () => {
    const { donors: [a, b] } = await mesh('relayed', 2, false)
    const job = await startLoop(a, b)
    await cancelAndCheck(a, b, job.jobId, 'relayed')
  })

  it('cancels a task running over a direct connection the same way', async () => {
    const { donors: [a, b] } = await mesh('direct', 2, true)
    const job = await startLoop(a, b)
    await cancelAndCheck(a, b, job.jobId, 'direct')
  })

  it('a cancel from a peer that did not dispatch the task is answered harmlessly and the task keeps running', async () => {
    const { relayAddr, donors: [a, b, c] } = await mesh('stranger', 3, false)
    const job = await startLoop(a, b)
    const taskId = a.broker.getJob(job.jobId).tasks[0].taskId
    const conn = await c.donor.mesh.components.dialler.reach(`${relayAddr}/p2p-circuit/p2p/${b.peerId}`, { purpose: 'dispatch' })
    const answer = await serviceOf<CancelService>(c, 'cancel').cancel(conn, { taskIds: [taskId] })
    assert.deepEqual(answer, { stopped: [], dropped: [], unknown: [taskId] })
    assert.equal(await runningOn(b), 1, 'the task still runs')
    assert.equal((await a.client.call('job', { id: job.jobId, full: false })).status, 'running')
    // its own broker can
    assert.equal((await a.client.call('cancelJob', { id: job.jobId })).stopped, 1)
  })

  it('cancelling a finished job says so and changes nothing', async () => {
    const { donors: [a] } = await mesh('finished', 2, false)
    await executorsSeen(a, 1)
    const view = await finished(a.client, (await submit(a.client, 'hello.wasm')).jobId)
    assert.equal(view.status, 'succeeded')
    const done = await a.client.call('cancelJob', { id: view.jobId })
    assert.equal(done.outcome, 'already-finished')
    assert.equal(done.job.status, 'succeeded')
  })
})
