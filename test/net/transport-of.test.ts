import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdOf, relayPeerOf, transportOf, uplinkTransport } from '../../src/net/transport-of.ts'

const RELAY = '12D3KooWCUxGstisocAwjyRccMAVqDFAksLECFj23zxN7fP231Wj'
const TARGET = '12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK'

describe('transportOf', () => {
  it('names a TCP address tcp', () => {
    assert.equal(transportOf(`/ip4/127.0.0.1/tcp/4001/p2p/${RELAY}`), 'tcp')
  })

  it('names a quic-v1 address quic', () => {
    assert.equal(transportOf('/ip4/127.0.0.1/udp/4001/quic-v1'), 'quic')
  })

  it('names a plain WebSocket address ws', () => {
    assert.equal(transportOf('/ip4/127.0.0.1/tcp/4002/ws'), 'ws')
  })

  it('names both /tls/ws and /wss addresses wss', () => {
    assert.equal(transportOf('/dns4/relay.example.org/tcp/443/tls/ws'), 'wss')
    assert.equal(transportOf('/dns4/relay.example.org/tcp/443/wss'), 'wss')
  })

  it('names a circuit address circuit whatever carries it', () => {
    assert.equal(transportOf(`/ip4/127.0.0.1/udp/4001/quic-v1/p2p/${RELAY}/p2p-circuit/p2p/${TARGET}`), 'circuit')
    assert.equal(transportOf('/p2p-circuit'), 'circuit')
  })

  it('accepts a Multiaddr object as well as text', () => {
    assert.equal(transportOf(multiaddr('/ip4/127.0.0.1/tcp/4002/ws')), 'ws')
  })

  it('names an address with no known transport unknown', () => {
    assert.equal(transportOf('/ip4/127.0.0.1'), 'unknown')
  })
})

describe('uplinkTransport', () => {
  it('names the relay hop of a circuit address over quic quic', () => {
    assert.equal(uplinkTransport(`/ip4/127.0.0.1/udp/4001/quic-v1/p2p/${RELAY}/p2p-circuit/p2p/${TARGET}`), 'quic')
  })

  it('names the relay hop of a circuit address over wss wss', () => {
    assert.equal(uplinkTransport(multiaddr(`/dns4/relay.example.org/tcp/443/tls/ws/p2p/${RELAY}/p2p-circuit/p2p/${TARGET}`)), 'wss')
  })

  it('names the transport of a direct address as transportOf does', () => {
    assert.equal(uplinkTransport('/ip4/127.0.0.1/tcp/4001'), 'tcp')
  })
})

describe('relayPeerOf', () => {
  it('returns the relay PeerId of a circuit address', () => {
    assert.equal(relayPeerOf(`/ip4/127.0.0.1/tcp/4001/p2p/${RELAY}/p2p-circuit/p2p/${TARGET}`), RELAY)
  })

  it('returns undefined for a direct address', () => {
    assert.equal(relayPeerOf(`/ip4/127.0.0.1/tcp/4001/p2p/${RELAY}`), undefined)
  })

  it('returns undefined for a circuit address that does not name its relay', () => {
    assert.equal(relayPeerOf(`/ip4/127.0.0.1/tcp/4001/p2p-circuit/p2p/${TARGET}`), undefined)
  })
})

describe('peerIdOf', () => {
  it('returns the last /p2p/ of an address, the peer it names', () => {
    assert.equal(peerIdOf(`/ip4/127.0.0.1/tcp/4001/p2p/${RELAY}/p2p-circuit/p2p/${TARGET}`), TARGET)
    assert.equal(peerIdOf(multiaddr(`/ip4/127.0.0.1/tcp/4001/p2p/${RELAY}`)), RELAY)
  })

  it('returns undefined when the address names no peer', () => {
    assert.equal(peerIdOf('/ip4/127.0.0.1/tcp/4001'), undefined)
  })
})
