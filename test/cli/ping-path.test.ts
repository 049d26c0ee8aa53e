import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { multiaddr } from '@multiformats/multiaddr'
import { connectionPingUses, MeshPinger } from '../../src/net/pinger.ts'
import { createLogger } from '../../src/log/logger.ts'
import { fakeConnection, newPeer } from '../helpers/fake-net.ts'
import type { Connections, PeerDialler } from '../../src/net/components.ts'
import type { Connection } from '@libp2p/interface'

interface FakeConnection { name: string, status: 'open' | 'closing' | 'closed', direct: boolean, limits?: { bytes?: bigint } }

const relayed: FakeConnection = { name: 'relayed', status: 'open', direct: false, limits: { bytes: 1n } }
const webrtc: FakeConnection = { name: 'webrtc', status: 'open', direct: true }
const closing: FakeConnection = { name: 'closing', status: 'closing', direct: true }

describe('the path ping reports', () => {
  it('is the direct connection js-libp2p sends the ping on, even when the relayed one was opened first', () => {
    assert.equal(connectionPingUses([relayed, webrtc])?.name, 'webrtc')
  })

  it('is the relayed circuit when it is the only open connection', () => {
    assert.equal(connectionPingUses([closing, relayed])?.name, 'relayed')
  })

  it('is nothing when no connection is open', () => {
    assert.equal(connectionPingUses([closing]), undefined)
  })
})

describe('a probe that travels through the relay while an upgrade finishes', () => {
  it('is reported through the relay it went over, not the direct connection made meanwhile', async () => {
    const peer = await newPeer()
    const relayedConn = fakeConnection(peer, multiaddr(`/ip4/127.0.0.1/tcp/4001/p2p/${(await newPeer()).toString()}/p2p-circuit/p2p/${peer.toString()}`))
    Object.assign(relayedConn, { direct: false, limits: { bytes: 1n } })
    const conns: Connection[] = [relayedConn]
    const connections = { open: () => conns.filter(c => c.status === 'open') } as Partial<Connections> as Connections
    const pinger = new MeshPinger({
      connections,
      // the WebRTC upgrade finishes while the probe is in flight
      ping: { ping: async () => { conns.push(Object.assign(fakeConnection(peer, multiaddr(`/ip4/127.0.0.1/udp/1/webrtc-direct/p2p/${peer.toString()}`)), { direct: true })); return 22 } },
      dialler: { reach: async () => relayedConn } as Partial<PeerDialler> as PeerDialler,
      logger: createLogger('test.ping')
    })
    const result = await pinger.ping(peer.toString(), 1)
    assert.equal(result.probes[0].path, 'relay', JSON.stringify(result.probes[0]))
  })
})
