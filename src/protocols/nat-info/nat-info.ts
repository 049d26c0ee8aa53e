import { isIP } from 'node:net'
import * as dagCbor from '@ipld/dag-cbor'
import { NAT_MAPPINGS, type NatFiltering, type NatMapping, type UdpState } from '../../core/types.ts'
import { createLogger, type Logger } from '../../log/logger.ts'
import { ProtocolViolationError } from '../errors.ts'
import { askSingleAnswer, decodeVersioned } from '../exchange.ts'
import { SingleAnswerService } from '../service.ts'
import { ANSWER_TIMEOUT_MS, NAT_INFO_LIMITS, NAT_INFO_PROTOCOL, NAT_INFO_TIMEOUT_MS } from './constants.ts'
import type { ProtocolRegistrar } from '../components.ts'
import type { AbortOptions, Connection } from '@libp2p/interface'

/** What a peer says about its own network, as its STUN probe measured it. */
export interface NatInfoMessage {
  mapping: NatMapping
  filtering: NatFiltering
  udp: UdpState
  /** whether it accepts private-to-private WebRTC (listens on `/webrtc`) */
  webrtc: boolean
  /** a symmetric NAT handing out ports in sequence: the step (the peer may predict its next ports) */
  portDelta?: number
  /**
   * its TCP and QUIC listen addresses on private networks (at most
   * MAX_LAN_ADDRS), which it announces to nobody else: a peer on the same
   * network can dial one of them rather than go through a relay or WebRTC
   */
  lanAddrs?: string[]
  /** the IP its STUN servers saw: two peers behind one NAT see the same */
  publicIp?: string
}

/** LAN addresses kept from an answer: a host has a few interfaces, each with a TCP and a QUIC listener */
export const MAX_LAN_ADDRS = 8
/**
 * a multiaddr string longer than this is no address of a listener (the
 * longest, IPv6 with QUIC, is 62): eight of them and the rest of the answer
 * stay within NAT_INFO_LIMITS' 1 KiB frame
 */
const MAX_ADDR_CHARS = 96

export interface NatInfoInit {
  /** this node's NAT as known now; without it the node does not answer the protocol */
  getInfo?: () => NatInfoMessage
  logger?: Logger
}

export interface NatInfoComponents {
  registrar: ProtocolRegistrar
}

const FILTERINGS: readonly string[] = ['endpoint-independent', 'address-dependent', 'address-and-port-dependent', 'unknown']
const UDP_STATES: readonly string[] = ['yes', 'no', 'unknown']

export function encodeNatInfo (info: NatInfoMessage): Uint8Array {
  return dagCbor.encode({
    v: 1,
    mapping: info.mapping,
    filtering: info.filtering,
    udp: info.udp,
    webrtc: info.webrtc,
    ...(info.portDelta != null ? { portDelta: info.portDelta } : {}),
    ...(info.lanAddrs != null && info.lanAddrs.length > 0 ? { lanAddrs: info.lanAddrs.filter(a => a.length <= MAX_ADDR_CHARS).slice(0, MAX_LAN_ADDRS) } : {}),
    ...(info.publicIp != null ? { publicIp: info.publicIp } : {})
  })
}

/**
 * Decodes an answer; a word this version does not know reads as `unknown`
 * (a newer peer may measure more), anything else malformed is a violation.
 */
export function decodeNatInfo (bytes: Uint8Array): NatInfoMessage {
  const m = decodeVersioned(bytes, 'NAT info', 1)
  for (const key of ['mapping', 'filtering', 'udp'] as const) {
    if (typeof m[key] !== 'string') throw new ProtocolViolationError(`NAT info: "${key}" must be a string`)
  }
  if (typeof m.webrtc !== 'boolean') throw new ProtocolViolationError('NAT info: "webrtc" must be a boolean')
  const mapping = (NAT_MAPPINGS as readonly string[]).includes(m.mapping as string) ? m.mapping as NatMapping : 'unknown'
  const filtering = FILTERINGS.includes(m.filtering as string) ? m.filtering as NatFiltering : 'unknown'
  const udp = UDP_STATES.includes(m.udp as string) ? m.udp as UdpState : 'unknown'
  // optional (older peers do not send it); anything but a small positive integer is ignored
  const portDelta = typeof m.portDelta === 'number' && Number.isInteger(m.portDelta) && m.portDelta > 0 && m.portDelta <= 64 ? m.portDelta : undefined
  // optional too, and only a hint: what is not a short string is dropped, and an address is checked where it is dialled
  const lanAddrs = Array.isArray(m.lanAddrs) ? m.lanAddrs.filter((a): a is string => typeof a === 'string' && a.length <= MAX_ADDR_CHARS).slice(0, MAX_LAN_ADDRS) : []
  const publicIp = typeof m.publicIp === 'string' && isIP(m.publicIp) !== 0 ? m.publicIp : undefined
  return {
    mapping,
    filtering,
    udp,
    webrtc: m.webrtc,
    ...(portDelta != null ? { portDelta } : {}),
    ...(lanAddrs.length > 0 ? { lanAddrs } : {}),
    ...(publicIp != null ? { publicIp } : {})
  }
}

/** How this node answers; on limited connections too: the whole point is to ask before there is a direct connection. */
const NAT_INFO_ANSWER = { protocol: NAT_INFO_PROTOCOL, name: 'nat-info', limits: NAT_INFO_LIMITS, runOnLimitedConnection: true, answerTimeoutMs: ANSWER_TIMEOUT_MS, encode: encodeNatInfo, what: 'NAT info' }

/**
 * `/worldcompute/nat-info/1.0.0`: the asking peer opens a stream, usually
 * over the relayed connection the two already share (the handler runs on
 * limited connections); the other writes one dag-cbor frame
 * `{ v: 1, mapping, filtering, udp, webrtc, portDelta?, lanAddrs?, publicIp? }`
 * and closes (`portDelta`: only behind a symmetric NAT handing out ports in
 * sequence; `lanAddrs`, `publicIp`: for a peer on the same network). A small protocol
 * rather than a token in the identify agent version: the NAT type is
 * measured after start and may change, while identify's agent version is
 * fixed when the node is built.
 */
export class NatInfoService extends SingleAnswerService<NatInfoMessage> {
  constructor (components: NatInfoComponents, init: NatInfoInit = {}) {
    super(components.registrar, { ...NAT_INFO_ANSWER, getInfo: init.getInfo, log: init.logger ?? createLogger('protocols.nat-info') })
  }
}

/** Asks the peer at the other end of `connection` (relayed or direct) for its NAT type. */
export async function fetchNatInfo (connection: Connection, options: AbortOptions & { timeoutMs?: number } = {}): Promise<NatInfoMessage> {
  const timeoutMs = options.timeoutMs ?? NAT_INFO_TIMEOUT_MS
  return await askSingleAnswer(connection, decodeNatInfo, 'NAT info', { protocol: NAT_INFO_PROTOCOL, limits: NAT_INFO_LIMITS, timeoutMs, signal: options.signal })
}
