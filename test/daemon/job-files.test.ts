/**
 * `job submit --dir` end to end on loopback: real daemons, a relay, the real
 * executor with its WASI filesystem (preopens in, files out).
 */
import assert from 'node:assert/strict'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { saveJobFiles, submittedDirs } from '../../src/cli/job-files.ts'
import { MeshNode } from '../../src/net/mesh-node.ts'
import { executorsSeen, finished, fixture } from '../helpers/jobs.ts'
import { stopAfterEach } from '../helpers/cleanup.ts'
import { reservedStatus, startTestDonor, startTestRelay, tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'
import type { ApiClient } from '../../src/api/client.ts'
import type { SubmitDir } from '../../src/api/routes.ts'
import type { JobView } from '../../src/core/job.ts'
import type { DispatchService } from '../../src/protocols/dispatch/index.ts'

const dir = tempDir('wc-job-files-')
const track = stopAfterEach()
after(() => { dir.cleanup() })

type Donor = Awaited<ReturnType<typeof startTestDonor>>

/** A submitter and an executor on a relay; `direct`: both also listen on 127.0.0.1 and upgrade to a direct connection. */
async function mesh (name: string, executorFlags: Parameters<typeof startTestDonor>[3] = {}, direct = false): Promise<[Donor, Donor]> {
  const relay = track(await startTestRelay(join(dir.path, `${name}-relay`)))
  const bootstrap = relay.info.announceAddrs.filter(a => a.includes('/tcp/'))
  const donors: Donor[] = []
  for (const who of ['submitter', 'executor']) {
    const listen = direct ? ['/ip4/127.0.0.1/tcp/0', '/p2p-circuit'] : ['/p2p-circuit']
    const d = track(await startTestDonor(join(dir.path, `${name}-${who}`), bootstrap, listen, { noDirect: !direct, ...(who === 'submitter' ? { noExecute: true } : executorFlags) }))
    await waitFor(`${who} reservation`, async () => await reservedStatus(d.client, relay.info.peerId))
    donors.push(d)
  }
  await executorsSeen(donors[0], 1)
  return [donors[0], donors[1]]
}

function dispatchOf (d: Donor): DispatchService {
  const node = d.donor.mesh
  assert.ok(node instanceof MeshNode)
  const service = (node.services as { dispatch?: DispatchService }).dispatch
  assert.ok(service != null, 'the daemon\'s node has the dispatch service')
  return service
}

async function submitWithDirs (client: ApiClient, module: string, dirs: SubmitDir[] | undefined): Promise<JobView> {
  return await client.call('submitJob', { module: fixture(module).toString('base64'), input: '', moduleName: module, args: [], env: [], replicas: 1, limits: {}, ...(dirs != null ? { dirs } : {}) })
}

function hostTree (name: string): { data: string, out: string } {
  const data = join(dir.path, name, 'data')
  const out = join(dir.path, name, 'out')
  mkdirSync(join(data, 'nested'), { recursive: true })
  mkdirSync(out, { recursive: true })
  writeFileSync(join(data, 'in.txt'), 'hello files\n')
  writeFileSync(join(data, 'remove-me.txt'), 'bye\n')
  writeFileSync(join(data, 'nested', 'big.bin'), Buffer.alloc(2 * 1024 * 1024, 7))
  return { data, out }
}

describe('job directories end to end on loopback', () => {
  it('sends a job\'s files once: a second job with the same files sends none of them', async () => {
    const [submitter, executor] = await mesh('once')
    const host = hostTree('once')
    const dirs = await submittedDirs([`${host.data}::/data`], 64 * 1024 * 1024)
    const sent = dispatchOf(submitter).treeStats

    const first = await finished(submitter.client, (await submitWithDirs(submitter.client, 'hello.wasm', dirs)).jobId)
    assert.equal(first.status, 'succeeded', first.message)
    assert.ok(first.manifestCid != null)
    assert.equal(sent.blobsSent, 3)
    assert.ok(sent.blobBytesSent >= 2 * 1024 * 1024)
    assert.equal(dispatchOf(executor).treeStats.blobsReceived, 3)

    const second = await finished(submitter.client, (await submitWithDirs(submitter.client, 'hello.wasm', dirs)).jobId)
    assert.equal(second.status, 'succeeded', second.message)
    assert.equal(second.manifestCid, first.manifestCid)
    assert.equal(sent.blobsSent, 3, 'the second job sent no file again')
    assert.equal(dispatchOf(executor).treeStats.blobsReceived, 3)
    // the host tree is read, never written
    assert.equal(readFileSync(join(host.data, 'remove-me.txt'), 'utf8'), 'bye\n')
  })

  it('brings back the files a job wrote, and --save writes them under DIR/<guest path>', async () => {
    const [submitter] = await mesh('save')
    const host = hostTree('save')
    const dirs = await submittedDirs([`${host.data}::/data`, `${host.out}::/out`], 64 * 1024 * 1024)
    const view = await finished(submitter.client, (await submitWithDirs(submitter.client, 'dir-copy.wasm', dirs)).jobId)

    const paths = (view.files ?? []).map(f => f.path)
    assert.ok(paths.includes('/out/result.txt'), `expected file /out/result.txt in the result, got ${JSON.stringify(paths)} (${view.status}: ${view.stderr ?? ''})`)
    assert.equal(view.status, 'succeeded', view.message)
    assert.deepEqual(view.removedFiles, ['/data/remove-me.txt'])
    const saveDir = join(dir.path, 'saved')
    const lines: string[] = []
    await saveJobFiles(submitter.client, view.jobId, saveDir, { out: l => lines.push(l), err: l => lines.push(l) })
    assert.equal(readFileSync(join(saveDir, 'out', 'result.txt'), 'utf8'), 'HELLO FILES\n')
    assert.ok(lines.some(l => l.includes('/data/remove-me.txt')), 'the removed file is listed')
    // the submitter's own directories are untouched
    assert.equal(readFileSync(join(host.data, 'remove-me.txt'), 'utf8'), 'bye\n')
  })
})

describe('big data on loopback', () => {
  it('a 70 MiB input runs on a donor whose --max-payload allows it, streamed over the direct connection', async () => {
    const [submitter, executor] = await mesh('big', { maxPayload: '128MiB' }, true)
    // big payloads go over a direct connection (a relay's circuit is for reaching peers, not bulk data): the
    // broker dials the executor directly for a payload over the relay's data limit, so no upgrade is awaited here
    const input = Buffer.alloc(70 * 1024 * 1024)
    for (let i = 0; i < input.length; i++) input[i] = (i * 7 + (i >> 12)) & 0xff
    let sum = 0
    for (const b of input) sum = (sum * 31 + b) % 1000000007
    const accepted = await submitter.client.call('submitJob', {
      module: fixture('count-bytes.wasm').toString('base64'),
      input: input.toString('base64'),
      moduleName: 'count-bytes.wasm',
      args: [],
      env: [],
      replicas: 1,
      limits: { payloadBytes: 72 * 1024 * 1024 }
    }, { timeoutMs: 60_000 })
    const view = await finished(submitter.client, accepted.jobId, 60_000)
    assert.equal(view.status, 'succeeded', view.message)
    assert.equal(view.stdout, `${input.length} bytes, checksum ${sum}\n`)
    assert.equal(view.replicas[0].path, 'direct')
    assert.equal(view.replicas[0].executor, executor.peerId)
  })
})
