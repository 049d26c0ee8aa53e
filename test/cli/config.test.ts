import assert from 'node:assert/strict'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { runCli } from '../helpers/cli.ts'
import { tempDir } from '../helpers/mesh.ts'
import { recordingLogger, type LogLine } from '../helpers/recording-logger.ts'
import { warnUnknownConfigKeys } from '../../src/daemon/commands/node-flags.ts'
import { jobLimits } from '../../src/cli/commands/job.ts'
import { UsageError } from '../../src/cli/args.ts'

const dir = tempDir('wc-cli-config-')
after(() => { dir.cleanup() })

function dataDirWith (name: string, config: unknown): string {
  const d = join(dir.path, name)
  mkdirSync(d, { recursive: true })
  writeFileSync(join(d, 'config.json'), JSON.stringify(config))
  return d
}

describe('worldcompute config', () => {
  it('shows each setting with its value and source, and warns about a mistyped key, without a daemon', async () => {
    const d = dataDirWith('typo', { bootstap: [], apiPort: 7800 })
    const res = await runCli(['config', '--data-dir', d], { env: { WORLDCOMPUTE_DOH: 'https://192.0.2.1/dns-query' } })
    assert.equal(res.code, 0, res.stderr)
    assert.match(res.stdout, /apiPort\s+7800\s+\(file\)/)
    assert.match(res.stdout, /doh\s+https:\/\/192\.0\.2\.1\/dns-query\s+\(env WORLDCOMPUTE_DOH\)/)
    assert.match(res.stdout, /dataDir\s+\S+\s+\(flag\)/)
    assert.match(res.stdout, /maxJobMemory\s+256MiB\s+\(default\)/)
    assert.match(res.stderr, /unknown key "bootstap".*did you mean "bootstrap"/)
  })

  it('--json gives the settings, the file and the unknown keys', async () => {
    const d = dataDirWith('json', { bootstap: [] })
    const res = await runCli(['config', '--data-dir', d, '--json'])
    assert.equal(res.code, 0, res.stderr)
    const v = JSON.parse(res.stdout)
    assert.equal(v.configFile, join(d, 'config.json'))
    assert.deepEqual(v.unknownKeys, [{ key: 'bootstap', closest: 'bootstrap' }])
    assert.deepEqual(v.settings.find((s: { key: string }) => s.key === 'apiPort'), { key: 'apiPort', value: 7767, source: 'default' })
  })

  it('an invalid config file is an error naming the key, exit 1', async () => {
    const res = await runCli(['config', '--data-dir', dataDirWith('bad', { apiPort: 'x' })])
    assert.equal(res.code, 1)
    assert.match(res.stderr, /"apiPort" must be a number/)
  })
})

describe('the unknown-key warning at start', () => {
  it('is one WARN per key with code CONFIG_UNKNOWN_KEY, the key and the closest known key', () => {
    const lines: LogLine[] = []
    warnUnknownConfigKeys({ configFile: '/d/config.json', unknownKeys: [{ key: 'bootstap', closest: 'bootstrap' }, { key: 'zzz' }] }, recordingLogger(lines))
    assert.deepEqual(lines.map(l => [l.level, l.fields]), [
      ['warn', { code: 'CONFIG_UNKNOWN_KEY', key: 'bootstap', closest: 'bootstrap' }],
      ['warn', { code: 'CONFIG_UNKNOWN_KEY', key: 'zzz' }]
    ])
  })
})

describe('job submit limits', () => {
  it('accepts units as the daemon flags do, and plain numbers as seconds and MiB', () => {
    assert.deepEqual(jobLimits({ deadline: '10m', memory: '64MiB' }), { deadlineMs: 600_000, memoryBytes: 64 * 1024 * 1024 })
    assert.deepEqual(jobLimits({ deadline: '30', memory: '64', fuel: '1000' }), { deadlineMs: 30_000, memoryBytes: 64 * 1024 * 1024, fuel: 1000 })
    assert.deepEqual(jobLimits({ deadline: '500ms', memory: '1GiB' }), { deadlineMs: 500, memoryBytes: 1024 ** 3 })
  })

  it('refuses a malformed or zero value as a usage error naming the flag', () => {
    for (const [values, flag] of [[{ memory: '64 potatoes' }, '--memory'], [{ deadline: '0' }, '--deadline'], [{ deadline: 'soon' }, '--deadline'], [{ fuel: '-1' }, '--fuel']] as const) {
      assert.throws(() => jobLimits(values), (err: unknown) => err instanceof UsageError && err.code === 'USAGE' && err.message.includes(flag))
    }
  })

  it('job submit --help describes every flag on its own line', async () => {
    const res = await runCli(['job', 'submit', '--help'])
    assert.equal(res.code, 0)
    for (const flag of ['--input', '--arg', '--env', '--replicas', '--executor', '--deadline', '--fuel', '--memory', '--detach', '--data-dir', '--json']) {
      assert.match(res.stdout, new RegExp(`^  ${flag} `, 'm'), `a line for ${flag}`)
    }
  })
})
