/**
 * The package as users get it: `npm pack` (which builds dist/ through
 * `prepack`), a global install of the tarball into a temporary prefix, then
 * the installed `worldcompute` run on Node 24 without the clone's sources.
 */
import assert from 'node:assert/strict'
import { execFile, execFileSync } from 'node:child_process'
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { delimiter, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { after, before, describe, it } from 'node:test'
import { cleanEnv } from '../helpers/cli.ts'
import { tempDir } from '../helpers/mesh.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const PKG = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }
// the pinned Node 24 (the "node" dev dependency) first, for npm and for the installed bin
const ENV = cleanEnv({ PATH: `${join(ROOT, 'node_modules', '.bin')}${delimiter}${process.env.PATH ?? ''}` })

function npmMissing (): string | false {
  try {
    execFileSync('npm', ['--version'], { env: ENV, stdio: 'ignore' })
    return false
  } catch (err) {
    return `npm is not available (${(err as Error).message.split('\n')[0]}): the package test needs it`
  }
}

const exec = promisify(execFile)

async function run (file: string, args: string[], cwd: string, timeoutMs: number): Promise<{ stdout: string, stderr: string }> {
  return await exec(file, args, { cwd, env: ENV, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 })
}

describe('the npm package', { skip: npmMissing() }, () => {
  const dir = tempDir('wc-pack-')
  const prefix = join(dir.path, 'prefix')
  const installed = join(prefix, 'lib', 'node_modules', 'worldcompute')
  const bin = join(prefix, 'bin', 'worldcompute')

  before(async () => {
    const packed = await run('npm', ['pack', '--pack-destination', dir.path], ROOT, 90_000)
    const tarball = join(dir.path, packed.stdout.trim().split('\n').at(-1) ?? '')
    await run('npm', ['install', '-g', '--prefix', prefix, tarball, '--prefer-offline', '--no-audit', '--no-fund'], dir.path, 90_000)
  })
  after(() => { dir.cleanup() })

  it('installs built JavaScript, not the sources, tests or evidence', () => {
    assert.ok(existsSync(join(installed, 'dist', 'daemon', 'main.js')))
    assert.ok(existsSync(join(installed, 'dist', 'executor', 'sandbox-process.js')))
    // the dashboard's page is not TypeScript: the build copies it beside the built API server
    for (const page of ['index.html', 'app.js', 'style.css']) {
      assert.ok(existsSync(join(installed, 'dist', 'api', 'dashboard', page)), `dist/api/dashboard/${page} is in the package`)
    }
    for (const absent of ['src', 'test', 'evidence', 'bench', 'scripts']) {
      assert.equal(existsSync(join(installed, absent)), false, `${absent}/ is in the package`)
    }
  })

  it('leaves out the development runtime and React Native', () => {
    const deps = readdirSync(join(installed, 'node_modules'))
    assert.equal(deps.includes('node'), false, 'the pinned Node dev dependency was installed')
    assert.equal(deps.includes('typescript'), false)
    assert.equal(deps.includes('metro'), false)
    const reactNative = JSON.parse(readFileSync(join(installed, 'node_modules', 'react-native', 'package.json'), 'utf8')) as { name: string }
    assert.equal(reactNative.name, '@favware/skip-dependency')
  })

  it('prints package.json\'s version for --version and -V', async () => {
    for (const flag of ['--version', '-V']) {
      const { stdout } = await run(bin, [flag], dir.path, 30_000)
      assert.equal(stdout.trim(), PKG.version)
    }
  })

  it('creates an identity with id', async () => {
    const { stdout } = await run(bin, ['id', '--data-dir', join(dir.path, 'data')], dir.path, 30_000)
    assert.match(stdout.trim(), /^12D3KooW\w+$/)
  })

  it('runs the demo: a relay, two donors and a job in the sandbox, from dist/', async () => {
    const { stdout } = await run(bin, ['demo'], dir.path, 90_000)
    assert.match(stdout, /primes below 1000000: 78498/)
  })
})
