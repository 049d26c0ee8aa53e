/**
 * The shipped systemd unit (contrib/systemd/worldcompute.service) is clean
 * under `systemd-analyze verify` and keeps the hardening the README promises.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, describe, it } from 'node:test'
import { BIN } from '../helpers/cli.ts'
import { tempDir } from '../helpers/mesh.ts'

const UNIT = fileURLToPath(new URL('../../contrib/systemd/worldcompute.service', import.meta.url))
const unit = readFileSync(UNIT, 'utf8')
const hasAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0

const dir = tempDir('wc-unit-')
after(() => { dir.cleanup() })

/** `Key=value` settings of the unit, in order (a key may repeat). */
function settings (): Array<[string, string]> {
  return unit.split('\n')
    .filter(l => /^[A-Za-z]+=/.test(l))
    .map(l => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)])
}

describe('the systemd unit', () => {
  it('passes systemd-analyze verify with no warning', { skip: hasAnalyze ? false : 'systemd-analyze not installed (apt-get install systemd)' }, () => {
    // verify checks that ExecStart's program exists: point it at this checkout's command, under the unit's own name
    const copy = join(dir.path, 'worldcompute.service')
    writeFileSync(copy, unit.replace(/^ExecStart=\S+/m, `ExecStart=${BIN}`))
    const r = spawnSync('systemd-analyze', ['verify', copy], { encoding: 'utf8', timeout: 30_000 })
    assert.equal(r.status, 0, r.stderr)
    assert.equal(r.stderr.trim(), '', 'systemd-analyze verify warned')
  })

  it('runs the daemon as a dynamic user on its state directory, restarts it on failure and keeps the required hardening', () => {
    const s = new Map(settings())
    assert.match(s.get('ExecStart') ?? '', /\/worldcompute daemon$/)
    assert.equal(s.get('DynamicUser'), 'yes')
    assert.equal(s.get('StateDirectory'), 'worldcompute')
    assert.equal(s.get('Environment'), 'WORLDCOMPUTE_DATA_DIR=%S/worldcompute')
    for (const [key, value] of Object.entries({ NoNewPrivileges: 'yes', ProtectSystem: 'strict', ProtectHome: 'yes', PrivateTmp: 'yes', Restart: 'on-failure' })) {
      assert.equal(s.get(key), value, key)
    }
    assert.ok(Number(s.get('RestartSec')) > 0)
  })

  it('leaves the daemon what it needs: the network with UDP, writable executable memory for V8, a child process for the sandbox', () => {
    const keys = settings()
    const families = keys.find(([k]) => k === 'RestrictAddressFamilies')?.[1].split(/\s+/) ?? []
    for (const family of ['AF_INET', 'AF_INET6', 'AF_NETLINK']) assert.ok(families.includes(family), family)
    for (const forbidden of ['MemoryDenyWriteExecute', 'PrivateNetwork', 'IPAddressDeny', 'ProcSubset']) {
      assert.equal(keys.some(([k]) => k === forbidden), false, `${forbidden} would break the daemon`)
    }
    // fork/clone and the worker threads are in @system-service; none of it is filtered out again
    const filters = keys.filter(([k]) => k === 'SystemCallFilter').map(([, v]) => v)
    assert.ok(filters.includes('@system-service'), filters.join(' | '))
    assert.ok(filters.every(f => !/@process|clone|fork/.test(f)), filters.join(' | '))
  })
})
