/**
 * Direct upgrades across a LAN (donor/direct-paths.ts step 2): two donors on
 * one private network that met through a relay dial each other's private
 * address, which the peer tells only in its nat-info answer; not when the
 * address is on no network of this host, or the two are behind different
 * public IPs. Typed fakes of the net components (FakeNet): nothing leaves
 * the process.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import * as dagCbor from '@ipld/dag-cbor'
import { multiaddr } from '@multiformats/multiaddr'
import { DirectPaths } from '../../src/donor/direct-paths.ts'
import { decodeNatInfo, encodeNatInfo, MAX_LAN_ADDRS, type NatInfoMessage } from '../../src/protocols/nat-info/index.ts'
import { fakeConnection, FakeNet, newPeer, settle } from '../helpers/fake-net.ts'
import type { NatReport } from '../../src/core/types.ts'
import type { PeerId } from '@libp2p/interface'

/** behind a firewall that lets no UDP out: WebRTC is out of the question, only a LAN dial can make the pair direct */
const NO_UDP: NatReport = { mapping: 'no-udp', filtering: 'unknown', udp: 'no', reason: 'test', servers: [], mappedAddress: '203.0.113.5:40001' }
const PEER_NAT: NatInfoMessage = { mapping: 'no-udp', filtering: 'unknown', udp: 'no', webrtc: true, lanAddrs: ['/ip4/10.1.0.3/tcp/4001', '/ip4/10.1.0.3/udp/4001/quic-v1'], publicIp: '203.0.113.5' }

interface Run { mesh: FakeNet, peer: PeerId, direct: DirectPaths, asked: number }

/** A donor (10.1.0.2/24) that shares a relayed connection with one peer answering nat-info with `answer`. */
async function metThroughRelay (answer: NatInfoMessage, subnets = ['10.1.0.2/24']): Promise<Run> {
  const mesh = new FakeNet(await newPeer())
  const peer = await newPeer()
  const relay = await newPeer()
  mesh.known.set(peer.toString(), peer)
  mesh.conns.push(fakeConnection(peer, multiaddr(`/ip4/198.51.100.10/tcp/443/p2p/${relay.toString()}/p2p-circuit/p2p/${peer.toString()}`)))
  const run: Run = { mesh, peer, asked: 0, direct: undefined as unknown as DirectPaths }
  run.direct = new DirectPaths(mesh, {
    nat: () => NO_UDP,
    ownSubnets: () => subnets,
    askNatInfo: async () => { run.asked++; return answer }
  })
  run.direct.start()
  return run
}

describe('direct upgrades across a LAN', () => {
  it('dials the peer\'s address on this host\'s network, and the pair is direct although no UDP gets out', async () => {
    const { mesh, peer, direct } = await metThroughRelay(PEER_NAT)
    try {
      direct.schedule(peer.toString(), [], 'a relayed connection opened')
      await settle()
      const view = direct.status().find(v => v.peerId === peer.toString())
      assert.equal(view?.state, 'direct', JSON.stringify(view))
      // the peer dialler's order (QUIC before TCP): either is a plain connection across the LAN
      assert.ok(view?.transport === 'tcp' || view?.transport === 'quic', JSON.stringify(view))
      assert.match(view?.addr ?? '', /^\/ip4\/10\.1\.0\.3\//)
      assert.match(view?.reason ?? '', /address on this network/)
      assert.deepEqual(mesh.dialled, [peer.toString()], 'one dial, the LAN one')
      assert.equal(mesh.connections.bestDirect(peer.toString())?.remoteAddr.toString().startsWith('/ip4/10.1.0.3/'), true)
    } finally {
      direct.stop()
    }
  })

  it('dials the LAN address again when that connection closes while the relayed one stays', async () => {
    const { mesh, peer, direct } = await metThroughRelay(PEER_NAT)
    try {
      direct.schedule(peer.toString(), [], 'a relayed connection opened')
      await settle()
      const lan = mesh.connections.bestDirect(peer.toString())
      assert.ok(lan != null)
      // the LAN connection drops (a network blink on either side); the relayed one is still open
      ;(lan as { status: string }).status = 'closed'
      mesh.events.dispatchEvent(new CustomEvent('connection:close', { detail: lan }))
      await settle()
      assert.deepEqual(mesh.dialled, [peer.toString(), peer.toString()], 'dialled again once')
      assert.equal(direct.status().find(v => v.peerId === peer.toString())?.state, 'direct')
      assert.match(mesh.connections.bestDirect(peer.toString())?.remoteAddr.toString() ?? '', /^\/ip4\/10\.1\.0\.3\//)
    } finally {
      direct.stop()
    }
  })

  it('dials nothing when the address is on none of this host\'s networks, or the peer is behind another public IP', async () => {
    for (const [answer, subnets, why] of [
      [PEER_NAT, ['10.2.0.2/24'], 'another subnet'],
      [{ ...PEER_NAT, publicIp: '203.0.113.99' }, ['10.1.0.2/24'], 'another public IP: another site numbered alike'],
      [{ ...PEER_NAT, lanAddrs: undefined }, ['10.1.0.2/24'], 'an older peer that tells no LAN address']
    ] as const) {
      const run = await metThroughRelay(answer, [...subnets])
      try {
        run.direct.schedule(run.peer.toString(), [], 'a relayed connection opened')
        await settle()
        assert.equal(run.asked, 1, `${why}: the peer was asked once, for the LAN step and the WebRTC plan together`)
        assert.deepEqual(run.mesh.dialled, [], why)
        const view = run.direct.status().find(v => v.peerId === run.peer.toString())
        assert.notEqual(view?.state, 'direct', why)
        assert.match(view?.reason ?? '', /WebRTC skipped/, why)
      } finally {
        run.direct.stop()
      }
    }
  })

  it('reports a LAN dial that fails and stays relayed', async () => {
    const run = await metThroughRelay(PEER_NAT)
    run.mesh.unreachable.add(run.peer.toString())
    try {
      run.direct.schedule(run.peer.toString(), [], 'a relayed connection opened')
      await settle()
      const view = run.direct.status().find(v => v.peerId === run.peer.toString())
      assert.equal(view?.state, 'failed', JSON.stringify(view))
      assert.match(view?.reason ?? '', /^direct dial failed \(\/ip4\/10\.1\.0\.3\/.*connection refused/)
    } finally {
      run.direct.stop()
    }
  })

  it('carries the LAN addresses and public IP in the nat-info answer, and drops what is not a short string or an IP', () => {
    const base: NatInfoMessage = { mapping: 'endpoint-independent', filtering: 'address-and-port-dependent', udp: 'yes', webrtc: true }
    assert.deepEqual(decodeNatInfo(encodeNatInfo(PEER_NAT)), PEER_NAT)
    assert.deepEqual(decodeNatInfo(encodeNatInfo(base)), base, 'both optional: an older peer sends neither')
    // as a peer of another build might send it: more than this build would
    const odd = decodeNatInfo(dagCbor.encode({ v: 1, ...base, lanAddrs: ['/ip4/10.1.0.3/tcp/1', 7, 'x'.repeat(500), ...Array.from({ length: 20 }, (_, i) => `/ip4/10.1.0.${i}/tcp/1`)], publicIp: 'not an ip' }))
    assert.equal(odd.lanAddrs?.length, MAX_LAN_ADDRS)
    // this build sends at most MAX_LAN_ADDRS short ones: the longest answer fits the protocol's 1 KiB frame
    const longest = `/ip6/${'fd12:3456:789a:bcde:f012:3456:789a:bcde'}/udp/65535/quic-v1`
    const sent = encodeNatInfo({ ...PEER_NAT, publicIp: '2001:db8:1234:5678:9abc:def0:1234:5678', portDelta: 64, lanAddrs: [...Array.from({ length: 20 }, () => longest), 'x'.repeat(97)] })
    assert.ok(sent.byteLength <= 1024, `${sent.byteLength} bytes`)
    assert.equal(decodeNatInfo(sent).lanAddrs?.length, MAX_LAN_ADDRS)
    assert.equal(odd.lanAddrs?.[0], '/ip4/10.1.0.3/tcp/1')
    assert.ok(odd.lanAddrs?.every(a => a.length < 100))
    assert.equal(odd.publicIp, undefined)
  })
})
