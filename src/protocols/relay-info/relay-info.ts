import * as dagCbor from '@ipld/dag-cbor'
import { serviceCapabilities } from '@libp2p/interface'
import { createLogger, type Logger } from '../../log/logger.ts'
import { codeOf, messageOf, ProtocolViolationError } from '../errors.ts'
import { askSingleAnswer, writeSingleAnswer } from '../single-answer.ts'
import { ANSWER_TIMEOUT_MS, MAX_BUFFER_BYTES, MAX_CERTIFICATES, MAX_FRAME_BYTES, MAX_INBOUND_STREAMS, MAX_OUTBOUND_STREAMS, RELAY_INFO_PROTOCOL, RELAY_INFO_TIMEOUT_MS } from './constants.ts'
import type { ProtocolRegistrar } from '../components.ts'
import type { AbortOptions, Connection, Startable, Stream } from '@libp2p/interface'

/** One TLS certificate a relay serves (its WSS listener's leaf). */
export interface RelayTlsCertificate {
  /** SHA-256 of the DER certificate, `AB:CD:…` */
  fingerprint256: string
  subject: string
  issuer: string
}

/** What a relay says about itself over the authenticated connection. */
export interface RelayInfoMessage {
  /** the certificates of its TLS (WSS) listeners; empty when it serves no TLS itself */
  tls: RelayTlsCertificate[]
}

export interface RelayInfoInit {
  /** relay side: what to answer; without it this node does not handle the protocol */
  getInfo?: () => RelayInfoMessage
  logger?: Logger
}

export interface RelayInfoComponents {
  registrar: ProtocolRegistrar
}

export function encodeRelayInfo (info: RelayInfoMessage): Uint8Array {
  return dagCbor.encode({
    v: 1,
    tls: info.tls.slice(0, MAX_CERTIFICATES).map(c => ({ fingerprint256: c.fingerprint256, subject: c.subject, issuer: c.issuer }))
  })
}

export function decodeRelayInfo (bytes: Uint8Array): RelayInfoMessage {
  let value: unknown
  try {
    value = dagCbor.decode(bytes)
  } catch (err) {
    throw new ProtocolViolationError(`relay info is not dag-cbor: ${(err as Error).message}`, { cause: err })
  }
  const m = value as Record<string, unknown> | null
  if (m == null || typeof m !== 'object' || m.v !== 1) throw new ProtocolViolationError(`relay info has unknown version ${String(m?.v)}`)
  if (!Array.isArray(m.tls) || m.tls.length > MAX_CERTIFICATES) throw new ProtocolViolationError(`relay info must list 0–${MAX_CERTIFICATES} TLS certificates`)
  const tls = m.tls.map((c: unknown, i: number): RelayTlsCertificate => {
    const e = c as Record<string, unknown> | null
    if (e == null || typeof e.fingerprint256 !== 'string' || !/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/.test(e.fingerprint256)) {
      throw new ProtocolViolationError(`relay info: certificate ${i} has no SHA-256 fingerprint in AB:CD:… form`)
    }
    return { fingerprint256: e.fingerprint256, subject: String(e.subject ?? ''), issuer: String(e.issuer ?? '') }
  })
  return { tls }
}

/**
 * `/worldcompute/relay-info/1.0.0`: the donor opens a stream on its
 * (Noise-authenticated) connection to a relay; the relay writes one dag-cbor
 * frame `{ v: 1, tls: [{ fingerprint256, subject, issuer }] }` and closes.
 * Because the answer rides the connection whose PeerId Noise proved, a
 * middlebox that re-signs the relay's TLS cannot change it.
 */
export class RelayInfoService implements Startable {
  readonly protocol = RELAY_INFO_PROTOCOL
  readonly [Symbol.toStringTag] = '@worldcompute/relay-info'
  readonly [serviceCapabilities]: string[] = ['@worldcompute/relay-info']
  private readonly components: RelayInfoComponents
  private readonly getInfo?: () => RelayInfoMessage
  private readonly log: Logger
  private started = false

  constructor (components: RelayInfoComponents, init: RelayInfoInit = {}) {
    this.components = components
    this.getInfo = init.getInfo
    this.log = init.logger ?? createLogger('protocols.relay-info')
    this.handle = this.handle.bind(this)
  }

  isStarted (): boolean {
    return this.started
  }

  async start (): Promise<void> {
    if (this.started) return
    if (this.getInfo != null) {
      await this.components.registrar.handle(this.protocol, this.handle, { maxInboundStreams: MAX_INBOUND_STREAMS, maxOutboundStreams: MAX_OUTBOUND_STREAMS })
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
      await writeSingleAnswer(stream, encodeRelayInfo(this.getInfo?.() ?? { tls: [] }), { maxFrameBytes: MAX_FRAME_BYTES, maxBufferBytes: MAX_BUFFER_BYTES, timeoutMs: ANSWER_TIMEOUT_MS })
    } catch (err) {
      this.log.warn(`relay info to ${peer} not sent: ${messageOf(err)}`, { peer, protocol: this.protocol, code: codeOf(err) })
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    }
  }
}

/**
 * Asks the relay at the other end of `connection` (a direct connection: the
 * point is what Noise authenticated) for its info.
 */
export async function fetchRelayInfo (connection: Connection, options: AbortOptions & { timeoutMs?: number } = {}): Promise<RelayInfoMessage> {
  return await askSingleAnswer(connection, decodeRelayInfo, {
    protocol: RELAY_INFO_PROTOCOL,
    what: 'relay info',
    timeoutMs: options.timeoutMs ?? RELAY_INFO_TIMEOUT_MS,
    maxFrameBytes: MAX_FRAME_BYTES,
    maxBufferBytes: MAX_BUFFER_BYTES,
    ...(options.signal != null ? { signal: options.signal } : {})
  })
}
