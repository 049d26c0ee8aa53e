import { peerIdFromString } from '@libp2p/peer-id'
import { relayPeerOf, transportOf } from './transport-of.ts'
import type { ConnectionStatus } from '../core/types.ts'
import type { Connections, MeshEventMap, MeshEvents, PeerAddresses } from './components.ts'
import type { NodeCore } from './node-core.ts'
import type { AbortOptions, Connection } from '@libp2p/interface'

/** The best of some open connections to one peer: direct before relayed, TCP/QUIC before WebRTC. */
export function bestOf (open: readonly Connection[]): Connection | undefined {
  const directs = open.filter(c => transportOf(c.remoteAddr) !== 'circuit')
  return directs.find(c => transportOf(c.remoteAddr) !== 'webrtc') ?? directs[0] ?? open.find(c => transportOf(c.remoteAddr) === 'circuit')
}

export class NodeConnections implements Connections {
  private readonly core: NodeCore

  constructor (core: NodeCore) {
    this.core = core
  }

  open (peerId?: string): Connection[] {
    const all = peerId != null ? this.core.libp2p.getConnections(peerIdFromString(peerId)) : this.core.libp2p.getConnections()
    return all.filter(c => c.status === 'open')
  }

  isConnected (peerId: string): boolean {
    return this.open(peerId).length > 0
  }

  bestDirect (peerId: string): Connection | undefined {
    return bestOf(this.open(peerId).filter(c => transportOf(c.remoteAddr) !== 'circuit'))
  }

  relayed (peerId: string, avoidRelays?: ReadonlySet<string>): Connection | undefined {
    return this.open(peerId).find(c => transportOf(c.remoteAddr) === 'circuit' && avoidRelays?.has(relayPeerOf(c.remoteAddr) ?? '') !== true)
  }

  best (peerId: string): Connection | undefined {
    return bestOf(this.open(peerId))
  }

  list (): ConnectionStatus[] {
    return this.open().map(c => ({
      peerId: c.remotePeer.toString(),
      remoteAddr: c.remoteAddr.toString(),
      transport: transportOf(c.remoteAddr),
      direct: transportOf(c.remoteAddr) !== 'circuit'
    }))
  }
}

export class NodeEvents implements MeshEvents {
  private readonly core: NodeCore

  constructor (core: NodeCore) {
    this.core = core
  }

  on <K extends keyof MeshEventMap>(type: K, listener: (evt: MeshEventMap[K]) => void): void {
    this.core.libp2p.addEventListener(type, listener as any)
  }

  off <K extends keyof MeshEventMap>(type: K, listener: (evt: MeshEventMap[K]) => void): void {
    this.core.libp2p.removeEventListener(type, listener as any)
  }
}

export class PeerStoreAddresses implements PeerAddresses {
  private readonly core: NodeCore

  constructor (core: NodeCore) {
    this.core = core
  }

  async addressesOf (peerId: string, options: AbortOptions = {}): Promise<string[]> {
    const peer = await this.lookup(peerId, options)
    return peer?.addresses.map(a => a.multiaddr.toString()) ?? []
  }

  async agentOf (peerId: string, options: AbortOptions = {}): Promise<string | undefined> {
    const bytes = (await this.lookup(peerId, options))?.metadata.get('AgentVersion')
    return bytes != null ? new TextDecoder().decode(bytes) : undefined
  }

  private async lookup (peerId: string, options: AbortOptions): Promise<Awaited<ReturnType<NodeCore['libp2p']['peerStore']['get']>> | undefined> {
    try {
      return await this.core.libp2p.peerStore.get(peerIdFromString(peerId), options)
    } catch (err) {
      // an unknown peer is an empty answer, anything else is a fault of the store
      if ((err as Error).name !== 'NotFoundError') throw err
      return undefined
    }
  }
}
