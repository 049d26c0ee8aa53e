import { createLogger, type Logger } from '../log/logger.ts'
import { MeshNode } from '../net/mesh-node.ts'
import { CAPACITY_TOPIC } from '../protocols/capacity/index.ts'
import type { RelayConfig } from '../config/config.ts'
import type { PrivateKey } from '@libp2p/interface'

export interface RelayInfo {
  peerId: string
  listenAddrs: string[]
  announceAddrs: string[]
  limits: RelayConfig['limits']
}

export interface RelayServiceInit {
  config: RelayConfig
  privateKey: PrivateKey
  logger?: Logger
}

/**
 * A publicly reachable relay: circuit relay v2 server with job-sized limits,
 * identify, ping, AutoNAT v2 server and the mesh gossip.
 */
export class RelayService {
  private readonly init: RelayServiceInit
  private readonly log: Logger
  private mesh?: MeshNode

  constructor (init: RelayServiceInit) {
    this.init = init
    this.log = init.logger ?? createLogger('relay')
  }

  async start (): Promise<RelayInfo> {
    const { config } = this.init
    this.mesh = await MeshNode.create({
      privateKey: this.init.privateKey,
      listen: config.listen,
      announce: config.announce,
      relayServer: { limits: config.limits, tls: config.tls },
      logger: this.log.child('net')
    })
    await this.mesh.start()
    if (config.announce.length === 0) this.mesh.confirmListenAddrs()
    // the relay is the gossip hub of donors that can only reach each other
    // through it: gossipsub forwards only topics a node is subscribed to
    const pubsub = this.mesh.libp2p.services.pubsub as { subscribe: (topic: string) => void }
    pubsub.subscribe(CAPACITY_TOPIC)
    this.mesh.libp2p.addEventListener('peer:connect', (evt: CustomEvent<{ toString: () => string }>) => {
      this.log.debug(`peer connected: ${evt.detail.toString()}`)
    })
    this.mesh.libp2p.addEventListener('peer:disconnect', (evt: CustomEvent<{ toString: () => string }>) => {
      this.log.debug(`peer disconnected: ${evt.detail.toString()}`)
    })
    return this.info()
  }

  /** Peers holding a reservation on this relay right now. */
  reservationCount (): number {
    const relay = this.mesh?.libp2p.services.relay as { reservations?: { size: number } } | undefined
    return relay?.reservations?.size ?? 0
  }

  info (): RelayInfo {
    if (this.mesh == null) throw new Error('relay not started')
    return {
      peerId: this.mesh.peerId,
      listenAddrs: this.mesh.listenAddrs(),
      announceAddrs: this.mesh.advertisedAddrs(),
      limits: this.init.config.limits
    }
  }

  async stop (): Promise<void> {
    const mesh = this.mesh
    this.mesh = undefined
    await mesh?.stop()
  }
}
