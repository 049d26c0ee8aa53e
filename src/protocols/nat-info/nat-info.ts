import * as dagCbor from '@ipld/dag-cbor'
import { serviceCapabilities } from '@libp2p/interface'
import { NAT_MAPPINGS, type NatFiltering, type NatMapping, type UdpState } from '../../core/types.ts'
import { createLogger, type Logger } from '../../log/logger.ts'
import { codeOf, messageOf, ProtocolViolationError } from '../errors.ts'
import { askSingleAnswer, writeSingleAnswer } from '../single-answer.ts'
import { ANSWER_TIMEOUT_MS, MAX_BUFFER_BYTES, MAX_FRAME_BYTES, MAX_INBOUND_STREAMS, MAX_OUTBOUND_STREAMS, NAT_INFO_PROTOCOL, NAT_INFO_TIMEOUT_MS } from './constants.ts'
import type { ProtocolRegistrar } from '../components.ts'
import type { AbortOptions, Connection, Startable, Stream } from '@libp2p/interface'

/** What a peer says about its own network, as its STUN probe measured it. */
export interface NatInfoMessage {
  mapping: NatMapping
  filtering: NatFiltering
  udp: UdpState
  /** whether it accepts private-to-private WebRTC (listens on `/webrtc`) */
  webrtc: boolean
}

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
  return dagCbor.encode({ v: 1, mapping: info.mapping, filtering: info.filtering, udp: info.udp, webrtc: info.webrtc })
}

/**
 * Decodes an answer; a word this version does not know reads as `unknown`
 * (a newer peer may measure more), anything else malformed is a violation.
 */
export function decodeNatInfo (bytes: Uint8Array): NatInfoMessage {
  let value: unknown
  try {
    value = dagCbor.decode(bytes)
  } catch (err) {
    throw new ProtocolViolationError(`NAT info is not dag-cbor: ${(err as Error).message}`, { cause: err })
  }
  const m = value as Record<string, unknown> | null
  if (m == null || typeof m !== 'object' || m.v !== 1) throw new ProtocolViolationError(`NAT info has unknown version ${String(m?.v)}`)
  for (const key of ['mapping', 'filtering', 'udp'] as const) {
    if (typeof m[key] !== 'string') throw new ProtocolViolationError(`NAT info: "${key}" must be a string`)
  }
  if (typeof m.webrtc !== 'boolean') throw new ProtocolViolationError('NAT info: "webrtc" must be a boolean')
  const mapping = (NAT_MAPPINGS as readonly string[]).includes(m.mapping as string) ? m.mapping as NatMapping : 'unknown'
  const filtering = FILTERINGS.includes(m.filtering as string) ? m.filtering as NatFiltering : 'unknown'
  const udp = UDP_STATES.includes(m.udp as string) ? m.udp as UdpState : 'unknown'
  return { mapping, filtering, udp, webrtc: m.webrtc }
}

/**
 * `/worldcompute/nat-info/1.0.0`: the asking peer opens a stream, usually
 * over the relayed connection the two already share (the handler runs on
 * limited connections); the other writes one dag-cbor frame
 * `{ v: 1, mapping, filtering, udp, webrtc }` and closes. A small protocol
 * rather than a token in the identify agent version: the NAT type is
 * measured after start and may change, while identify's agent version is
 * fixed when the node is built.
 */
export class NatInfoService implements Startable {
  readonly protocol = NAT_INFO_PROTOCOL
  readonly [Symbol.toStringTag] = '@worldcompute/nat-info'
  readonly [serviceCapabilities]: string[] = ['@worldcompute/nat-info']
  private readonly components: NatInfoComponents
  private getInfo?: () => NatInfoMessage
  private readonly log: Logger
  private started = false

  constructor (components: NatInfoComponents, init: NatInfoInit = {}) {
    this.components = components
    this.getInfo = init.getInfo
    this.log = init.logger ?? createLogger('protocols.nat-info')
    this.handle = this.handle.bind(this)
  }

  isStarted (): boolean {
    return this.started
  }

  async start (): Promise<void> {
    if (this.started) return
    if (this.getInfo != null) {
      await this.components.registrar.handle(this.protocol, this.handle, {
        maxInboundStreams: MAX_INBOUND_STREAMS,
        maxOutboundStreams: MAX_OUTBOUND_STREAMS,
        // the whole point is to ask before there is a direct connection
        runOnLimitedConnection: true
      })
    }
    this.started = true
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    if (this.getInfo != null) await this.components.registrar.unhandle(this.protocol)
  }

  private async handle (stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString()
    try {
      await writeSingleAnswer(stream, encodeNatInfo(this.getInfo?.() ?? { mapping: 'unknown', filtering: 'unknown', udp: 'unknown', webrtc: false }), { maxFrameBytes: MAX_FRAME_BYTES, maxBufferBytes: MAX_BUFFER_BYTES, timeoutMs: ANSWER_TIMEOUT_MS })
    } catch (err) {
      this.log.warn(`NAT info to ${peer} not sent: ${messageOf(err)}`, { peer, protocol: this.protocol, code: codeOf(err) })
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    }
  }
}

/** Asks the peer at the other end of `connection` (relayed or direct) for its NAT type. */
export async function fetchNatInfo (connection: Connection, options: AbortOptions & { timeoutMs?: number } = {}): Promise<NatInfoMessage> {
  return await askSingleAnswer(connection, decodeNatInfo, {
    protocol: NAT_INFO_PROTOCOL,
    what: 'NAT info',
    timeoutMs: options.timeoutMs ?? NAT_INFO_TIMEOUT_MS,
    maxFrameBytes: MAX_FRAME_BYTES,
    maxBufferBytes: MAX_BUFFER_BYTES,
    runOnLimitedConnection: true,
    ...(options.signal != null ? { signal: options.signal } : {})
  })
}
