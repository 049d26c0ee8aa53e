/**
 * The bootstrap resolver against real DNS traffic on loopback: a UDP DNS
 * server the OS-side resolver (node:dns, c-ares) is pointed at, one that never
 * answers (a filtered resolver), and a DNS-over-HTTPS server over real TLS
 * with a certificate from a private CA made by openssl.
 */
import assert from 'node:assert/strict'
import { promises as dnsPromises } from 'node:dns'
import { readFileSync } from 'node:fs'
import { getCACertificates, setDefaultCACertificates } from 'node:tls'
import { after, before, describe, it } from 'node:test'
import { multiaddr } from '@multiformats/multiaddr'
import { RecordType } from '@multiformats/dns'
import { MeshResolver, DnsResolutionError, overallVia, systemLookup, type OsLookup } from '../../src/net/dns-resolver.ts'
import { configureLogging, resetLogging } from '../../src/log/logger.ts'
import { issueCert, makeCa, startDohServer, startUdpDns, type DohServer, type UdpDnsServer, type Zone } from '../helpers/dns-server.ts'
import { freePort, tempDir } from '../helpers/mesh.ts'

const PEER = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'
const ZONE: Zone = {
  'relay.wc.invalid': { A: ['192.0.2.7'], AAAA: ['2001:db8::7'] },
  'sinkholed.wc.invalid': { A: ['192.0.2.8'] },
  '_dnsaddr.boot.wc.invalid': { TXT: [`dnsaddr=/dns4/relay.wc.invalid/tcp/4001/p2p/${PEER}`, 'dnsaddr=/ip4/192.0.2.99/tcp/4001/p2p/12D3KooWSomeoneElseSomeoneElseSomeoneElseSomeone', 'unrelated=1'] }
}

/** The OS side, as c-ares pointed at one loopback nameserver: real queries, real failures. */
function osAt (port: number): OsLookup {
  return async (name, kind, { signal }) => {
    const resolver = new dnsPromises.Resolver({ timeout: 400, tries: 1 })
    resolver.setServers([`127.0.0.1:${port}`])
    signal.addEventListener('abort', () => { resolver.cancel() }, { once: true })
    if (kind === 'TXT') return { records: (await resolver.resolveTxt(name)).map(c => c.join('')) }
    const found = kind === 'A' ? await resolver.resolve4(name, { ttl: true }) : await resolver.resolve6(name, { ttl: true })
    return { records: found.map(f => f.address), ttl: Math.min(...found.map(f => f.ttl)) }
  }
}

/** An OS resolver that answers a sinkhole address for every name, as filtering resolvers do. */
const sinkholeOs: OsLookup = async () => ({ records: ['0.0.0.0'] })

describe('MeshResolver: OS resolver first, DNS-over-HTTPS when it fails', () => {
  let dir: ReturnType<typeof tempDir>
  let doh: DohServer
  let goodOs: UdpDnsServer
  let silentOs: UdpDnsServer
  let closedPort: number
  const lines: string[] = []
  const caBefore = getCACertificates('default')

  before(async () => {
    dir = tempDir('wc-dns-')
    const ca = makeCa(dir.path)
    const cert = issueCert(ca, 'doh', ['IP:127.0.0.1'])
    // what NODE_EXTRA_CA_CERTS does for a daemon, for this test process: fetch() trusts the private CA
    setDefaultCACertificates([...caBefore, readFileSync(ca.caCert, 'utf8')])
    doh = await startDohServer({ zone: ZONE, tls: cert })
    goodOs = await startUdpDns({ zone: ZONE })
    silentOs = await startUdpDns({ silent: true })
    closedPort = await freePort()
    configureLogging({ spec: 'info', format: 'text', sink: (line) => { lines.push(line) } })
  })
  after(async () => {
    resetLogging()
    setDefaultCACertificates(caBefore)
    await doh?.close()
    await goodOs?.close()
    await silentOs?.close()
    dir?.cleanup()
  })

  it('passes IP addresses through untouched', async () => {
    const r = new MeshResolver({ doh: [doh.url], osLookup: osAt(silentOs.port) })
    const res = await r.resolveMultiaddr(multiaddr(`/ip4/192.0.2.1/tcp/4001/p2p/${PEER}`))
    assert.equal(res.via, 'literal')
    assert.deepEqual(res.resolved, [`/ip4/192.0.2.1/tcp/4001/p2p/${PEER}`])
    assert.equal(doh.queries.length, 0)
  })

  it('resolves /dns4 with the OS resolver when it answers, without asking DoH', async () => {
    const before = doh.queries.length
    const r = new MeshResolver({ doh: [doh.url], osLookup: osAt(goodOs.port) })
    const res = await r.resolveMultiaddr(multiaddr(`/dns4/relay.wc.invalid/udp/4001/quic-v1/p2p/${PEER}`))
    assert.equal(res.via, 'os')
    assert.deepEqual(res.resolved, [`/ip4/192.0.2.7/udp/4001/quic-v1/p2p/${PEER}`])
    assert.equal(doh.queries.length, before, 'DoH was not asked')
    assert.ok(goodOs.queries.some(q => q.name === 'relay.wc.invalid' && q.type === 'A'))
  })

  it('falls back to DoH when the OS resolver does not answer (port 53 filtered), and logs the fallback', async () => {
    lines.length = 0
    const r = new MeshResolver({ doh: [doh.url], osLookup: osAt(silentOs.port), osTimeoutMs: 600 })
    const res = await r.resolveMultiaddr(multiaddr(`/dns4/relay.wc.invalid/tcp/4001/p2p/${PEER}`))
    assert.equal(res.via, 'doh')
    assert.equal(res.endpoint, doh.url)
    assert.match(res.osError ?? '', /no answer|ETIMEOUT|did not answer/)
    assert.deepEqual(res.resolved, [`/ip4/192.0.2.7/tcp/4001/p2p/${PEER}`])
    assert.ok(doh.queries.some(q => q.name === 'relay.wc.invalid' && q.type === 'A' && q.answered === 1), 'the DoH server was asked over HTTPS')
    const line = lines.find(l => l.includes('DNS fallback'))
    assert.ok(line != null, `a fallback line at the default level: ${lines.join('\n')}`)
    assert.match(line, /WARN/)
    assert.ok(line.includes('relay.wc.invalid') && line.includes(doh.url) && line.includes('192.0.2.7'), line)
  })

  it('tries the next DoH endpoint when one is down, and says why each failed', async () => {
    lines.length = 0
    const down = `https://127.0.0.1:${closedPort}/dns-query`
    const r = new MeshResolver({ doh: [down, doh.url], osLookup: osAt(closedPort) })
    const res = await r.resolveMultiaddr(multiaddr(`/dns6/relay.wc.invalid/tcp/4001/p2p/${PEER}`))
    assert.equal(res.via, 'doh')
    assert.equal(res.endpoint, doh.url)
    assert.deepEqual(res.resolved, [`/ip6/2001:db8::7/tcp/4001/p2p/${PEER}`])
    assert.ok(lines.some(l => l.includes(down) && /ECONNREFUSED/.test(l)), `the dead endpoint's failure is logged with its cause:\n${lines.join('\n')}`)
  })

  it('treats a sinkhole answer from the OS resolver as filtered and asks DoH', async () => {
    const r = new MeshResolver({ doh: [doh.url], osLookup: sinkholeOs })
    const res = await r.resolveMultiaddr(multiaddr(`/dns4/sinkholed.wc.invalid/tcp/4001/p2p/${PEER}`))
    assert.equal(res.via, 'doh')
    assert.match(res.osError ?? '', /sinkhole/)
    assert.deepEqual(res.resolved, [`/ip4/192.0.2.8/tcp/4001/p2p/${PEER}`])
  })

  it('expands /dnsaddr over DoH, keeping only records for the same PeerId and resolving them in turn', async () => {
    const r = new MeshResolver({ doh: [doh.url], osLookup: osAt(silentOs.port), osTimeoutMs: 300 })
    const res = await r.resolveMultiaddr(multiaddr(`/dnsaddr/boot.wc.invalid/p2p/${PEER}`))
    assert.equal(res.via, 'doh')
    assert.deepEqual(res.resolved, [`/ip4/192.0.2.7/tcp/4001/p2p/${PEER}`])
    assert.ok(doh.queries.some(q => q.name === '_dnsaddr.boot.wc.invalid' && q.type === 'TXT'))
  })

  it('does not ask DoH for IPv6 when the OS resolver answered IPv4 for a /dns name', async () => {
    lines.length = 0
    const before = doh.queries.length
    const zone = { 'v4only.wc.invalid': { A: ['192.0.2.9'] } }
    const v4only = await startUdpDns({ zone })
    try {
      const r = new MeshResolver({ doh: [doh.url], osLookup: osAt(v4only.port) })
      const res = await r.resolveMultiaddr(multiaddr(`/dns/v4only.wc.invalid/tcp/4001/p2p/${PEER}`))
      assert.equal(res.via, 'os')
      assert.deepEqual(res.resolved, [`/ip4/192.0.2.9/tcp/4001/p2p/${PEER}`])
      assert.equal(doh.queries.length, before, 'DoH was not asked')
      assert.equal(lines.filter(l => l.includes('DNS fallback')).length, 0)
    } finally {
      await v4only.close()
    }
  })

  it('keeps the name of a WebSocket-over-TLS address: TLS checks the certificate against it', async () => {
    const r = new MeshResolver({ doh: [doh.url], osLookup: osAt(silentOs.port) })
    const ma = `/dns4/relay.wc.invalid/tcp/443/tls/ws/p2p/${PEER}`
    const res = await r.resolveMultiaddr(multiaddr(ma))
    assert.equal(res.via, 'at-connect')
    assert.deepEqual(res.resolved, [ma])
  })

  it('fails with every resolver and its cause named when nothing resolves the name', async () => {
    const r = new MeshResolver({ doh: [doh.url], osLookup: osAt(closedPort) })
    await assert.rejects(r.resolveMultiaddr(multiaddr(`/dns4/nowhere.wc.invalid/tcp/4001/p2p/${PEER}`)), (err: unknown) => {
      assert.ok(err instanceof DnsResolutionError)
      assert.equal(err.code, 'DNS_FAILED')
      assert.equal(err.attempts.length, 2, err.message)
      assert.match(err.attempts[0], /^os: /)
      assert.ok(err.attempts[1].startsWith(doh.url), err.message)
      return true
    })
  })

  it('says so when the OS resolver fails and no DoH endpoint is configured', async () => {
    const r = new MeshResolver({ doh: [], osLookup: osAt(closedPort) })
    await assert.rejects(r.resolveMultiaddr(multiaddr(`/dns4/relay.wc.invalid/tcp/4001/p2p/${PEER}`)), /no DoH endpoint configured/)
  })

  it('answers libp2p\'s DNS interface (TXT for /dnsaddr) through the same fallback', async () => {
    const r = new MeshResolver({ doh: [doh.url], osLookup: osAt(closedPort) })
    const res = await r.query('_dnsaddr.boot.wc.invalid', { types: [RecordType.TXT] })
    assert.equal(res.Answer.length, 3)
    assert.ok(res.Answer.some(a => a.data === `dnsaddr=/dns4/relay.wc.invalid/tcp/4001/p2p/${PEER}`))
  })

  it('resolves localhost with the real system resolver (hosts file, no network)', async () => {
    const r = new MeshResolver({ doh: [], osLookup: systemLookup })
    const res = await r.resolveMultiaddr(multiaddr(`/dns4/localhost/tcp/4001/p2p/${PEER}`))
    assert.equal(res.via, 'os')
    assert.deepEqual(res.resolved, [`/ip4/127.0.0.1/tcp/4001/p2p/${PEER}`])
  })

  it('names a relay\'s resolution path from its addresses', () => {
    assert.equal(overallVia([{ via: 'literal' }]), 'literal')
    assert.equal(overallVia([{ via: 'literal' }, { via: 'os' }]), 'os')
    assert.equal(overallVia([{ via: 'os' }, { via: 'doh' }]), 'doh')
  })
})
