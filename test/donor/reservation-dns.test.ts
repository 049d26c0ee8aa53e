/**
 * A donor whose bootstrap relay is given by name: the reservation manager
 * resolves it before the dial ladder (OS resolver first, DNS-over-HTTPS when
 * that fails) and shows how in `status`. Real relay and daemon on loopback; a
 * real DoH server (plain HTTP, allowed to this machine); the OS side pointed
 * at a loopback nameserver that never answers, as behind a DNS filter.
 */
import assert from 'node:assert/strict'
import { promises as dnsPromises } from 'node:dns'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { ApiClient } from '../../src/api/client.ts'
import { loadDaemonConfig } from '../../src/config/config.ts'
import { startDaemon } from '../../src/daemon/daemon.ts'
import { configureLogging, resetLogging } from '../../src/log/logger.ts'
import { MeshResolver, type OsLookup } from '../../src/net/dns-resolver.ts'
import { startDohServer, startUdpDns, type DohServer, type UdpDnsServer } from '../helpers/dns-server.ts'
import { stopAfterEach } from '../helpers/cleanup.ts'
import { FAST_RESERVATION, startTestRelay, tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'
import type { RelayHandle } from '../../src/daemon/daemon.ts'

const dir = tempDir('wc-resdns-')
const lines: string[] = []
/** the donors of each test; the relay and the DNS servers are shared by all tests */
const track = stopAfterEach()
let relay: RelayHandle
let doh: DohServer
let silent: UdpDnsServer
let relayPort = 0

/** The OS side as c-ares asking a loopback nameserver that never answers. */
function filteredOs (port: number): OsLookup {
  return async (name, kind, { signal }) => {
    const resolver = new dnsPromises.Resolver({ timeout: 300, tries: 1 })
    resolver.setServers([`127.0.0.1:${port}`])
    signal.addEventListener('abort', () => { resolver.cancel() }, { once: true })
    if (kind === 'TXT') return { records: (await resolver.resolveTxt(name)).map(c => c.join('')) }
    return { records: kind === 'A' ? await resolver.resolve4(name) : await resolver.resolve6(name) }
  }
}

async function startDonor (name: string, bootstrap: string[]): Promise<{ client: ApiClient, stop: () => Promise<void> }> {
  const dataDir = join(dir.path, name)
  const config = loadDaemonConfig({ dataDir, bootstrap, listen: ['/p2p-circuit'], apiPort: '0', doh: [doh.url], noExecute: true }, {})
  const resolver = new MeshResolver({ doh: config.doh, osLookup: filteredOs(silent.port), osTimeoutMs: 500 })
  const handle = await startDaemon(config, { reservation: { ...FAST_RESERVATION, resolver } })
  return track({ client: new ApiClient({ dataDir }), stop: handle.stop })
}

before(async () => {
  configureLogging({ spec: 'info', format: 'text', sink: (line) => { lines.push(line) } })
  relay = await startTestRelay(join(dir.path, 'relay'))
  relayPort = Number(relay.info.announceAddrs.find(a => a.includes('/tcp/'))?.split('/')[4])
  doh = await startDohServer({ zone: { 'relay.wc.invalid': { A: ['127.0.0.1'] } } })
  silent = await startUdpDns({ silent: true })
})

after(async () => {
  await relay?.stop()
  await doh?.close()
  await silent?.close()
  resetLogging()
  dir.cleanup()
})

describe('bootstrap relays given by name', () => {
  it('resolves a /dns4 relay over DoH when the OS resolver gets no answer, reserves on it, and says so in status', async () => {
    const donor = await startDonor('by-name', [`/dns4/relay.wc.invalid/tcp/${relayPort}/p2p/${relay.info.peerId}`])
    const status = await waitFor('a reservation', async () => {
      const s = await donor.client.call('status', {})
      return s.relays.length > 0 ? s : undefined
    })
    assert.equal(status.relays[0].peerId, relay.info.peerId)
    const b = status.bootstrap[0]
    assert.equal(b.resolvedVia, 'doh')
    assert.equal(b.resolution?.[0].endpoint, doh.url)
    assert.deepEqual(b.resolution?.[0].resolved, [`/ip4/127.0.0.1/tcp/${relayPort}/p2p/${relay.info.peerId}`])
    assert.match(b.resolution?.[0].osError ?? '', /no answer|ETIMEOUT|did not answer/)
    assert.ok(lines.some(l => /WARN/.test(l) && l.includes('DNS fallback') && l.includes('relay.wc.invalid') && l.includes(doh.url)), 'the fallback is logged at the default level')
  })

  it('a name nobody resolves is a failed dial at phase dns, and the donor keeps retrying', async () => {
    const target = `/dns4/nowhere.wc.invalid/tcp/${relayPort}/p2p/${relay.info.peerId}`
    const donor = await startDonor('no-name', [target])
    const dials = await waitFor('a dns failure record', async () => {
      const d = await donor.client.call('dials', { limit: 50 })
      const failed = d.attempts.filter(a => a.target === target && a.phase === 'dns' && a.outcome === 'failure')
      return failed.length >= 2 ? failed : undefined
    })
    assert.equal(dials[0].code, 'DNS_FAILED')
    assert.equal(dials[0].transport, 'tcp')
    assert.match(dials[0].cause, /nowhere\.wc\.invalid/)
    assert.match(dials[0].cause, new RegExp(doh.url.replace(/[.:/]/g, '\\$&')), 'the cause names the DoH endpoint that was tried')
    const status = await donor.client.call('status', {})
    assert.equal(status.relays.length, 0)
    assert.equal(status.bootstrap[0].resolution?.[0].via, 'failed')
    assert.match(status.bootstrap[0].lastError ?? '', /no address resolved/)
  })
})
