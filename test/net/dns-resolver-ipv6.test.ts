/**
 * The resolver on an IPv6-only host, against a real UDP DNS server on
 * loopback whose zone is what a DNS64 resolver (RFC 6147) answers: names
 * that only have A records also get AAAA records inside the NAT64 prefix
 * 64:ff9b::/96, and `ipv4only.arpa` tells the prefix (RFC 7050).
 */
import assert from 'node:assert/strict'
import { promises as dnsPromises } from 'node:dns'
import { after, before, describe, it } from 'node:test'
import { multiaddr } from '@multiformats/multiaddr'
import { MeshResolver, synthesizeNat64, type HostFamilies, type OsLookup } from '../../src/net/dns-resolver.ts'
import { startUdpDns, type UdpDnsServer, type Zone } from '../helpers/dns-server.ts'

const PEER = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'
/** What a DNS64 in front of this zone answers: the AAAA records are synthesized from the A records. */
const DNS64_ZONE: Zone = {
  'relay.wc.invalid': { A: ['192.0.2.7'], AAAA: ['64:ff9b::c000:207'] },
  'ipv4only.arpa': { A: ['192.0.0.170', '192.0.0.171'], AAAA: ['64:ff9b::c000:aa', '64:ff9b::c000:ab'] }
}
/** The same names without DNS64: an IPv4-only name has no AAAA, and nothing tells a NAT64 prefix. */
const PLAIN_ZONE: Zone = {
  'relay.wc.invalid': { A: ['192.0.2.7'] },
  'ipv4only.arpa': { A: ['192.0.0.170', '192.0.0.171'] }
}

const V6_ONLY = (): HostFamilies => ({ ip4: false, ip6: true })
const DUAL = (): HostFamilies => ({ ip4: true, ip6: true })

function osAt (port: number): OsLookup {
  return async (name, kind, { signal }) => {
    const resolver = new dnsPromises.Resolver({ timeout: 400, tries: 1 })
    resolver.setServers([`127.0.0.1:${port}`])
    signal.addEventListener('abort', () => { resolver.cancel() }, { once: true })
    if (kind === 'TXT') return { records: (await resolver.resolveTxt(name)).map(c => c.join('')) }
    const found = kind === 'A' ? await resolver.resolve4(name) : await resolver.resolve6(name)
    return { records: found }
  }
}

describe('MeshResolver on an IPv6-only host', () => {
  let dns64: UdpDnsServer
  let plain: UdpDnsServer

  before(async () => {
    dns64 = await startUdpDns({ zone: DNS64_ZONE })
    plain = await startUdpDns({ zone: PLAIN_ZONE })
  })
  after(async () => {
    await dns64.close()
    await plain.close()
  })

  it('synthesizes an IPv6 address under a /96 NAT64 prefix', () => {
    assert.equal(synthesizeNat64(Uint8Array.from([0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0]), '198.51.100.10'), '64:ff9b::c633:640a')
  })

  it('asks AAAA for a /dns4 name too, and gets the DNS64 answer for a name that has only an A record', async () => {
    const resolver = new MeshResolver({ doh: [], osLookup: osAt(dns64.port), families: V6_ONLY })
    const r = await resolver.resolveMultiaddr(multiaddr(`/dns4/relay.wc.invalid/tcp/4001/p2p/${PEER}`))
    assert.deepEqual(r.resolved, [`/ip4/192.0.2.7/tcp/4001/p2p/${PEER}`, `/ip6/64:ff9b::c000:207/tcp/4001/p2p/${PEER}`])
    assert.match(r.note ?? '', /no IPv4 address: AAAA records were asked too/)
  })

  it('a dual-stack host keeps /dns4 to A records', async () => {
    const resolver = new MeshResolver({ doh: [], osLookup: osAt(dns64.port), families: DUAL })
    const r = await resolver.resolveMultiaddr(multiaddr(`/dns4/relay.wc.invalid/tcp/4001/p2p/${PEER}`))
    assert.deepEqual(r.resolved, [`/ip4/192.0.2.7/tcp/4001/p2p/${PEER}`])
    assert.equal(r.note, undefined)
  })

  it('uses the AAAA answer for a /dns name', async () => {
    const resolver = new MeshResolver({ doh: [], osLookup: osAt(dns64.port), families: V6_ONLY })
    const r = await resolver.resolveMultiaddr(multiaddr(`/dns/relay.wc.invalid/udp/4001/quic-v1/p2p/${PEER}`))
    assert.ok(r.resolved.includes(`/ip6/64:ff9b::c000:207/udp/4001/quic-v1/p2p/${PEER}`), r.resolved.join(' '))
  })

  it('gives a literal /ip4 bootstrap its NAT64 form, from the prefix ipv4only.arpa tells', async () => {
    const resolver = new MeshResolver({ doh: [], osLookup: osAt(dns64.port), families: V6_ONLY })
    const prefix = await resolver.nat64Prefix()
    assert.deepEqual([...prefix ?? []], [0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0])
    const r = await resolver.resolveMultiaddr(multiaddr(`/ip4/198.51.100.10/tcp/4001/p2p/${PEER}`))
    assert.equal(r.via, 'literal')
    assert.deepEqual(r.resolved, [`/ip4/198.51.100.10/tcp/4001/p2p/${PEER}`, `/ip6/64:ff9b::c633:640a/tcp/4001/p2p/${PEER}`])
    assert.match(r.note ?? '', /NAT64 prefix 64:ff9b::\/96 \(from ipv4only\.arpa\)/)
  })

  it('says so when an IPv6-only network has no NAT64, and leaves the IPv4 address as it is', async () => {
    const resolver = new MeshResolver({ doh: [], osLookup: osAt(plain.port), families: V6_ONLY })
    const literal = await resolver.resolveMultiaddr(multiaddr(`/ip4/198.51.100.10/tcp/4001/p2p/${PEER}`))
    assert.deepEqual(literal.resolved, [`/ip4/198.51.100.10/tcp/4001/p2p/${PEER}`])
    assert.match(literal.note ?? '', /no NAT64 prefix/)
    const named = await resolver.resolveMultiaddr(multiaddr(`/dns4/relay.wc.invalid/tcp/4001/p2p/${PEER}`))
    assert.deepEqual(named.resolved, [`/ip4/192.0.2.7/tcp/4001/p2p/${PEER}`])
    assert.match(named.note ?? '', /IPv4 addresses are unreachable from here/)
  })

  it('a literal /ip4 on a host with IPv4 is not touched and asks nothing', async () => {
    const before = dns64.queries.length
    const resolver = new MeshResolver({ doh: [], osLookup: osAt(dns64.port), families: DUAL })
    const r = await resolver.resolveMultiaddr(multiaddr(`/ip4/198.51.100.10/tcp/4001/p2p/${PEER}`))
    assert.deepEqual(r.resolved, [`/ip4/198.51.100.10/tcp/4001/p2p/${PEER}`])
    assert.equal(dns64.queries.length, before)
  })
})
