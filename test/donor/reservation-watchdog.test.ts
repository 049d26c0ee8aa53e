/**
 * The relay watchdog with its production timing: a relay whose path goes
 * silent (host gone, path black-holed: nothing closes the connection) is
 * noticed within the ping interval (rounded up to the watchdog's local
 * check) plus the ping timeout, through ping frames of the connection's
 * muxer, and the donor reserves again on a new connection. A relay killed
 * outright needs no ping (relay-killed.test.ts). The black hole is a TCP forwarder on 127.0.0.1 between donor
 * and relay that stops passing bytes on the connections it holds while
 * still accepting new ones.
 */
import assert from 'node:assert/strict'
import { createConnection, createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { ApiClient } from '../../src/api/client.ts'
import { loadDaemonConfig } from '../../src/config/config.ts'
import { startDaemon } from '../../src/daemon/daemon.ts'
import { stopAfterEach } from '../helpers/cleanup.ts'
import { captureJsonLogs } from '../helpers/logs.ts'
import { startTestRelay, tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'

const dir = tempDir('wc-watchdog-')
const { records } = captureJsonLogs()
const track = stopAfterEach()
after(() => { dir.cleanup() })

/** the reservation manager's defaults (reservation-manager.ts): a local check every 1.5 s, a ping every 15 s, answered within 2 s */
const WATCHDOG_INTERVAL_MS = 1_500
const PING_INTERVAL_MS = 15_000
const PING_TIMEOUT_MS = 2_000

interface Forwarder {
  port: number
  /** the connections open now stop passing bytes, both ways, and stay open */
  blackHole: () => void
  stop: () => Promise<void>
}

async function forwarder (targetPort: number): Promise<Forwarder> {
  const pairs: Array<[Socket, Socket]> = []
  const server: Server = createServer((inbound) => {
    const outbound = createConnection({ host: '127.0.0.1', port: targetPort })
    const onError = (): void => { inbound.destroy(); outbound.destroy() }
    inbound.on('error', onError)
    outbound.on('error', onError)
    inbound.pipe(outbound)
    outbound.pipe(inbound)
    pairs.push([inbound, outbound])
  })
  await new Promise<void>(resolve => { server.listen(0, '127.0.0.1', resolve) })
  const address = server.address()
  if (address == null || typeof address !== 'object') throw new Error('the forwarder has no port')
  return {
    port: address.port,
    blackHole: () => {
      for (const [a, b] of pairs.splice(0)) {
        a.unpipe(b)
        b.unpipe(a)
        // nothing crosses a black hole, a close neither: when the relay gives
        // up on the silent donor (its own liveness check) and resets its side,
        // the donor's side stays open, and only the donor's watchdog can notice
        for (const s of [a, b]) {
          s.removeAllListeners('error')
          s.on('error', () => { s.destroy() })
        }
        // read and drop: the kernel keeps acknowledging, as on a path whose far end went silent
        a.on('data', () => {})
        b.on('data', () => {})
        a.resume()
        b.resume()
        track({ stop: async () => { a.destroy(); b.destroy() } })
      }
    },
    stop: async () => {
      for (const [a, b] of pairs) { a.destroy(); b.destroy() }
      await new Promise<void>(resolve => { server.close(() => { resolve() }) })
    }
  }
}

describe('relay watchdog', () => {
  it('notices a relay whose path went silent within the ping interval plus the ping timeout, and reserves again', async (t) => {
    const relay = track(await startTestRelay(join(dir.path, 'relay')))
    const relayTcp = relay.info.announceAddrs.find(a => a.startsWith('/ip4/127.0.0.1/tcp/'))
    assert.ok(relayTcp != null, `a TCP address on 127.0.0.1: ${relay.info.announceAddrs.join(' ')}`)
    const fwd = await forwarder(Number(relayTcp.split('/')[4]))
    track(fwd)
    const dataDir = join(dir.path, 'donor')
    const target = `/ip4/127.0.0.1/tcp/${fwd.port}/p2p/${relay.info.peerId}`
    const config = loadDaemonConfig({ dataDir, bootstrap: [target], listen: ['/p2p-circuit'], apiPort: '0' }, {})
    // the watchdog's production timing; quick redials so the new reservation comes soon after
    const donor = track(await startDaemon(config, { reservation: { initialBackoffMs: 100, maxBackoffMs: 800, watchdogIntervalMs: WATCHDOG_INTERVAL_MS, pingIntervalMs: PING_INTERVAL_MS, pingTimeoutMs: PING_TIMEOUT_MS } }))
    const client = new ApiClient({ dataDir })
    const first = await waitFor('the first reservation', async () => {
      const s = await client.call('status', {})
      return s.relays.length === 1 ? s : undefined
    }, 20_000)

    const silentAt = Date.now()
    fwd.blackHole()
    // noticed = the unanswered ping's warning, read in-process: the donor redials through the forwarder at once
    // (new connections pass), so a status poll can miss the moment it held no reservation
    const unanswered = (): Record<string, unknown> | undefined => records().find(r => r.component === 'donor.reservation' && r.level === 'warn' && r.peer === relay.info.peerId && r.phase === 'protocol')
    await waitFor('the donor to notice the silent relay', () => unanswered() != null ? true : undefined, 30_000, 20)
    const detectedMs = Date.now() - silentAt
    t.diagnostic(`a silent relay noticed ${detectedMs} ms after its path went silent (a ping every ${PING_INTERVAL_MS} ms checked every ${WATCHDOG_INTERVAL_MS} ms, ping timeout ${PING_TIMEOUT_MS} ms)`)
    assert.ok(detectedMs <= PING_INTERVAL_MS + WATCHDOG_INTERVAL_MS + PING_TIMEOUT_MS + 1_500, `noticed after ${detectedMs} ms`)

    const again = await waitFor('a new reservation on a new connection', async () => {
      const s = await client.call('status', {})
      return s.relays.length === 1 && s.relays[0].since !== first.relays[0].since ? s : undefined
    }, 20_000)
    t.diagnostic(`reserved again ${Date.now() - silentAt} ms after the path went silent`)
    assert.equal(again.relays[0].peerId, relay.info.peerId)
    assert.equal(donor.peerId, first.peerId)
  })
})
