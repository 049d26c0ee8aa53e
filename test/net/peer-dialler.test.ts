/**
 * The one way to reach a peer (MeshPeerDialler.reach), against typed fakes of
 * the connections view, the peer store and the address-level dialler: the
 * order it tries things in, the memory of failed direct addresses, and what a
 * failure carries.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { createLogger } from '../../src/log/logger.ts'
import { MeshPeerDialler, ReachFailedError, type AttemptDialler } from '../../src/net/peer-dialler.ts'
import { transportOf, viaRelay } from '../../src/net/transport-of.ts'
import type { Connections, PeerAddresses } from '../../src/net/components.ts'
import type { Connection } from '@libp2p/interface'

async function newPeerId (): Promise<string> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
}

/** The slice of a libp2p Connection the dialler reads. */
function fakeConnection (remoteAddr: string, peerId: string): Connection {
  const conn = { id: `conn-${remoteAddr}`, remoteAddr: multiaddr(remoteAddr), remotePeer: { toString: () => peerId }, status: 'open' }
  return conn as unknown as Connection
}

class FakeConnections implements Connections {
  readonly conns: Connection[] = []
  open (peerId?: string): Connection[] { return this.conns.filter(c => peerId == null || c.remotePeer.toString() === peerId) }
  isConnected (peerId: string): boolean { return this.open(peerId).length > 0 }
  bestDirect (peerId: string): Connection | undefined { return this.open(peerId).find(c => !viaRelay(c.remoteAddr)) }
  relayed (peerId: string, avoid?: ReadonlySet<string>): Connection | undefined {
    return this.open(peerId).find(c => viaRelay(c.remoteAddr) && avoid?.has(c.remoteAddr.toString().split('/p2p/')[1]) !== true)
  }

  best (peerId: string): Connection | undefined { return this.bestDirect(peerId) ?? this.relayed(peerId) }
  list (): [] { return [] }
}

class FakePeers implements PeerAddresses {
  readonly known = new Map<string, string[]>()
  async addressesOf (peerId: string): Promise<string[]> { return this.known.get(peerId) ?? [] }
  async agentOf (): Promise<undefined> { return undefined }
}

/**
 * Records every attempt; addresses in `answering` connect, a circuit through
 * a relay in `unreserved` fails as circuit-relay-v2 fails when the relay
 * holds no reservation for the target, every other one is refused.
 */
class FakeAttempts implements AttemptDialler {
  readonly tried: string[] = []
  readonly answering = new Set<string>()
  readonly unreserved = new Set<string>()
  private readonly peerId: string
  constructor (peerId: string) { this.peerId = peerId }
  private async attempt (target: Multiaddr): Promise<Connection> {
    const addr = target.toString()
    this.tried.push(addr)
    if (this.answering.has(addr)) return fakeConnection(addr.replace(`/p2p/${this.peerId}`, ''), this.peerId)
    if ([...this.unreserved].some(relay => addr.includes(`/p2p/${relay}/p2p-circuit`))) {
      throw Object.assign(new Error('failed to connect via relay with status NO_RESERVATION'), { name: 'InvalidMessageError' })
    }
    throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })
  }

  async dial (target: Multiaddr): Promise<Connection> { return await this.attempt(target) }
  async dialTransport (target: Multiaddr): Promise<Connection> { return await this.attempt(target) }
  async dialAll (targets: Multiaddr[]): Promise<Connection> { return await this.attempt(targets[0]) }
}

async function setUp (): Promise<{ peer: string, relay: string, connections: FakeConnections, peers: FakePeers, attempts: FakeAttempts, dialler: MeshPeerDialler }> {
  const peer = await newPeerId()
  const relay = await newPeerId()
  const connections = new FakeConnections()
  const peers = new FakePeers()
  const attempts = new FakeAttempts(peer)
  const dialler = new MeshPeerDialler({ attempts, connections, peers, logger: createLogger('test.dialler') }, { dialAttemptTimeoutMs: 1_000 })
  return { peer, relay, connections, peers, attempts, dialler }
}

describe('MeshPeerDialler.reach', () => {
  it('hands back an open connection without dialling anything', async () => {
    const { peer, connections, attempts, dialler } = await setUp()
    const open = fakeConnection('/ip4/192.0.2.7/tcp/4001', peer)
    connections.conns.push(open)
    assert.equal(await dialler.reach(peer, { purpose: 'dispatch' }), open)
    assert.deepEqual(attempts.tried, [])
  })

  it('tries direct addresses in the ladder order (QUIC, TCP, WebSocket) before a circuit through a relay', async () => {
    const { peer, relay, connections, peers, attempts, dialler } = await setUp()
    connections.conns.push(fakeConnection(`/ip4/198.51.100.1/tcp/4001/p2p/${relay}`, relay))
    peers.known.set(peer, ['/ip4/192.0.2.7/tcp/4001/ws', '/ip4/192.0.2.7/tcp/4001', '/ip4/192.0.2.7/udp/4001/quic-v1'])
    const circuit = `/ip4/198.51.100.1/tcp/4001/p2p/${relay}/p2p-circuit/p2p/${peer}`
    attempts.answering.add(circuit)
    const conn = await dialler.reach(peer, { purpose: 'dispatch', relays: [relay] })
    assert.equal(transportOf(conn.remoteAddr), 'circuit')
    assert.deepEqual(attempts.tried.map(a => transportOf(a)), ['quic', 'tcp', 'ws', 'circuit'])
    assert.equal(attempts.tried[3], circuit)
  })

  it('settles for an open relayed connection when every direct address fails', async () => {
    const { peer, relay, connections, peers, attempts, dialler } = await setUp()
    const relayed = fakeConnection(`/ip4/198.51.100.1/tcp/4001/p2p/${relay}/p2p-circuit`, peer)
    connections.conns.push(relayed)
    peers.known.set(peer, ['/ip4/192.0.2.7/tcp/4001'])
    assert.equal(await dialler.reach(peer, { purpose: 'dispatch', preferDirect: true }), relayed)
    assert.equal(attempts.tried.length, 1)
  })

  it('skips a direct address that failed recently, unless told to try it anyway', async () => {
    const { peer, peers, attempts, dialler } = await setUp()
    peers.known.set(peer, ['/ip4/192.0.2.7/tcp/4001'])
    await assert.rejects(dialler.reach(peer, { purpose: 'dispatch', directOnly: true }), ReachFailedError)
    assert.equal(attempts.tried.length, 1)
    await assert.rejects(dialler.reach(peer, { purpose: 'dispatch', directOnly: true }), ReachFailedError)
    assert.equal(attempts.tried.length, 1, 'the failed address is remembered and not dialled again')
    attempts.answering.add(`/ip4/192.0.2.7/tcp/4001/p2p/${peer}`)
    const conn = await dialler.reach(peer, { purpose: 'upgrade', directOnly: true, skipRecentFailures: false })
    assert.equal(transportOf(conn.remoteAddr), 'tcp')
    assert.equal(attempts.tried.length, 2)
  })

  it('fails with every attempt named: address, transport, phase and a stable code', async () => {
    const { peer, peers, dialler } = await setUp()
    peers.known.set(peer, ['/ip4/192.0.2.7/tcp/4001', '/ip4/192.0.2.7/udp/4001/quic-v1'])
    const err = await dialler.reach(peer, { purpose: 'ping', directOnly: true }).catch((e: unknown) => e)
    assert.ok(err instanceof ReachFailedError)
    assert.equal(err.code, 'PEER_UNREACHABLE')
    assert.equal(err.candidates, 2)
    assert.deepEqual(err.attempts.map(a => a.transport), ['quic', 'tcp'])
    for (const a of err.attempts) {
      assert.ok(a.addr.endsWith(`/p2p/${peer}`))
      assert.equal(typeof a.phase, 'string')
      assert.equal(a.code, 'ECONNREFUSED')
    }
  })

  it('with nothing known and no relay, says so instead of dialling', async () => {
    const { peer, attempts, dialler } = await setUp()
    const err = await dialler.reach(peer, { purpose: 'dispatch' }).catch((e: unknown) => e)
    assert.ok(err instanceof ReachFailedError)
    assert.equal(err.candidates, 0)
    assert.deepEqual(attempts.tried, [])
  })

  it('tries the circuit through a relay whose circuit just broke last', async () => {
    const { peer, relay, connections, attempts, dialler } = await setUp()
    const other = await newPeerId()
    connections.conns.push(fakeConnection(`/ip4/198.51.100.1/tcp/4001/p2p/${relay}`, relay))
    connections.conns.push(fakeConnection(`/ip4/198.51.100.2/tcp/4001/p2p/${other}`, other))
    await assert.rejects(dialler.reach(peer, { purpose: 'dispatch', relays: [relay, other], avoidRelays: new Set([relay]) }), ReachFailedError)
    assert.deepEqual(attempts.tried.map(a => a.includes(relay) ? 'broken' : 'other'), ['other', 'broken'])
  })

  it('dials no other circuit through a relay that said it holds no reservation for the peer, and says so', async () => {
    const { peer, relay, peers, attempts, dialler } = await setUp()
    const other = await newPeerId()
    const through = (r: string, transport: string): string => `/ip4/198.51.100.${r === relay ? 1 : 2}/${transport}/p2p/${r}/p2p-circuit`
    peers.known.set(peer, [through(relay, 'udp/4001/quic-v1'), through(relay, 'tcp/4001'), through(relay, 'tcp/443/ws'), through(other, 'tcp/4001')])
    attempts.unreserved.add(relay)
    attempts.answering.add(`${through(other, 'tcp/4001')}/p2p/${peer}`)
    const conn = await dialler.reach(peer, { purpose: 'dispatch' })
    assert.equal(conn.remotePeer.toString(), peer)
    // one hop request to the relay without the reservation, then the other relay
    assert.deepEqual(attempts.tried.map(a => a.includes(relay) ? 'unreserved' : 'other'), ['unreserved', 'other'])

    attempts.tried.length = 0
    attempts.answering.clear()
    const err = await dialler.reach(peer, { purpose: 'dispatch' }).catch((e: unknown) => e)
    assert.ok(err instanceof ReachFailedError)
    assert.equal(err.candidates, 4)
    assert.deepEqual(attempts.tried.map(a => a.includes(relay) ? 'unreserved' : 'other'), ['unreserved', 'other'])
    // every circuit is accounted for: the one dialled and refused, the two left out (with the reason), the other relay's
    assert.equal(err.attempts.length, 4)
    const fromRelay = err.attempts.filter(a => a.addr.includes(relay))
    assert.deepEqual(fromRelay.map(a => a.code), ['NO_RESERVATION', 'NO_RESERVATION', 'NO_RESERVATION'])
    assert.equal(fromRelay.filter(a => a.message.startsWith('not dialled: ')).length, 2)
    assert.equal(err.attempts.find(a => a.addr.includes(other))?.code, 'ECONNREFUSED')
  })

  it('still tries a relay\'s other transports when it could not be reached over one', async () => {
    const { peer, relay, peers, attempts, dialler } = await setUp()
    peers.known.set(peer, [`/ip4/198.51.100.1/udp/4001/quic-v1/p2p/${relay}/p2p-circuit`, `/ip4/198.51.100.1/tcp/443/ws/p2p/${relay}/p2p-circuit`])
    await assert.rejects(dialler.reach(peer, { purpose: 'dispatch' }), ReachFailedError)
    assert.equal(attempts.tried.length, 2)
  })
})
