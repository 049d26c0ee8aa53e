import { multiaddr } from '@multiformats/multiaddr'
import { createLogger, type Logger } from '../log/logger.ts'
import { describeDialError } from '../net/dial-error.ts'
import { backoffDelay, pause, type BackoffPolicy } from '../core/async.ts'
import { isPublicAddr } from '../net/address-scope.ts'
import { parseAddr } from '../net/parse-addr.ts'
import { ReachFailedError } from '../net/peer-dialler.ts'
import { relayPeerOf, signallingCircuitOf, transportOf, viaRelay } from '../net/transport-of.ts'
import { fetchNatInfo, type NatInfoMessage } from '../protocols/nat-info/index.ts'
import { addrsOnOwnLan, endpointIp, ownSubnets } from '../net/lan.ts'
import { setPortPrediction, type PortPrediction } from '../net/webrtc-runtime.ts'
import type { DirectPathView, NatReport } from '../core/types.ts'
import type { MeshComponents } from '../net/components.ts'
import type { AbortOptions, Connection } from '@libp2p/interface'

export interface DirectPathsInit {
  /** this donor's NAT as measured now (NatProber) */
  nat: () => NatReport
  /** whether this node has the WebRTC transport (listens on `/webrtc`) @default true */
  webrtc?: boolean
  /** one dial of a peer's public direct address @default 3000 */
  publicDialTimeoutMs?: number
  /** one dial of a peer's address on this host's own network: a LAN answers in milliseconds @default 1500 */
  lanDialTimeoutMs?: number
  /** this host's networks, CIDR strings @default its interfaces' (net/lan.ts ownSubnets) */
  ownSubnets?: () => readonly string[]
  /** asks a peer about its network over a connection @default fetchNatInfo (`/worldcompute/nat-info/1.0.0`) */
  askNatInfo?: (connection: Connection, options: AbortOptions) => Promise<NatInfoMessage>
  /**
   * one WebRTC attempt: signalling through the relay plus ICE; through cone
   * NATs it took 150–210 ms in the prototype lab, so 8 s is only the
   * give-up time for a pair whose NATs looked punchable and were not @default 8000
   */
  webrtcTimeoutMs?: number
  /** after a failed attempt, the same peer is not tried again for this long @default 60000 */
  retryAfterMs?: number
  /**
   * after a first failed WebRTC attempt (since the last success), the next
   * one comes this soon instead of after retryAfterMs: a negotiation can fail
   * for reasons that do not repeat — a DTLS handshake spoiled on a loaded
   * host (node-datachannel 0.33 logged "DTLS alert: unknown CA" between two
   * daemons on one loopback, and the next attempt connected), a signalling
   * message lost with a relayed stream. A pair that really cannot punch
   * through fails twice and then waits retryAfterMs @default 3000
   */
  webrtcQuickRetryMs?: number
  /** while either NAT type is still unknown, look again after this long @default 3000 */
  unknownRetryMs?: number
  /** …this many times, then try WebRTC anyway @default 5 */
  unknownRetries?: number
  /** the larger PeerId of two waits this long before its WebRTC dial (both may try at once) @default 2000 */
  glareDelayMs?: number
  /** attempts running at once @default 2 */
  maxConcurrent?: number
  /**
   * behind a symmetric NAT that hands out ports in sequence (the STUN probe's
   * portDelta), offer this many predicted next ports after each
   * server-reflexive WebRTC candidate; 0 turns port prediction off @default 6
   */
  predictedPorts?: number
  /** where the port prediction goes @default setPortPrediction (net/webrtc-runtime.ts: process-wide, every WebRTC negotiation) */
  predictPorts?: (prediction: PortPrediction | undefined) => void
  /**
   * what a peer announces now (its capacity announcements): a public address
   * AutoNAT confirms after we met shows up here, while identify only runs
   * when a connection opens @default none
   */
  announcedAddrs?: (peerId: string) => readonly string[]
  /** how often announced addresses are looked at for a new public one @default 10000 */
  recheckIntervalMs?: number
  /**
   * peers upgraded ahead of need: a peer we have no connection with at all
   * (only heard of, e.g. its capacity announcement) gets a direct connection
   * only while fewer than this many peers have one (open, queued or being
   * tried); the rest wait, the most recently heard of first, for a slot to
   * free. A peer we already talk to through a relay (a task dispatched to it)
   * is upgraded regardless. Why: every connection costs CPU while idle
   * (pings, gossip, WebRTC keepalives), so a donor that pre-warmed every
   * executor of an N-donor mesh idled at a cost growing with N @default 8
   */
  maxPrewarmed?: number
  logger?: Logger
}

/** What direct upgrades need of the node. */
export type DirectPathsComponents = Pick<MeshComponents, 'peerId' | 'connections' | 'events' | 'peers' | 'dialler' | 'stun'>

/** peers remembered (status, backoff); the oldest is forgotten beyond this */
const MAX_PEERS = 512

/** A WebRTC attempt worth making: the peer's `/webrtc` address to dial, and why the NATs allow it, in words. */
interface WebrtcPlan {
  target: string
  why: string
}

interface PeerState {
  view: DirectPathView
  running: boolean
  /** addresses the peer announced (capacity), merged with what identify stored */
  hints: string[]
  unknownTries: number
  /** a pending retry (NAT type looked at again, quick second WebRTC attempt); aborting cancels it */
  retry?: AbortController
  /** a failure or skip that blocks new attempts until then */
  notBefore: number
  /** new addresses arrived while an attempt ran: look again when it ends */
  again: boolean
  /** when a closed TCP/QUIC connection was last dialled again */
  lastRedialAt: number
  /** when WebRTC was (or will be) tried again after a WebRTC connection closed */
  webrtcRedialAt?: number
  /** the peer's LAN addresses, once one of them connected: its connection is dialled again when it closes, as a public one is */
  lanAddrs?: string[]
  /** not pre-warmed (maxPrewarmed reached): a sequence number of when it was last asked for, to pick the most recent when a slot frees */
  waitingSince?: number
  /** WebRTC attempts that failed since the last one that connected */
  webrtcFailures: number
  /** the last WebRTC decision was a skip because the peer advertised no /webrtc address (it had no reservation yet) */
  noWebrtcAddr?: boolean
}

type PairNat = Pick<NatInfoMessage, 'mapping' | 'filtering' | 'udp' | 'portDelta'>

/** The peer's nat-info answer for one attempt, asked once for the LAN step and the WebRTC plan; `error`: why it could not be asked. */
type PeerNat = { info: NatInfoMessage } | { error: unknown }

/** A mapping that gives every destination its own port: the address STUN saw is not the one the peer must reach. */
function hardMapping (nat: PairNat): boolean {
  return nat.mapping === 'address-and-port-dependent' || nat.mapping === 'address-dependent'
}

/**
 * Whether WebRTC can get through this PAIR of NATs, and how: undefined
 * `blocker` when it may (`how`: why, in words). ICE makes both sides send to
 * each other at once; a side whose mapping depends on the destination (hard)
 * reaches the peer from a port nobody announced, so it gets in only where
 * the other side is open, or filters on the address alone (its check went to
 * that address), or when the hard side's NAT hands out ports in sequence
 * (portDelta): then it offers its next ports as candidates (port prediction,
 * net/webrtc-runtime.ts) and the other side's checks open its filter for them.
 * Two hard sides, or a random one behind the other's port-restricted filter,
 * stay relayed: that is the NATs, not us.
 */
export function pairBlocker (own: PairNat, theirs: PairNat): { blocker?: string, how?: string } {
  if (own.udp === 'no' || own.mapping === 'no-udp') return { blocker: webrtcBlocker('this donor', own) }
  if (theirs.udp === 'no' || theirs.mapping === 'no-udp') return { blocker: webrtcBlocker('the peer', theirs) }
  const ownHard = hardMapping(own)
  const theirHard = hardMapping(theirs)
  if (!ownHard && !theirHard) return {}
  if (ownHard && theirHard) return { blocker: `${webrtcBlocker('this donor', own) ?? ''}; so is the peer (mapping ${theirs.mapping}): neither side can reach the address the other announces` }
  const [hard, easy, hardWho, easyWho] = ownHard ? [own, theirs, 'this donor', 'the peer'] : [theirs, own, 'the peer', 'this donor']
  if (easy.mapping === 'none') return { how: `${easyWho} has no NAT, so ${hardWho}'s new mapping reaches it` }
  if (easy.filtering !== 'address-and-port-dependent') {
    return { how: `${easyWho}'s NAT filters ${easy.filtering === 'unknown' ? 'not on the port' : `by ${easy.filtering === 'endpoint-independent' ? 'nothing' : 'address only'}`}, so ${hardWho}'s new mapping gets in` }
  }
  if (hard.portDelta != null) return { how: `${hardWho}'s NAT hands out ports in sequence (step ${hard.portDelta}): port prediction` }
  return { blocker: `${webrtcBlocker(hardWho, hard) ?? ''}, and ${easyWho}'s NAT lets in only the address and port it sent to` }
}

/** Why WebRTC cannot work with this NAT, in words; undefined when it may. */
export function webrtcBlocker (who: string, nat: Pick<NatInfoMessage, 'mapping' | 'udp'>): string | undefined {
  if (nat.udp === 'no' || nat.mapping === 'no-udp') return `${who} has no UDP out (no STUN answer): ICE cannot run`
  if (nat.mapping === 'address-and-port-dependent') return `${who} is behind a symmetric NAT (address-and-port-dependent mapping: a new port per destination), so the address STUN sees is not the one the peer must reach`
  if (nat.mapping === 'address-dependent') return `${who} is behind an address-dependent NAT (a new mapping per destination IP), so the address STUN sees is not the one the peer must reach`
  return undefined
}

/**
 * Direct upgrades (traversal issue, "Direct upgrades"): for a peer this donor
 * meets through a relay, get a direct connection where the networks allow
 * it, in the background, without touching the relayed one:
 *
 * 1. the peer advertises a public direct address → dial it (recorded by the
 *    dial telemetry; a failure leaves the peer relayed);
 * 2. the peer says (nat-info, over the relayed connection) it listens on a
 *    private address inside one of this host's own networks, and no other
 *    public IP than ours → dial that across the LAN: two donors behind one
 *    NAT or firewall talk directly, even where UDP (so WebRTC) is blocked;
 * 3. else both sides behind endpoint-independent ("cone") NATs, or none →
 *    private-to-private WebRTC signalled through the relay, ICE with the
 *    relays' STUN responders. Each side's NAT type comes from its own STUN
 *    probe; the peer's is asked with `/worldcompute/nat-info/1.0.0` over the
 *    relayed connection. When either side is symmetric or has no UDP the
 *    attempt is skipped at once, with the reason logged and in `status`.
 *
 * DCUtR is not used: it never produced a direct connection in the prototype
 * lab, and it closes the relayed connection on success,
 * killing the streams on it. Here the relayed connection stays open as the
 * fallback: a task in flight on it finishes there, and later tasks take the
 * direct connection (the broker prefers a direct one).
 */
export class DirectPaths {
  private readonly mesh: DirectPathsComponents
  private readonly init: DirectPathsInit
  private readonly log: Logger
  private readonly peers = new Map<string, PeerState>()
  private readonly queue: string[] = []
  private running = 0
  /** counts schedule() calls that found no free pre-warm slot: orders the waiting peers */
  private asked = 0
  private controller?: AbortController
  private recheckTimer?: ReturnType<typeof setInterval>
  private readonly onOpen = (evt: CustomEvent<Connection>): void => {
    const conn = evt.detail
    // only the side that opened the relayed connection upgrades it: both
    // sides see it open, and two WebRTC dials at once would race
    if (conn.direction !== 'outbound' || transportOf(conn.remoteAddr) !== 'circuit') return
    this.schedule(conn.remotePeer.toString(), [], 'a relayed connection opened')
  }

  /**
   * A peer's addresses changed (identify, identify push): a public address
   * that AutoNAT confirmed after we met is worth a plain dial even when
   * WebRTC already connected us — TCP/QUIC carry bulk data better than
   * SCTP over DTLS.
   */
  /** A public address a peer announced since we last looked: worth a dial, unless TCP/QUIC already connects us. */
  private recheck (): void {
    for (const [peerId, state] of this.peers) {
      if (state.running) continue
      const announced = (this.init.announcedAddrs?.(peerId) ?? []).map(a => withoutPeer(a, peerId))
      const fresh = announced.filter(a => isPublicDirect(a) && !state.hints.includes(a))
      this.log.debug(`recheck ${peerId}: announces ${announced.length} address(es), ${fresh.length} new public`)
      const conn = this.directConnection(peerId)
      if (conn != null && transportOf(conn.remoteAddr) !== 'webrtc') continue
      if (fresh.length > 0) {
        state.notBefore = 0
        this.schedule(peerId, fresh, `it announced a new public address ${fresh[0]}`)
      } else if (state.hints.some(isPublicDirect) && Date.now() >= state.notBefore) {
        // a known public address and no TCP/QUIC connection (closed since, or not dialled yet)
        this.schedule(peerId, [], 'it has a public address and no TCP/QUIC connection')
      }
    }
  }

  private readonly onPeerUpdate = (evt: CustomEvent<{ peer: { id: { toString: () => string }, addresses: Array<{ multiaddr: { toString: () => string } }> } }>): void => {
    const peerId = evt.detail.peer.id.toString()
    const state = this.peers.get(peerId)
    if (state == null) return
    const addrs = evt.detail.peer.addresses.map(a => withoutPeer(a.multiaddr.toString(), peerId))
    if (state.noWebrtcAddr === true && !state.running && addrs.some(a => transportOf(a) === 'webrtc')) {
      // skipped when the peer had no reservation yet: its /webrtc address is what that decision lacked
      state.noWebrtcAddr = false
      state.notBefore = 0
      this.schedule(peerId, [], 'it now advertises a /webrtc address')
      return
    }
    const fresh = addrs.filter(a => isPublicDirect(a) && !state.hints.includes(a))
    if (fresh.length === 0) return
    const conn = this.directConnection(peerId)
    if (conn != null && transportOf(conn.remoteAddr) !== 'webrtc') return
    state.notBefore = 0
    this.schedule(peerId, fresh, `it has a new public address ${fresh[0]}`)
  }

  private readonly onClose = (evt: CustomEvent<Connection>): void => {
    const peer = evt.detail.remotePeer.toString()
    const state = this.peers.get(peer)
    const closed = transportOf(evt.detail.remoteAddr)
    // a TCP/QUIC connection to a public address can be closed under us: an
    // AutoNAT v2 server checking that same address reuses the open connection
    // for its dial-back and closes it afterwards (seen in the lab with
    // @libp2p/autonat-v2 2.0.15); one across the LAN goes when either side's
    // network blinks while the relayed one stays. Dial it again, at most once per 5 s.
    const remaining = this.directConnection(peer)
    const stillTcpOrQuic = remaining != null && transportOf(remaining.remoteAddr) !== 'webrtc'
    const known = state != null && (state.hints.some(isPublicDirect) || state.lanAddrs != null)
    if (state != null && known && (closed === 'tcp' || closed === 'quic') && !stillTcpOrQuic && Date.now() - state.lastRedialAt >= 5_000) {
      state.lastRedialAt = Date.now()
      state.notBefore = 0
      this.log.info(`direct ${closed} connection to ${peer} (${evt.detail.remoteAddr.toString()}) closed; dialling it again (the relayed${remaining != null ? ' and WebRTC' : ''} connection carries tasks meanwhile)`, { peer, transport: closed })
      this.schedule(peer, [], 'its direct connection closed')
      return
    }
    if (state?.view.state === 'direct' && this.mesh.connections.bestDirect(peer) == null) {
      if (closed === 'webrtc' && this.webrtcAgain(peer, state, evt.detail)) return
      this.set(state, { state: 'failed', reason: `the direct connection (${state.view.transport ?? '?'}) closed; relayed again until the next upgrade` })
      state.notBefore = 0
    }
    // a pre-warm slot may have freed
    if (closed !== 'circuit') this.promote()
  }

  /**
   * A WebRTC connection closed under a pair that still shares a relayed one
   * (ICE lost its path: a NAT forgot the mapping, a network blinked): WebRTC
   * is tried again, after webrtcQuickRetryMs the first time and no sooner
   * than retryAfterMs after the last such redial, so a path that keeps
   * dropping costs one attempt a minute. Not when the relayed connection went
   * too (the peer left): false then, and the pair waits for the next upgrade.
   */
  private webrtcAgain (peer: string, state: PeerState, closed: Connection): boolean {
    if (this.mesh.connections.relayed(peer) == null) return false
    const waitMs = Math.max(this.init.webrtcQuickRetryMs ?? 3_000, (state.webrtcRedialAt ?? -Infinity) + this.retryAfterMs - Date.now())
    state.webrtcRedialAt = Date.now() + waitMs
    state.notBefore = 0
    this.set(state, { state: 'failed', transport: 'webrtc', reason: `the WebRTC connection closed; relayed meanwhile, WebRTC again in ${formatSeconds(waitMs)}` })
    this.log.info(`direct WebRTC connection to ${peer} (${closed.remoteAddr.toString()}) closed; the relayed connection carries tasks, WebRTC again in ${formatSeconds(waitMs)}`, { peer, transport: 'webrtc' })
    this.retryLater(peer, state, waitMs, 'its WebRTC connection closed', { clearBackoff: true, ifConnected: true })
    return true
  }

  constructor (mesh: DirectPathsComponents, init: DirectPathsInit) {
    this.mesh = mesh
    this.init = init
    this.log = init.logger ?? createLogger('donor.direct')
  }

  start (): void {
    if (this.controller != null) return
    this.controller = new AbortController()
    this.mesh.events.on('connection:open', this.onOpen)
    this.mesh.events.on('connection:close', this.onClose)
    this.mesh.events.on('peer:update', this.onPeerUpdate)
    if (this.init.announcedAddrs != null) {
      // cost per peer remembered here (peers met through a relay, executors
      // heard of while our broker listens): a look at its announced addresses
      // every interval, no traffic unless a new public one appeared; an idle
      // donor remembers none
      this.recheckTimer = setInterval(() => { this.recheck() }, this.init.recheckIntervalMs ?? 10_000)
      this.recheckTimer.unref?.()
    }
  }

  stop (): void {
    if (this.controller == null) return
    this.controller.abort()
    this.controller = undefined
    this.mesh.events.off('connection:open', this.onOpen)
    this.mesh.events.off('connection:close', this.onClose)
    this.mesh.events.off('peer:update', this.onPeerUpdate)
    if (this.recheckTimer != null) clearInterval(this.recheckTimer)
    this.recheckTimer = undefined
    this.queue.length = 0
  }

  /** What `status` shows: one entry per peer an upgrade was considered for. */
  status (): DirectPathView[] {
    return [...this.peers.values()].map(s => {
      // the connection may have gone since: say what is true now
      if (s.view.state === 'direct' && this.mesh.connections.bestDirect(s.view.peerId) == null) {
        return { ...s.view, state: 'failed' as const, reason: `the direct connection (${s.view.transport ?? '?'}) closed` }
      }
      return { ...s.view }
    })
  }

  /**
   * Asks for a direct connection to `peerId` in the background (idempotent:
   * a peer already direct, being tried, or that failed recently is left
   * alone). `addrs`: what the peer announced, beyond what identify stored.
   */
  schedule (peerId: string, addrs: readonly string[], why: string): void {
    if (this.controller == null || peerId === this.mesh.peerId) return
    let state = this.peers.get(peerId)
    if (state == null) {
      state = { view: { peerId, state: 'trying', reason: why, at: new Date().toISOString() }, running: false, hints: [], unknownTries: 0, notBefore: 0, again: false, lastRedialAt: 0, webrtcFailures: 0 }
      this.peers.set(peerId, state)
      // bounded memory in a large mesh: forget the oldest peer not being tried now
      if (this.peers.size > MAX_PEERS) {
        for (const [id, s] of this.peers) {
          if (!s.running && id !== peerId) {
            s.retry?.abort()
            this.peers.delete(id)
            break
          }
        }
      }
    }
    const before = state.hints.length
    state.hints = [...new Set([...state.hints, ...addrs.map(a => withoutPeer(a, peerId))])].slice(-32)
    if (state.running) {
      // e.g. identify on the new WebRTC connection tells us a public address the running attempt did not know
      if (state.hints.length !== before) state.again = true
      return
    }
    if (this.queue.includes(peerId)) return
    const conn = this.directConnection(peerId)
    // a WebRTC connection does not stop a dial of a public address (better for bulk data)
    if (conn != null && (transportOf(conn.remoteAddr) !== 'webrtc' || !state.hints.some(isPublicDirect))) {
      if (state.view.state !== 'direct') this.set(state, { state: 'direct', transport: transportOf(conn.remoteAddr), addr: conn.remoteAddr.toString(), reason: 'already connected directly' })
      return
    }
    if (Date.now() < state.notBefore) return
    const max = this.init.maxPrewarmed ?? 8
    if (!this.connected(peerId)) {
      const warm = this.warmPeers(peerId)
      if (warm >= max) {
        state.waitingSince = ++this.asked
        if (state.view.state !== 'skipped' || !state.view.reason.startsWith('not pre-warmed')) {
          this.set(state, { state: 'skipped', reason: `not pre-warmed: ${warm} peers already have a direct connection or an attempt (at most ${max} ahead of need); a task sent to it through a relay upgrades it then` })
          this.log.debug(`direct upgrade to ${peerId} deferred (${why}): ${warm} of ${max} pre-warm slots in use`, { peer: peerId })
        }
        return
      }
    }
    state.waitingSince = undefined
    this.queue.push(peerId)
    this.pump()
  }

  /** Whether any connection to the peer is open (relayed included): then an upgrade serves traffic that exists. */
  private connected (peerId: string): boolean {
    return this.mesh.connections.isConnected(peerId)
  }

  /** Tracked peers, other than `except`, with an open direct connection, a queued attempt or one running. */
  private warmPeers (except?: string): number {
    const direct = new Set<string>()
    for (const c of this.mesh.connections.open()) {
      if (c.status === 'open' && transportOf(c.remoteAddr) !== 'circuit') direct.add(c.remotePeer.toString())
    }
    let n = 0
    for (const [id, s] of this.peers) {
      if (id !== except && (s.running || direct.has(id) || this.queue.includes(id))) n++
    }
    return n
  }

  /** Pre-warm slots may be free: fill them with the most recently heard-of peers that wait for one. */
  private promote (): void {
    if (this.controller == null) return
    const waiting = [...this.peers].filter(([, s]) => s.waitingSince != null && !s.running)
      .sort((a, b) => (b[1].waitingSince ?? 0) - (a[1].waitingSince ?? 0))
    for (const [peerId, s] of waiting) {
      if (this.warmPeers() >= (this.init.maxPrewarmed ?? 8)) return
      s.waitingSince = undefined
      this.schedule(peerId, [], 'a pre-warm slot freed')
    }
  }

  /**
   * The NAT type of this donor changed: port prediction follows it, and
   * peers skipped for "not measured yet" are looked at again.
   */
  natChanged (): void {
    this.configurePortPrediction()
    for (const [peerId, s] of this.peers) {
      if (s.view.state === 'skipped' && s.unknownTries > 0) {
        s.notBefore = 0
        this.schedule(peerId, [], 'this donor\'s NAT type was measured')
      }
    }
  }

  /** Port prediction on while this donor's NAT is symmetric with ports in sequence, off otherwise. */
  private configurePortPrediction (): void {
    const own = this.init.nat()
    const count = this.init.predictedPorts ?? 6
    const on = this.init.webrtc !== false && count > 0 && own.mapping === 'address-and-port-dependent' && own.portDelta != null
    const predict = this.init.predictPorts ?? setPortPrediction
    predict(on ? { delta: own.portDelta ?? 1, count } : undefined)
    if (on) this.log.info(`port prediction on: this donor's NAT hands out ports in sequence (step ${own.portDelta ?? '?'}), so WebRTC offers its next ${count} ports after each server-reflexive candidate`, { mapping: own.mapping, transport: 'webrtc' })
  }

  private pump (): void {
    const max = this.init.maxConcurrent ?? 2
    while (this.running < max && this.queue.length > 0 && this.controller != null) {
      const peerId = this.queue.shift() as string
      const state = this.peers.get(peerId)
      if (state == null) continue
      this.running++
      state.running = true
      void this.attempt(peerId, state)
        .catch((err: Error) => {
          // attempt() reports its own failures; this is a bug in it
          this.log.error(`direct upgrade to ${peerId} threw: ${err.stack ?? err.message}`, { peer: peerId })
        })
        .finally(() => {
          state.running = false
          this.running--
          if (state.again) {
            state.again = false
            state.notBefore = 0
            this.schedule(peerId, [], 'new addresses arrived during the last attempt')
          }
          this.pump()
          // a failed or skipped attempt holds no slot any more
          this.promote()
        })
    }
  }

  private set (state: PeerState, change: Omit<DirectPathView, 'peerId' | 'at'>): void {
    state.view = { peerId: state.view.peerId, at: new Date().toISOString(), ...change }
  }

  private async addrsOf (peerId: string, hints: readonly string[]): Promise<string[]> {
    const stored: string[] = []
    try {
      stored.push(...await this.mesh.peers.addressesOf(peerId))
    } catch (err) {
      if ((err as Error).name !== 'NotFoundError') this.log.debug(`peer store lookup for ${peerId} failed: ${(err as Error).message}`)
    }
    const withPeer = (a: string): string => a.endsWith(`/p2p/${peerId}`) ? a : `${a}/p2p/${peerId}`
    return [...new Set([...hints, ...stored].map(withPeer))]
  }

  /**
   * One upgrade: the peer's public address if it has one, else WebRTC when
   * both NATs allow it. Every outcome lands in the peer's view and the log.
   */
  private async attempt (peerId: string, state: PeerState): Promise<void> {
    const signal = this.controller?.signal
    if (signal == null || signal.aborted) return
    const addrs = await this.addrsOf(peerId, state.hints)
    const failures = await this.dialPublic(peerId, state, addrs.filter(isPublicDirect), signal)
    if (failures == null || signal.aborted) return
    const peerNat = await this.askPeerNat(peerId, addrs, signal)
    if (signal.aborted) return
    const lanFailures = await this.dialLan(peerId, state, peerNat, signal)
    if (lanFailures == null || signal.aborted) return
    failures.push(...lanFailures)
    const plan = await this.planWebrtc(peerId, state, addrs, failures, signal, peerNat)
    if (plan == null) return
    await this.dialWebrtc(peerId, state, plan, signal)
  }

  /**
   * The peer's nat-info answer, over the relayed connection we share or one
   * made through a relay it advertises; undefined when there is no relayed
   * path to ask over (then nothing after the public dial needs one).
   */
  private async askPeerNat (peerId: string, addrs: string[], signal: AbortSignal): Promise<PeerNat | undefined> {
    const via = addrs.find(a => transportOf(a) === 'webrtc' && this.mesh.connections.bestDirect(relayPeerOf(a) ?? '') != null) ??
      addrs.find(a => transportOf(a) === 'webrtc') ?? addrs.find(a => transportOf(a) === 'circuit')
    if (via == null && this.mesh.connections.relayed(peerId) == null) return undefined
    try {
      const relayed = await this.relayedConnection(peerId, via ?? '', signal)
      return { info: await (this.init.askNatInfo ?? fetchNatInfo)(relayed, { signal }) }
    } catch (err) {
      return { error: err }
    }
  }

  /**
   * Dials the peer's private addresses that lie on this host's own networks
   * (nat-info `lanAddrs`), unless both public IPs are known and differ (two
   * sites that number their LANs alike). Returns undefined when one
   * connected (or on a stop), else why each failed (none tried: empty).
   */
  private async dialLan (peerId: string, state: PeerState, peerNat: PeerNat | undefined, signal: AbortSignal): Promise<string[] | undefined> {
    if (peerNat == null || !('info' in peerNat)) return []
    const { lanAddrs, publicIp } = peerNat.info
    const ourIp = endpointIp(this.init.nat().mappedAddress)
    if (lanAddrs == null || (publicIp != null && ourIp != null && publicIp !== ourIp)) return []
    const subnets = (this.init.ownSubnets ?? ownSubnets)()
    const lan = addrsOnOwnLan(lanAddrs, subnets).map(a => a.endsWith(`/p2p/${peerId}`) ? a : `${a}/p2p/${peerId}`)
    this.log.debug(`LAN addresses of ${peerId}: ${lanAddrs.join(', ')}; on this host's networks (${subnets.join(', ')}): ${lan.length}`, { peer: peerId })
    if (lan.length === 0) return []
    const failures = await this.dialDirect(peerId, state, lan, signal, { what: 'its address on this network', timeoutMs: this.init.lanDialTimeoutMs ?? 1_500 })
    state.lanAddrs = failures == null && !signal.aborted ? lan : undefined
    return failures
  }

  /**
   * Dials the peer's public direct addresses (at most four), as every donor
   * dials its relays. Returns undefined when one connected (or on a stop),
   * else why each failed.
   */
  private async dialPublic (peerId: string, state: PeerState, publicAddrs: string[], signal: AbortSignal): Promise<string[] | undefined> {
    if (publicAddrs.length === 0) return []
    return await this.dialDirect(peerId, state, publicAddrs, signal, { what: 'its public address', timeoutMs: this.init.publicDialTimeoutMs ?? 3_000 })
  }

  /**
   * Dials `addrs` (at most four) for a new direct connection, `what` naming
   * them in the view and the log. Returns undefined when one connected (or
   * on a stop), else why each failed.
   */
  private async dialDirect (peerId: string, state: PeerState, addrs: string[], signal: AbortSignal, how: { what: string, timeoutMs: number }): Promise<string[] | undefined> {
    let started = Date.now()
    const addr = addrs[0]
    const failures: string[] = []
    try {
      // a new connection even though a relayed (or WebRTC) one to this peer is open
      const conn = await this.mesh.dialler.reach(peerId, {
        purpose: 'upgrade', addrs, stored: 'none', reuse: false, directOnly: true, maxDirect: 4, skipRecentFailures: false, directTimeoutMs: how.timeoutMs, signal,
        onAttempt: (a) => { started = Date.now(); this.set(state, { state: 'trying', transport: transportOf(a), addr: a, reason: `dialling ${how.what}` }) }
      })
      const ms = Date.now() - started
      this.set(state, { state: 'direct', transport: transportOf(conn.remoteAddr), addr: conn.remoteAddr.toString(), reason: `dialled ${how.what}`, durationMs: ms })
      this.log.info(`direct connection to ${peerId} over ${transportOf(conn.remoteAddr)} (${conn.remoteAddr.toString()}) in ${ms} ms: dialled ${how.what}; the relayed connection stays as fallback`, { peer: peerId, transport: transportOf(conn.remoteAddr), addr, duration_ms: ms })
      return undefined
    } catch (err) {
      if (signal.aborted) return undefined
      // the dial telemetry has logged and recorded each attempt with its phase and cause
      const tried = err instanceof ReachFailedError ? err.attempts : []
      failures.push(...(tried.length > 0 ? tried.map(a => `${a.addr} (${a.transport}) at ${a.phase}: ${a.cause}`) : [`${addr}: ${(err as Error).message}`]))
    }
    // not again before retryAfterMs, whatever WebRTC does next
    state.notBefore = Date.now() + this.retryAfterMs
    this.log.warn(`direct dial to ${peerId}'s ${how.what.replace(/^its /, '')} failed, trying WebRTC next or staying relayed: ${failures.join('; ')}`, { peer: peerId, phase: 'upgrade' })
    return failures
  }

  /**
   * Whether private-to-private WebRTC, signalled through the relay, is worth
   * a try and why: both NAT types allow it (each side's from its own STUN
   * probe; the peer's asked over the relayed connection). Otherwise records
   * the skip and returns undefined.
   */
  private async planWebrtc (peerId: string, state: PeerState, addrs: string[], failures: string[], signal: AbortSignal, peerNat?: PeerNat): Promise<WebrtcPlan | undefined> {
    const current = this.directConnection(peerId)
    if (current != null) {
      // already direct over WebRTC, and the public address did not answer: keep it
      this.set(state, { state: 'direct', transport: transportOf(current.remoteAddr), addr: current.remoteAddr.toString(), reason: `already connected directly${failures.length > 0 ? `; its direct addresses failed (${failures.join('; ')})` : ''}` })
      return undefined
    }
    const skip = (reason: string, retryMs?: number): undefined => { this.skip(peerId, state, failures, reason, retryMs) }
    const webrtcAddrs = addrs.filter(a => transportOf(a) === 'webrtc')
    if (this.init.webrtc === false) return skip('this donor runs without the WebRTC transport')
    state.noWebrtcAddr = webrtcAddrs.length === 0
    if (webrtcAddrs.length === 0) return skip('the peer advertises no /webrtc address (it does not take WebRTC, or holds no reservation)')
    const own = this.init.nat()
    // no UDP here: nothing to ask the peer about; a symmetric NAT here may still pair with the peer's
    if (own.udp === 'no' || own.mapping === 'no-udp') return skip(webrtcBlocker('this donor', own) ?? 'no UDP')
    if (own.mapping === 'unknown' && this.mayLookAgain(state)) return skip(this.notMeasuredYet(state, 'this donor\'s'), this.unknownRetryMs)

    // the peer's NAT type, asked over a relayed connection (the one WebRTC signals over), unless the LAN step asked already
    const target = webrtcAddrs.find(a => this.mesh.connections.bestDirect(relayPeerOf(a) ?? '') != null) ?? webrtcAddrs[0]
    const answer = peerNat ?? await this.askPeerNat(peerId, [target], signal)
    if (signal.aborted) return undefined
    if (answer == null || 'error' in answer) {
      const d = describeDialError(answer?.error ?? new Error('no relayed connection to ask over'), { phase: 'signalling', transport: 'circuit', elapsedMs: 0 })
      return skip(`could not ask the peer for its NAT type over the relay (${d.cause})`)
    }
    const theirs = answer.info
    const pair = pairBlocker(own, theirs)
    if (pair.blocker != null) return skip(pair.blocker)
    if (!theirs.webrtc) return skip('the peer says it does not take WebRTC')
    if (theirs.mapping === 'unknown' && this.mayLookAgain(state)) return skip(this.notMeasuredYet(state, 'the peer\'s'), this.unknownRetryMs)
    return { target, why: `this donor ${describeNat(own.mapping)}, the peer ${describeNat(theirs.mapping)}${pair.how != null ? `; ${pair.how}` : ''}` }
  }

  /** While a NAT type is unknown, the attempt is put off a few times (unknownRetries) before WebRTC is tried anyway. */
  private mayLookAgain (state: PeerState): boolean {
    return state.unknownTries < (this.init.unknownRetries ?? 5)
  }

  /** Counts one more look at a NAT type not measured yet; the skip reason. */
  private notMeasuredYet (state: PeerState, whose: string): string {
    state.unknownTries++
    return `${whose} NAT type is not measured yet (look ${state.unknownTries} of ${this.init.unknownRetries ?? 5}); looking again in ${this.unknownRetryMs} ms`
  }

  /** No WebRTC attempt for now: the view says why, and the peer is looked at again after `retryMs` (else retryAfterMs). */
  private skip (peerId: string, state: PeerState, failures: string[], reason: string, retryMs?: number): void {
    const prefix = failures.length > 0 ? `direct dial failed (${failures.join('; ')}); ` : ''
    this.set(state, { state: failures.length > 0 ? 'failed' : 'skipped', transport: 'webrtc', reason: `${prefix}WebRTC skipped: ${reason}; staying relayed` })
    state.notBefore = Date.now() + (retryMs ?? this.retryAfterMs)
    this.log.info(`direct upgrade to ${peerId}: ${prefix}WebRTC skipped, no attempt made: ${reason}; staying relayed`, { peer: peerId, transport: 'webrtc', phase: 'upgrade' })
    if (retryMs != null) this.retryLater(peerId, state, retryMs, 'NAT type check again')
  }

  /**
   * The WebRTC dial. Two donors that both learn of each other would dial at
   * once, and two simultaneous negotiations spoil each other: the larger
   * PeerId waits a little first, and is done if the other side has connected
   * meanwhile.
   */
  private async dialWebrtc (peerId: string, state: PeerState, plan: WebrtcPlan, signal: AbortSignal): Promise<void> {
    const { target, why } = plan
    if (this.mesh.peerId > peerId) {
      if (await pause(this.init.glareDelayMs ?? 2_000, { signal })) return
      const meanwhile = this.directConnection(peerId)
      if (meanwhile != null) {
        this.set(state, { state: 'direct', transport: transportOf(meanwhile.remoteAddr), addr: meanwhile.remoteAddr.toString(), reason: `the peer connected to us directly (${why})` })
        return
      }
    }
    this.set(state, { state: 'trying', transport: 'webrtc', addr: target, reason: `trying WebRTC: ${why}` })
    const started = Date.now()
    try {
      // outside the dial queue, which would hand back the open relayed connection
      const conn = await this.mesh.dialler.dialTransport(multiaddr(target), { purpose: 'upgrade', signal: AbortSignal.any([signal, AbortSignal.timeout(this.init.webrtcTimeoutMs ?? 8_000)]) })
      const ms = Date.now() - started
      if (transportOf(conn.remoteAddr) !== 'webrtc') throw new Error(`libp2p answered with a ${transportOf(conn.remoteAddr)} connection (${conn.remoteAddr.toString()})`)
      state.unknownTries = 0
      state.webrtcFailures = 0
      this.set(state, { state: 'direct', transport: 'webrtc', addr: conn.remoteAddr.toString(), reason: `WebRTC through the NATs (${why}); signalled via relay ${relayPeerOf(target) ?? '?'}`, durationMs: ms })
      this.log.info(`direct connection to ${peerId} over WebRTC in ${ms} ms (${why}; ICE with ${(await this.mesh.stun.iceServers()).flatMap(s => s.urls).join(', ') || 'host candidates only'}); the relayed connection stays as fallback`, { peer: peerId, transport: 'webrtc', addr: target, duration_ms: ms })
    } catch (err) {
      if (signal.aborted) return
      this.webrtcFailed(peerId, state, plan, err, Date.now() - started)
    }
  }

  /**
   * A failed WebRTC dial: the first since the last success gets a quick
   * second attempt (webrtcQuickRetryMs: a negotiation can fail for reasons
   * that do not repeat), later ones wait retryAfterMs.
   */
  private webrtcFailed (peerId: string, state: PeerState, plan: WebrtcPlan, err: unknown, ms: number): void {
    const { target, why } = plan
    const d = describeDialError(err, { phase: 'ice', transport: 'webrtc', elapsedMs: ms, timedOut: (err as Error)?.name === 'TimeoutError' })
    state.webrtcFailures++
    const quick = state.webrtcFailures === 1
    const retryMs = backoffDelay(this.webrtcRetry, state.webrtcFailures)
    const next = quick ? `one more try in ${formatSeconds(retryMs)} (a first failure can be a one-off), then every ${formatSeconds(this.retryAfterMs)}` : `next try in ${formatSeconds(retryMs)}`
    this.set(state, { state: 'failed', transport: 'webrtc', addr: target, reason: `WebRTC failed at ${d.phase} after ${ms} ms: ${d.cause}; staying relayed, ${next}`, durationMs: ms })
    state.notBefore = Date.now() + retryMs
    this.log.warn(`direct upgrade to ${peerId} over WebRTC failed at ${d.phase} after ${ms} ms (${target}; ${why}): ${d.cause}; staying relayed, ${next}`, { peer: peerId, addr: target, transport: 'webrtc', phase: d.phase, code: d.code, attempt: state.webrtcFailures })
    if (quick) this.retryLater(peerId, state, retryMs, 'second WebRTC attempt after a failed first', { clearBackoff: true })
  }

  /**
   * Asks for the peer again after `ms`: one pending retry per peer, replaced
   * by a newer one, cancelled when the peer is forgotten or on `stop`.
   * `clearBackoff`: the retry is not held back by the peer's `notBefore`;
   * `ifConnected`: nothing is done if no connection to the peer is open by then.
   */
  private retryLater (peerId: string, state: PeerState, ms: number, why: string, options: { clearBackoff?: boolean, ifConnected?: boolean } = {}): void {
    const stopped = this.controller?.signal
    if (stopped == null) return
    state.retry?.abort()
    const retry = new AbortController()
    state.retry = retry
    void pause(ms, { signal: AbortSignal.any([stopped, retry.signal]) }).then(cut => {
      if (cut) return
      state.retry = undefined
      if (options.ifConnected === true && !this.connected(peerId)) {
        this.log.debug(`not trying ${peerId} again (${why}): no connection to it is open any more`, { peer: peerId })
        return
      }
      if (options.clearBackoff === true) state.notBefore = 0
      this.schedule(peerId, [], why)
    })
  }

  private get retryAfterMs (): number {
    return this.init.retryAfterMs ?? 60_000
  }

  private get unknownRetryMs (): number {
    return this.init.unknownRetryMs ?? 3_000
  }

  /** WebRTC retries: after a first failure a quick second attempt, after that straight to retryAfterMs. */
  private get webrtcRetry (): BackoffPolicy {
    return { initialMs: this.init.webrtcQuickRetryMs ?? 3_000, maxMs: this.retryAfterMs, factor: Number.POSITIVE_INFINITY }
  }

  /** The best open direct connection to the peer: TCP/QUIC before WebRTC. */
  private directConnection (peerId: string): Connection | undefined {
    return this.mesh.connections.bestDirect(peerId)
  }

  /** An open relayed connection to the peer, or a new one through the relay of `webrtcAddr`. */
  private async relayedConnection (peerId: string, webrtcAddr: string, signal: AbortSignal): Promise<Connection> {
    const open = this.mesh.connections.relayed(peerId)
    if (open != null) return open
    return await this.mesh.dialler.dial(multiaddr(signallingCircuitOf(webrtcAddr)), { purpose: 'upgrade', signal })
  }
}

function formatSeconds (ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(ms % 1000 === 0 ? 0 : 1)} s` : `${Math.round(ms / 1000)} s`
}

function withoutPeer (addr: string, peerId: string): string {
  return addr.endsWith(`/p2p/${peerId}`) ? addr.slice(0, -`/p2p/${peerId}`.length) : addr
}

/** A direct (no relay) address on a public IP, counting configured public ranges. */
function isPublicDirect (addr: string): boolean {
  if (viaRelay(addr)) return false
  const ma = parseAddr(addr)
  return ma != null && isPublicAddr(ma)
}

function describeNat (mapping: NatReport['mapping']): string {
  switch (mapping) {
    case 'none': return 'has no NAT'
    case 'endpoint-independent': return 'is behind a cone (endpoint-independent) NAT'
    case 'unknown': return 'has a NAT type not measured yet'
    default: return `has mapping ${mapping}`
  }
}
