/**
 * The NAT classification wired end to end on loopback: a real relay (in
 * process, through the same config loader and composition root as the CLI)
 * runs its STUN responder and names the ports in its identify agent version;
 * a real donor connected to it probes them and reports natMapping / udp in
 * `status`, and the CLI renders it.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { loadRelayConfig } from '../../src/config/config.ts'
import { startRelay, type RelayHandle } from '../../src/daemon/daemon.ts'
import { renderStatus } from '../../src/cli/render.ts'
import { stopAfterEach } from '../helpers/cleanup.ts'
import { captureJsonLogs } from '../helpers/logs.ts'
import { startTestDonor, tempDir } from '../helpers/mesh.ts'
import { freeUdpPorts } from '../helpers/ports.ts'
import { waitFor } from '../helpers/wait.ts'

const dir = tempDir()
const { records } = captureJsonLogs()
const track = stopAfterEach()

after(() => { dir.cleanup() })

async function relayWith (name: string, stun: { ports?: number[], off?: boolean }): Promise<RelayHandle> {
  return track(await startRelay(loadRelayConfig({
    dataDir: join(dir.path, name),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    ...(stun.ports != null ? { stunPorts: stun.ports.map(String) } : {}),
    ...(stun.off === true ? { noStun: true } : {})
  }, {})))
}

describe('NAT type in status, relay STUN responder to donor probe, on loopback', () => {
  it('a donor connected to a relay reports no NAT and UDP yes, from the relay\'s own STUN ports', async () => {
    const ports = await freeUdpPorts(2)
    const relay = await relayWith('relay-stun', { ports })
    assert.deepEqual(relay.info.stunAddrs, ports.map(p => `/ip4/127.0.0.1/udp/${p}`), 'the start-up info names the STUN endpoints')
    const donor = track(await startTestDonor(join(dir.path, 'donor-stun'), relay.info.announceAddrs.filter(a => a.includes('/tcp/'))))
    const status = await waitFor('natMapping in status', async () => {
      const s = await donor.client.call('status', {})
      return s.natMapping !== 'unknown' ? s : undefined
    }, 20_000)
    assert.equal(status.natMapping, 'none', status.nat?.reason)
    assert.equal(status.udp, 'yes')
    assert.deepEqual(status.nat?.servers, ports.map(p => `127.0.0.1:${p}`))
    assert.match(status.nat?.mappedAddress ?? '', /^127\.0\.0\.1:\d+$/)
    assert.equal(status.reachability, 'private')
    assert.match(status.reachabilityReason, /only through relays/)
    assert.ok(records().some(r => r.level === 'info' && r.component === 'donor.nat' && r.mapping === 'none' && r.udp === 'yes'), 'the result is logged at INFO')

    const out: string[] = []
    renderStatus({ out: l => { out.push(l) }, err: () => {} }, status)
    assert.ok(out.some(l => l.startsWith('NAT:') && l.includes('mapping none') && l.includes('UDP yes')), out.join('\n'))
    assert.ok(out.some(l => l.startsWith('Reachability:  private')), out.join('\n'))
  })

  it('a donor whose relay runs no STUN responder says unknown, with the reason', async () => {
    const relay = await relayWith('relay-nostun', { off: true })
    assert.deepEqual(relay.info.stunAddrs, [])
    const donor = track(await startTestDonor(join(dir.path, 'donor-nostun'), relay.info.announceAddrs.filter(a => a.includes('/tcp/'))))
    const s = await waitFor('a relay reservation', async () => {
      const st = await donor.client.call('status', {})
      return st.relays.length > 0 ? st : undefined
    }, 20_000)
    assert.equal(s.natMapping, 'unknown')
    assert.equal(s.udp, 'unknown')
    assert.match(s.nat?.reason ?? '', /not measured yet/)
  })
})
