import * as dagCbor from '@ipld/dag-cbor'
import { createLogger, type Logger } from '../../log/logger.ts'
import { ProtocolViolationError } from '../errors.ts'
import { askSingleAnswer, decodeVersioned } from '../exchange.ts'
import { SingleAnswerService } from '../service.ts'
import { ANSWER_TIMEOUT_MS, MAX_CERTIFICATES, RELAY_INFO_LIMITS, RELAY_INFO_PROTOCOL, RELAY_INFO_TIMEOUT_MS } from './constants.ts'
import type { ProtocolRegistrar } from '../components.ts'
import type { AbortOptions, Connection } from '@libp2p/interface'

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
  const m = decodeVersioned(bytes, 'relay info', 1)
  if (!Array.isArray(m.tls) || m.tls.length > MAX_CERTIFICATES) throw new ProtocolViolationError(`relay info must list 0–${MAX_CERTIFICATES} TLS certificates`)
  const tls = m.tls.map((c: unknown, i: number): RelayTlsCertificate => {
    const e = c as Record<string, unknown> | null
    if (e == null || typeof e.fingerprint256 !== 'string' || !/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/.test(e.fingerprint256)) {
      throw new ProtocolViolationError(`relay info: certificate ${i} has no SHA-256 fingerprint in AB:CD:… form`)
    }
    // names are informative: anything but a string reads as none (String() of a peer's map can throw)
    return { fingerprint256: e.fingerprint256, subject: typeof e.subject === 'string' ? e.subject : '', issuer: typeof e.issuer === 'string' ? e.issuer : '' }
  })
  return { tls }
}

/** How a relay answers; on direct connections only: the answer is worth what Noise authenticated. */
const RELAY_INFO_ANSWER = { protocol: RELAY_INFO_PROTOCOL, name: 'relay-info', limits: RELAY_INFO_LIMITS, runOnLimitedConnection: false, answerTimeoutMs: ANSWER_TIMEOUT_MS, encode: encodeRelayInfo, what: 'relay info' }

/**
 * `/worldcompute/relay-info/1.0.0`: the donor opens a stream on its
 * (Noise-authenticated) connection to a relay; the relay writes one dag-cbor
 * frame `{ v: 1, tls: [{ fingerprint256, subject, issuer }] }` and closes.
 * Because the answer rides the connection whose PeerId Noise proved, a
 * middlebox that re-signs the relay's TLS cannot change it.
 */
export class RelayInfoService extends SingleAnswerService<RelayInfoMessage> {
  constructor (components: RelayInfoComponents, init: RelayInfoInit = {}) {
    super(components.registrar, { ...RELAY_INFO_ANSWER, getInfo: init.getInfo, log: init.logger ?? createLogger('protocols.relay-info') })
  }
}

/**
 * Asks the relay at the other end of `connection` (a direct connection: the
 * point is what Noise authenticated) for its info.
 */
export async function fetchRelayInfo (connection: Connection, options: AbortOptions & { timeoutMs?: number } = {}): Promise<RelayInfoMessage> {
  const timeoutMs = options.timeoutMs ?? RELAY_INFO_TIMEOUT_MS
  return await askSingleAnswer(connection, decodeRelayInfo, 'relay info', { protocol: RELAY_INFO_PROTOCOL, limits: RELAY_INFO_LIMITS, timeoutMs, runOnLimitedConnection: false, signal: options.signal })
}
