import { createLogger, type Logger } from '../log/logger.ts'
import { MeshNode } from '../net/mesh-node.ts'
import { RelayAnnouncer } from '../net/relay-directory.ts'
import { CAPACITY_TOPIC } from '../protocols/capacity/index.ts'
import { relayInfo, type RelayTlsCertificate } from '../protocols/relay-info/index.ts'
import { leafFingerprintOfPem } from '../net/tls-intercept.ts'
import { readFileSync } from 'node:fs'
import { startRelayStun, stunAddrs } from './relay-stun.ts'
import type { StunResponder } from '../net/stun/responder.ts'
import type { RelayConfig } from '../config/config.ts'
import type { PrivateKey } from '@libp2p/interface'

export interface RelayInfo {
  peerId: string
  listenAddrs: string[]
  announceAddrs: string[]
  limits: RelayConfig['limits']
  /** the STUN responder's endpoints (`/ip4/…/udp/3478`), empty when it is off or could not start */
  stunAddrs: string[]
  /** the WSS listener's certificate, published to donors over relay-info so they can detect TLS interception */
  tlsCertificate?: RelayTlsCertificate
}

export interface RelayServiceInit {
  config: RelayConfig
  privateKey: PrivateKey
  /** how often the relay announces itself on the relay gossip topic @default 10000 */
  announceIntervalMs?: number
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
  private announcer?: RelayAnnouncer
  private stun?: StunResponder
  private tlsCertificate?: RelayTlsCertificate

  constructor (init: RelayServiceInit) {
    this.init = init
    this.log = init.logger ?? createLogger('relay')
  }

  async start (): Promise<RelayInfo> {
    const { config } = this.init
    // before the node: its identify agent version tells donors the STUN ports actually bound
    this.stun = await startRelayStun(config, this.log.child('stun'))
    // donors compare this with the certificate they see: a different one means a middlebox re-signed it
    this.tlsCertificate = config.tls != null ? leafFingerprintOfPem(readFileSync(config.tls.certFile)) : undefined
    const tls = this.tlsCertificate
    try {
      this.mesh = await MeshNode.create({
        privateKey: this.init.privateKey,
        listen: config.listen,
        announce: config.announce,
        relayServer: { limits: config.limits, tls: config.tls },
        publicRanges: config.publicRanges,
        stunPorts: this.stun != null ? [...new Set(this.stun.endpoints().map(e => e.port))] : [],
        services: { relayInfo: relayInfo({ getInfo: () => ({ tls: tls != null ? [tls] : [] }), logger: this.log.child('info') }) },
        logger: this.log.child('net')
      })
      await this.mesh.start()
    } catch (err) {
      // the UDP sockets must not outlive a relay that failed to start
      await this.stun?.stop()
      this.stun = undefined
      throw err
    }
    if (config.announce.length === 0) this.mesh.confirmListenAddrs()
    // the relay is the gossip hub of donors that can only reach each other
    // through it: gossipsub forwards only topics a node is subscribed to
    const pubsub = this.mesh.libp2p.services.pubsub as { subscribe: (topic: string) => void }
    pubsub.subscribe(CAPACITY_TOPIC)
    // donors learn relays beyond their bootstrap list from these announcements
    // and reserve on a second one, so losing one relay never leaves them undialable
    this.announcer = new RelayAnnouncer(this.mesh, { intervalMs: this.init.announceIntervalMs, logger: this.log.child('announce') })
    this.announcer.start()
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
      limits: this.init.config.limits,
      stunAddrs: stunAddrs(this.stun, this.mesh.advertisedAddrs()),
      ...(this.tlsCertificate != null ? { tlsCertificate: this.tlsCertificate } : {})
    }
  }

  async stop (): Promise<void> {
    const mesh = this.mesh
    this.mesh = undefined
    this.announcer?.stop()
    this.announcer = undefined
    const stun = this.stun
    this.stun = undefined
    await stun?.stop()
    await mesh?.stop()
  }
}
