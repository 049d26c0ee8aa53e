import assert from 'node:assert/strict'
import * as dagCbor from '@ipld/dag-cbor'
import { afterEach, describe, it } from 'node:test'
import {
  decodeObservedAddrAnswer, decodeObservedAddrRequest, directIpOf, encodeObservedAddrAnswer, encodeObservedAddrRequest, fetchObservedAddr, observedAddr
} from '../../src/protocols/observed-addr/index.ts'
import { ProtocolViolationError } from '../../src/protocols/errors.ts'
import { createTestNode, stopAll } from './helpers.ts'
import type { Libp2p } from 'libp2p'

describe('observed-addr protocol', () => {
  let nodes: Array<Libp2p<Record<string, any>>> = []
  afterEach(async () => {
    await stopAll(nodes)
    nodes = []
  })

  it('a relay answers with the IP it has for a reservation holder and nothing for anyone else', async () => {
    const relay = await createTestNode({ services: { observedAddr: observedAddr({ lookup: (peer) => peer === 'holder' ? '203.0.113.9' : undefined }) } })
    const broker = await createTestNode()
    nodes.push(relay, broker)
    const conn = await broker.dial(relay.getMultiaddrs()[0])
    assert.equal(await fetchObservedAddr(conn, 'holder'), '203.0.113.9')
    assert.equal(await fetchObservedAddr(conn, 'someone-else'), undefined)
  })

  it('a node without a lookup does not answer the protocol', async () => {
    const plain = await createTestNode({ services: { observedAddr: observedAddr() } })
    const broker = await createTestNode()
    nodes.push(plain, broker)
    const conn = await broker.dial(plain.getMultiaddrs()[0])
    await assert.rejects(fetchObservedAddr(conn, 'holder', { timeoutMs: 2_000 }), { code: 'PROTOCOL_REQUEST_FAILED' })
  })

  it('messages round-trip, and malformed ones are protocol violations', () => {
    assert.deepEqual(decodeObservedAddrRequest(encodeObservedAddrRequest({ peer: 'p' })), { peer: 'p' })
    assert.deepEqual(decodeObservedAddrAnswer(encodeObservedAddrAnswer({ ip: '2001:db8::1' })), { ip: '2001:db8::1' })
    assert.deepEqual(decodeObservedAddrAnswer(encodeObservedAddrAnswer({})), {})
    for (const bad of [dagCbor.encode({ v: 1, ip: 'relay.example' }), dagCbor.encode({ v: 2 }), new Uint8Array([0xff])]) {
      assert.throws(() => decodeObservedAddrAnswer(bad), ProtocolViolationError)
    }
    assert.throws(() => decodeObservedAddrRequest(dagCbor.encode({ v: 1, peer: 'x'.repeat(200) })), ProtocolViolationError)
  })

  it('only a direct IP address says where a peer is: not a circuit, not a DNS name', () => {
    assert.equal(directIpOf('/ip4/203.0.113.5/tcp/4001'), '203.0.113.5')
    assert.equal(directIpOf('/ip6/2001:db8::1/udp/4001/quic-v1'), '2001:db8::1')
    assert.equal(directIpOf('/ip4/198.51.100.10/tcp/4001/p2p/QmRelay/p2p-circuit'), undefined)
    assert.equal(directIpOf('/dns4/relay.example/tcp/443/wss'), undefined)
  })
})
