/**
 * Start failures after the first step: each stops what was started and
 * rejects with a named error (in-process), and the real command exits
 * non-zero with one plain line and nothing left listening (child process).
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { JobStoreCorruptError, JobStoreUnavailableError } from '../../src/broker/job-store.ts'
import { loadDaemonConfig, loadRelayConfig } from '../../src/config/config.ts'
import { startDaemon, startRelay } from '../../src/daemon/daemon.ts'
import { RelayNotListeningError } from '../../src/daemon/start-errors.ts'
import { runCli, type CliResult } from '../helpers/cli.ts'
import { tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'
import { close, listen, networkHandles, portOf } from './sockets.ts'

const dir = tempDir('wc-start-fail-')
after(() => { dir.cleanup() })

/** A data directory whose jobs.sqlite is garbage bytes. */
function corruptStoreDir (name: string): string {
  const dataDir = join(dir.path, name)
  mkdirSync(dataDir, { recursive: true })
  writeFileSync(join(dataDir, 'jobs.sqlite'), randomBytes(8192))
  return dataDir
}

/** A data directory with a directory where jobs.sqlite should be: unreadable as a database even by root (mode 000 is not). */
function unreadableStoreDir (name: string): string {
  const dataDir = join(dir.path, name)
  mkdirSync(join(dataDir, 'jobs.sqlite'), { recursive: true })
  return dataDir
}

/**
 * A 1 MiB tmpfs mounted for the test (root only) and filled up; undefined
 * where mounting is not allowed. The test unmounts it.
 */
function fullDisk (name: string): { path: string, unmount: () => void } | undefined {
  const path = join(dir.path, name)
  mkdirSync(path, { recursive: true })
  if (process.getuid?.() !== 0 || spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', path]).status !== 0) return undefined
  return { path, unmount: () => { spawnSync('umount', [path]) } }
}

function daemonConfig (dataDir: string): ReturnType<typeof loadDaemonConfig> {
  return loadDaemonConfig({ dataDir, listen: ['/ip4/127.0.0.1/tcp/0'], apiPort: '0' }, {})
}

/** The command exited 1 and wrote one plain line about the failure (logs aside), no stack, naming `names`. */
function assertOneLineFailure (res: CliResult, names: string): void {
  assert.equal(res.code, 1, res.stderr)
  const lines = res.stderr.split('\n').filter(l => l.startsWith('worldcompute:') || /^\s+at /.test(l))
  assert.equal(lines.length, 1, res.stderr)
  assert.ok(lines[0].includes(names), lines[0])
  assert.doesNotMatch(res.stderr, /unexpected error/)
}

describe('a start that fails', () => {
  it('on a corrupt jobs.sqlite rejects with JobStoreCorruptError, leaves the data directory unlocked and opens nothing', async () => {
    const dataDir = corruptStoreDir('corrupt')
    await assert.rejects(startDaemon(daemonConfig(dataDir)), (err: unknown) => {
      assert.ok(err instanceof JobStoreCorruptError, `expected JobStoreCorruptError, got ${String(err)}`)
      assert.equal(err.code, 'STORE_CORRUPT')
      assert.equal(err.path, join(dataDir, 'jobs.sqlite'))
      return true
    })
    assert.equal(existsSync(join(dataDir, 'daemon.lock')), false)
    assert.deepEqual(networkHandles(), [])
  })

  it('on a jobs.sqlite that cannot be opened rejects with JobStoreUnavailableError', async () => {
    await assert.rejects(startDaemon(daemonConfig(unreadableStoreDir('unreadable'))), (err: unknown) => {
      assert.ok(err instanceof JobStoreUnavailableError, `expected JobStoreUnavailableError, got ${String(err)}`)
      assert.equal(err.code, 'STORE_UNAVAILABLE')
      return true
    })
  })

  it('of a relay whose only listen address is taken rejects with RelayNotListeningError and leaves no listener of its own', async () => {
    const taken = await listen()
    try {
      const addr = `/ip4/127.0.0.1/tcp/${portOf(taken)}`
      const config = loadRelayConfig({ dataDir: join(dir.path, 'relay-in-process'), listen: [addr], noStun: true }, {})
      await assert.rejects(startRelay(config), (err: unknown) => {
        assert.ok(err instanceof RelayNotListeningError, `expected RelayNotListeningError, got ${String(err)}`)
        assert.equal(err.code, 'RELAY_NOT_LISTENING')
        assert.deepEqual(err.addrs, [addr])
        return true
      })
      await waitFor('only the test\'s own listener open', () => JSON.stringify(networkHandles()) === '["TCPServerWrap"]' || undefined, 5_000)
    } finally {
      await close(taken)
    }
  })
})

describe('the daemon and relay commands, when the start fails', () => {
  it('exit 1 with one plain line naming a corrupt jobs.sqlite', async () => {
    const dataDir = corruptStoreDir('cli-corrupt')
    const res = await runCli(['daemon', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--api-port', '0'])
    assertOneLineFailure(res, join(dataDir, 'jobs.sqlite'))
  })

  it('exit 1 with one plain line when jobs.sqlite cannot be opened', async () => {
    const dataDir = unreadableStoreDir('cli-unreadable')
    const res = await runCli(['daemon', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--api-port', '0'])
    assertOneLineFailure(res, join(dataDir, 'jobs.sqlite'))
  })

  it('exit 1 with one plain line when the relay\'s only listen port is taken, instead of running on nothing', async () => {
    const taken = await listen()
    try {
      const port = portOf(taken)
      const res = await runCli(['relay', '--data-dir', join(dir.path, 'cli-relay'), '--listen', `/ip4/127.0.0.1/tcp/${port}`, '--no-stun'])
      assertOneLineFailure(res, `/tcp/${port}`)
      assert.equal(res.stdout, '', 'no "relay running" line')
    } finally {
      await close(taken)
    }
  })

  it('exit 1 with one plain line when the disk of the data directory is full', async (t) => {
    const disk = fullDisk('full-disk')
    if (disk == null) { t.skip('needs root to mount a small tmpfs'); return }
    try {
      const dataDir = join(disk.path, 'data')
      // the identity exists; then the disk fills up
      assert.equal((await runCli(['id', '--data-dir', dataDir])).code, 0)
      spawnSync('dd', ['if=/dev/zero', `of=${join(disk.path, 'filler')}`, 'bs=64k'])
      const res = await runCli(['daemon', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--api-port', '0'])
      assertOneLineFailure(res, dataDir)
      assert.deepEqual(readdirSync(dataDir).sort(), ['identity.key'], 'no lock or temporary file left behind')
    } finally {
      disk.unmount()
    }
  })
})
