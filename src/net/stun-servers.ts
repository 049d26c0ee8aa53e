import { stunPortsFromAgent } from './stun/announce.ts'
import { viaRelay } from './transport-of.ts'
import type { Logger } from '../log/logger.ts'
import type { Connections, PeerAddresses, StunServers } from './components.ts'
import type { StunServer } from './stun/probe.ts'

export interface RelayStunServersComponents {
  connections: Connections
  peers: PeerAddresses
  logger: Logger
}

/**
 * STUN responders of the peers we hold a direct connection to: relays
 * announce their STUN ports in the identify agent version, and the IP is
 * the one we reached them on.
 */
export class RelayStunServers implements StunServers {
  private readonly components: RelayStunServersComponents

  constructor (components: RelayStunServersComponents) {
    this.components = components
  }

  async stunServers (): Promise<Array<StunServer & { peerId: string }>> {
    const out: Array<StunServer & { peerId: string }> = []
    const seen = new Set<string>()
    for (const conn of this.components.connections.open()) {
      if (viaRelay(conn.remoteAddr)) continue
      const peerId = conn.remotePeer.toString()
      const ip = conn.remoteAddr.getComponents().find(c => c.name === 'ip4' || c.name === 'ip6')?.value
      if (ip == null || seen.has(peerId)) continue
      const ports = stunPortsFromAgent(await this.components.peers.agentOf(peerId))
      if (ports.length === 0) continue
      seen.add(peerId)
      out.push({ peerId, address: ip, ports })
    }
    return out
  }

  /**
   * ICE servers for a WebRTC connection: the STUN responders of the relays
   * we hold a direct connection to (first port of each), `stun:IP:PORT`.
   * Never @libp2p/webrtc's default ICE servers (public STUN servers of a
   * third party); with none known ICE uses host candidates only.
   */
  async iceServers (): Promise<Array<{ urls: string[] }>> {
    let servers: Array<StunServer & { peerId: string }> = []
    try {
      servers = await this.stunServers()
    } catch (err) {
      this.components.logger.warn(`WebRTC: cannot list the relays' STUN responders, ICE will use host candidates only: ${(err as Error).message}`, { phase: 'ice', transport: 'webrtc' })
    }
    const urls = servers.filter(s => s.ports.length > 0).map(s => `stun:${s.address.includes(':') ? `[${s.address}]` : s.address}:${s.ports[0]}`)
    return urls.length > 0 ? [{ urls }] : []
  }
}
