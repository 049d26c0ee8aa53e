import assert from 'node:assert/strict'
import { fork } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { fileURLToPath } from 'node:url'
import { describe, it } from 'node:test'
import { SANDBOX_ENTRY, sandboxExecArgv } from '../../src/executor/sandbox-launch.ts'

const PROBE = fileURLToPath(new URL('./helpers/permission-probe.ts', import.meta.url))
/** a file of the project outside src/executor and src/core (the data directory with keys would be just as far) */
const OUTSIDE = fileURLToPath(new URL('../../package.json', import.meta.url))
const MAX_PAGES = 256

async function probe (): Promise<Record<string, string>> {
  const child = fork(PROBE, [SANDBOX_ENTRY, OUTSIDE, String(MAX_PAGES)], {
    execPath: process.execPath,
    // exactly the executor's flags, plus read access to the probe script itself
    execArgv: sandboxExecArgv({ maxMemoryPages: MAX_PAGES, extraReadPaths: [PROBE] }),
    serialization: 'advanced',
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    env: {}
  })
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
  return await new Promise((resolve, reject) => {
    child.once('message', (m) => { resolve(m as Record<string, string>) })
    child.once('exit', (code) => { reject(new Error(`probe exited with ${String(code)} before reporting; stderr: ${stderr}`)) })
  })
}

describe('the sandbox process flags', () => {
  it('deny writing files, spawning processes, reading outside the executor, and WASI; allow workers', async () => {
    const before = new Set(readdirSync(tmpdir()))
    const report = await probe()
    assert.deepEqual(report, {
      writeFile: 'ERR_ACCESS_DENIED',
      spawnChild: 'ERR_ACCESS_DENIED',
      readOutside: 'ERR_ACCESS_DENIED',
      readExecutorSource: 'allowed',
      wasi: 'ERR_ACCESS_DENIED',
      worker: 'allowed',
      memoryAboveFence: 'RangeError',
      memoryAtFence: 'allowed'
    })
    assert.deepEqual(readdirSync(tmpdir()).filter(f => !before.has(f) && f.startsWith('wc-probe-')), [], 'no file was written')
  })

  it('name only the executor and core source folders as readable', () => {
    const reads = sandboxExecArgv({ maxMemoryPages: 1 }).filter(a => a.startsWith('--allow-fs-read=')).map(a => a.slice('--allow-fs-read='.length))
    assert.deepEqual(reads.map(p => p.replace(/\/$/, '').split('/').slice(-2).join('/')), ['src/executor', 'src/core'])
    assert.ok(!sandboxExecArgv({ maxMemoryPages: 1 }).some(a => /allow-(fs-write|child-process|addons|wasi)/.test(a)))
  })
})
