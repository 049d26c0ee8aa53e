import assert from 'node:assert/strict'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { runCli, startCliMesh, type LongRunning } from '../helpers/cli.ts'
import { tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'

const dir = tempDir('wc-cli-job-')
const started: LongRunning[] = []
const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/wasm/${name}`, import.meta.url))
const submitterDir = join(dir.path, 'submitter')

before(async () => {
  await startCliMesh(dir.path, started)
  // the submitter sees the executor's capacity
  await waitFor('an executor to be known', async () => {
    const res = await runCli(['status', '--data-dir', submitterDir, '--json'])
    if (res.code !== 0) return undefined
    const s = JSON.parse(res.stdout)
    return s.relays.length > 0 && s.executor?.accepting === false ? true : undefined
  }, 30_000)
})

after(async () => {
  for (const p of started.reverse()) await p.stop()
  dir.cleanup()
})

describe('worldcompute job', () => {
  it('job submit --json waits for the answer and prints the fixed fields; exit 0 on success', async () => {
    const input = join(dir.path, 'n.txt')
    writeFileSync(input, '1000\n')
    const res = await runCli(['job', 'submit', fixture('primes.wasm'), '--input', input, '--data-dir', submitterDir, '--json'], { timeoutMs: 60_000 })
    assert.equal(res.code, 0, res.stderr)
    const v = JSON.parse(res.stdout)
    for (const key of ['jobId', 'status', 'exitCode', 'stdout', 'stderr', 'outputCid', 'fuelUsed', 'durationMs', 'replicas']) assert.ok(key in v, `has ${key}`)
    assert.equal(v.status, 'succeeded')
    assert.equal(v.exitCode, 0)
    assert.equal(v.stdout, 'primes below 1000: 168\n')
    assert.equal(v.replicas.length, 1)
    for (const key of ['executor', 'path', 'status', 'outputCid', 'receiptVerified']) assert.ok(key in v.replicas[0], `replica has ${key}`)
    assert.equal(v.replicas[0].path, 'relayed')
    assert.equal(v.replicas[0].receiptVerified, true)

    const status = await runCli(['job', 'status', v.jobId, '--data-dir', submitterDir])
    assert.equal(status.code, 0)
    assert.match(status.stdout, new RegExp(`job ${v.jobId}: succeeded`))
    const result = await runCli(['job', 'result', v.jobId, '--data-dir', submitterDir])
    assert.equal(result.code, 0)
    assert.equal(result.stdout, 'primes below 1000: 168\n')
    const list = await runCli(['job', 'list', '--data-dir', submitterDir, '--json'])
    assert.ok(JSON.parse(list.stdout).some((j: any) => j.jobId === v.jobId))
  })

  it('a program that exits non-zero makes job submit exit non-zero, with the exit code in the JSON', async () => {
    const res = await runCli(['job', 'submit', fixture('exit-code.wasm'), '--data-dir', submitterDir, '--json'], { timeoutMs: 60_000 })
    assert.equal(res.code, 1)
    const v = JSON.parse(res.stdout)
    assert.equal(v.status, 'failed')
    assert.equal(v.exitCode, 3)
  })

  it('--arg and --env reach the program, --deadline and --memory take units; human output prints its stdout', async () => {
    const res = await runCli(['job', 'submit', fixture('hello.wasm'), '--arg', 'first', '--env', 'GREETING=hi', '--deadline', '10m', '--memory', '64MiB', '--data-dir', submitterDir], { timeoutMs: 60_000 })
    assert.equal(res.code, 0, res.stderr)
    assert.match(res.stdout, /hello from wasi/)
    assert.match(res.stdout, /first/)
    assert.match(res.stdout, /GREETING=hi/)
    assert.match(res.stdout, /argv\[0\]=hello.wasm/)
    assert.match(res.stderr, /succeeded/)
  })

  it('--detach prints the job ID at once', async () => {
    const res = await runCli(['job', 'submit', fixture('hello.wasm'), '--detach', '--data-dir', submitterDir])
    assert.equal(res.code, 0)
    assert.match(res.stdout.trim(), /^job-[0-9a-f]{16}$/)
  })

  it('job submit --executor runs the job only there, stores the list with the job and job status shows it', async () => {
    const id = await runCli(['status', '--data-dir', join(dir.path, 'executor'), '--json'])
    assert.equal(id.code, 0, id.stderr)
    const executor: string = JSON.parse(id.stdout).peerId
    const res = await runCli(['job', 'submit', fixture('hello.wasm'), '--executor', executor, '--data-dir', submitterDir, '--json'], { timeoutMs: 60_000 })
    assert.equal(res.code, 0, res.stderr)
    const v = JSON.parse(res.stdout)
    assert.deepEqual(v.executors, [executor])
    assert.equal(v.replicas[0].executor, executor)
    const status = await runCli(['job', 'status', v.jobId, '--data-dir', submitterDir])
    assert.equal(status.code, 0)
    assert.match(status.stdout, new RegExp(`only on: ${executor}`))
    const json = JSON.parse((await runCli(['job', 'status', v.jobId, '--data-dir', submitterDir, '--json'])).stdout)
    assert.deepEqual(json.executors, [executor])
  })

  it('job submit --executor with something that is not a PeerId, or fewer executors than replicas, is refused at once', async () => {
    const bad = await runCli(['job', 'submit', fixture('hello.wasm'), '--executor', 'not-a-peer', '--data-dir', submitterDir])
    assert.notEqual(bad.code, 0)
    assert.match(bad.stderr, /JOB_REJECTED|not a PeerId/)
    const id = JSON.parse((await runCli(['status', '--data-dir', join(dir.path, 'executor'), '--json'])).stdout).peerId
    const few = await runCli(['job', 'submit', fixture('hello.wasm'), '--executor', id, '--replicas', '2', '--data-dir', submitterDir])
    assert.notEqual(few.code, 0)
    assert.match(few.stderr, /2 replicas need 2 distinct executors/)
  })

  it('--replicas above the executors the daemon knows warns at once, naming both counts; status shows the count', async () => {
    const status = JSON.parse((await runCli(['status', '--data-dir', submitterDir, '--json'])).stdout)
    assert.equal(status.knownExecutors, 1)
    const res = await runCli(['job', 'submit', fixture('hello.wasm'), '--replicas', '3', '--detach', '--data-dir', submitterDir])
    assert.equal(res.code, 0, res.stderr)
    assert.match(res.stderr, /warning: 3 replica\(s\) wanted but the daemon knows 1 other peer\(s\) that accept jobs/)
    const enough = await runCli(['job', 'submit', fixture('hello.wasm'), '--detach', '--data-dir', submitterDir])
    assert.doesNotMatch(enough.stderr, /warning/)
  })

  it('job submit with no daemon says so in one line', async () => {
    const res = await runCli(['job', 'submit', fixture('hello.wasm'), '--data-dir', join(dir.path, 'nobody')])
    assert.notEqual(res.code, 0)
    assert.match(res.stderr.trim(), /no daemon is running.*worldcompute daemon/)
  })
})

describe('worldcompute job with --dir and --save', () => {
  it('job submit --dir sends the tree: the JSON names its manifest; job result --save on a job without files says so', async () => {
    const data = join(dir.path, 'tree')
    mkdirSync(join(data, 'sub'), { recursive: true })
    writeFileSync(join(data, 'sub', 'a.txt'), 'alpha')
    const res = await runCli(['job', 'submit', fixture('hello.wasm'), '--dir', `${data}::/data`, '--data-dir', submitterDir, '--json'], { timeoutMs: 60_000 })
    assert.equal(res.code, 0, res.stderr)
    const v = JSON.parse(res.stdout)
    assert.equal(v.status, 'succeeded')
    assert.match(v.manifestCid, /^bafy/)
    const plain = await runCli(['job', 'submit', fixture('hello.wasm'), '--data-dir', submitterDir, '--json'], { timeoutMs: 60_000 })
    const saved = await runCli(['job', 'result', JSON.parse(plain.stdout).jobId, '--save', join(dir.path, 'saved'), '--data-dir', submitterDir])
    assert.equal(saved.code, 0, saved.stderr)
    assert.match(saved.stderr, /submitted without --dir: it has no files to save/)
  })

  it('a missing --dir, a relative GUEST and --save with --detach are usage errors (exit 2) naming the problem', async () => {
    const missing = await runCli(['job', 'submit', fixture('hello.wasm'), '--dir', join(dir.path, 'nope'), '--data-dir', submitterDir])
    assert.equal(missing.code, 2)
    assert.match(missing.stderr, /nope: no such directory/)
    const relative = await runCli(['job', 'submit', fixture('hello.wasm'), '--dir', `${dir.path}::data`, '--data-dir', submitterDir])
    assert.equal(relative.code, 2)
    assert.match(relative.stderr, /guest directory must be absolute/)
    const detached = await runCli(['job', 'submit', fixture('hello.wasm'), '--save', 'out', '--detach', '--data-dir', submitterDir])
    assert.equal(detached.code, 2)
    assert.match(detached.stderr, /--save waits for the result/)
  })
})
