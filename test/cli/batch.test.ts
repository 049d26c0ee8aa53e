import assert from 'node:assert/strict'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { runCli, startCli, startCliMesh, type LongRunning } from '../helpers/cli.ts'
import { tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'
import type { BatchEntry, BatchSummary } from '../../src/cli/commands/batch.ts'
import type { JobView } from '../../src/core/job.ts'

/**
 * `job submit --batch` through the real CLI against real daemons on loopback:
 * a submitter (runs nothing itself) and one executor, both relay-only.
 */

const dir = tempDir('wc-cli-batch-')
const started: LongRunning[] = []
const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/wasm/${name}`, import.meta.url))
const submitterDir = join(dir.path, 'submitter')

before(async () => {
  await startCliMesh(dir.path, started, ['--max-jobs', '2'])
  // an idle submitter does not listen to capacity announcements (its first job makes it listen and find
  // the executor): both holding a reservation on the relay is what ready means
  await waitFor('the submitter and the executor to hold a reservation', async () => {
    for (const name of ['submitter', 'executor']) {
      const res = await runCli(['status', '--data-dir', join(dir.path, name), '--json'])
      if (res.code !== 0 || JSON.parse(res.stdout).relays.length === 0) return undefined
    }
    return true
  }, 30_000)
})

after(async () => {
  for (const p of started.reverse()) await p.stop()
  dir.cleanup()
})

function inputs (name: string, files: Record<string, string>): string {
  const path = join(dir.path, name)
  mkdirSync(path, { recursive: true })
  for (const [file, text] of Object.entries(files)) writeFileSync(join(path, file), text)
  // not an input: only regular files are
  mkdirSync(join(path, 'a-subdirectory'), { recursive: true })
  return path
}

function summaryOf (out: string): BatchSummary {
  return JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as BatchSummary
}

function byFile (s: BatchSummary): Record<string, BatchEntry> {
  return Object.fromEntries(s.inputs.map(e => [e.file, e]))
}

/**
 * What to print when an input's status is not the expected one: its summary
 * entry and the executor daemon's log lines about its tasks (they say why a
 * run ended as it did: the sandbox, the deadline guard, the dispatch).
 */
function whyNot (entry: BatchEntry | undefined): string {
  const executor = started[2]
  const lines = executor === undefined ? [] : executor.stderr().split('\n').filter(l => /task|sandbox|executor/i.test(l)).slice(-30)
  return `entry: ${JSON.stringify(entry)}\nexecutor log (task lines):\n${lines.join('\n')}`
}

async function jobsOnDaemon (): Promise<JobView[]> {
  const res = await runCli(['job', 'list', '--data-dir', submitterDir, '--json'])
  assert.equal(res.code, 0, res.stderr)
  return JSON.parse(res.stdout) as JobView[]
}

describe('worldcompute job submit --batch', () => {
  it('runs one job per file, writes outputs and the summary, exits 1 for a failed input; a re-run skips the succeeded ones', async () => {
    const src = inputs('in-fail', { 'a.txt': '10\n', 'b.txt': 'not a number\n', 'c.txt': '100\n' })
    const out = join(dir.path, 'out-fail')
    const args = ['job', 'submit', fixture('primes.wasm'), '--batch', src, '--out', out, '--data-dir', submitterDir]
    const first = await runCli([...args, '--json'], { timeoutMs: 90_000 })
    assert.equal(first.code, 1, first.stderr)
    const printed = JSON.parse(first.stdout) as BatchSummary
    const s = summaryOf(out)
    assert.deepEqual(printed.inputs, s.inputs)
    assert.deepEqual(s.inputs.map(e => e.file), ['a.txt', 'b.txt', 'c.txt'])
    const e = byFile(s)
    assert.equal(e['a.txt'].status, 'succeeded', whyNot(e['a.txt']))
    assert.equal(e['c.txt'].status, 'succeeded', whyNot(e['c.txt']))
    assert.equal(e['b.txt'].status, 'failed', whyNot(e['b.txt']))
    assert.equal(e['b.txt'].exitCode, 2)
    for (const entry of s.inputs) for (const key of ['file', 'jobId', 'status', 'exitCode', 'outputCid']) assert.ok(key in entry, `${entry.file} has ${key}`)
    assert.equal(readFileSync(join(out, 'a.txt.stdout'), 'utf8'), 'primes below 10: 4\n')
    assert.equal(readFileSync(join(out, 'c.txt.stdout'), 'utf8'), 'primes below 100: 25\n')
    assert.ok(existsSync(join(out, 'b.txt.stderr')))
    assert.equal(s.succeeded, 2)
    assert.equal(s.failed, 1)

    // again, unchanged: only the failed input runs
    const before = (await jobsOnDaemon()).length
    const second = await runCli(args, { timeoutMs: 90_000 })
    assert.equal(second.code, 1)
    assert.equal((await jobsOnDaemon()).length, before + 1)
    assert.equal(byFile(summaryOf(out))['a.txt'].jobId, e['a.txt'].jobId, 'a succeeded input keeps its job')

    // a fixed input and a changed one run; the rest are skipped; every input succeeded: exit 0
    writeFileSync(join(src, 'b.txt'), '50\n')
    writeFileSync(join(src, 'a.txt'), '20\n')
    const third = await runCli(args, { timeoutMs: 90_000 })
    assert.equal(third.code, 0, third.stderr)
    assert.equal((await jobsOnDaemon()).length, before + 3)
    const fixed = byFile(summaryOf(out))
    assert.equal(fixed['b.txt'].status, 'succeeded', whyNot(fixed['b.txt']))
    assert.equal(fixed['c.txt'].jobId, e['c.txt'].jobId)
    assert.equal(readFileSync(join(out, 'a.txt.stdout'), 'utf8'), 'primes below 20: 8\n')
    assert.equal(readFileSync(join(out, 'b.txt.stdout'), 'utf8'), 'primes below 50: 15\n')
  })

  it('a batch killed by PID and run again completes every input exactly once', async () => {
    const files: Record<string, string> = {}
    for (let i = 0; i < 12; i++) files[`n${String(i).padStart(2, '0')}`] = `${1000 + i}\n`
    const src = inputs('in-kill', files)
    const out = join(dir.path, 'out-kill')
    const args = ['job', 'submit', fixture('primes.wasm'), '--batch', src, '--out', out, '--parallel', '2', '--data-dir', submitterDir]
    const before = (await jobsOnDaemon()).length
    const cli = startCli(args)
    started.push(cli)
    // killed once some inputs are done and some are under way
    await waitFor('a few inputs to finish', () => {
      const journal = existsSync(join(out, 'summary.journal')) ? readFileSync(join(out, 'summary.journal'), 'utf8') : ''
      const summary = existsSync(join(out, 'summary.json')) ? readFileSync(join(out, 'summary.json'), 'utf8') : ''
      return (journal + summary).split('"succeeded"').length > 3 ? true : undefined
    }, 60_000, 5)
    assert.ok(cli.proc.pid != null)
    process.kill(cli.proc.pid, 'SIGKILL')
    await cli.stop()
    const again = await runCli(args, { timeoutMs: 90_000 })
    assert.equal(again.code, 0, again.stderr)
    const s = summaryOf(out)
    assert.equal(s.succeeded, 12)
    for (const [file, text] of Object.entries(files)) {
      assert.match(readFileSync(join(out, `${file}.stdout`), 'utf8'), new RegExp(`^primes below ${text.trim()}: \\d+\\n$`))
    }
    const jobs = (await jobsOnDaemon()).slice(0, (await jobsOnDaemon()).length - before)
    assert.equal(jobs.length, 12, 'one job per input, none submitted twice')
    assert.deepEqual(new Set(jobs.map(j => j.jobId)), new Set(s.inputs.map(e => e.jobId)))
  })

  it('Ctrl-C stops submitting, cancels the jobs under way and exits 130 with the summary written', async () => {
    const src = inputs('in-stop', { x1: '', x2: '', x3: '', x4: '' })
    const out = join(dir.path, 'out-stop')
    const cli = startCli(['job', 'submit', fixture('infinite-loop.wasm'), '--batch', src, '--out', out, '--parallel', '2', '--deadline', '60s', '--data-dir', submitterDir])
    started.push(cli)
    await waitFor('two jobs under way', () => {
      const journal = existsSync(join(out, 'summary.journal')) ? readFileSync(join(out, 'summary.journal'), 'utf8') : ''
      return journal.split('"running"').length > 2 ? true : undefined
    }, 30_000)
    cli.proc.kill('SIGINT')
    const code = await waitFor('the CLI to exit', () => cli.proc.exitCode ?? undefined, 15_000)
    assert.equal(code, 130, cli.stderr())
    const s = summaryOf(out)
    assert.deepEqual(s.inputs.map(e => [e.file, e.status]), [['x1', 'cancelled'], ['x2', 'cancelled']])
  })
})
