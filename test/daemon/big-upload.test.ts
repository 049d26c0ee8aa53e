/**
 * A 200 MiB input end to end on loopback: `job submit` (the real CLI, a
 * process of its own) uploads it as a blob, the broker keeps it as a file,
 * and the executor (a daemon process of its own, so that this process's
 * memory is the broker's) fetches it by CID over the direct connection into
 * its content store; the broker's memory grows by less than the payload, the
 * executor's by less than two copies of it.
 */
import assert from 'node:assert/strict'
import { createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { stopAfterEach } from '../helpers/cleanup.ts'
import { runCli, startCli } from '../helpers/cli.ts'
import { ApiClient } from '../../src/api/client.ts'
import { fileRawCid } from '../../src/api/blobs.ts'
import { executorsSeen, fixture } from '../helpers/jobs.ts'
import { loadRelayConfig } from '../../src/config/config.ts'
import { startRelay } from '../../src/daemon/daemon.ts'
import { reservedStatus, startTestDonor, startTestRelay, tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'

const dir = tempDir('wc-big-upload-')
const track = stopAfterEach()
after(() => { dir.cleanup() })

const MiB = 1024 * 1024
const SIZE = 200 * MiB
const MODULE = fileURLToPath(new URL('../fixtures/wasm/count-bytes.wasm', import.meta.url))

/** A process's resident memory now and at its peak so far (Linux /proc), bytes. */
function memoryOf (pid: number): { rss: number, peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024
  return { rss: kib('VmRSS'), peak: kib('VmHWM') }
}

/** Writes SIZE bytes of a pattern in 1 MiB chunks (never whole in this process); their count-bytes checksum. */
async function writeInput (path: string): Promise<number> {
  const out = createWriteStream(path)
  let sum = 0
  const chunk = Buffer.alloc(MiB)
  for (let base = 0; base < SIZE; base += MiB) {
    for (let j = 0; j < MiB; j++) {
      const i = base + j
      chunk[j] = (i * 7 + (i >> 12)) & 0xff
      sum = (sum * 31 + chunk[j]) % 1000000007
    }
    if (!out.write(chunk)) await new Promise<void>(resolve => out.once('drain', () => { resolve() }))
  }
  await new Promise<void>((resolve, reject) => { out.end((err?: Error | null) => { if (err != null) reject(err); else resolve() }) })
  return sum
}

describe('a 200 MiB input', () => {
  it('job submit uploads it as a blob, the executor fetches it by CID over the direct connection, and neither side holds it more than the sandbox needs', { timeout: 120_000 }, async () => {
    const relay = track(await startTestRelay(join(dir.path, 'relay')))
    const bootstrap = relay.info.announceAddrs.filter(a => a.includes('/tcp/'))
    const listen = ['/ip4/127.0.0.1/tcp/0', '/p2p-circuit']
    const submitter = track(await startTestDonor(join(dir.path, 'submitter'), bootstrap, listen, { noExecute: true }))
    const executorDir = join(dir.path, 'executor')
    const executor = startCli(['daemon', '--data-dir', executorDir, '--bootstrap', bootstrap[0], '--listen', listen[0], '--listen', listen[1], '--api-port', '0', '--max-payload', '256MiB'])
    after(async () => { await executor.stop() })
    const executorClient = new ApiClient({ dataDir: executorDir })
    await waitFor('the executor daemon\'s API', async () => await executorClient.call('health', {}).catch(() => undefined), 20_000)
    const executorId = (await executorClient.call('health', {})).peerId
    for (const client of [submitter.client, executorClient]) await waitFor('a reservation', async () => await reservedStatus(client, relay.info.peerId))
    await executorsSeen(submitter, 1)
    console.log(`executor ${executorId}`)
    const input = join(dir.path, 'input.bin')
    const sum = await writeInput(input)

    global.gc?.()
    const executorPid = executor.proc.pid
    assert.ok(executorPid != null)
    const executorBase = memoryOf(executorPid).rss
    const base = process.memoryUsage().rss
    let peak = base
    const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss) }, 50)
    let res
    try {
      res = await runCli(['job', 'submit', MODULE, '--input', input, '--json', '--data-dir', join(dir.path, 'submitter')], { timeoutMs: 90_000 })
    } finally {
      clearInterval(sampler)
    }
    assert.equal(res.code, 0, res.stderr)
    const view = JSON.parse(res.stdout) as { status: string, stdout: string, replicas: Array<{ path: string }>, message: string }
    assert.equal(view.status, 'succeeded', view.message)
    assert.equal(view.stdout, `${SIZE} bytes, checksum ${sum}\n`)
    assert.equal(view.replicas[0].path, 'direct')
    // the broker kept the input as a blob file, not in its SQLite job store (and the module, which job submit names by CID)
    assert.deepEqual(readdirSync(join(dir.path, 'submitter', 'blobs')).sort(), [await fileRawCid(input), await fileRawCid(MODULE)].sort())
    const grown = peak - base
    console.log(`broker rss grew ${(grown / MiB).toFixed(0)} MiB for a ${SIZE / MiB} MiB input`)
    assert.ok(grown < SIZE, `rss grew ${(grown / MiB).toFixed(0)} MiB: more than the ${SIZE / MiB} MiB payload`)
    // the daemon holds the input once for the sandbox and once more while handing it over (pushed on the dispatch
    // stream it measured the same: ~2.1 copies); the fetch adds its buffers, never another whole copy
    const executorGrown = memoryOf(executorPid).peak - executorBase
    console.log(`executor daemon rss peak grew ${(executorGrown / MiB).toFixed(0)} MiB for a ${SIZE / MiB} MiB input`)
    assert.ok(executorGrown < 3 * SIZE, `the executor daemon's rss peak grew ${(executorGrown / MiB).toFixed(0)} MiB: three copies or more of the ${SIZE / MiB} MiB input`)
    // the executor fetched the input by CID into its content store (the small module came on the dispatch stream)
    assert.equal(readdirSync(join(executorDir, 'content')).length, 1)
  })

  it('a submit naming a blob never uploaded is refused with BLOB_NOT_FOUND, and no job is made', async () => {
    const relay = track(await startTestRelay(join(dir.path, 'unknown-relay')))
    const submitter = track(await startTestDonor(join(dir.path, 'unknown-submitter'), relay.info.announceAddrs.filter(a => a.includes('/tcp/')), ['/p2p-circuit'], { noExecute: true }))
    const never = 'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku'
    await assert.rejects(submitter.client.call('submitJob', { module: fixture('count-bytes.wasm').toString('base64'), input: '', inputCid: never, moduleName: 'count-bytes.wasm', args: [], env: [], replicas: 1, limits: {} }),
      (err: unknown) => (err as { code?: string }).code === 'BLOB_NOT_FOUND')
    assert.deepEqual((await submitter.client.call('jobs', { limit: 10 })).jobs, [])
  })
})

describe('a directory with a 100 MiB file', () => {
  it('job submit --dir uploads the file as a blob, names it by CID, the executor fetches it by CID, and the job runs', { timeout: 120_000 }, async () => {
    const relay = track(await startTestRelay(join(dir.path, 'dir-relay')))
    const bootstrap = relay.info.announceAddrs.filter(a => a.includes('/tcp/'))
    const listen = ['/ip4/127.0.0.1/tcp/0', '/p2p-circuit']
    const submitter = track(await startTestDonor(join(dir.path, 'dir-submitter'), bootstrap, listen, { noExecute: true }))
    const executor = track(await startTestDonor(join(dir.path, 'dir-executor'), bootstrap, listen, { maxPayload: '256MiB' }))
    for (const d of [submitter, executor]) await waitFor('a reservation', async () => await reservedStatus(d.client, relay.info.peerId))
    await executorsSeen(submitter, 1)
    const data = join(dir.path, 'dir-host', 'data')
    mkdirSync(data, { recursive: true })
    mkdirSync(join(dir.path, 'dir-host', 'out'), { recursive: true })
    writeFileSync(join(data, 'in.txt'), 'hello big dir\n')
    writeFileSync(join(data, 'big.bin'), Buffer.alloc(100 * MiB, 0x5a))
    const wasm = fileURLToPath(new URL('../fixtures/wasm/dir-copy.wasm', import.meta.url))
    const res = await runCli(['job', 'submit', wasm, '--dir', `${data}::/data`, '--dir', `${join(dir.path, 'dir-host', 'out')}::/out`, '--json', '--data-dir', join(dir.path, 'dir-submitter')], { timeoutMs: 90_000 })
    assert.equal(res.code, 0, res.stderr)
    const view = JSON.parse(res.stdout) as { status: string, stdout: string, message: string }
    assert.equal(view.status, 'succeeded', view.message)
    assert.equal(view.stdout, 'copied 14 bytes\n')
    // the big file went as an uploaded blob, not base64 in the submit's body (the module too: job submit names it by CID)
    assert.deepEqual(readdirSync(join(dir.path, 'dir-submitter', 'blobs')).sort(), [await fileRawCid(join(data, 'big.bin')), await fileRawCid(wasm)].sort())
    // the executor fetched the big file by CID into its content store; the small one came on the dispatch stream
    assert.deepEqual(readdirSync(join(dir.path, 'dir-executor', 'content')), [await fileRawCid(join(data, 'big.bin'))])
    // the broker's job store names the big file by CID without its bytes (its write-ahead log counted too)
    const store = join(dir.path, 'dir-submitter', 'jobs.sqlite')
    const storeBytes = [store, `${store}-wal`].reduce((n, f) => n + (existsSync(f) ? statSync(f).size : 0), 0)
    assert.ok(storeBytes < 10 * MiB, `the job store holds ${storeBytes} bytes after a job with a 100 MiB directory file`)
  })
})

describe('a payload over the relay\'s data limit', () => {
  it('fails its task with RELAY_DATA_LIMIT naming the limit when the only path is a relay circuit', { timeout: 60_000 }, async () => {
    const relay = track(await startRelay(loadRelayConfig({ dataDir: join(dir.path, 'small-relay'), listen: ['/ip4/127.0.0.1/tcp/0'], dataLimit: '1MiB' }, {})))
    const bootstrap = relay.info.announceAddrs.filter(a => a.includes('/tcp/'))
    const donors = []
    for (const who of ['relayed-submitter', 'relayed-executor']) {
      const d = track(await startTestDonor(join(dir.path, who), bootstrap, ['/p2p-circuit'], { noDirect: true, ...(who === 'relayed-submitter' ? { noExecute: true } : {}) }))
      await waitFor(`${who} reservation`, async () => await reservedStatus(d.client, relay.info.peerId))
      donors.push(d)
    }
    const [submitter] = donors
    await executorsSeen(submitter, 1)
    const accepted = await submitter.client.call('submitJob', {
      module: fixture('count-bytes.wasm').toString('base64'),
      input: Buffer.alloc(2 * MiB, 1).toString('base64'),
      moduleName: 'count-bytes.wasm',
      args: [],
      env: [],
      replicas: 1,
      limits: {}
    })
    const failure = await waitFor('the task failed', async () => {
      const view = await submitter.client.call('job', { id: accepted.jobId, full: false })
      return view.replicas.find(r => r.state === 'failed')?.failure ?? undefined
    }, 30_000)
    assert.match(failure, /^RELAY_DATA_LIMIT: /)
    assert.match(failure, /over the \d+ bytes the relay circuit .* may carry \(the relay's --relay-data-limit\)/)
  })
})
