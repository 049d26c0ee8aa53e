/**
 * The cap on direct connections made ahead of need (DirectPathsInit
 * maxPrewarmed): a donor that hears of many executors dials only a few of
 * them, the most recently heard-of waiting one takes a freed slot, and a peer
 * already talked to through a relay is upgraded whatever the cap. Typed fakes of
 * the net components (FakeNet): nothing leaves the process.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { multiaddr } from '@multiformats/multiaddr'
import { DirectPaths } from '../../src/donor/direct-paths.ts'
import { fakeConnection, FakeNet, newPeer, settle } from '../helpers/fake-net.ts'

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
