/**
 * Typed fakes of the net components the direct upgrader uses (donor/direct-paths.ts):
 * the real peer dialler on top of fake address dials, so a "dial" just adds a
 * connection to a list and nothing leaves the process.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { DirectPathsComponents } from '../../src/donor/direct-paths.ts'
import { bestOf } from '../../src/net/connections.ts'
import { MeshPeerDialler } from '../../src/net/peer-dialler.ts'
import { transportOf } from '../../src/net/transport-of.ts'
import { createLogger } from '../../src/log/logger.ts'
import type { Connections, MeshEventMap, MeshEvents, PeerAddresses, StunServers } from '../../src/net/components.ts'
import type { Connection, PeerId } from '@libp2p/interface'

export async function newPeer (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

/** A connection with only what the direct upgrader reads. */
export function fakeConnection (remotePeer: PeerId, remoteAddr: Multiaddr, direction: 'inbound' | 'outbound' = 'outbound'): Connection {
  return { id: `${remotePeer.toString()}-${remoteAddr.toString()}`, remotePeer, remoteAddr, status: 'open', direction } as Partial<Connection> as Connection
}

export class FakeEvents extends EventTarget implements MeshEvents {
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
export class FakeNet implements DirectPathsComponents {
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

/** Lets the upgrader's background attempts run: a few turns of the event loop. */
export const settle = async (): Promise<void> => { for (let i = 0; i < 20; i++) await new Promise(resolve => setImmediate(resolve)) }
