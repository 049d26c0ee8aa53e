/**
 * publicRanges and the announce filter. js-libp2p's own private-address
 * check (@libp2p/utils isPrivate / isPrivateIp — what identify, the address
 * manager and AutoNAT v2 use) must follow publicRanges: these tests fail if a
 * libp2p upgrade changes how it decides.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { isPrivate, isPrivateIp } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { parseCidr } from '../../src/config/cidr.ts'
import { applyPublicRanges, isPublicIp, makeAnnounceFilter, scopeOf } from '../../src/net/address-scope.ts'

const ma = (s: string): ReturnType<typeof multiaddr> => multiaddr(s)
const texts = (list: Array<ReturnType<typeof multiaddr>>): string[] => list.map(m => m.toString())
const PEER = '12D3KooWGRUVh5yuBGvBBYAYXNJpHxNFtzY2ZXv9Y7Yqbtfa8Hd2'
const RELAY = '12D3KooWSqfqQhtUxLUtGUvxE6XgfoXsFaCoSsT8fVL8VrnkDWVj'

describe('address ranges', () => {
  it('parses CIDRs and bare IPs, and names the source of a bad one', () => {
    assert.deepEqual(parseCidr('10.0.0.0/8', 'x'), { address: '10.0.0.0', prefix: 8, family: 'ipv4', text: '10.0.0.0/8' })
    assert.equal(parseCidr(' 192.0.2.7 ', 'x').text, '192.0.2.7/32')
    assert.equal(parseCidr('2001:db8::/32', 'x').family, 'ipv6')
    assert.throws(() => parseCidr('10.0.0.0/33', '--public-range'), /--public-range.*"10\.0\.0\.0\/33".*0–32/)
    assert.throws(() => parseCidr('example.com/8', 'config.json "publicRanges"'), /config\.json "publicRanges".*CIDR/)
    assert.throws(() => parseCidr('10.0.0.0/8/1', 'x'), /invalid address range/)
  })
})

// one process, one set of public ranges: the checks below run in order
describe('publicRanges make js-libp2p treat a range as public', () => {
  it('starts from js-libp2p\'s view: RFC 1918 and TEST-NET are private, loopback too', () => {
    assert.equal(isPrivateIp('198.51.100.10'), true)
    assert.equal(isPrivateIp('10.1.2.3'), true)
    assert.equal(isPublicIp('198.51.100.10'), false)
    assert.equal(isPublicIp('8.8.8.8'), true)
    assert.equal(scopeOf('/ip4/127.0.0.1/tcp/1'), 'loopback')
    assert.equal(scopeOf('/ip4/10.1.2.3/tcp/1'), 'private')
    assert.equal(scopeOf('/dns4/relay.example/tcp/443/tls/ws'), 'name')
  })

  it('after applyPublicRanges, libp2p\'s isPrivate (identify, address manager, AutoNAT v2) calls those ranges public', () => {
    const notEffective = applyPublicRanges([parseCidr('198.51.100.0/24', 't'), parseCidr('10.20.0.0/16', 't'), parseCidr('2001:db8::/32', 't')])
    assert.deepEqual(notEffective, [])
    assert.equal(isPrivateIp('198.51.100.10'), false)
    assert.equal(isPrivate(ma('/ip4/198.51.100.10/udp/4001/quic-v1')), false)
    assert.equal(isPrivateIp('::ffff:198.51.100.10'), false, 'IPv4-mapped IPv6 follows too')
    assert.equal(isPrivateIp('10.20.3.4'), false)
    // outside the ranges nothing changed
    assert.equal(isPrivateIp('10.21.0.1'), true)
    assert.equal(isPrivateIp('192.0.2.1'), true)
    assert.equal(isPrivateIp('127.0.0.1'), true)
    // our view: IPv6 ranges count for us even where libp2p's regular expressions cannot be reached
    assert.equal(isPublicIp('2001:db8::1'), true)
    assert.equal(scopeOf('/ip4/198.51.100.10/tcp/4001'), 'public')
  })
})

describe('announce filter', () => {
  const filter = makeAnnounceFilter()

  it('drops loopback and private direct addresses, keeps public ones and circuits', () => {
    const out = filter([
      ma(`/ip4/127.0.0.1/tcp/4001/p2p/${PEER}`),
      ma(`/ip4/10.1.0.2/tcp/4001/p2p/${PEER}`),
      ma(`/ip4/192.168.1.5/udp/4001/quic-v1/p2p/${PEER}`),
      ma(`/ip4/198.51.100.30/tcp/4001/p2p/${PEER}`), // public: applied above
      ma(`/ip4/198.51.100.10/tcp/4001/p2p/${RELAY}/p2p-circuit/p2p/${PEER}`),
      ma(`/ip4/10.9.9.9/tcp/4001/p2p/${RELAY}/p2p-circuit/p2p/${PEER}`),
      ma(`/dns4/donor.example/tcp/443/tls/ws/p2p/${PEER}`)
    ])
    assert.deepEqual(texts(out), [
      `/ip4/198.51.100.30/tcp/4001/p2p/${PEER}`,
      `/ip4/198.51.100.10/tcp/4001/p2p/${RELAY}/p2p-circuit/p2p/${PEER}`,
      `/ip4/10.9.9.9/tcp/4001/p2p/${RELAY}/p2p-circuit/p2p/${PEER}`,
      `/dns4/donor.example/tcp/443/tls/ws/p2p/${PEER}`
    ])
  })

  it('keeps everything on a node that runs on loopback only (the demo and the tests on 127.0.0.1)', () => {
    const addrs = [ma(`/ip4/127.0.0.1/tcp/4001/p2p/${PEER}`), ma(`/ip4/127.0.0.1/tcp/4001/p2p/${RELAY}/p2p-circuit/p2p/${PEER}`)]
    assert.deepEqual(texts(filter(addrs)), texts(addrs))
    const relayOnly = [ma(`/ip4/127.0.0.1/tcp/4001/p2p/${RELAY}/p2p-circuit/p2p/${PEER}`)]
    assert.deepEqual(texts(filter(relayOnly)), texts(relayOnly))
  })

  it('keeps addresses the operator announced explicitly, private or not', () => {
    const f = makeAnnounceFilter([ma('/ip4/10.0.0.5/tcp/4001')])
    assert.deepEqual(texts(f([ma(`/ip4/10.0.0.5/tcp/4001/p2p/${PEER}`), ma(`/ip4/10.0.0.6/tcp/4001/p2p/${PEER}`)])), [`/ip4/10.0.0.5/tcp/4001/p2p/${PEER}`])
  })

  it('lets a relay with only private addresses keep them (else its reservations carry no address), never loopback', () => {
    const relay = makeAnnounceFilter([], { keepPrivateAsLastResort: true })
    const addrs = [ma(`/ip4/127.0.0.1/tcp/4001/p2p/${RELAY}`), ma(`/ip4/10.0.0.5/tcp/4001/p2p/${RELAY}`)]
    assert.deepEqual(texts(relay(addrs)), [`/ip4/10.0.0.5/tcp/4001/p2p/${RELAY}`])
    assert.deepEqual(texts(filter(addrs)), [], 'a donor drops them: its circuits are how it is reached')
  })
})
