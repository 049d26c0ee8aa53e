/**
 * The cap on direct connections made ahead of need (DirectPathsInit
 * maxPrewarmed): a donor that hears of many executors dials only a few of
 * them, the most recently heard-of waiting one takes a freed slot, and a peer
 * already talked to through a relay is upgraded whatever the cap. A fake
 * MeshNode: the "dials" of public addresses just add a connection to a list,
 * nothing leaves the process.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { DirectPaths } from '../../src/donor/direct-paths.ts'
import { transportOf } from '../../src/net/transport-of.ts'
import type { MeshNode } from '../../src/net/mesh-node.ts'
import type { PeerId } from '@libp2p/interface'

interface FakeConn { remotePeer: PeerId, remoteAddr: Multiaddr, status: string, direction: 'inbound' | 'outbound' }

async function newPeer (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

class FakeMesh extends EventTarget {
  readonly conns: FakeConn[] = []
  readonly dialled: string[] = []
  readonly peerId: string
  readonly libp2p: unknown

  constructor (self: PeerId) {
    super()
    this.peerId = self.toString()
    this.libp2p = {
      getConnections: (peer?: PeerId) => this.conns.filter(c => c.status === 'open' && (peer == null || c.remotePeer.equals(peer))),
      addEventListener: this.addEventListener.bind(this),
      removeEventListener: this.removeEventListener.bind(this),
      peerStore: { get: async () => { throw Object.assign(new Error('not found'), { name: 'NotFoundError' }) } }
    }
  }

  directConnection (peer: string): FakeConn | undefined {
    return this.conns.find(c => c.status === 'open' && c.remotePeer.toString() === peer && transportOf(c.remoteAddr) !== 'circuit')
  }

  async dialTransport (ma: Multiaddr): Promise<FakeConn> {
    const peer = ma.getComponents().findLast(c => c.name === 'p2p')?.value
    const remote = this.known.get(peer ?? '')
    if (remote == null) throw new Error(`unknown peer in ${ma.toString()}`)
    this.dialled.push(peer as string)
    if (this.unreachable.has(peer as string)) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })
    const conn: FakeConn = { remotePeer: remote, remoteAddr: ma, status: 'open', direction: 'outbound' }
    this.conns.push(conn)
    return conn
  }

  readonly known = new Map<string, PeerId>()
  /** peers whose dial fails */
  readonly unreachable = new Set<string>()

  close (conn: FakeConn): void {
    conn.status = 'closed'
    this.dispatchEvent(new CustomEvent('connection:close', { detail: conn }))
  }
}

const settle = async (): Promise<void> => { for (let i = 0; i < 20; i++) await new Promise(resolve => setImmediate(resolve)) }

describe('direct upgrades ahead of need', () => {
  it('pre-warms at most maxPrewarmed peers, fills a freed slot with the most recent waiting one, and upgrades a peer in use regardless', async () => {
    const mesh = new FakeMesh(await newPeer())
    const peers = await Promise.all(Array.from({ length: 5 }, newPeer))
    for (const p of peers) mesh.known.set(p.toString(), p)
    const direct = new DirectPaths(mesh as unknown as MeshNode, {
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
      const relayed: FakeConn = { remotePeer: peers[2], remoteAddr: multiaddr(`/ip4/8.8.4.4/tcp/4001/p2p/${peers[0].toString()}/p2p-circuit/p2p/${peers[2].toString()}`), status: 'open', direction: 'outbound' }
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
