import { after, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DEFAULT_ADMISSION_LIMITS, loadRelayConfig } from '../../src/config/config.ts'
import { ConfigError } from '../../src/core/errors.ts'

const pollLimits = (l: { maxPollSessions: number, maxPollSessionsPerIp: number }): number[] => [l.maxPollSessions, l.maxPollSessionsPerIp]

const dirs: string[] = []
after(() => { for (const dir of dirs) rmSync(dir, { recursive: true, force: true }) })

function dirWithConfig (config?: unknown): string {
  const dir = mkdtempSync(join(tmpdir(), 'wc-relay-limits-config-'))
  dirs.push(dir)
  if (config !== undefined) writeFileSync(join(dir, 'config.json'), JSON.stringify(config))
  return dir
}

describe('relay admission limits in the config', () => {
  it('default to limits that fit a NAT of a few dozen donors, loopback exempt', () => {
    const { limits } = loadRelayConfig({ dataDir: dirWithConfig(), noStun: true }, {})
    assert.equal(limits.maxReservationsPerIp, 32)
    assert.equal(limits.reservationGraceMs, 15_000)
    assert.deepEqual(limits.perIpExempt.map(c => c.text), ['127.0.0.0/8', '::1/128'])
    assert.deepEqual({ ...limits, ...DEFAULT_ADMISSION_LIMITS }, limits)
  })

  it('take flags over config.json "relayLimits" over the defaults', () => {
    const dataDir = dirWithConfig({ relayLimits: { maxReservationsPerIp: 8, maxCircuitsPerPeer: 5, reservationGrace: '30s', perIpExempt: ['10.0.0.0/8'] } })
    const { limits } = loadRelayConfig({ dataDir, noStun: true, maxReservationsPerIp: '4', maxConnectionsPerIp: '9', maxCircuitsPerIp: '10', maxConnectionsPerPeer: '2', reservationGrace: '2s' }, {})
    assert.equal(limits.maxReservationsPerIp, 4)
    assert.equal(limits.maxConnectionsPerIp, 9)
    assert.equal(limits.maxCircuitsPerIp, 10)
    assert.equal(limits.maxConnectionsPerPeer, 2)
    assert.equal(limits.maxCircuitsPerPeer, 5)
    assert.equal(limits.reservationGraceMs, 2_000)
    assert.deepEqual(limits.perIpExempt.map(c => c.text), ['10.0.0.0/8'])
  })

  it('include the HTTPS poll sessions, from --max-poll-sessions / --max-poll-sessions-per-ip or config.json', () => {
    assert.deepEqual(pollLimits(loadRelayConfig({ dataDir: dirWithConfig(), noStun: true }, {}).limits), [1024, 32])
    const dataDir = dirWithConfig({ relayLimits: { maxPollSessions: 100, maxPollSessionsPerIp: 10 } })
    assert.deepEqual(pollLimits(loadRelayConfig({ dataDir, noStun: true }, {}).limits), [100, 10])
    assert.deepEqual(pollLimits(loadRelayConfig({ dataDir, noStun: true, maxPollSessionsPerIp: '3' }, {}).limits), [100, 3])
    assert.throws(() => loadRelayConfig({ dataDir, noStun: true, maxPollSessions: '0' }, {}), (err: unknown) => err instanceof ConfigError && /--max-poll-sessions/.test(err.message))
  })

  it('exempt nothing with --per-ip-exempt none', () => {
    const { limits } = loadRelayConfig({ dataDir: dirWithConfig(), noStun: true, perIpExempt: ['none'] }, {})
    assert.deepEqual(limits.perIpExempt, [])
  })

  it('are refused with a ConfigError when malformed, naming where', () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ relayLimits: { maxReservationsPerIp: 0 } }, /maxReservationsPerIp/],
      [{ relayLimits: { maxReservationPerIp: 3 } }, /unknown key/],
      [{ relayLimits: { perIpExempt: '10.0.0.0/8' } }, /perIpExempt/],
      [{ relayLimits: [] }, /relayLimits/]
    ]
    for (const [file, name] of cases) {
      assert.throws(() => loadRelayConfig({ dataDir: dirWithConfig(file), noStun: true }, {}), (err: unknown) => err instanceof ConfigError && err.code === 'CONFIG_INVALID' && name.test(err.message))
    }
    assert.throws(() => loadRelayConfig({ dataDir: dirWithConfig(), noStun: true, maxCircuitsPerPeer: 'x' }, {}), (err: unknown) => err instanceof ConfigError && /--max-circuits-per-peer/.test(err.message))
    assert.throws(() => loadRelayConfig({ dataDir: dirWithConfig(), noStun: true, perIpExempt: ['10.0.0.0/33'] }, {}), (err: unknown) => err instanceof ConfigError && /--per-ip-exempt/.test(err.message))
  })
})
