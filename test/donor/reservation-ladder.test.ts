/**
 * The reservation manager dials its relays with the dial ladder: `status`
 * says which rung won and why, the log says it when the reservation is made,
 * and the winning rung is remembered in the data directory's state folder.
 */
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { createServer, type Socket } from 'node:net'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { ApiClient } from '../../src/api/client.ts'
import { loadDaemonConfig } from '../../src/config/config.ts'
import { dataDirPaths } from '../../src/config/data-dir.ts'
import { startDaemon, type DaemonHandle, type RelayHandle } from '../../src/daemon/daemon.ts'
import { RUNG_MEMORY_FILE, RUNG_STAGGER_MS } from '../../src/net/dial-ladder.ts'
import { stopAfterEach } from '../helpers/cleanup.ts'
import { captureJsonLogs } from '../helpers/logs.ts'
import { FAST_RESERVATION, freePort, reservedStatus, startTestRelay, tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'

const dir = tempDir('wc-resladder-')
const { lines, records } = captureJsonLogs()
const track = stopAfterEach()
/** the INFO line of a reservation made on `relay`, if logged */
const reservedLine = (relay: string): Record<string, unknown> | undefined =>
  records().find(r => r.level === 'info' && r.component === 'donor.reservation' && r.peer === relay && r.remembered != null)
let relay: RelayHandle
let relayId: string
let tcpAddr: string
let quicAddr: string
let wsAddr: string

before(async () => {
  relay = await startTestRelay(join(dir.path, 'relay'), ['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/udp/0/quic-v1', '/ip4/127.0.0.1/tcp/0/ws'])
  relayId = relay.info.peerId
  const pick = (test: (a: string) => boolean): string => {
    const found = relay.info.announceAddrs.find(a => a.startsWith('/ip4/127.0.0.1/') && test(a))
    assert.ok(found != null, relay.info.announceAddrs.join(' '))
    return found
  }
  quicAddr = pick(a => a.includes('/quic-v1'))
  wsAddr = pick(a => a.includes('/ws'))
  tcpAddr = pick(a => a.includes('/tcp/') && !a.includes('/ws'))
})

after(async () => {
  await relay.stop()
  dir.cleanup()
})

/** A donor whose reservation manager keeps its rung memory in the data directory's state folder. */
async function startDonor (dataDir: string, bootstrap: string[]): Promise<DaemonHandle & { client: ApiClient }> {
  const handle = await startDaemon(loadDaemonConfig({ dataDir, bootstrap, listen: ['/p2p-circuit'], apiPort: '0' }, {}), {
    reservation: { ...FAST_RESERVATION, stateDir: dataDirPaths(dataDir).stateDir }
  })
  track(handle)
  return { ...handle, client: new ApiClient({ dataDir }) }
}

/** Accepts TCP connections and never answers: Noise stalls. */
async function stallingServer (): Promise<string> {
  const sockets = new Set<Socket>()
  const server = createServer(socket => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.resume()
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => { resolve() })
  })
  track({
    stop: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>(resolve => server.close(() => { resolve() }))
    }
  })
  const address = server.address()
  const port = typeof address === 'object' && address != null ? address.port : 0
  return `/ip4/127.0.0.1/tcp/${port}/p2p/${relayId}`
}

describe('relay reservations through the dial ladder', () => {
  it('status says which rung reached the relay and why, and the log says which rung', async () => {
    lines.length = 0
    const donor = await startDonor(join(dir.path, 'donor-why'), [tcpAddr, wsAddr, quicAddr])
    const status = await waitFor('a reservation', async () => await reservedStatus(donor.client, relayId))
    assert.equal(status.relays[0].transport, 'quic')
    const path = status.bootstrap[0].path
    assert.ok(path != null, JSON.stringify(status.bootstrap))
    assert.equal(path.transport, 'quic')
    assert.equal(path.addr, quicAddr)
    assert.equal(path.remembered, false)
    assert.match(path.reason, /^first to connect/)
    assert.ok(!Number.isNaN(Date.parse(path.at)))
    const logged = reservedLine(relayId)
    assert.ok(logged != null, lines.join('\n'))
    assert.equal(logged.transport, 'quic')
    assert.equal(logged.addr, quicAddr)
    assert.equal(logged.remembered, false)
  })

  it('the next start tries the remembered rung first, and says so', async () => {
    const dataDir = join(dir.path, 'donor-remember')
    const refused = `/ip4/127.0.0.1/tcp/${await freePort()}/p2p/${relayId}`
    const bootstrap = [refused, wsAddr]
    const first = await startDonor(dataDir, bootstrap)
    const s1 = await waitFor('first reservation', async () => await reservedStatus(first.client, relayId))
    assert.equal(s1.relays[0].transport, 'ws')
    assert.equal(s1.bootstrap[0].path?.remembered, false)
    assert.match(s1.bootstrap[0].path?.reason ?? '', /tcp: failed at tcp-connect \(ECONNREFUSED\)/)
    await first.stop()
    const file = join(dataDirPaths(dataDir).stateDir, RUNG_MEMORY_FILE)
    assert.ok(existsSync(file), 'the winning rung is kept in the state folder')
    assert.match(readFileSync(file, 'utf8'), /"transport": "ws"/)

    lines.length = 0
    const second = await startDonor(dataDir, bootstrap)
    const s2 = await waitFor('reservation after restart', async () => await reservedStatus(second.client, relayId))
    assert.equal(s2.relays[0].transport, 'ws')
    assert.equal(s2.bootstrap[0].path?.remembered, true)
    assert.match(s2.bootstrap[0].path?.reason ?? '', /^remembered from the last run on this network/)
    const logged = reservedLine(relayId)
    assert.ok(logged?.transport === 'ws' && logged.remembered === true, lines.join('\n'))
    // the remembered rung went first and won; the refused address, ranked first otherwise, is tried at most one
    // stagger later, only when the WebSocket takes longer than that to connect (a loaded machine)
    const dials = await second.client.call('dials', { limit: 100 })
    const ws = dials.attempts.filter(d => d.target === wsAddr && d.outcome === 'success')
    assert.equal(ws.length, 1, JSON.stringify(dials.attempts))
    const tcp = dials.attempts.filter(d => d.target === refused)
    assert.ok(tcp.length === 0 || (tcp.length === 1 && Date.parse(tcp[0].ts) - Date.parse(ws[0].ts) >= RUNG_STAGGER_MS - 5 && ws[0].duration_ms >= RUNG_STAGGER_MS - 5), JSON.stringify(dials.attempts))
  })

  it('a stalled TCP bootstrap address does not hold up the reservation: WS wins and TCP is recorded as cancelled at noise', async () => {
    const stalled = await stallingServer()
    const donor = await startDonor(join(dir.path, 'donor-stalled'), [stalled, wsAddr])
    const status = await waitFor('a reservation', async () => await reservedStatus(donor.client, relayId))
    assert.equal(status.relays[0].transport, 'ws')
    assert.match(status.bootstrap[0].path?.reason ?? '', /^first to connect \(tcp: cancelled at noise after/)
    assert.equal(status.bootstrap[0].failures, 0)
    const dials = await donor.client.call('dials', { limit: 100 })
    const tcp = dials.attempts.filter(d => d.target === stalled)
    assert.equal(tcp.length, 1, JSON.stringify(tcp))
    assert.equal(tcp[0].outcome, 'cancelled')
    assert.equal(tcp[0].phase, 'noise')
    assert.equal(tcp[0].purpose, 'bootstrap')
  })
})
