/**
 * Config for the reachability work: `publicRanges` (flag > config.json) for
 * daemon and relay, and the relay's STUN ports.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { DEFAULT_STUN_PORTS, loadDaemonConfig, loadRelayConfig } from '../../src/config/config.ts'

const dirs: string[] = []
function dataDir (config?: unknown): string {
  const dir = mkdtempSync(join(tmpdir(), 'wc-ranges-'))
  dirs.push(dir)
  if (config !== undefined) writeFileSync(join(dir, 'config.json'), JSON.stringify(config))
  return dir
}
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }) })

describe('publicRanges', () => {
  it('is empty by default for daemon and relay', () => {
    assert.deepEqual(loadDaemonConfig({ dataDir: dataDir() }, {}).publicRanges, [])
    assert.deepEqual(loadRelayConfig({ dataDir: dataDir() }, {}).publicRanges, [])
  })

  it('comes from config.json "publicRanges", and --public-range overrides the file', () => {
    const dir = dataDir({ publicRanges: ['10.0.0.0/8', '192.0.2.0/24'] })
    assert.deepEqual(loadDaemonConfig({ dataDir: dir }, {}).publicRanges.map(r => r.text), ['10.0.0.0/8', '192.0.2.0/24'])
    assert.deepEqual(loadRelayConfig({ dataDir: dir, publicRanges: ['198.51.100.0/24'] }, {}).publicRanges.map(r => r.text), ['198.51.100.0/24'])
  })

  it('names the flag or the file key in the error for a bad range', () => {
    assert.throws(() => loadDaemonConfig({ dataDir: dataDir(), publicRanges: ['10.0.0.0/40'] }, {}), /--public-range.*10\.0\.0\.0\/40/)
    assert.throws(() => loadDaemonConfig({ dataDir: dataDir({ publicRanges: ['ten'] }) }, {}), /config\.json "publicRanges".*"ten"/)
    assert.throws(() => loadDaemonConfig({ dataDir: dataDir({ publicRanges: '10.0.0.0/8' }) }, {}), /"publicRanges" must be an array of CIDR strings/)
  })
})

describe('relay STUN ports', () => {
  it('default to 3478 and 3479', () => {
    assert.deepEqual(DEFAULT_STUN_PORTS, [3478, 3479])
    assert.deepEqual(loadRelayConfig({ dataDir: dataDir() }, {}).stunPorts, [3478, 3479])
  })

  it('take --stun-port once or twice, or as a pair, and --no-stun switches the responder off', () => {
    assert.deepEqual(loadRelayConfig({ dataDir: dataDir(), stunPorts: ['5000'] }, {}).stunPorts, [5000])
    assert.deepEqual(loadRelayConfig({ dataDir: dataDir(), stunPorts: ['5000', '5001'] }, {}).stunPorts, [5000, 5001])
    assert.deepEqual(loadRelayConfig({ dataDir: dataDir(), stunPorts: ['5000,5001'] }, {}).stunPorts, [5000, 5001])
    assert.deepEqual(loadRelayConfig({ dataDir: dataDir(), noStun: true }, {}).stunPorts, [])
  })

  it('refuses three ports, equal ports, port 0 and --no-stun with --stun-port', () => {
    const d = dataDir()
    assert.throws(() => loadRelayConfig({ dataDir: d, stunPorts: ['1', '2', '3'] }, {}), /at most two/)
    assert.throws(() => loadRelayConfig({ dataDir: d, stunPorts: ['5000', '5000'] }, {}), /must differ/)
    assert.throws(() => loadRelayConfig({ dataDir: d, stunPorts: ['0'] }, {}), /--no-stun/)
    assert.throws(() => loadRelayConfig({ dataDir: d, stunPorts: ['70000'] }, {}), /--stun-port/)
    assert.throws(() => loadRelayConfig({ dataDir: d, stunPorts: ['5000'], noStun: true }, {}), /contradict/)
  })
})
