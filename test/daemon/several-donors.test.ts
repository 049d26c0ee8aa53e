/**
 * Several donors on one host, as real `worldcompute daemon` processes on
 * loopback: each has its own data directory; a second one left on the
 * default API port moves to the next free port and records it; a port given
 * explicitly that is taken stops the start with one line; and with
 * `--log-format json` every line a daemon writes on stderr, from start to a
 * SIGINT stop, is a JSON record.
 */
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { ApiEndpoint } from '../../src/api/server.ts'
import { DEFAULT_API_PORT } from '../../src/config/config.ts'
import { runCli, startCli, type LongRunning } from '../helpers/cli.ts'
import { tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'

const dir = tempDir('wc-several-')
after(() => { dir.cleanup() })

interface Donor { dataDir: string, proc: LongRunning }

/** A donor on loopback with no --api-port (the built-in default), logging JSON. */
function startDonor (name: string): Donor {
  const dataDir = join(dir.path, name)
  const proc = startCli(['daemon', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--no-execute', '--log-format', 'json'])
  return { dataDir, proc }
}

async function endpointOf (donor: Donor): Promise<ApiEndpoint> {
  const file = join(donor.dataDir, 'api-endpoint.json')
  await waitFor(`${file} (stderr so far: ${donor.proc.stderr()})`, () => existsSync(file), 20_000)
  return JSON.parse(readFileSync(file, 'utf8')) as ApiEndpoint
}

/** Every stderr line as a JSON record; fails naming the first line that is not one. */
function records (stderr: string): Array<Record<string, unknown>> {
  return stderr.split('\n').filter(l => l !== '').map((line) => {
    try {
      return JSON.parse(line) as Record<string, unknown>
    } catch {
      assert.fail(`a stderr line is not JSON: ${line}`)
    }
  })
}

/** Sends SIGINT and resolves with the exit code. */
async function interrupt (donor: Donor): Promise<number | null> {
  const exited = new Promise<number | null>(resolve => donor.proc.proc.once('exit', (code) => resolve(code)))
  donor.proc.proc.kill('SIGINT')
  return await exited
}

describe('several donors on one host', () => {
  let first: Donor
  let second: Donor
  let firstEndpoint: ApiEndpoint
  let secondEndpoint: ApiEndpoint

  before(async () => {
    first = startDonor('first')
    firstEndpoint = await endpointOf(first)
    second = startDonor('second')
    secondEndpoint = await endpointOf(second)
  })

  after(async () => {
    await first.proc.stop()
    await second.proc.stop()
  })

  it('the second one on the default API port listens on another free port, records it and says so in one INFO record', async () => {
    assert.notEqual(secondEndpoint.port, firstEndpoint.port)
    assert.equal(secondEndpoint.pid, second.proc.proc.pid)
    // the first took the default unless something else on this host holds it; the second found it taken either way
    const moved = records(second.proc.stderr()).filter(r => r.code === 'API_PORT_MOVED')
    assert.equal(moved.length, 1, second.proc.stderr())
    assert.equal(moved[0].level, 'info')
    assert.equal(moved[0].wanted, DEFAULT_API_PORT)
    assert.equal(moved[0].port, secondEndpoint.port)
    // the CLI finds each daemon through its own data directory
    for (const donor of [first, second]) {
      const status = await runCli(['status', '--data-dir', donor.dataDir, '--json'])
      assert.equal(status.code, 0, status.stderr)
    }
  })

  it('a third one given the first one\'s port with --api-port exits 1 at once with one line and no stack', async () => {
    const started = Date.now()
    const third = await runCli(['daemon', '--data-dir', join(dir.path, 'third'), '--listen', '/ip4/127.0.0.1/tcp/0', '--no-execute', '--api-port', String(firstEndpoint.port)])
    assert.equal(third.code, 1, third.stderr)
    const lines = third.stderr.split('\n').filter(l => l.startsWith('worldcompute:') || /^\s+at /.test(l))
    assert.equal(lines.length, 1, third.stderr)
    assert.ok(lines[0].includes(`API port ${firstEndpoint.port}`), lines[0])
    assert.doesNotMatch(third.stderr, /unexpected error/)
    assert.ok(Date.now() - started < 15_000, 'refused at start, not after a timeout')
    assert.equal(existsSync(join(dir.path, 'third', 'daemon.lock')), false)
  })

  it('with --log-format json, every stderr line from start to a SIGINT stop is a JSON record, the running and signal lines included', async () => {
    for (const donor of [first, second]) {
      assert.equal(await interrupt(donor), 0, donor.proc.stderr())
      const all = records(donor.proc.stderr())
      const running = all.find(r => r.component === 'daemon' && r.apiPort != null)
      assert.ok(running != null, donor.proc.stderr())
      assert.equal(running.level, 'info')
      assert.equal(running.dataDir, donor.dataDir)
      const signal = all.find(r => r.signal === 'SIGINT')
      assert.ok(signal != null, donor.proc.stderr())
      assert.equal(signal.component, 'lifecycle')
    }
  })
})
