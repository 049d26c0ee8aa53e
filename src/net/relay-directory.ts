import { createLogger, type Logger } from '../log/logger.ts'
import {
  decodeRelayAnnouncement, encodeRelayAnnouncement, InvalidRelayAnnouncementError, MAX_ANNOUNCED_ADDRS, RELAY_HOP_PROTOCOL, RELAY_TOPIC
} from './relay-announcement.ts'
import { viaRelay } from './transport-of.ts'
import type { Gossip, GossipMessage, MeshComponents, MeshEventMap } from './components.ts'

/** How a relay became known: configured, announced on gossip, or seen serving HOP on a connection. */
export type RelaySource = 'bootstrap' | 'gossip' | 'identify'

export interface KnownRelay {
  peerId: string
  /** dialable addresses, each ending in `/p2p/<relay>` */
  addrs: string[]
  source: RelaySource
  /** when we first heard of it, ms since the epoch */
  firstHeard: number
  /** when we last heard of it */
  lastHeard: number
}

export type RelayListener = (relay: KnownRelay) => void

/**
 * Only valid relay announcements are delivered and forwarded: an invalid one
 * is rejected at every hop (and costs its forwarder gossipsub score), so a bad
 * peer cannot flood the mesh with addresses for donors to dial.
 */
function installValidator (gossip: Gossip, log: Logger): void {
  gossip.validate(RELAY_TOPIC, (msg) => {
    if (msg.type !== 'signed') return 'reject'
    try {
      decodeRelayAnnouncement(msg.data, msg.from.toString())
      return 'accept'
    } catch (err) {
      if (err instanceof InvalidRelayAnnouncementError) {
        log.warn(`rejected a relay announcement: ${err.message}`, { peer: msg.from.toString(), topic: RELAY_TOPIC })
        return 'reject'
      }
      log.warn(`could not check a relay announcement from ${msg.from.toString()}: ${(err as Error).message}`, { peer: msg.from.toString() })
      return 'ignore'
    }
  })
}

/** What the relay directory needs of the node. */
export type RelayDirectoryComponents = Pick<MeshComponents, 'peerId' | 'gossip' | 'events'>

export interface RelayDirectoryInit {
  /** relays that are already configured (the bootstrap list): not reported again */
  ignore?: (peerId: string) => boolean
  /** most relays remembered; the least recently heard is forgotten first @default 64 */
  maxRelays?: number
  /** a relay not heard of for this long is forgotten @default 600000 */
  forgetAfterMs?: number
  logger?: Logger
}

/**
 * The relays a donor knows beyond its bootstrap list: those that announce
 * themselves on the relay gossip topic, and any peer whose identify answer
 * lists circuit relay v2's HOP protocol. The reservation manager reserves on
 * them when it holds fewer reservations than it wants.
 */
export class RelayDirectory {
  private readonly components: RelayDirectoryComponents
  private stopListening?: () => void
  private readonly log: Logger
  private readonly ignore: (peerId: string) => boolean
  private readonly maxRelays: number
  private readonly forgetAfterMs: number
  private readonly relays = new Map<string, KnownRelay>()
  private readonly listeners = new Set<RelayListener>()
  private started = false

  private readonly onMessage = (msg: GossipMessage): void => {
    if (msg.topic !== RELAY_TOPIC || msg.type !== 'signed') return
    const from = msg.from.toString()
    if (from === this.components.peerId) return
    try {
      const a = decodeRelayAnnouncement(msg.data, from)
      this.learn(a.peerId, a.addrs, 'gossip')
    } catch (err) {
      // the validator already rejected it, so this is only reached on a bug
      this.log.warn(`ignored a relay announcement from ${from}: ${(err as Error).message}`, { peer: from, topic: RELAY_TOPIC })
    }
  }

  private readonly onIdentify = (evt: MeshEventMap['peer:identify']): void => {
    const { peerId, protocols, listenAddrs, connection } = evt.detail
    if (!protocols.includes(RELAY_HOP_PROTOCOL)) return
    const id = peerId.toString()
    const seen = connection != null && !viaRelay(connection.remoteAddr.toString()) ? [connection.remoteAddr.toString()] : []
    const addrs = [...seen, ...listenAddrs.map(a => a.toString())]
      .filter(a => !viaRelay(a))
      .map(a => a.includes('/p2p/') ? a : `${a}/p2p/${id}`)
    this.learn(id, [...new Set(addrs)].slice(0, MAX_ANNOUNCED_ADDRS), 'identify')
  }

  constructor (components: RelayDirectoryComponents, init: RelayDirectoryInit = {}) {
    this.components = components
    this.log = init.logger ?? createLogger('net.relays')
    this.ignore = init.ignore ?? (() => false)
    this.maxRelays = init.maxRelays ?? 64
    this.forgetAfterMs = init.forgetAfterMs ?? 600_000
  }

  /** Call after the mesh node has started (gossipsub must be running). */
  start (): void {
    if (this.started) return
    this.started = true
    const { gossip } = this.components
    installValidator(gossip, this.log)
    gossip.subscribe(RELAY_TOPIC)
    this.stopListening = gossip.onMessage(this.onMessage)
    this.components.events.on('peer:identify', this.onIdentify)
  }

  stop (): void {
    if (!this.started) return
    this.started = false
    this.stopListening?.()
    this.stopListening = undefined
    this.components.events.off('peer:identify', this.onIdentify)
    this.listeners.clear()
  }

  onRelay (listener: RelayListener): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  /** Relays known now, most recently heard first. */
  known (): KnownRelay[] {
    this.forgetStale()
    return [...this.relays.values()].sort((a, b) => b.lastHeard - a.lastHeard).map(r => ({ ...r, addrs: [...r.addrs] }))
  }

  private learn (peerId: string, addrs: string[], source: RelaySource): void {
    if (peerId === this.components.peerId || this.ignore(peerId) || addrs.length === 0) return
    const now = Date.now()
    const known = this.relays.get(peerId)
    if (known != null) {
      known.lastHeard = now
      // a newer announcement replaces the addresses: the relay may have moved
      if (source === 'gossip' || known.source === 'identify') {
        known.addrs = addrs
        known.source = source
      }
    } else {
      this.relays.set(peerId, { peerId, addrs, source, firstHeard: now, lastHeard: now })
      this.log.info(`learned relay ${peerId} from ${source === 'gossip' ? 'its announcement on the relay gossip topic' : 'identify (it serves circuit relay v2 HOP)'}: ${addrs.join(', ')}`, { peer: peerId, source })
      this.forgetStale()
    }
    const relay = this.relays.get(peerId)
    if (relay == null) return
    for (const l of this.listeners) {
      try {
        l({ ...relay, addrs: [...relay.addrs] })
      } catch (err) {
        this.log.error(`relay listener threw: ${(err as Error).stack ?? String(err)}`)
      }
    }
  }

  private forgetStale (): void {
    const now = Date.now()
    for (const [id, r] of this.relays) {
      if (now - r.lastHeard > this.forgetAfterMs) {
        this.relays.delete(id)
        this.log.info(`forgot relay ${id}: not heard of for ${Math.round((now - r.lastHeard) / 1000)} s`, { peer: id })
      }
    }
    while (this.relays.size > this.maxRelays) {
      const oldest = [...this.relays.values()].sort((a, b) => a.lastHeard - b.lastHeard)[0]
      this.relays.delete(oldest.peerId)
      this.log.debug(`forgot relay ${oldest.peerId}: more than ${this.maxRelays} relays known`, { peer: oldest.peerId })
    }
  }
}

/** What the relay announcer needs of the node. */
export type RelayAnnouncerComponents = Pick<MeshComponents, 'peerId' | 'gossip' | 'addresses'>

export interface RelayAnnouncerInit {
  /** how often the relay announces itself @default 10000 */
  intervalMs?: number
  logger?: Logger
}

/**
 * The relay side: announces this relay's addresses on the relay gossip topic
 * at start, every `intervalMs`, and soon after a peer subscribes to the topic
 * (a donor that just joined hears of every relay within a second or two, not
 * an interval later). Relays subscribe too, so announcements cross from one
 * relay's donors to another's.
 */
export class RelayAnnouncer {
  private readonly components: RelayAnnouncerComponents
  private stopWatching?: () => void
  private readonly log: Logger
  private readonly intervalMs: number
  private timer?: ReturnType<typeof setInterval>
  private soon?: ReturnType<typeof setTimeout>
  private lastWarning = ''

  private readonly onSubscription = (subscriptions: Array<{ topic: string, subscribe: boolean }>): void => {
    if (!subscriptions.some(s => s.topic === RELAY_TOPIC && s.subscribe)) return
    // coalesce a burst of joins into one announcement; the short delay lets
    // gossipsub open its stream to the new subscriber first
    this.soon ??= setTimeout(() => {
      this.soon = undefined
      void this.announce()
    }, 250)
  }

  constructor (components: RelayAnnouncerComponents, init: RelayAnnouncerInit = {}) {
    this.components = components
    this.log = init.logger ?? createLogger('relay.announce')
    this.intervalMs = init.intervalMs ?? 10_000
  }

  start (): void {
    if (this.timer != null) return
    const { gossip } = this.components
    installValidator(gossip, this.log)
    gossip.subscribe(RELAY_TOPIC)
    this.stopWatching = gossip.onSubscriptionChange(this.onSubscription)
    this.timer = setInterval(() => { void this.announce() }, this.intervalMs)
    void this.announce()
  }

  stop (): void {
    if (this.timer == null) return
    clearInterval(this.timer)
    this.timer = undefined
    if (this.soon != null) clearTimeout(this.soon)
    this.soon = undefined
    this.stopWatching?.()
    this.stopWatching = undefined
  }

  /** Publishes one announcement now; failures are logged (once per distinct cause), never thrown. */
  async announce (): Promise<void> {
    const addrs = this.components.addresses.advertisedAddrs().filter(a => !viaRelay(a))
    if (addrs.length === 0) {
      this.warnOnce('this relay advertises no address yet: nothing to announce (give --announce)')
      return
    }
    try {
      await this.components.gossip.publish(RELAY_TOPIC, encodeRelayAnnouncement({ peerId: this.components.peerId, addrs, ts: Date.now() }))
      this.lastWarning = ''
      this.log.debug(`announced this relay on ${RELAY_TOPIC}: ${addrs.join(', ')}`)
    } catch (err) {
      if (this.timer == null) return
      this.warnOnce(`relay announcement not published on ${RELAY_TOPIC}: ${(err as Error).message}`)
    }
  }

  private warnOnce (text: string): void {
    // gossip with no subscriber yet fails every interval: say it once per cause, not every 10 s
    if (text === this.lastWarning) return
    this.lastWarning = text
    this.log.warn(text, { topic: RELAY_TOPIC })
  }
}
