/**
 * IPv6 scopes follow the IPv4 ones: loopback, link-local and ULA addresses
 * are never treated as public, the documentation prefix the namespace lab
 * uses (2001:db8::/32) is public only through a configured public range, and
 * NAT64 or IPv4-mapped addresses have the scope of the IPv4 address inside.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { multiaddr } from '@multiformats/multiaddr'
import { parseCidr } from '../../src/config/cidr.ts'
import { applyPublicRanges, embeddedIpv4, ipv6Bytes, isPublicIp, makeAnnounceFilter, scopeOf } from '../../src/net/address-scope.ts'

const RELAY = '12D3KooWSqfqQhtUxLUtGUvxE6XgfoXsFaCoSsT8fVL8VrnkDWVj'
const texts = (list: Array<ReturnType<typeof multiaddr>>): string[] => list.map(m => m.toString())

describe('IPv6 address parts', () => {
  it('expands compressed addresses and IPv4 tails to 16 bytes', () => {
    assert.deepEqual([...ipv6Bytes('2001:db8::1') ?? []], [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
    assert.deepEqual([...(ipv6Bytes('::ffff:192.0.2.7') ?? []).slice(10)], [0xff, 0xff, 192, 0, 2, 7])
    assert.equal(ipv6Bytes('192.0.2.7'), undefined)
  })

  it('finds the IPv4 address inside NAT64 and IPv4-mapped addresses, and none elsewhere', () => {
    assert.equal(embeddedIpv4('64:ff9b::c633:640a'), '198.51.100.10')
    assert.equal(embeddedIpv4('64:ff9b::198.51.100.10'), '198.51.100.10')
    assert.equal(embeddedIpv4('::ffff:10.1.2.3'), '10.1.2.3')
    assert.equal(embeddedIpv4('2001:db8::c633:640a'), undefined)
  })
})

// one process, one set of public ranges: the checks below run in order
describe('IPv6 scopes', () => {
  it('treats loopback, link-local, ULA and the documentation prefix like private IPv4 by default', () => {
    assert.equal(scopeOf('/ip6/::1/tcp/4001'), 'loopback')
    assert.equal(scopeOf('/ip6/fe80::fc:ff:fe00:1/udp/4001/quic-v1'), 'link-local')
    assert.equal(scopeOf('/ip4/169.254.3.4/tcp/4001'), 'link-local')
    assert.equal(scopeOf('/ip6/fd00::2/tcp/4001'), 'private')
    assert.equal(scopeOf('/ip6/fc12:3456::1/tcp/4001'), 'private')
    assert.equal(scopeOf('/ip6/2001:db8:1::10/tcp/4001'), 'private')
    assert.equal(scopeOf('/ip6/2606:4700::1111/tcp/443'), 'public')
  })

  it('gives a NAT64 address the scope of the IPv4 address it translates to', () => {
    assert.equal(isPublicIp('64:ff9b::808:808'), true)
    assert.equal(scopeOf('/ip6/64:ff9b::a01:203/tcp/4001'), 'private')
    assert.equal(scopeOf('/ip6/64:ff9b::7f00:1/tcp/4001'), 'loopback')
  })

  it('makes the documentation prefix public through a configured range, as --public-range does for IPv4', () => {
    applyPublicRanges([parseCidr('2001:db8::/32', 't'), parseCidr('198.51.100.0/24', 't')])
    assert.equal(scopeOf('/ip6/2001:db8:1::10/tcp/4001'), 'public')
    assert.equal(scopeOf('/ip6/fd00::2/tcp/4001'), 'private', 'ULA stays private')
    assert.equal(scopeOf('/ip6/64:ff9b::c633:640a/tcp/4001'), 'public', 'NAT64 of an address in a public IPv4 range')
  })

  it('announces a relay\'s public IPv6 addresses beside its IPv4 ones, never link-local ones', () => {
    const filter = makeAnnounceFilter([], { keepPrivateAsLastResort: true })
    const out = filter([
      multiaddr(`/ip4/198.51.100.10/tcp/4001/p2p/${RELAY}`),
      multiaddr(`/ip6/2001:db8:1::10/tcp/4001/p2p/${RELAY}`),
      multiaddr(`/ip6/2001:db8:1::10/udp/4001/quic-v1/p2p/${RELAY}`),
      multiaddr(`/ip6/fd00::2/tcp/4001/p2p/${RELAY}`),
      multiaddr(`/ip6/fe80::1/tcp/4001/p2p/${RELAY}`),
      multiaddr(`/ip6/::1/tcp/4001/p2p/${RELAY}`)
    ])
    assert.deepEqual(texts(out), [
      `/ip4/198.51.100.10/tcp/4001/p2p/${RELAY}`,
      `/ip6/2001:db8:1::10/tcp/4001/p2p/${RELAY}`,
      `/ip6/2001:db8:1::10/udp/4001/quic-v1/p2p/${RELAY}`
    ])
  })

  it('a relay with only private addresses keeps them as a last resort, but not its link-local ones', () => {
    const filter = makeAnnounceFilter([], { keepPrivateAsLastResort: true })
    const out = filter([
      multiaddr(`/ip6/fd00::2/tcp/4001/p2p/${RELAY}`),
      multiaddr(`/ip6/fe80::fc:ff:fe00:1/udp/4001/quic-v1/p2p/${RELAY}`),
      multiaddr(`/ip4/10.0.0.2/tcp/4001/p2p/${RELAY}`)
    ])
    assert.deepEqual(texts(out), [`/ip6/fd00::2/tcp/4001/p2p/${RELAY}`, `/ip4/10.0.0.2/tcp/4001/p2p/${RELAY}`])
  })
})
