/**
 * The cap on direct connections made ahead of need (DirectPathsInit
 * maxPrewarmed): a donor that hears of many executors dials only a few of
 * them, the most recently heard-of waiting one takes a freed slot, and a peer
 * already talked to through a relay is upgraded whatever the cap. Typed fakes of
 * the net components (FakeNet): nothing leaves the process.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { DirectPaths, type DirectPathsComponents } from '../../src/donor/direct-paths.ts'
import { bestOf } from '../../src/net/connections.ts'
import { MeshPeerDialler } from '../../src/net/peer-dialler.ts'
import { transportOf } from '../../src/net/transport-of.ts'
import { createLogger } from '../../src/log/logger.ts'
import type { Connections, MeshEventMap, MeshEvents, PeerAddresses, StunServers } from '../../src/net/components.ts'
import type { Connection, PeerId } from '@libp2p/interface'

async function newPeer (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

/** A connection with only what the direct upgrader reads. */
function fakeConnection (remotePeer: PeerId, remoteAddr: Multiaddr, direction: 'inbound' | 'outbound' = 'outbound'): Connection {
  return { id: `${remotePeer.toString()}-${remoteAddr.toString()}`, remotePeer, remoteAddr, status: 'open', direction } as Partial<Connection> as Connection
}

class FakeEvents extends EventTarget implements MeshEvents {
  on <K extends keyof MeshEventMap>(type: K, listener: (evt: MeshEventMap[K]) => void): void {
    this.addEventListener(type, listener as (evt: Event) => void)
  }

  off <K extends keyof MeshEventMap>(type: K, listener: (evt: MeshEventMap[K]) => void): void {
    this.removeEventListener(type, listener as (evt: Event) => void)
  }
}

/**
 * The net components the direct upgrader uses, with the real peer dialler
 * on top of fake address dials: a "dial" of a public address just adds a
 * connection to a list, nothing leaves the process.
 */
class FakeNet implements DirectPathsComponents {
  readonly conns: Connection[] = []
  readonly dialled: string[] = []
  readonly peerId: string
  readonly known = new Map<string, PeerId>()
  /** peers whose dial fails */
  readonly unreachable = new Set<string>()
  readonly events = new FakeEvents()
  readonly connections: Connections = {
    open: (peer) => this.conns.filter(c => c.status === 'open' && (peer == null || c.remotePeer.toString() === peer)),
    isConnected: (peer) => this.connections.open(peer).length > 0,
    bestDirect: (peer) => bestOf(this.connections.open(peer).filter(c => transportOf(c.remoteAddr) !== 'circuit')),
    relayed: (peer) => this.connections.open(peer).find(c => transportOf(c.remoteAddr) === 'circuit'),
    best: (peer) => bestOf(this.connections.open(peer)),
    list: () => []
  }

  readonly peers: PeerAddresses = { addressesOf: async () => [], agentOf: async () => undefined }
  readonly stun: StunServers = { stunServers: async () => [], iceServers: async () => [] }
  readonly dialler: MeshPeerDialler

  constructor (self: PeerId) {
    this.peerId = self.toString()
    const dialTransport = async (ma: Multiaddr): Promise<Connection> => await this.dialTransport(ma)
    this.dialler = new MeshPeerDialler({
      attempts: { dialTransport, dial: dialTransport, dialAll: async (mas) => await dialTransport(mas[0]) },
      connections: this.connections,
      peers: this.peers,
      logger: createLogger('test.dialler')
    }, { dialAttemptTimeoutMs: 1_000 })
  }

  private async dialTransport (ma: Multiaddr): Promise<Connection> {
    const peer = ma.getComponents().findLast(c => c.name === 'p2p')?.value
    const remote = this.known.get(peer ?? '')
    if (remote == null) throw new Error(`unknown peer in ${ma.toString()}`)
    this.dialled.push(peer as string)
    if (this.unreachable.has(peer as string)) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })
    const conn = fakeConnection(remote, ma)
    this.conns.push(conn)
    return conn
  }
}

const settle = async (): Promise<void> => { for (let i = 0; i < 20; i++) await new Promise(resolve => setImmediate(resolve)) }

describe('direct upgrades ahead of need', () => {
  it('pre-warms at most maxPrewarmed peers, fills a freed slot with the most recent waiting one, and upgrades a peer in use regardless', async () => {
    const mesh = new FakeNet(await newPeer())
    const peers = await Promise.all(Array.from({ length: 5 }, newPeer))
    for (const p of peers) mesh.known.set(p.toString(), p)
    const direct = new DirectPaths(mesh, {
      nat: () => ({ mapping: 'none', filtering: 'unknown', udp: 'yes' }) as any,
      webrtc: false,
      maxPrewarmed: 2
    })
    direct.start()
    try {
      // public addresses (documentation ranges are private to libp2p; 8.8.x is not): the upgrade is a plain dial
      mesh.unreachable.add(peers[1].toString())
      peers.forEach((p, i) => { direct.schedule(p.toString(), [`/ip4/8.8.8.${i + 1}/tcp/4001`], 'it announced capacity') })
      const waiting = direct.status().filter(v => v.state === 'skipped')
      assert.equal(waiting.length, 3, 'three wait for a slot')
      assert.ok(waiting.every(v => /not pre-warmed/.test(v.reason)), JSON.stringify(waiting))
      await settle()
      // the second dial failed, which freed its slot: the most recently heard-of waiting peer took it
      assert.deepEqual(mesh.dialled, [peers[0], peers[1], peers[4]].map(String), 'two dialled at first, then the most recent waiting one')
      assert.equal(direct.status().filter(v => v.state === 'skipped').length, 2)

      // a peer we talk to through a relay (a task on it) is upgraded although every slot is taken
      const relayed = fakeConnection(peers[2], multiaddr(`/ip4/8.8.4.4/tcp/4001/p2p/${peers[0].toString()}/p2p-circuit/p2p/${peers[2].toString()}`))
      mesh.conns.push(relayed)
      direct.schedule(peers[2].toString(), [], 'a relayed connection opened')
      await settle()
      assert.equal(mesh.dialled[3], peers[2].toString())
      assert.equal(direct.status().find(v => v.peerId === peers[2].toString())?.state, 'direct')
    } finally {
      direct.stop()
    }
  })
})
