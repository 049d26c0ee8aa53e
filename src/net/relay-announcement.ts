import * as dagCbor from '@ipld/dag-cbor'
import { multiaddr } from '@multiformats/multiaddr'
import { WorldComputeError } from '../core/errors.ts'
import { peerIdOf } from './transport-of.ts'

/**
 * Relay announcements: a relay tells the mesh "I am a relay, dial me here".
 * They travel on their own gossip topic, signed by gossipsub (StrictSign, the
 * default): the signature proves which peer published, so an announcement is
 * only valid when the relay it names is its publisher. Nobody can announce a
 * relay in someone else's name; a relay can only announce itself.
 */

/** gossip topic of relay announcements; every relay and donor subscribes so the announcements cross the mesh */
export const RELAY_TOPIC = '/worldcompute/relays/1.0.0'

/** circuit relay v2's HOP protocol: a peer whose identify lists it serves reservations */
export const RELAY_HOP_PROTOCOL = '/libp2p/circuit/relay/0.2.0/hop'

/** more addresses than a relay ever needs (TCP, QUIC, WS, WSS × IPv4/IPv6); bounds what one message may make us dial */
export const MAX_ANNOUNCED_ADDRS = 16
const MAX_ADDR_LENGTH = 512
const MAX_MESSAGE_BYTES = 16 * 1024

export interface RelayAnnouncement {
  /** the relay's PeerId; must be the gossip message's signed `from` */
  peerId: string
  /** addresses to dial it on, each without `/p2p-circuit` */
  addrs: string[]
  /** the relay's clock, ms since the epoch; only used to prefer the newer of two announcements */
  ts: number
}

/** A relay announcement that cannot be used, and why. */
export class InvalidRelayAnnouncementError extends WorldComputeError {
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, 'RELAY_ANNOUNCEMENT_INVALID', options)
  }
}

export function encodeRelayAnnouncement (a: RelayAnnouncement): Uint8Array {
  return dagCbor.encode({ v: 1, peerId: a.peerId, addrs: a.addrs.slice(0, MAX_ANNOUNCED_ADDRS), ts: Math.round(a.ts) })
}

/**
 * Decodes and checks an announcement published by `from` (the signed gossip
 * sender). Throws InvalidRelayAnnouncementError naming what is wrong.
 */
export function decodeRelayAnnouncement (bytes: Uint8Array, from: string): RelayAnnouncement {
  if (bytes.byteLength > MAX_MESSAGE_BYTES) throw new InvalidRelayAnnouncementError(`relay announcement from ${from} is ${bytes.byteLength} bytes, over ${MAX_MESSAGE_BYTES}`)
  let value: unknown
  try {
    value = dagCbor.decode(bytes)
  } catch (err) {
    throw new InvalidRelayAnnouncementError(`relay announcement from ${from} is not dag-cbor: ${(err as Error).message}`, { cause: err })
  }
  if (value == null || typeof value !== 'object' || Array.isArray(value)) throw new InvalidRelayAnnouncementError(`relay announcement from ${from} is not a map`)
  const m = value as Record<string, unknown>
  if (m.v !== 1) throw new InvalidRelayAnnouncementError(`relay announcement from ${from} has unknown version ${String(m.v)}`)
  if (m.peerId !== from) throw new InvalidRelayAnnouncementError(`relay announcement from ${from} names another peer (${String(m.peerId)}): a relay may only announce itself`)
  if (typeof m.ts !== 'number' || !Number.isFinite(m.ts)) throw new InvalidRelayAnnouncementError(`relay announcement from ${from} has no timestamp`)
  if (!Array.isArray(m.addrs) || m.addrs.length === 0 || m.addrs.length > MAX_ANNOUNCED_ADDRS) {
    throw new InvalidRelayAnnouncementError(`relay announcement from ${from} must list 1–${MAX_ANNOUNCED_ADDRS} addresses`)
  }
  const addrs: string[] = []
  for (const a of m.addrs) {
    if (typeof a !== 'string' || a.length > MAX_ADDR_LENGTH) throw new InvalidRelayAnnouncementError(`relay announcement from ${from} has an address that is not a string of at most ${MAX_ADDR_LENGTH} characters`)
    let text: string
    try {
      text = multiaddr(a).toString()
    } catch (err) {
      throw new InvalidRelayAnnouncementError(`relay announcement from ${from} has an unparsable address "${a}": ${(err as Error).message}`, { cause: err })
    }
    if (text.includes('/p2p-circuit')) throw new InvalidRelayAnnouncementError(`relay announcement from ${from} lists a circuit address (${text}): a relay must be dialled directly`)
    const named = peerIdOf(text)
    if (named != null && named !== from) throw new InvalidRelayAnnouncementError(`relay announcement from ${from} lists an address of another peer (${text})`)
    addrs.push(named == null ? `${text}/p2p/${from}` : text)
  }
  return { peerId: from, addrs, ts: m.ts }
}
