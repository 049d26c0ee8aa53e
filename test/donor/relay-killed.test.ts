/**
 * Why the donor's watchdog pings a relay only every 15 s: a relay process
 * killed outright (SIGKILL, the process gone without a word) is noticed
 * without any ping. Over TCP its kernel closes its sockets, so the donor's
 * connection ends within milliseconds; over QUIC nothing is sent, and the
 * donor's QUIC keep-alive and idle timeout (DONOR_QUIC_LIVENESS, native)
 * end the connection within the idle timeout. The relay is a real
 * `worldcompute relay` process on 127.0.0.1; the donor runs with its
 * production watchdog timing.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { ApiClient } from '../../src/api/client.ts'
import { loadDaemonConfig } from '../../src/config/config.ts'
import { startDaemon } from '../../src/daemon/daemon.ts'
import { DONOR_QUIC_LIVENESS } from '../../src/net/pinger.ts'
import { stopAfterEach } from '../helpers/cleanup.ts'
import { firstJson, startCli } from '../helpers/cli.ts'
import { captureJsonLogs } from '../helpers/logs.ts'
import { tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'

const dir = tempDir('wc-relay-killed-')
const { records } = captureJsonLogs()
const track = stopAfterEach()
after(() => { dir.cleanup() })

/** the watchdog's default ping interval (reservation-manager.ts): a loss noticed well before it was not noticed by a ping */
const PING_INTERVAL_MS = 15_000
/** a relay lost, a new second reservation held within this */
const FAILOVER_BUDGET_MS = 5_000

async function killedRelayNoticedIn (name: string, transport: 'tcp' | 'quic'): Promise<number> {
  const relay = startCli(['relay', '--data-dir', join(dir.path, `${name}-relay`), '--json', '--no-stun',
    '--listen', '/ip4/127.0.0.1/tcp/0', '--listen', '/ip4/127.0.0.1/udp/0/quic-v1'])
  track({ stop: async () => { await relay.stop() } })
  const info = await firstJson(relay, 30_000) as { peerId: string, announceAddrs: string[] }
  const addr = info.announceAddrs.find(a => a.startsWith('/ip4/127.0.0.1/') && (transport === 'quic' ? a.includes('/quic-v1') : a.includes('/tcp/')))
  assert.ok(addr != null, `the relay has a ${transport} address on 127.0.0.1: ${info.announceAddrs.join(' ')}`)
  const dataDir = join(dir.path, `${name}-donor`)
  const config = loadDaemonConfig({ dataDir, bootstrap: [addr], listen: ['/p2p-circuit'], apiPort: '0' }, {})
  track(await startDaemon(config, {}))
  const client = new ApiClient({ dataDir })
  const reserved = await waitFor(`a reservation over ${transport}`, async () => {
    const s = await client.call('status', {})
    return s.relays.length === 1 ? s.relays[0] : undefined
  }, 20_000)
  assert.equal(reserved.transport, transport)

  const killedAt = Date.now()
  relay.proc.kill('SIGKILL')
  await waitFor('the donor to notice the killed relay', async () => (await client.call('status', {})).relays.length === 0 ? true : undefined, 15_000)
  const noticedMs = Date.now() - killedAt
  const lost = records().find(r => r.component === 'donor.reservation' && r.level === 'warn' && r.peer === info.peerId && r.transport === transport)
  assert.ok(lost != null, `the loss is a warning naming the relay and the transport (${transport})`)
  return noticedMs
}

describe('a relay killed outright', () => {
  it('is noticed over TCP at once, through the connection closing, long before a watchdog ping', async (t) => {
    const ms = await killedRelayNoticedIn('tcp', 'tcp')
    t.diagnostic(`TCP: relay SIGKILLed, reservation gone from status ${ms} ms later (watchdog ping every ${PING_INTERVAL_MS} ms; status polled every 50 ms)`)
    assert.ok(ms <= 2_000, `noticed after ${ms} ms`)
  })

  it('is noticed over QUIC through the idle timeout of the QUIC keep-alive, within the failover budget and without a watchdog ping', async (t) => {
    const ms = await killedRelayNoticedIn('quic', 'quic')
    t.diagnostic(`QUIC: relay SIGKILLed, reservation gone from status ${ms} ms later (keep-alive ${DONOR_QUIC_LIVENESS.keepAliveInterval} ms, idle timeout ${DONOR_QUIC_LIVENESS.maxIdleTimeout} ms)`)
    // the failover promise: a replacement reservation within 5 s of the kill needs the loss noticed before then
    assert.ok(ms < FAILOVER_BUDGET_MS, `noticed after ${ms} ms`)
    assert.equal(records().some(r => r.component === 'donor.reservation' && r.phase === 'protocol' && r.transport === 'quic'), false, 'no watchdog ping to a QUIC relay went unanswered: the transport noticed the loss')
  })
})
