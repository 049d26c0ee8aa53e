import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { multiaddr } from '@multiformats/multiaddr'
import { verifyReceipt } from '../../src/codec/receipt.ts'
import { executorsSeen, finished, submit } from '../helpers/jobs.ts'
import { stopAfterEach } from '../helpers/cleanup.ts'
import { reservedStatus, startTestDonor, startTestRelay, tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'
import type { RelayHandle } from '../../src/daemon/daemon.ts'

const dir = tempDir('wc-jobs-')
const track = stopAfterEach()
after(() => { dir.cleanup() })

async function mesh (name: string, donors: number): Promise<{ relay: RelayHandle, donors: Array<Awaited<ReturnType<typeof startTestDonor>>> }> {
  const relay = track(await startTestRelay(join(dir.path, `${name}-relay`)))
  const bootstrap = relay.info.announceAddrs.filter(a => a.includes('/tcp/'))
  const handles = []
  for (let i = 0; i < donors; i++) {
    // --no-direct: these tests check the relayed path (on loopback WebRTC would upgrade it)
    const d = track(await startTestDonor(join(dir.path, `${name}-donor-${i}`), bootstrap, ['/p2p-circuit'], { noDirect: true }))
    await waitFor(`donor ${i} reservation`, async () => await reservedStatus(d.client, relay.info.peerId))
    handles.push(d)
  }
  return { relay, donors: handles }
}

describe('jobs end to end on loopback (real executor, relay-only donors)', () => {
  it('a job submitted to one relay-only donor runs on the other through the relay, with a verified receipt, and a 1 MiB input works', async () => {
    const { donors: [a, b] } = await mesh('relay1m', 2)
    await executorsSeen(a, 1)
    const input = Buffer.alloc(1024 * 1024, 'abcdefgh')
    const accepted = await submit(a.client, 'upper.wasm', { input })
    const view = await finished(a.client, accepted.jobId)
    assert.equal(view.status, 'succeeded', view.message)
    assert.equal(view.exitCode, 0)
    assert.equal(view.stdout, Buffer.alloc(1024 * 1024, 'ABCDEFGH').toString())
    assert.equal(view.replicas.length, 1)
    const r = view.replicas[0]
    assert.equal(r.executor, b.peerId)
    assert.equal(r.path, 'relayed')
    assert.equal(r.receiptVerified, true)
    assert.match(view.message, /^1\/1 agree, receipts verified/)

    // the stored receipt verifies independently, and a tampered copy does not
    const task = a.broker.getJob(accepted.jobId).tasks[0]
    assert.ok(task.receipt != null && task.receiptSignature != null)
    const body = await verifyReceipt({ body: task.receipt, signature: task.receiptSignature }, { executor: b.peerId, taskId: task.taskId, moduleCid: view.moduleCid, inputCid: view.inputCid })
    assert.equal(body.status, 'succeeded')
    const tampered = new Uint8Array(task.receipt)
    tampered[tampered.length - 1] ^= 1
    await assert.rejects(verifyReceipt({ body: tampered, signature: task.receiptSignature }, { executor: b.peerId, taskId: task.taskId, moduleCid: view.moduleCid, inputCid: view.inputCid }))
  })

  it('three replicas of a program that prints the time and random numbers agree byte for byte', async () => {
    const { donors } = await mesh('replicas', 4)
    const [a] = donors
    await executorsSeen(a, 3)
    const view = await finished(a.client, (await submit(a.client, 'clock-random.wasm', { replicas: 3 })).jobId)
    assert.equal(view.status, 'succeeded', view.message)
    assert.match(view.message, /^3\/3 agree, receipts verified/)
    assert.equal(new Set(view.replicas.map(r => r.executor)).size, 3)
    assert.equal(new Set(view.replicas.map(r => r.outputCid)).size, 1)
    assert.match(view.stdout ?? '', /^realtime \d+\.\d{9}\nmonotonic/)
    // another job (another job ID) gets other random numbers
    const other = await finished(a.client, (await submit(a.client, 'clock-random.wasm', { replicas: 1 })).jobId)
    assert.notEqual(other.outputCid, view.outputCid)
  })

  it('every executor status reaches the submitter: exit code, trap, deadline, fuel, output, invalid, rejected', async () => {
    const { donors: [a] } = await mesh('statuses', 2)
    await executorsSeen(a, 1)
    const cases: Array<[string, Parameters<typeof submit>[2], string, RegExp | number | undefined]> = [
      ['exit-code.wasm', {}, 'failed', 3],
      ['trap-unreachable.wasm', {}, 'failed', /unreachable/],
      ['infinite-loop.wasm', { limits: { deadlineMs: 300 } }, 'deadline_exceeded', undefined],
      ['infinite-loop.wasm', { limits: { fuel: 100_000 } }, 'out_of_fuel', undefined],
      ['huge-output.wasm', { limits: { outputBytes: 4096 } }, 'output_too_large', undefined],
      ['garbage.wasm', {}, 'invalid_module', undefined],
      ['forbidden-import.wasm', {}, 'rejected', undefined],
      ['simd.wasm', {}, 'rejected', undefined]
    ]
    for (const [module, opts, status, detail] of cases) {
      const view = await finished(a.client, (await submit(a.client, module, opts)).jobId)
      assert.equal(view.status, status, `${module}: ${view.message}`)
      if (typeof detail === 'number') assert.equal(view.exitCode, detail, module)
      if (detail instanceof RegExp) assert.match(view.message, detail, module)
      assert.equal(view.replicas.filter(r => r.state === 'failed').length, 0, `${module} is the job's own outcome, not retried`)
    }
  })

  it('an executor killed mid-job: the task is retried on another donor and the job completes', async () => {
    const { donors: [a, b, c] } = await mesh('kill', 3)
    await executorsSeen(a, 2)
    const accepted = await submit(a.client, 'primes.wasm', { input: '100000000\n' })
    // whichever donor got it, kill its sandbox process while the task runs
    const victim = await waitFor('a running task', () => [b, c].find(d => (d.executor?.status().running ?? 0) > 0), 15_000)
    const pid = victim.executor?.status().sandboxPid
    assert.ok(pid != null)
    process.kill(pid, 'SIGKILL')
    const view = await finished(a.client, accepted.jobId, 60_000)
    assert.equal(view.status, 'succeeded', view.message)
    assert.equal(view.stdout, 'primes below 100000000: 5761455\n')
    const failed = view.replicas.filter(r => r.state === 'failed')
    assert.equal(failed.length, 1)
    assert.equal(failed[0].executor, victim.peerId)
    assert.ok(failed[0].failure?.startsWith('EXECUTOR_CRASHED: '), failed[0].failure ?? 'no failure recorded')
    const done = view.replicas.find(r => r.state === 'done')
    assert.ok(done != null && done.executor !== victim.peerId)
    // the killed donor's executor came back by itself
    await waitFor('the sandbox restarted', () => victim.executor?.status().state === 'running' && victim.executor?.status().sandboxPid !== pid ? true : undefined)
  })

  it('the submitting daemon restarted mid-job resumes the job and finishes it without running it twice', async () => {
    const relay = track(await startTestRelay(join(dir.path, 'restart-relay')))
    const bootstrap = relay.info.announceAddrs.filter(x => x.includes('/tcp/'))
    const aDir = join(dir.path, 'restart-a')
    const a1 = await startTestDonor(aDir, bootstrap)
    const b = track(await startTestDonor(join(dir.path, 'restart-b'), bootstrap))
    await waitFor('b reserved', async () => await reservedStatus(b.client, relay.info.peerId))
    await executorsSeen(a1, 1)
    const accepted = await submit(a1.client, 'primes.wasm', { input: '60000000\n' })
    await waitFor('the task running on b', () => (b.executor?.status().running ?? 0) > 0 ? true : undefined, 15_000)
    await a1.stop()

    const a2 = track(await startTestDonor(aDir, bootstrap))
    assert.equal(a2.peerId, a1.peerId)
    const view = await finished(a2.client, accepted.jobId, 60_000)
    assert.equal(view.status, 'succeeded', view.message)
    assert.equal(view.stdout, 'primes below 60000000: 3562115\n')
    assert.equal(view.replicas.length, 1, 'one task, resumed, not a second job')
    const list = await a2.client.call('jobs', { limit: 10 })
    assert.equal(list.jobs.filter(j => j.jobId === accepted.jobId).length, 1)
  })

  it('a malformed dispatch message gets a clear log line and the donor keeps serving jobs', async () => {
    const { donors: [a, b] } = await mesh('malformed', 2)
    await executorsSeen(a, 1)
    const circuit = (await b.client.call('status', {})).relays[0].circuitAddr
    const conn = await a.donor.mesh.components.dialler.dial(multiaddr(circuit), { purpose: 'dispatch' })
    const stream = await conn.newStream('/worldcompute/dispatch/1.0.0', { runOnLimitedConnection: true })
    stream.send(new Uint8Array([0x05, 0xff, 0xfe, 0x00, 0x13, 0x37]))
    await stream.close().catch(() => {})
    const view = await finished(a.client, (await submit(a.client, 'hello.wasm', { args: ['x'] })).jobId)
    assert.equal(view.status, 'succeeded', view.message)
    assert.match(view.stdout ?? '', /hello from wasi/)
  })
})
