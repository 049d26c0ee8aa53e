import { serviceCapabilities, TypedEventEmitter } from '@libp2p/interface'
import { decodeCapacity, decodeCapacityResponse, decodeCapacityTableEntry, encodeCapacity, encodeCapacityResponse, encodeCapacityTableEntry } from '../../codec/messages.ts'
import { createLogger, type Logger } from '../../log/logger.ts'
import { warnRepeated } from '../../log/repeats.ts'
import { peerOf } from '../components.ts'
import { codeOf, messageOf, ProtocolRequestError } from '../errors.ts'
import { askSingleAnswer, handlerOptions, request, serveAnswer } from '../exchange.ts'
import {
  ANNOUNCE_INTERVAL_MS, ANSWER_TIMEOUT_MS, CAPACITY_LIMITS, CAPACITY_PROTOCOL, CAPACITY_TABLE_LIMITS, CAPACITY_TABLE_PROTOCOL, CAPACITY_TOPIC,
  CHANGE_MIN_INTERVAL_MS, EXPIRY_INTERVALS, JOIN_ANNOUNCE_DELAY_MS, LISTEN_IDLE_MS, MAX_TABLE_ENTRIES, MAX_TRACKED_PEERS, QUERY_TIMEOUT_MS, TABLE_TIMEOUT_MS
} from './constants.ts'
import type { Capacity } from '../../codec/messages.ts'
import type { ProtocolRegistrar, ProtocolTarget, StreamOpener } from '../components.ts'
import type { AbortOptions, Connection, PeerId, Startable, Stream } from '@libp2p/interface'

/** What `getCapacity` provides; the service stamps `peerId` (its own) and `ts` (now). */
export type CapacityInfo = Omit<Capacity, 'peerId' | 'ts'>

/** A gossip message as gossipsub delivers it in its 'message' event. */
export type PubSubMessage =
  | { type: 'signed', from: PeerId, topic: string, data: Uint8Array }
  | { type: 'unsigned', topic: string, data: Uint8Array }

/** The part of gossipsub (`@libp2p/gossipsub`) the capacity service uses. */
export interface CapacityPubSub {
  subscribe(topic: string): void
  unsubscribe(topic: string): void
  publish(topic: string, data?: Uint8Array): Promise<unknown>
  addEventListener<K extends keyof CapacityPubSubEvents>(type: K, listener: (evt: CapacityPubSubEvents[K]) => void): void
  removeEventListener<K extends keyof CapacityPubSubEvents>(type: K, listener: (evt: CapacityPubSubEvents[K]) => void): void
}

/** The gossipsub events the capacity service listens to. */
export interface CapacityPubSubEvents {
  message: CustomEvent<PubSubMessage>
  'subscription-change': CustomEvent<SubscriptionChange>
}

/** gossipsub's 'subscription-change' event: a peer told us the topics it joined or left. */
export interface SubscriptionChange {
  peerId: PeerId
  subscriptions: Array<{ topic: string, subscribe: boolean }>
}

export interface CapacityInit {
  /**
   * This node's capacity now, or undefined when it runs no jobs (a broker).
   *
   * @default () => undefined
   */
  getCapacity?: () => CapacityInfo | undefined
  /**
   * How often an unchanged capacity is re-announced on gossip; peers forget
   * a donor after 3 intervals without news. A change is announced at once
   * after `notifyChanged()` (the owner calls it when slots or addresses
   * change), else at the next interval. A listener that starts pulls what
   * its relays heard (`pullTables`), so this only refreshes.
   *
   * @default 30000
   */
  announceIntervalMs?: number
  /**
   * Ask each newly connected peer that speaks the protocol for its capacity
   * at once, so a fresh broker finds executors without waiting for gossip.
   *
   * @default true
   */
  queryOnConnect?: boolean
  /**
   * @default 5000
   */
  queryTimeoutMs?: number
  /**
   * When this node hears other donors' announcements:
   * - `'always'`: subscribed to the topic from start to stop;
   * - `'on-demand'`: only while something needs the table (`executors()` is
   *   called: a broker placing jobs), and for `listenIdleMs` after the last
   *   such call. Why: every subscriber receives, verifies and forwards every
   *   donor's announcement (N messages per interval, a signature check each)
   *   and joins the topic's gossip mesh, so an idle donor on the topic pays
   *   a cost growing with the size of the mesh for a table it never reads.
   *   Announcing needs no subscription: gossipsub sends our announcements to
   *   peers that are subscribed (relays, brokers with work).
   *
   * @default 'always'
   */
  listen?: 'always' | 'on-demand'
  /**
   * With `listen: 'on-demand'`: how long after the last demand the node keeps
   * listening (a broker between two jobs keeps its table warm).
   *
   * @default 600000
   */
  listenIdleMs?: number
  /**
   * Answer `/worldcompute/capacity-table/1.0.0` with the executors this node
   * heard of (a relay: it hears every donor that reaches the mesh through it).
   *
   * @default false
   */
  serveTable?: boolean
  /**
   * While listening, ask each connected peer that serves the table (a relay)
   * for it: when listening starts, and when such a peer connects. A broker
   * that starts needing executors then learns them within a round trip,
   * not after an announce interval.
   *
   * @default true
   */
  pullTables?: boolean
  /**
   * @default createLogger('protocols.capacity')
   */
  logger?: Logger
}

export interface CapacityComponents {
  peerId: PeerId
  registrar: ProtocolRegistrar
  connectionManager: StreamOpener
  /** gossipsub; without it the service still answers and sends queries, but neither announces nor hears announcements */
  pubsub?: CapacityPubSub
}

export interface CapacityEvents {
  /** a peer that accepts jobs appeared (or came back after expiring, or started accepting) */
  'executor:added': CustomEvent<Capacity>
  /** a peer stopped accepting jobs, answered that it runs none, or expired; detail is its PeerId */
  'executor:removed': CustomEvent<string>
  /** a peer that accepts jobs announced its capacity (again); brokers re-check their waiting jobs */
  'executor:updated': CustomEvent<Capacity>
}

interface Entry {
  capacity: Capacity
  /** our clock, not the peer's `ts`: freshness must not depend on the peer's clock */
  receivedAt: number
}

/**
 * Learns and publishes donors' capacity: answers `/worldcompute/capacity/1.0.0`
 * queries with this node's capacity, asks every peer that connects for
 * theirs, announces its own on gossip, and keeps a table of what it heard.
 */
export class CapacityService extends TypedEventEmitter<CapacityEvents> implements Startable {
  readonly protocol = CAPACITY_PROTOCOL
  readonly topic = CAPACITY_TOPIC
  readonly [Symbol.toStringTag] = '@worldcompute/capacity'
  readonly [serviceCapabilities]: string[] = ['@worldcompute/capacity']

  private readonly components: CapacityComponents
  private readonly getCapacity: () => CapacityInfo | undefined
  private readonly announceIntervalMs: number
  private readonly expiryMs: number
  private readonly queryOnConnect: boolean
  private readonly queryTimeoutMs: number
  private readonly listenMode: 'always' | 'on-demand'
  private readonly listenIdleMs: number
  /** when `executors()` was last called (our clock), for on-demand listening */
  private lastDemandAt = 0
  /** subscribed to CAPACITY_TOPIC now */
  private subscribed = false
  private readonly log: Logger
  private readonly table = new Map<string, Entry>()
  /** peers we already asked on this connection; libp2p's registrar removes them on disconnect */
  private readonly asked = new Set<string>()
  private started = false
  /** this node's PeerId as text: read through the components proxy once, not on every table read */
  private selfText?: string
  private shutdown = new AbortController()
  private timer: ReturnType<typeof setInterval> | undefined
  private topologyId: string | undefined
  private lastAnnounced: { key: string, at: number } | undefined
  private publishing = false
  /** a peer joined the topic since our last announcement: the next tick announces even an unchanged capacity */
  private joinerWaiting = false
  private changeTimer?: NodeJS.Timeout
  /** gossipsub once joined (afterStart), if the node has one */
  private pubsub: CapacityPubSub | undefined
  private readonly serveTable: boolean
  private readonly pullTables: boolean
  /** connected peers that serve the table, by PeerId; libp2p's registrar removes them on disconnect */
  private readonly tablePeers = new Map<string, PeerId>()
  private tableTopologyId: string | undefined

  constructor (components: CapacityComponents, init: CapacityInit = {}) {
    super()
    this.components = components
    this.getCapacity = init.getCapacity ?? (() => undefined)
    this.announceIntervalMs = init.announceIntervalMs ?? ANNOUNCE_INTERVAL_MS
    this.expiryMs = this.announceIntervalMs * EXPIRY_INTERVALS
    this.queryOnConnect = init.queryOnConnect ?? true
    this.queryTimeoutMs = init.queryTimeoutMs ?? QUERY_TIMEOUT_MS
    this.listenMode = init.listen ?? 'always'
    this.listenIdleMs = init.listenIdleMs ?? LISTEN_IDLE_MS
    this.log = init.logger ?? createLogger('protocols.capacity')
    this.serveTable = init.serveTable ?? false
    this.pullTables = init.pullTables ?? true
    this.handleQuery = this.handleQuery.bind(this)
    this.handleTableQuery = this.handleTableQuery.bind(this)
    this.onSubscriptionChange = this.onSubscriptionChange.bind(this)
    this.onGossip = this.onGossip.bind(this)
  }

  isStarted (): boolean {
    return this.started
  }

  async start (): Promise<void> {
    if (this.started) return
    this.shutdown = new AbortController()
    // donors behind NAT are reached through relays: limited connections
    await this.components.registrar.handle(this.protocol, this.handleQuery, handlerOptions(CAPACITY_LIMITS, true))
    this.topologyId = await this.components.registrar.register(this.protocol, {
      notifyOnLimitedConnection: true,
      filter: {
        has: (peer) => this.asked.has(peer.toString()),
        add: (peer) => { this.asked.add(peer.toString()) },
        remove: (peer) => { this.asked.delete(peer.toString()) }
      },
      onConnect: (peer, connection) => { this.askOnConnect(peer, connection) }
    })
    await this.startTables()
    // one wake-up per interval: a change is announced when the owner says so
    // (notifyChanged), not found by polling getCapacity every second. Cost per
    // peer: none here; a donor's announcement is one signed message per
    // interval to the peers subscribed to the topic (its relays, listening brokers)
    this.timer = setInterval(() => { this.tick() }, this.announceIntervalMs)
    this.started = true
  }

  /**
   * Gossip is joined after every service has started: libp2p starts them all
   * at once, and gossipsub refuses `subscribe` until its own start is done.
   */
  afterStart (): void {
    if (!this.started || this.pubsub != null) return
    this.pubsub = optionalPubSub(this.components)
    if (this.pubsub != null) {
      this.pubsub.addEventListener('message', this.onGossip)
      this.pubsub.addEventListener('subscription-change', this.onSubscriptionChange)
      if (this.listenMode === 'always' || this.lastDemandAt > 0) this.join(this.pubsub)
    }
    // announce at once rather than a tick later: a donor restarting should be found quickly
    this.tick()
  }

  /** Leaves gossip while gossipsub is still running (libp2p stops all services at once). */
  beforeStop (): void {
    if (this.pubsub != null) {
      this.pubsub.removeEventListener('message', this.onGossip)
      this.pubsub.removeEventListener('subscription-change', this.onSubscriptionChange)
      this.unsubscribe(this.pubsub)
      this.pubsub = undefined
    }
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    clearTimeout(this.changeTimer)
    this.changeTimer = undefined
    this.shutdown.abort(new Error('capacity service stopped'))
    clearInterval(this.timer)
    this.timer = undefined
    this.beforeStop()
    if (this.topologyId != null) {
      this.components.registrar.unregister(this.topologyId)
      this.topologyId = undefined
    }
    await this.components.registrar.unhandle(this.protocol)
    await this.stopTables()
    this.asked.clear()
    this.table.clear()
    this.lastAnnounced = undefined
    this.lastDemandAt = 0
  }

  /** Whether this node hears other donors' announcements now (see `CapacityInit.listen`). */
  listening (): boolean {
    return this.subscribed
  }

  private join (pubsub: CapacityPubSub): void {
    if (this.subscribed) return
    pubsub.subscribe(CAPACITY_TOPIC)
    this.subscribed = true
    if (this.listenMode === 'on-demand') this.log.info(`listening to capacity announcements: this node's broker needs executors (until ${this.listenIdleMs / 1000} s after it last asks)`, { topic: CAPACITY_TOPIC })
    // announcements come once per interval; what our relays heard comes now
    for (const peer of this.tablePeers.values()) this.pullTable(peer)
  }

  /** The table protocol: served (serveTable), and its peers tracked to pull from (pullTables). */
  private async startTables (): Promise<void> {
    if (this.serveTable) await this.components.registrar.handle(CAPACITY_TABLE_PROTOCOL, this.handleTableQuery, handlerOptions(CAPACITY_TABLE_LIMITS, true))
    if (!this.pullTables) return
    this.tableTopologyId = await this.components.registrar.register(CAPACITY_TABLE_PROTOCOL, {
      notifyOnLimitedConnection: true,
      filter: {
        has: (peer) => this.tablePeers.has(peer.toString()),
        add: () => {},
        remove: (peer) => { this.tablePeers.delete(peer.toString()) }
      },
      onConnect: (peer, connection) => {
        this.tablePeers.set(peer.toString(), peer)
        if (this.subscribed) this.pullTable(peer)
      },
      onDisconnect: (peer) => { this.tablePeers.delete(peer.toString()) }
    })
  }

  private async stopTables (): Promise<void> {
    if (this.tableTopologyId != null) {
      this.components.registrar.unregister(this.tableTopologyId)
      this.tableTopologyId = undefined
    }
    this.tablePeers.clear()
    if (this.serveTable) await this.components.registrar.unhandle(CAPACITY_TABLE_PROTOCOL)
  }

  /** Asks one peer for the executors it heard of and records them; a failure is logged, never thrown. */
  private pullTable (target: PeerId): void {
    const peer = target.toString()
    this.fetchTable(target, { signal: this.shutdown.signal }).then(n => {
      this.log.debug(`capacity table from ${peer}: ${n} executor(s)`, { peer, protocol: CAPACITY_TABLE_PROTOCOL })
    }, (err: unknown) => {
      if (!this.started) return
      this.log.info(`capacity table from ${peer} not read (executors are still learned from announcements): ${messageOf(err)}`, { peer, protocol: CAPACITY_TABLE_PROTOCOL, code: codeOf(err) })
    })
  }

  /**
   * Reads one peer's table: a frame per executor, then an empty frame.
   * Entries are recorded as heard `ageMs` ago; an entry older than what we
   * heard ourselves changes nothing. Resolves with the number of entries.
   */
  async fetchTable (target: ProtocolTarget, options: AbortOptions = {}): Promise<number> {
    const self = this.components.peerId.toString()
    return await request(target, { protocol: CAPACITY_TABLE_PROTOCOL, limits: CAPACITY_TABLE_LIMITS, timeoutMs: TABLE_TIMEOUT_MS, connectionManager: this.components.connectionManager, signal: options.signal }, async (stream, signal) => {
      let n = 0
      for (;;) {
        const frame = await stream.readFrame('capacity table entry', { signal })
        if (frame.byteLength === 0) break
        if (++n > MAX_TABLE_ENTRIES) throw new ProtocolRequestError(CAPACITY_TABLE_PROTOCOL, peerOf(target).toString(), new Error(`more than ${MAX_TABLE_ENTRIES} entries`))
        const entry = decodeCapacityTableEntry(frame)
        if (entry.capacity.peerId !== self) this.record(entry.capacity, entry.ageMs)
      }
      await stream.stream.close({ signal })
      return n
    })
  }

  /**
   * The executors we heard of, each a frame, least recently heard first (the
   * order of our table, which the reader's then keeps); an empty frame ends
   * the answer. Past MAX_TABLE_ENTRIES the least recently heard are left out.
   */
  private async handleTableQuery (stream: Stream, connection: Connection): Promise<void> {
    const serve = { protocol: CAPACITY_TABLE_PROTOCOL, limits: CAPACITY_TABLE_LIMITS, timeoutMs: TABLE_TIMEOUT_MS, signal: this.shutdown.signal, log: this.log, failed: (peer: string) => `capacity table for ${peer} not sent` }
    await serveAnswer(stream, connection, serve, async (framed, signal) => {
      const now = Date.now()
      const entries = [...this.table.values()].filter(e => this.isLiveExecutor(e, now)).slice(-MAX_TABLE_ENTRIES)
      // in batches: one write per batch, not one per executor nor one for the whole table
      for (let i = 0; i < entries.length; i += TABLE_WRITE_BATCH) {
        await framed.writeFrames(entries.slice(i, i + TABLE_WRITE_BATCH).map(e => encodeCapacityTableEntry({ capacity: e.capacity, ageMs: now - e.receivedAt })), { signal })
      }
      await framed.writeFrames([new Uint8Array(0)], { signal })
    })
  }

  /** A broker asks for executors: on-demand listening starts (or is kept up). */
  private demand (): void {
    this.lastDemandAt = Date.now()
    if (this.pubsub != null && !this.subscribed) this.join(this.pubsub)
  }

  /** On-demand listening ends `listenIdleMs` after the last demand; the table then expires by itself. */
  private leaveWhenIdle (now: number): void {
    if (this.listenMode !== 'on-demand' || !this.subscribed || this.pubsub == null || now - this.lastDemandAt <= this.listenIdleMs) return
    this.unsubscribe(this.pubsub)
    this.log.info(`stopped listening to capacity announcements: no executor asked for in ${this.listenIdleMs / 1000} s`, { topic: CAPACITY_TOPIC })
  }

  private unsubscribe (pubsub: CapacityPubSub): void {
    if (!this.subscribed) return
    this.subscribed = false
    try {
      pubsub.unsubscribe(CAPACITY_TOPIC)
    } catch (err) {
      // gossipsub may already be stopped when stop() runs without beforeStop(); the subscription went with it
      this.log.debug(`leaving ${CAPACITY_TOPIC}: ${messageOf(err)}`, { topic: CAPACITY_TOPIC })
    }
  }

  /**
   * Peers that accept jobs, heard from within 3 announce intervals, not this
   * node; most free slots first. A call is a demand: with on-demand listening
   * it starts (or prolongs) listening to announcements.
   */
  executors (): Capacity[] {
    this.demand()
    return this.known()
  }

  private self (): string {
    this.selfText ??= this.components.peerId.toString()
    return this.selfText
  }

  /** What `executors()` returns, without asking for announcements (status, diagnostics). */
  known (): Capacity[] {
    const now = Date.now()
    const self = this.self()
    return [...this.table.values()]
      .filter(e => this.isLiveExecutor(e, now) && e.capacity.peerId !== self)
      .map(e => e.capacity)
      .sort((a, b) => b.freeSlots - a.freeSlots)
  }

  /** When we heard a peer's last capacity (our clock), if we have it. */
  heardAt (peerId: string): number | undefined {
    return this.table.get(peerId)?.receivedAt
  }

  /** The last fresh capacity heard from one peer, accepting jobs or not. */
  capacityOf (peerId: string): Capacity | undefined {
    const entry = this.table.get(peerId)
    return entry != null && Date.now() - entry.receivedAt <= this.expiryMs ? entry.capacity : undefined
  }

  /** This node's capacity as it would announce it now; undefined when it runs no jobs. */
  local (): Capacity | undefined {
    const info = this.getCapacity()
    if (info == null) return undefined
    return {
      peerId: this.self(),
      acceptsJobs: info.acceptsJobs,
      slots: info.slots,
      freeSlots: info.freeSlots,
      maxLimits: { ...info.maxLimits },
      addrs: [...info.addrs],
      ts: Date.now()
    }
  }

  /**
   * Tell the service its capacity changed (a slot taken or freed): it
   * announces at once, or — when it announced less than
   * CHANGE_MIN_INTERVAL_MS ago — once at the end of that interval with the
   * capacity as it is then. Why coalesce: a busy donor changes slots three
   * times per task, and every announcement is signed, forwarded and verified
   * by every peer on the topic; brokers learn a taken slot from the offer
   * answer, and a freed one of theirs from the task's end.
   */
  notifyChanged (): void {
    if (!this.started || this.changeTimer != null) return
    const since = Date.now() - (this.lastAnnounced?.at ?? 0)
    if (since >= CHANGE_MIN_INTERVAL_MS) {
      this.tick()
      return
    }
    this.changeTimer = setTimeout(() => {
      this.changeTimer = undefined
      if (this.started) this.tick()
    }, CHANGE_MIN_INTERVAL_MS - since)
  }

  /**
   * Asks one peer for its capacity. Resolves undefined when the peer runs no
   * jobs; records the answer in the table either way.
   */
  async query (target: ProtocolTarget, options: AbortOptions = {}): Promise<Capacity | undefined> {
    const peer = peerOf(target).toString()
    const response = await askSingleAnswer(target, decodeCapacityResponse, 'capacity response', {
      protocol: this.protocol,
      limits: CAPACITY_LIMITS,
      timeoutMs: this.queryTimeoutMs,
      connectionManager: this.components.connectionManager,
      signal: options.signal
    })
    if (response.capacity == null) {
      this.forget(peer)
      return undefined
    }
    if (response.capacity.peerId !== peer) {
      throw new ProtocolRequestError(this.protocol, peer, new Error(`the answer is for another peer (${response.capacity.peerId})`))
    }
    this.record(response.capacity)
    return response.capacity
  }

  /** Publishes this node's capacity on gossip now (no-op without pubsub or when it runs no jobs). */
  async announce (): Promise<void> {
    const pubsub = this.pubsub
    const capacity = this.local()
    if (pubsub == null || capacity == null || this.publishing) return
    let bytes: Uint8Array
    try {
      bytes = encodeCapacity(capacity)
    } catch (err) {
      this.log.warn(`own capacity cannot be announced: ${messageOf(err)}`, { topic: CAPACITY_TOPIC, code: codeOf(err) })
      return
    }
    this.publishing = true
    try {
      this.lastAnnounced = { key: changeKey(capacity), at: Date.now() }
      await pubsub.publish(CAPACITY_TOPIC, bytes)
    } catch (err) {
      // with no subscribed peers yet gossipsub throws NoPeersSubscribedToTopic: normal at start
      this.log.debug(`capacity announcement not published: ${messageOf(err)}`, { topic: CAPACITY_TOPIC, code: codeOf(err) })
    } finally {
      this.publishing = false
    }
  }

  private tick (): void {
    const now = Date.now()
    this.expire(now)
    this.leaveWhenIdle(now)
    let capacity: Capacity | undefined
    try {
      capacity = this.local()
    } catch (err) {
      // getCapacity is the donor's code; a throw there must not escape a timer and kill the process
      this.log.warn(`getCapacity failed: ${messageOf(err)}`, { code: codeOf(err) })
      return
    }
    if (capacity == null || this.pubsub == null) return
    const key = changeKey(capacity)
    if (this.joinerWaiting || this.lastAnnounced == null || this.lastAnnounced.key !== key || now - this.lastAnnounced.at >= this.announceIntervalMs) {
      this.joinerWaiting = false
      void this.announce()
    }
  }

  private askOnConnect (peer: PeerId, connection: Connection): void {
    if (!this.started || !this.queryOnConnect || peer.equals(this.components.peerId)) return
    const peerText = peer.toString()
    this.query(connection, { signal: this.shutdown.signal }).then(capacity => {
      this.log.debug(capacity == null ? `peer ${peerText} runs no jobs` : `peer ${peerText} has ${capacity.freeSlots}/${capacity.slots} free slots`, { peer: peerText })
    }, (err: unknown) => {
      if (!this.started) return
      this.log.debug(`capacity query to ${peerText} on connect failed: ${messageOf(err)}`, { peer: peerText, protocol: this.protocol, code: codeOf(err) })
    })
  }

  private async handleQuery (stream: Stream, connection: Connection): Promise<void> {
    const serve = { protocol: this.protocol, limits: CAPACITY_LIMITS, timeoutMs: ANSWER_TIMEOUT_MS, signal: this.shutdown.signal, log: this.log, failed: (peer: string) => `capacity query from ${peer} not answered` }
    await serveAnswer(stream, connection, serve, async (framed, signal) => {
      await framed.writeFrame(encodeCapacityResponse({ capacity: this.local() ?? null }), { signal })
    })
  }

  /**
   * A peer joined the topic (a relay we just connected to, a broker that
   * started listening nearby): announce now, coalesced like any change, so
   * it hears us without waiting for the slow refresh. Cost: one
   * announcement per peer that joins, none while nobody does.
   */
  private onSubscriptionChange (evt: CustomEvent<SubscriptionChange>): void {
    if (!this.started || !evt.detail.subscriptions.some(s => s.topic === CAPACITY_TOPIC && s.subscribe)) return
    // unchanged capacity is announced only when this is set
    this.joinerWaiting = true
    if (this.changeTimer != null) return
    // not at once: the peer's subscription can arrive before gossipsub's own
    // stream to it is open, and a message published then never reaches it
    this.changeTimer = setTimeout(() => {
      this.changeTimer = undefined
      if (this.started) this.tick()
    }, JOIN_ANNOUNCE_DELAY_MS)
  }

  private onGossip (evt: CustomEvent<PubSubMessage>): void {
    const msg = evt.detail
    if (msg.topic !== CAPACITY_TOPIC) return
    if (msg.type !== 'signed') {
      this.log.debug('ignored an unsigned capacity announcement: the sender cannot be checked', { topic: CAPACITY_TOPIC })
      return
    }
    const from = msg.from.toString()
    let capacity: Capacity
    try {
      capacity = decodeCapacity(msg.data)
    } catch (err) {
      warnRepeated(this.log, `ignored capacity announcement from ${from}: ${messageOf(err)}`, { peer: from, topic: CAPACITY_TOPIC, code: codeOf(err) })
      return
    }
    // gossip is relayed by others; the signed origin must be the donor it describes
    if (capacity.peerId !== from) {
      warnRepeated(this.log, `ignored capacity announcement from ${from}: it describes another peer (${capacity.peerId})`, { peer: from, topic: CAPACITY_TOPIC, code: 'PEER_MISMATCH' })
      return
    }
    if (from === this.self()) return
    this.record(capacity)
  }

  /** Records what a peer announced, heard `ageMs` ago (a relay's table); older than what we have, it changes nothing. */
  private record (capacity: Capacity, ageMs = 0): void {
    const now = Date.now()
    const receivedAt = now - Math.min(ageMs, this.expiryMs)
    const previous = this.table.get(capacity.peerId)
    if (previous != null && previous.receivedAt > receivedAt) return
    if (previous != null && previous.capacity.acceptsJobs && !this.isLiveExecutor(previous, now)) {
      // expired but not yet swept: say so before saying it is back
      this.safeDispatchEvent('executor:removed', { detail: capacity.peerId })
    }
    const wasExecutor = previous != null && this.isLiveExecutor(previous, now)
    // delete then set: Map order becomes least recently heard first, which is what eviction wants
    this.table.delete(capacity.peerId)
    this.table.set(capacity.peerId, { capacity, receivedAt })
    if (this.table.size > MAX_TRACKED_PEERS) {
      const oldest = this.table.keys().next().value
      if (oldest != null) this.drop(oldest)
    }
    if (!wasExecutor && capacity.acceptsJobs) {
      this.log.debug(`executor ${capacity.peerId} found: ${capacity.freeSlots}/${capacity.slots} free slots`, { peer: capacity.peerId })
      this.safeDispatchEvent('executor:added', { detail: capacity })
    } else if (wasExecutor && !capacity.acceptsJobs) {
      this.safeDispatchEvent('executor:removed', { detail: capacity.peerId })
    }
    if (capacity.acceptsJobs) this.safeDispatchEvent('executor:updated', { detail: capacity })
  }

  private forget (peerId: string): void {
    if (this.table.has(peerId)) this.drop(peerId)
  }

  private drop (peerId: string): void {
    const entry = this.table.get(peerId)
    this.table.delete(peerId)
    if (entry?.capacity.acceptsJobs === true && Date.now() - entry.receivedAt <= this.expiryMs) {
      this.safeDispatchEvent('executor:removed', { detail: peerId })
    }
  }

  private expire (now: number): void {
    for (const [peerId, entry] of this.table) {
      if (now - entry.receivedAt > this.expiryMs) {
        this.table.delete(peerId)
        if (entry.capacity.acceptsJobs) this.safeDispatchEvent('executor:removed', { detail: peerId })
      }
    }
  }

  private isLiveExecutor (entry: Entry, now: number): boolean {
    return entry.capacity.acceptsJobs && now - entry.receivedAt <= this.expiryMs
  }
}

/** Table entries per write when answering (see `handleTableQuery`). */
const TABLE_WRITE_BATCH = 64

/**
 * `components.pubsub` if the node has one. libp2p's components object is a
 * Proxy that throws MissingServiceError for an absent service, so an optional
 * component cannot simply be read. The class is not exported by libp2p and
 * carries no code: its name is all there is to match.
 */
function optionalPubSub (components: CapacityComponents): CapacityPubSub | undefined {
  try {
    return components.pubsub ?? undefined
  } catch (err) {
    if ((err as Error)?.name === 'MissingServiceError') return undefined
    throw err
  }
}

/** Everything but the timestamp: a change in any of it is worth announcing at once. */
function changeKey (c: Capacity): string {
  return JSON.stringify({ ...c, ts: 0 })
}
