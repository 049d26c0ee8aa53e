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
import { stunAddrs, stunBindAddresses } from '../../src/relay/relay-stun.ts'
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
    assert.deepEqual(stunBindAddresses(config, () => true).addresses, ['::'])
    assert.deepEqual(stunBindAddresses(config, () => false).addresses, ['0.0.0.0'])
    assert.deepEqual(stunBindAddresses({ ...config, listen: [multiaddr('/ip4/198.51.100.10/tcp/4001')] }, () => true).addresses, ['198.51.100.10'])
  })

  it('names both families\' advertised addresses as STUN endpoints of a responder on ::', () => {
    const onEveryInterface: Pick<StunResponder, 'endpoints'> = { endpoints: () => [{ address: '::', port: 3478 }] }
    assert.deepEqual(stunAddrs(onEveryInterface, ['/ip4/198.51.100.10/tcp/4001/p2p/x', '/ip6/2001:db8::10/tcp/4001/p2p/x']), ['/ip4/198.51.100.10/udp/3478', '/ip6/2001:db8::10/udp/3478'])
  })
})
