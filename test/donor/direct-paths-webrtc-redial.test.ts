/**
 * A WebRTC connection that closes while the pair still shares a relayed one
 * (donor/direct-paths.ts `webrtcAgain`): WebRTC is tried again, quickly the
 * first time and then at most once per retryAfterMs; not when the relayed
 * connection went too. Typed fakes of the net components (FakeNet): a
 * "WebRTC dial" adds a connection to a list, nothing leaves the process.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { multiaddr } from '@multiformats/multiaddr'
import { DirectPaths } from '../../src/donor/direct-paths.ts'
import { fakeConnection, FakeNet, newPeer, settle } from '../helpers/fake-net.ts'
import { waitFor } from '../helpers/wait.ts'
import type { NatInfoMessage } from '../../src/protocols/nat-info/index.ts'
import type { NatReport } from '../../src/core/types.ts'
import type { Connection, PeerId } from '@libp2p/interface'

const CONE: NatReport = { mapping: 'endpoint-independent', filtering: 'address-and-port-dependent', udp: 'yes', reason: 'test', servers: [] }
const PEER_NAT: NatInfoMessage = { mapping: 'endpoint-independent', filtering: 'address-and-port-dependent', udp: 'yes', webrtc: true }
const QUICK_MS = 50
const RETRY_AFTER_MS = 1_500

interface Run { mesh: FakeNet, peer: PeerId, relayed: Connection, direct: DirectPaths }

/** Two donors behind cone NATs that met through a relay; the peer advertises a /webrtc address through it. */
async function metThroughRelay (): Promise<Run> {
  const mesh = new FakeNet(await newPeer())
  const peer = await newPeer()
  const relay = await newPeer()
  mesh.known.set(peer.toString(), peer)
  const circuit = `/ip4/198.51.100.10/tcp/443/p2p/${relay.toString()}/p2p-circuit`
  const relayed = fakeConnection(peer, multiaddr(`${circuit}/p2p/${peer.toString()}`))
  mesh.conns.push(relayed)
  const direct = new DirectPaths(mesh, {
    nat: () => CONE,
    ownSubnets: () => [],
    askNatInfo: async () => PEER_NAT,
    glareDelayMs: 0,
    webrtcQuickRetryMs: QUICK_MS,
    retryAfterMs: RETRY_AFTER_MS
  })
  direct.start()
  direct.schedule(peer.toString(), [`${circuit}/webrtc/p2p/${peer.toString()}`], 'a relayed connection opened')
  await waitFor('the first WebRTC connection', () => viewOf(direct, peer)?.state === 'direct' ? true : undefined, 5_000, 10)
  return { mesh, peer, relayed, direct }
}

function viewOf (direct: DirectPaths, peer: PeerId): ReturnType<DirectPaths['status']>[number] | undefined {
  return direct.status().find(v => v.peerId === peer.toString())
}

function closeConnection (mesh: FakeNet, conn: Connection): void {
  ;(conn as { status: string }).status = 'closed'
  mesh.events.dispatchEvent(new CustomEvent('connection:close', { detail: conn }))
}

function webrtcConnection (mesh: FakeNet, peer: PeerId): Connection {
  const conn = mesh.connections.bestDirect(peer.toString())
  assert.ok(conn != null && conn.remoteAddr.toString().includes('/webrtc/'), `a WebRTC connection: ${conn?.remoteAddr.toString()}`)
  return conn
}

describe('a WebRTC connection that closes', () => {
  it('is made again while the relayed one stays, quickly the first time and then no sooner than retryAfterMs', async () => {
    const { mesh, peer, direct } = await metThroughRelay()
    try {
      assert.equal(mesh.dialled.length, 1)
      closeConnection(mesh, webrtcConnection(mesh, peer))
      assert.match(viewOf(direct, peer)?.reason ?? '', /WebRTC connection closed; relayed meanwhile, WebRTC again in/)
      await waitFor('WebRTC made again', () => viewOf(direct, peer)?.state === 'direct' ? true : undefined, 5_000, 10)
      assert.equal(mesh.dialled.length, 2, 'one more WebRTC dial')

      // it drops again at once: the next try waits for retryAfterMs since the last one
      const closedAt = Date.now()
      closeConnection(mesh, webrtcConnection(mesh, peer))
      await new Promise(resolve => setTimeout(resolve, QUICK_MS * 4))
      await settle()
      assert.equal(mesh.dialled.length, 2, 'no quick retry for a path that keeps dropping')
      await waitFor('WebRTC made a third time', () => viewOf(direct, peer)?.state === 'direct' ? true : undefined, 5_000, 10)
      assert.equal(mesh.dialled.length, 3)
      assert.ok(Date.now() - closedAt >= RETRY_AFTER_MS - QUICK_MS * 4, `waited ${Date.now() - closedAt} ms`)
    } finally {
      direct.stop()
    }
  })

  it('is not made again when the relayed connection went too (the peer left)', async () => {
    const { mesh, peer, relayed, direct } = await metThroughRelay()
    try {
      closeConnection(mesh, relayed)
      closeConnection(mesh, webrtcConnection(mesh, peer))
      await new Promise(resolve => setTimeout(resolve, QUICK_MS * 4))
      await settle()
      assert.equal(mesh.dialled.length, 1, 'no new dial')
      assert.equal(viewOf(direct, peer)?.state, 'failed')
      assert.match(viewOf(direct, peer)?.reason ?? '', /closed/)
    } finally {
      direct.stop()
    }
  })

  it('is not made again when the relayed connection closes before the retry is due', async () => {
    const { mesh, peer, relayed, direct } = await metThroughRelay()
    try {
      closeConnection(mesh, webrtcConnection(mesh, peer))
      closeConnection(mesh, relayed)
      await new Promise(resolve => setTimeout(resolve, QUICK_MS * 4))
      await settle()
      assert.equal(mesh.dialled.length, 1, 'no new dial')
    } finally {
      direct.stop()
    }
  })
})
