/**
 * One node per data directory: the lock file (unit), a second node refused
 * in-process and as a second real process while the first runs untouched,
 * a stale lock taken over, and the doctor unaffected by the lock.
 */
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { DataDirLockedError, dataDirPaths, lockDataDir } from '../../src/config/data-dir.ts'
import { loadDaemonConfig } from '../../src/config/config.ts'
import { startDaemon } from '../../src/daemon/daemon.ts'
import { runCli, startCli } from '../helpers/cli.ts'
import { recordingLogger, type LogLine } from '../helpers/recording-logger.ts'
import { tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'

const dir = tempDir('wc-lock-')
after(() => { dir.cleanup() })

function fresh (name: string): ReturnType<typeof dataDirPaths> {
  const root = join(dir.path, name)
  mkdirSync(root, { recursive: true })
  return dataDirPaths(root)
}

/** The PID of a process that has exited. */
function deadPid (): number {
  const r = spawnSync(process.execPath, ['-e', ''])
  assert.equal(r.status, 0)
  return r.pid as number
}

/** A process that stays alive until killed. */
function sleeper (): ChildProcess {
  return spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' })
}

describe('the data directory lock', () => {
  it('holds the PID of this process while taken and is gone once released', () => {
    const paths = fresh('plain')
    const lock = lockDataDir(paths)
    assert.equal(readFileSync(paths.lock, 'utf8').trim(), String(process.pid))
    assert.equal(lock.takenOver, undefined)
    lock.release()
    lock.release()
    assert.equal(existsSync(paths.lock), false)
  })

  it('refuses a second hold in this process with DataDirLockedError naming this PID', () => {
    const paths = fresh('twice')
    const lock = lockDataDir(paths)
    try {
      assert.throws(() => lockDataDir(paths), (err: unknown) => {
        assert.ok(err instanceof DataDirLockedError)
        assert.equal(err.code, 'DATA_DIR_LOCKED')
        assert.equal(err.pid, process.pid)
        return true
      })
      assert.equal(readFileSync(paths.lock, 'utf8').trim(), String(process.pid))
    } finally {
      lock.release()
    }
  })

  it('refuses a directory held by another live process, naming its PID, and leaves its lock alone', async () => {
    const paths = fresh('other')
    const other = sleeper()
    try {
      const pid = other.pid as number
      writeFileSync(paths.lock, `${pid}\n`)
      assert.throws(() => lockDataDir(paths), (err: unknown) => err instanceof DataDirLockedError && err.pid === pid && err.message.includes(`PID ${pid}`))
      assert.equal(readFileSync(paths.lock, 'utf8'), `${pid}\n`)
    } finally {
      other.kill()
    }
  })

  it('takes over the lock of a process that is gone, and says whose it was', () => {
    const paths = fresh('stale')
    const dead = deadPid()
    writeFileSync(paths.lock, `${dead}\n`)
    const lock = lockDataDir(paths)
    assert.deepEqual(lock.takenOver, { pid: dead })
    assert.equal(readFileSync(paths.lock, 'utf8').trim(), String(process.pid))
    lock.release()
  })

  it('takes over a lock that names no PID, and one with this PID that this process does not hold (a PID reused after a crash)', () => {
    for (const [name, text] of [['garbage', 'not a pid\n'], ['reused', `${process.pid}\n`]]) {
      const paths = fresh(name)
      writeFileSync(paths.lock, text)
      const lock = lockDataDir(paths)
      assert.ok(lock.takenOver != null, name)
      assert.equal(readFileSync(paths.lock, 'utf8').trim(), String(process.pid))
      lock.release()
    }
  })
})

describe('two nodes on one data directory', () => {
  it('in one process: the second start is refused, and the first keeps its API endpoint', async () => {
    const dataDir = join(dir.path, 'in-process')
    const config = loadDaemonConfig({ dataDir, listen: ['/ip4/127.0.0.1/tcp/0'], apiPort: '0' }, {})
    const first = await startDaemon(config)
    try {
      await assert.rejects(startDaemon(config), (err: unknown) => err instanceof DataDirLockedError && err.pid === process.pid)
      assert.equal(JSON.parse(readFileSync(join(dataDir, 'api-endpoint.json'), 'utf8')).port, first.apiPort)
    } finally {
      await first.stop()
    }
    assert.equal(existsSync(join(dataDir, 'daemon.lock')), false)
  })

  it('starts over a stale lock with a WARN that names the dead PID', async () => {
    const dataDir = join(dir.path, 'stale-start')
    mkdirSync(dataDir, { recursive: true })
    const dead = deadPid()
    writeFileSync(join(dataDir, 'daemon.lock'), `${dead}\n`)
    const lines: LogLine[] = []
    const daemon = await startDaemon(loadDaemonConfig({ dataDir, listen: ['/ip4/127.0.0.1/tcp/0'], apiPort: '0' }, {}), { logger: recordingLogger(lines) })
    try {
      const warn = lines.find(l => l.level === 'warn' && l.fields?.code === 'STALE_LOCK')
      assert.ok(warn != null, lines.map(l => l.msg).join('\n'))
      assert.ok(warn.msg.includes(`PID ${dead}`), warn.msg)
    } finally {
      await daemon.stop()
    }
  })

  it('as two processes: the second exits 1 at once naming the first one\'s PID; the first keeps running and answering', async () => {
    const dataDir = join(dir.path, 'two-processes')
    const first = startCli(['daemon', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--api-port', '0', '--no-execute'])
    try {
      await waitFor('the first daemon\'s API', () => existsSync(join(dataDir, 'api-endpoint.json')) || undefined, 20_000)
      const endpoint = readFileSync(join(dataDir, 'api-endpoint.json'), 'utf8')
      const started = Date.now()
      const second = await runCli(['daemon', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--api-port', '0', '--no-execute'])
      assert.equal(second.code, 1, second.stderr)
      const line = second.stderr.split('\n').filter(l => l.startsWith('worldcompute:'))
      assert.equal(line.length, 1, second.stderr)
      assert.ok(line[0].includes(`PID ${String(first.proc.pid)}`), line[0])
      assert.ok(Date.now() - started < 10_000, 'refused at once, not after a timeout')
      // the first is untouched: its endpoint file, its lock and its API
      assert.equal(readFileSync(join(dataDir, 'api-endpoint.json'), 'utf8'), endpoint)
      assert.equal(readFileSync(join(dataDir, 'daemon.lock'), 'utf8').trim(), String(first.proc.pid))
      const status = await runCli(['status', '--data-dir', dataDir, '--json'])
      assert.equal(status.code, 0, status.stderr)
    } finally {
      assert.equal(await first.stop(), 0, first.stderr())
    }
    assert.equal(existsSync(join(dataDir, 'daemon.lock')), false)
  })

  it('leaves the doctor working next to a running daemon on the same data directory (it uses a throw-away identity)', async () => {
    const dataDir = join(dir.path, 'doctor')
    const daemon = startCli(['daemon', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--api-port', '0', '--no-execute'])
    try {
      await waitFor('the daemon\'s API', () => existsSync(join(dataDir, 'api-endpoint.json')) || undefined, 20_000)
      const res = await runCli(['doctor', '--no-port-mapping', '--data-dir', dataDir, '--json'], { timeoutMs: 40_000 })
      // no bootstrap relay: "cannot donate", but a report, and no word of the lock
      assert.equal(res.code, 1, res.stderr)
      const report = JSON.parse(res.stdout) as { canDonate: boolean }
      assert.equal(report.canDonate, false)
      assert.doesNotMatch(res.stderr, /in use by another worldcompute process/)
      assert.equal(readFileSync(join(dataDir, 'daemon.lock'), 'utf8').trim(), String(daemon.proc.pid))
    } finally {
      assert.equal(await daemon.stop(), 0, daemon.stderr())
    }
  })
})
