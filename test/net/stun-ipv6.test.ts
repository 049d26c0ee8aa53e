/**
 * STUN over IPv6: the relay's responder bound to `::` answers IPv6 and IPv4
 * askers on one dual-stack socket, and an IPv6 XOR-MAPPED-ADDRESS decodes to
 * the address that was encoded. Loopback only (::1 and 127.0.0.1).
 */
import assert from 'node:assert/strict'
import { createSocket } from 'node:dgram'
import { describe, it } from 'node:test'
import { decodeStun, encodeBindingRequest, encodeBindingSuccess, newTransactionId } from '../../src/net/stun/codec.ts'
import { StunResponder } from '../../src/net/stun/responder.ts'
import { startRelayStun, stunAddrs, stunBindAddresses } from '../../src/relay/relay-stun.ts'
import { createLogger } from '../../src/log/logger.ts'
import { multiaddr } from '@multiformats/multiaddr'

async function askFrom (type: 'udp4' | 'udp6', host: string, port: number): Promise<{ address: string, port: number } | undefined> {
  const s = createSocket(type)
  await new Promise<void>(resolve => s.bind(0, host, resolve))
  try {
    return await new Promise(resolve => {
      const t = setTimeout(() => { resolve(undefined) }, 2000)
      s.on('message', (msg) => { clearTimeout(t); resolve(decodeStun(msg).mapped) })
      s.send(encodeBindingRequest().bytes, port, host)
    })
  } finally {
    s.close()
  }
}

describe('STUN over IPv6', () => {
  it('decodes an IPv6 XOR-MAPPED-ADDRESS to the address encoded', () => {
    const bytes = encodeBindingSuccess({ transactionId: newTransactionId(), mapped: { address: '2001:db8:1::5', port: 40000 }, responseOrigin: { address: '2001:db8::1', port: 3478 } })
    assert.deepEqual(decodeStun(bytes).mapped, { address: '2001:db8:1::5', port: 40000 })
  })

  it('a responder on :: answers IPv6 and IPv4 askers with their own addresses', { timeout: 10_000 }, async () => {
    const responder = new StunResponder({ addresses: ['::'], ports: [0] })
    await responder.start()
    try {
      const port = responder.endpoints()[0].port
      const v6 = await askFrom('udp6', '::1', port)
      const v4 = await askFrom('udp4', '127.0.0.1', port)
      assert.equal(v6?.address, '::1')
      assert.equal(v4?.address, '127.0.0.1', 'an IPv4 asker is told its IPv4 address, not the mapped IPv6 form')
    } finally {
      await responder.stop()
    }
  })

  it('a relay listening on every interface binds STUN on :: when the host has IPv6, else on 0.0.0.0', () => {
    const config = { listen: [multiaddr('/ip4/0.0.0.0/tcp/4001'), multiaddr('/ip6/::/tcp/4001')], announce: [] }
    assert.deepEqual(stunBindAddresses(config, () => true).map(b => b.addresses), [['::']])
    assert.deepEqual(stunBindAddresses(config, () => false).map(b => b.addresses), [['0.0.0.0']])
    assert.deepEqual(stunBindAddresses({ ...config, listen: [multiaddr('/ip4/198.51.100.10/tcp/4001')] }, () => true).map(b => b.addresses), [['198.51.100.10']])
  })

  it('a relay listening on specific IPs of both families binds one STUN responder per family', () => {
    const listen = [multiaddr('/ip4/198.51.100.10/tcp/4001'), multiaddr('/ip4/198.51.100.11/tcp/4001'), multiaddr('/ip6/2001:db8::10/tcp/4001'), multiaddr('/ip6/::/udp/4001/quic-v1')]
    assert.deepEqual(stunBindAddresses({ listen, announce: [] }, () => true).map(b => b.addresses), [['198.51.100.10', '198.51.100.11'], ['2001:db8::10']])
    assert.deepEqual(stunBindAddresses({ listen: [multiaddr('/ip6/2001:db8::10/tcp/4001')], announce: [] }, () => true).map(b => b.addresses), [['2001:db8::10']], 'an IPv6-only relay answers STUN on its IPv6 address')
  })

  it('a relay on specific IPs of both families answers STUN over each', { timeout: 10_000 }, async () => {
    // port 0: each responder gets its own free port, read back from its endpoints
    const stun = await startRelayStun({ listen: [multiaddr('/ip4/127.0.0.1/tcp/4001'), multiaddr('/ip6/::1/tcp/4001')], announce: [], stunPorts: [0] }, createLogger('test.stun'))
    assert.ok(stun != null)
    try {
      const at = new Map(stun.endpoints().map(e => [e.address, e.port]))
      assert.deepEqual([...at.keys()].sort(), ['127.0.0.1', '::1'])
      assert.equal((await askFrom('udp6', '::1', at.get('::1') ?? 0))?.address, '::1')
      assert.equal((await askFrom('udp4', '127.0.0.1', at.get('127.0.0.1') ?? 0))?.address, '127.0.0.1')
    } finally {
      await stun.stop()
    }
  })

  it('names both families\' advertised addresses as STUN endpoints of a responder on ::', () => {
    const onEveryInterface: Pick<StunResponder, 'endpoints'> = { endpoints: () => [{ address: '::', port: 3478 }] }
    assert.deepEqual(stunAddrs(onEveryInterface, ['/ip4/198.51.100.10/tcp/4001/p2p/x', '/ip6/2001:db8::10/tcp/4001/p2p/x']), ['/ip4/198.51.100.10/udp/3478', '/ip6/2001:db8::10/udp/3478'])
  })
})
