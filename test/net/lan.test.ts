/**
 * Peers on one private network (net/lan.ts): which of this node's listen
 * addresses it tells a peer that asks, and which of a peer's it would dial
 * across this host's own networks.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { addrsOnOwnLan, endpointIp, lanListenAddrs, ownSubnets } from '../../src/net/lan.ts'

describe('LAN addresses', () => {
  it('tells its private TCP and QUIC listen addresses, TCP first, and nothing loopback, link-local, public, relayed or WebSocket', () => {
    const bound = [
      '/ip4/127.0.0.1/tcp/4001',
      '/ip4/10.1.0.2/udp/4001/quic-v1',
      '/ip4/169.254.3.4/tcp/4001',
      '/ip4/8.8.8.8/tcp/4001',
      '/ip4/10.1.0.2/tcp/4001',
      '/ip4/192.168.7.9/tcp/4002/ws',
      '/ip4/8.8.4.4/tcp/4001/p2p/12D3KooWFHoexRyGtSjZ4w9efbFsD5R1bDvjAg5WcKkMe38NtXpC/p2p-circuit',
      '/ip6/fd00::5/tcp/4001'
    ]
    assert.deepEqual(lanListenAddrs(bound, 8), ['/ip4/10.1.0.2/tcp/4001', '/ip6/fd00::5/tcp/4001', '/ip4/10.1.0.2/udp/4001/quic-v1'])
    assert.deepEqual(lanListenAddrs(bound, 1), ['/ip4/10.1.0.2/tcp/4001'])
  })

  it('dials only a peer address inside one of its own networks, and skips what it cannot parse', () => {
    const subnets = ['10.1.0.2/24', 'fd00::1/64', 'nonsense', '10.9.0.1/x']
    const addrs = [
      '/ip4/10.1.0.3/tcp/4001',
      '/ip4/10.2.0.3/tcp/4001',
      '/ip4/10.1.0.3/udp/4001/quic-v1',
      '/ip6/fd00::7/tcp/4001',
      '/ip6/fd01::7/tcp/4001',
      '/ip4/8.8.8.8/tcp/4001',
      '/ip4/10.1.0.3/tcp/4002/ws',
      'not a multiaddr',
      '/ip4/10.1.0.9/tcp/4001/p2p/12D3KooWFHoexRyGtSjZ4w9efbFsD5R1bDvjAg5WcKkMe38NtXpC/p2p-circuit',
      // this host's own address (a Docker bridge has the same one on every machine): never the peer
      '/ip4/10.1.0.2/tcp/4001'
    ]
    assert.deepEqual(addrsOnOwnLan(addrs, subnets), ['/ip4/10.1.0.3/tcp/4001', '/ip4/10.1.0.3/udp/4001/quic-v1', '/ip6/fd00::7/tcp/4001'])
    assert.deepEqual(addrsOnOwnLan(addrs, []), [], 'no network of its own: nothing is on it')
  })

  it('reads the IP of a STUN mapped address, IPv4 or bracketed IPv6, and nothing else', () => {
    assert.equal(endpointIp('203.0.113.5:40123'), '203.0.113.5')
    assert.equal(endpointIp('[2001:db8::5]:40123'), '2001:db8::5')
    assert.equal(endpointIp(undefined), undefined)
    assert.equal(endpointIp('relay.example:3478'), undefined)
  })

  it('lists this host\'s own networks without loopback', () => {
    for (const cidr of ownSubnets()) {
      assert.match(cidr, /^[0-9a-f.:]+\/\d+$/)
      assert.ok(!cidr.startsWith('127.') && cidr !== '::1/128', cidr)
    }
  })
})
