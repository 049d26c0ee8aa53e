import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { PeerMap } from '@libp2p/peer-collections'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { TypedEventEmitter } from 'main-event'
import { multiaddr } from '@multiformats/multiaddr'
import { hopGuard, type ConnectionsByPeer, type HopAdmission, type HopView, type HopViewListener } from '../../src/net/hop-gate.ts'
import type { Connection, Libp2pEvents, PeerId } from '@libp2p/interface'

/** The parts of a connection the hop guard reads. */
function fakeConn (id: string, peer: PeerId, addr: string): Connection {
  const conn: Pick<Connection, 'id' | 'remotePeer' | 'remoteAddr' | 'status' | 'streams'> = { id, remotePeer: peer, remoteAddr: multiaddr(addr), status: 'open', streams: [] }
  return conn as Connection
}

/** Records what the service tells admission control, and the feed of its view. */
class RecordingAdmission implements HopAdmission {
  view?: HopView
  feed: string[] = []
  closed: Array<[string, number]> = []
  denyConnection (): boolean { return false }
  denyPeerConnection (): boolean { return false }
  denyReservation (): boolean { return false }
  denyCircuit (): boolean { return false }
  attach (view: HopView): void {
    this.view = view
    const listener: HopViewListener = {
      connectionOpened: (c) => { this.feed.push(`open ${c.id}`) },
      connectionClosed: (c) => { this.feed.push(`close ${c.id}`) },
      reservationStored: (peer) => { this.feed.push(`stored ${peer}`) },
      reservationRemoved: (peer) => { this.feed.push(`removed ${peer}`) }
    }
    view.watch(listener)
  }

  connectionClosed (peer: string, remaining: number): void { this.closed.push([peer, remaining]) }
  detach (): void { this.view = undefined }
}

/** A connection manager keeping per-peer lists the way js-libp2p's does: push onto the stored array, then set. */
class FakeConnectionManager {
  readonly connections = new PeerMap<Connection[]>()
  getConnections (peerId?: PeerId): Connection[] {
    if (peerId != null) return this.connections.get(peerId) ?? []
    let all: Connection[] = []
    for (const c of this.connections.values()) all = all.concat(c)
    return all
  }

  getConnectionsMap (): ConnectionsByPeer {
    return this.connections
  }

  open (conn: Connection): void {
    const stored = this.connections.get(conn.remotePeer) ?? []
    stored.push(conn)
    this.connections.set(conn.remotePeer, stored)
  }

  close (conn: Connection): void {
    const left = (this.connections.get(conn.remotePeer) ?? []).filter(c => c.id !== conn.id)
    if (left.length > 0) this.connections.set(conn.remotePeer, left)
    else this.connections.delete(conn.remotePeer)
  }
}

async function setup (): Promise<{ cm: FakeConnectionManager, events: TypedEventEmitter<Libp2pEvents>, admission: RecordingAdmission, reservations: PeerMap<{ addr: string }>, a: PeerId, b: PeerId, service: { start: () => void, stop: () => void } }> {
  const cm = new FakeConnectionManager()
  const events = new TypedEventEmitter<Libp2pEvents>()
  const admission = new RecordingAdmission()
  const reservations = new PeerMap<{ addr: string }>()
  const service = hopGuard(admission)({ connectionManager: cm, events, relay: { reservations } }) as { start: () => void, stop: () => void }
  const a = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  const b = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  return { cm, events, admission, reservations, a, b, service }
}

describe('the hop guard service', () => {
  it('lists every connection of the node from its flat index, as connections open and close', async () => {
    const { cm, service, a, b } = await setup()
    service.start()
    const a1 = fakeConn('a1', a, '/ip4/198.51.100.1/tcp/1')
    const a2 = fakeConn('a2', a, '/ip4/198.51.100.1/tcp/2')
    const b1 = fakeConn('b1', b, '/ip4/198.51.100.2/tcp/1')
    for (const c of [a1, a2, b1]) cm.open(c)
    assert.deepEqual(cm.getConnections().map(c => c.id).sort(), ['a1', 'a2', 'b1'])
    cm.close(a1)
    assert.deepEqual(cm.getConnections().map(c => c.id).sort(), ['a2', 'b1'])
    cm.close(a2)
    assert.deepEqual(cm.getConnections().map(c => c.id), ['b1'])
    assert.deepEqual(cm.getConnections(b).map(c => c.id), ['b1'], 'per peer as before')
    service.stop()
    assert.equal(Object.prototype.hasOwnProperty.call(cm, 'getConnections'), false, 'the manager\'s own listing is back')
    cm.open(a1)
    assert.deepEqual(cm.getConnections().map(c => c.id).sort(), ['a1', 'b1'])
  })

  it('reports connections opened and closed and reservations stored and removed to the view\'s watchers', async () => {
    const { events, admission, reservations, service, a, b } = await setup()
    service.start()
    const a1 = fakeConn('a1', a, '/ip4/198.51.100.1/tcp/1')
    events.safeDispatchEvent('connection:open', { detail: a1 })
    events.safeDispatchEvent('connection:open', { detail: fakeConn('r1', b, `/ip4/198.51.100.9/tcp/1/p2p/${a.toString()}/p2p-circuit`) })
    reservations.set(a, { addr: '/ip4/198.51.100.1/tcp/1' })
    reservations.delete(a)
    reservations.delete(b)
    events.safeDispatchEvent('connection:close', { detail: a1 })
    assert.deepEqual(admission.feed, ['open a1', `stored ${a.toString()}`, `removed ${a.toString()}`, 'close a1'], 'a relayed connection and a delete of nothing are not reported')
    assert.deepEqual(admission.closed, [[a.toString(), 0]])
    service.stop()
    reservations.set(b, { addr: '/ip4/198.51.100.2/tcp/1' })
    assert.equal(admission.feed.length, 4, 'nothing after stop')
  })
})
