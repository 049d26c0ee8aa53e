import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { describeDaemonConfig, loadDaemonConfig } from '../../src/config/config.ts'
import { ConfigError } from '../../src/core/errors.ts'

const root = mkdtempSync(join(tmpdir(), 'wc-controls-config-'))
after(() => { rmSync(root, { recursive: true, force: true }) })

function dataDir (name: string, file?: Record<string, unknown>): string {
  const dir = join(root, name)
  const config = join(dir, 'config.json')
  rmSync(dir, { recursive: true, force: true })
  if (file != null) {
    mkdirSync(dir, { recursive: true })
    writeFileSync(config, JSON.stringify(file))
  }
  return dir
}

describe('donor control settings', () => {
  it('default to no cpu limit, no busy suspension and every hour', () => {
    const config = loadDaemonConfig({ dataDir: dataDir('defaults') }, {})
    assert.equal(config.donor.cpuLimit, 100)
    assert.equal(config.donor.suspendWhenBusy, undefined)
    assert.equal(config.donor.runHours, undefined)
    const shown = Object.fromEntries(describeDaemonConfig(config).map(e => [e.key, e]))
    assert.deepEqual([shown.cpuLimit.value, shown.suspendWhenBusy.value, shown.runHours.value], ['100%', 'off', 'always'])
  })

  it('come from config.json, and a flag wins over the file', () => {
    const dir = dataDir('file', { cpuLimit: 30, suspendWhenBusy: 60, runHours: '18-08' })
    const fromFile = loadDaemonConfig({ dataDir: dir }, {})
    assert.equal(fromFile.donor.cpuLimit, 30)
    assert.equal(fromFile.donor.suspendWhenBusy, 60)
    assert.equal(fromFile.donor.runHours?.text, '18-08')
    assert.equal(fromFile.sources.cpuLimit, 'file')
    const fromFlags = loadDaemonConfig({ dataDir: dir, cpuLimit: '50%', suspendWhenBusy: '80', runHours: '0-24' }, {})
    assert.equal(fromFlags.donor.cpuLimit, 50)
    assert.equal(fromFlags.donor.suspendWhenBusy, 80)
    assert.equal(fromFlags.donor.runHours?.text, '0-24')
    assert.equal(fromFlags.sources.runHours, 'flag')
    assert.deepEqual(fromFlags.unknownKeys, [], 'cpuLimit, suspendWhenBusy and runHours are known keys')
  })

  it('out of range or malformed values stop the start with a ConfigError naming the flag or key', () => {
    const dir = dataDir('bad')
    const cases: Array<[Parameters<typeof loadDaemonConfig>[0], string]> = [
      [{ dataDir: dir, cpuLimit: '0' }, '--cpu-limit'],
      [{ dataDir: dir, cpuLimit: '101' }, '--cpu-limit'],
      [{ dataDir: dir, cpuLimit: '12.5' }, '--cpu-limit'],
      [{ dataDir: dir, suspendWhenBusy: 'lots' }, '--suspend-when-busy'],
      [{ dataDir: dir, runHours: '25-3' }, '--run-hours'],
      [{ dataDir: dataDir('bad-file', { runHours: 18 }) }, 'runHours'],
      [{ dataDir: dataDir('bad-file2', { cpuLimit: 500 }) }, 'cpuLimit']
    ]
    for (const [flags, names] of cases) {
      assert.throws(() => loadDaemonConfig(flags, {}), (err: unknown) => err instanceof ConfigError && err.message.includes(names), JSON.stringify(flags))
    }
  })
})
