import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { main } from '../../src/daemon/commands/index.ts'
import type { DonatedTask, DonorControlsView } from '../../src/core/types.ts'
import { executorsSeen, finished, submit } from '../helpers/jobs.ts'
import { stopAfterEach } from '../helpers/cleanup.ts'
import { captureJsonLogs } from '../helpers/logs.ts'
import { configureLogging } from '../../src/log/logger.ts'
import { reservedStatus, startTestDonor, startTestRelay, tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'

const dir = tempDir('wc-controls-daemon-')
const track = stopAfterEach()
const logs = captureJsonLogs()
after(() => { dir.cleanup() })

/** The captured JSON log records (a line the command line printed as text in between is skipped). */
function records (): Array<Record<string, unknown>> {
  return logs.lines.filter(l => l.startsWith('{')).map(l => JSON.parse(l) as Record<string, unknown>)
}

/** Runs one `worldcompute` command line in this process; its stdout, parsed as JSON. */
async function cli<T> (...argv: string[]): Promise<T> {
  const out: string[] = []
  const err: string[] = []
  const code = await main([...argv, '--json'], { out: (l) => { out.push(l) }, err: (l) => { err.push(l) } })
  // the command line sets up logging for a terminal: the daemons in this process log to the capture again
  configureLogging({ spec: 'info', format: 'json', sink: (line) => { logs.lines.push(line) } })
  assert.equal(code, 0, `worldcompute ${argv.join(' ')} exited ${code}: ${err.join('\n')}`)
  return JSON.parse(out.join('\n')) as T
}

describe('pausing a donor in a running mesh (in-process daemons on loopback)', () => {
  it('a paused donor declines offers with the code "paused" and stays paused across a restart; resumed, it runs the job and lists it in `donated`', async () => {
    const relay = track(await startTestRelay(join(dir.path, 'relay')))
    const bootstrap = relay.info.announceAddrs.filter(a => a.includes('/tcp/'))
    const donorDir = join(dir.path, 'donor')
    const start = async (): Promise<Awaited<ReturnType<typeof startTestDonor>>> => {
      const d = track(await startTestDonor(donorDir, bootstrap, ['/p2p-circuit'], { noDirect: true }))
      await waitFor('the donor\'s reservation', async () => await reservedStatus(d.client, relay.info.peerId))
      return d
    }
    const submitter = track(await startTestDonor(join(dir.path, 'submitter'), bootstrap, ['/p2p-circuit'], { noDirect: true, noExecute: true }))
    await waitFor('the submitter\'s reservation', async () => await reservedStatus(submitter.client, relay.info.peerId))
    const first = await start()

    const paused = await cli<DonorControlsView>('pause', '--data-dir', donorDir)
    assert.equal(paused.paused, true)
    assert.equal(paused.pausedBy, 'user')
    // the pause is in the data directory: a restart keeps it
    await first.stop()
    const donor = await start()
    const status = await donor.client.call('status', {})
    assert.equal(status.paused, true)
    assert.equal(status.controls?.pausedBy, 'user')
    assert.equal(status.controls?.cpuLimit, 100)

    await executorsSeen(submitter, 1)
    const job = await submit(submitter.client, 'hello.wasm')
    await waitFor('an offer declined with the code "paused"', () => records().some(r => r.code === 'paused'), 20_000)
    const waiting = await submitter.client.call('job', { id: job.jobId, full: false })
    assert.equal(waiting.final, false, 'the job waits for a donor while its only one is paused')

    const resumed = await cli<DonorControlsView>('resume', '--data-dir', donorDir)
    assert.equal(resumed.paused, false)
    assert.equal(resumed.pausedBy, null)
    const view = await finished(submitter.client, job.jobId, 30_000)
    assert.equal(view.status, 'succeeded', view.message)
    assert.equal(view.replicas[0].executor, donor.peerId)

    const donated = await cli<DonatedTask[]>('donated', '--data-dir', donorDir)
    const task = donated.find(t => t.jobId === job.jobId)
    assert.ok(task != null, `donated lists the job: ${JSON.stringify(donated)}`)
    assert.equal(task.broker, submitter.peerId)
    assert.equal(task.status, 'succeeded')
    assert.ok(task.cpuTimeMs != null && task.cpuTimeMs > 0, `CPU time ${String(task.cpuTimeMs)}`)
    assert.ok(task.fuelUsed > 0)
  })

  it('a daemon started with --no-execute answers pause with the code NOT_EXECUTING', async () => {
    const relay = track(await startTestRelay(join(dir.path, 'relay2')))
    const bootstrap = relay.info.announceAddrs.filter(a => a.includes('/tcp/'))
    const d = track(await startTestDonor(join(dir.path, 'no-exec'), bootstrap, ['/p2p-circuit'], { noDirect: true, noExecute: true }))
    await assert.rejects(d.client.call('pause', {}), (err: unknown) => (err as { code?: string }).code === 'NOT_EXECUTING')
    const status = await d.client.call('status', {})
    assert.equal(status.paused, false)
    assert.equal(status.controls, undefined)
  })
})
