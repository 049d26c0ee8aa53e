import assert from 'node:assert/strict'
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { ApiServer } from '../../src/api/server.ts'
import type { ApiHandlers } from '../../src/api/routes.ts'
import { openBrowser, runDashboard, type OpenResult } from '../../src/cli/commands/dashboard.ts'
import { ensureDataDir } from '../../src/config/data-dir.ts'
import type { DaemonStatus } from '../../src/core/types.ts'
import { runCli } from '../helpers/cli.ts'
import { tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'

const dir = tempDir('wc-cli-dashboard-')
after(() => { dir.cleanup() })

const LINK = /^http:\/\/127\.0\.0\.1:\d+\/dashboard\/login\?token=[\w-]{43}$/

/** The daemon's side is the real API server; the handlers the dashboard command never calls refuse. */
function handlers (): ApiHandlers {
  const unused = async (): Promise<never> => { throw new Error('not called by `worldcompute dashboard`') }
  return { health: unused, status: async (): Promise<DaemonStatus> => await unused(), dials: unused, ping: unused, submitJob: unused, job: unused, jobs: unused, jobFiles: unused, cancelJob: unused, pause: unused, resume: unused, donated: unused }
}

/** A stand-in for xdg-open on PATH: records the link it was given. */
function fakeOpener (binDir: string, record: string): void {
  mkdirSync(binDir, { recursive: true })
  writeFileSync(join(binDir, 'xdg-open'), `#!/bin/sh\nprintf '%s' "$1" > '${record}'\n`)
  chmodSync(join(binDir, 'xdg-open'), 0o755)
}

describe('worldcompute dashboard', () => {
  const dataDir = join(dir.path, 'data')
  let server: ApiServer
  before(async () => {
    server = new ApiServer({ paths: ensureDataDir(dataDir), port: 0, handlers: handlers(), version: 'test' })
    await server.start()
  })
  after(async () => { await server.stop() })

  it('prints a one-time login link on the daemon\'s port, and says how long it works', async () => {
    const out: string[] = []
    const err: string[] = []
    assert.equal(await runDashboard(['--data-dir', dataDir], { out: l => { out.push(l) }, err: l => { err.push(l) } }), 0)
    assert.equal(out.length, 1)
    assert.match(out[0], LINK)
    assert.equal(new URL(out[0]).port, String(server.port))
    assert.match(err.join('\n'), /works once, within (59|60) s/)
  })

  it('still prints the link when no browser can be started, and says why', async () => {
    const out: string[] = []
    const err: string[] = []
    const noBrowser = async (): Promise<OpenResult> => ({ opened: false, reason: 'xdg-open was not found' })
    assert.equal(await runDashboard(['--open', '--data-dir', dataDir], { out: l => { out.push(l) }, err: l => { err.push(l) } }, noBrowser), 0)
    assert.match(out[0], LINK)
    assert.match(err.join('\n'), /could not open a browser \(xdg-open was not found\)/)
  })

  it('with --open, starts the system\'s opener with the link (the real CLI, a recording xdg-open on PATH)', async () => {
    const binDir = join(dir.path, 'bin')
    const record = join(dir.path, 'opened-url')
    fakeOpener(binDir, record)
    const res = await runCli(['dashboard', '--open', '--json', '--data-dir', dataDir], { env: { PATH: `${binDir}:${process.env.PATH ?? ''}` } })
    assert.equal(res.code, 0, res.stderr)
    const printed = JSON.parse(res.stdout) as { url: string, expiresAt: string, opened: boolean }
    assert.match(printed.url, LINK)
    assert.equal(printed.opened, true)
    assert.ok(Date.parse(printed.expiresAt) > Date.now())
    const opened = await waitFor('the opener to record the link', () => existsSync(record) && readFileSync(record, 'utf8'))
    assert.equal(opened, printed.url)
  })

  it('reports an opener that is not on PATH as not found, without throwing', async () => {
    const empty = join(dir.path, 'empty-bin')
    mkdirSync(empty, { recursive: true })
    const result = await openBrowser('http://127.0.0.1:1/dashboard/login?token=x', { platform: 'linux', env: { PATH: empty } })
    assert.deepEqual(result, { opened: false, reason: 'xdg-open was not found' })
  })

  it('fails in one line, naming how to start a daemon, when none runs', async () => {
    const res = await runCli(['dashboard', '--data-dir', join(dir.path, 'nodaemon')])
    assert.equal(res.code, 1)
    assert.match(res.stderr.trim(), /^worldcompute: no daemon is running .*worldcompute daemon --data-dir/)
    assert.equal(res.stdout, '')
  })
})
