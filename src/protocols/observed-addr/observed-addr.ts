import * as dagCbor from '@ipld/dag-cbor'
import { isIP } from 'node:net'
import { createLogger, type Logger } from '../../log/logger.ts'
import { ProtocolViolationError } from '../errors.ts'
import { decodeVersioned, handlerOptions, request, serveAnswer } from '../exchange.ts'
import { ProtocolService } from '../service.ts'
import { ANSWER_TIMEOUT_MS, MAX_PEER_ID_CHARS, OBSERVED_ADDR_LIMITS, OBSERVED_ADDR_PROTOCOL, OBSERVED_ADDR_TIMEOUT_MS } from './constants.ts'
import type { ProtocolRegistrar } from '../components.ts'
import type { AbortOptions, Connection, Stream } from '@libp2p/interface'

/**
 * The IP address of a direct (not relayed) multiaddr, `/ip4/…` or `/ip6/…`;
 * undefined for a circuit, a DNS name or anything else: only an address a
 * socket was connected to says where a peer is.
 */
export function directIpOf (addr: string): string | undefined {
  if (addr.includes('/p2p-circuit')) return undefined
  const parts = addr.split('/')
  return (parts[1] === 'ip4' || parts[1] === 'ip6') && isIP(parts[2] ?? '') !== 0 ? parts[2] : undefined
}

/** The question: where do you see this peer? */
export interface ObservedAddrRequest {
  peer: string
}

/** The answer: the IP address of the connection the peer reserved on; absent when it holds no reservation here. */
export interface ObservedAddrAnswer {
  ip?: string
}

export interface ObservedAddrInit {
  /**
   * Relay side: the IP address the relay sees a reservation holder at (the
   * remote address of the connection it reserved on), undefined when the
   * peer holds no reservation. Without it this node does not answer the protocol.
   */
  lookup?: (peerId: string) => string | undefined
  logger?: Logger
}

export interface ObservedAddrComponents {
  registrar: ProtocolRegistrar
}

export function encodeObservedAddrRequest (req: ObservedAddrRequest): Uint8Array {
  return dagCbor.encode({ v: 1, peer: req.peer })
}

export function decodeObservedAddrRequest (bytes: Uint8Array): ObservedAddrRequest {
  const m = decodeVersioned(bytes, 'observed-addr request', 1)
  if (typeof m.peer !== 'string' || m.peer === '' || m.peer.length > MAX_PEER_ID_CHARS) {
    throw new ProtocolViolationError(`observed-addr request: "peer" must be a PeerId of 1–${MAX_PEER_ID_CHARS} characters`)
  }
  return { peer: m.peer }
}

export function encodeObservedAddrAnswer (answer: ObservedAddrAnswer): Uint8Array {
  return dagCbor.encode(answer.ip != null ? { v: 1, ip: answer.ip } : { v: 1 })
}

export function decodeObservedAddrAnswer (bytes: Uint8Array): ObservedAddrAnswer {
  const m = decodeVersioned(bytes, 'observed-addr answer', 1)
  if (m.ip === undefined) return {}
  if (typeof m.ip !== 'string' || isIP(m.ip) === 0) throw new ProtocolViolationError('observed-addr answer: "ip" is not an IP address')
  return { ip: m.ip }
}

/**
 * `/worldcompute/observed-addr/1.0.0`: a broker opens a stream on its direct
 * connection to a relay and writes `{ v: 1, peer }`; the relay answers
 * `{ v: 1, ip? }`: the IP address of the connection that peer made its
 * reservation on, as the relay's socket saw it, never as the peer claims it.
 * Only for peers holding a reservation (they are published through the relay
 * anyway), so the relay tells nobody where its other visitors are. Answered
 * on direct connections only: the answer is worth what Noise authenticated.
 */
export class ObservedAddrService extends ProtocolService {
  private readonly lookup: ((peerId: string) => string | undefined) | undefined
  private readonly log: Logger

  constructor (components: ObservedAddrComponents, init: ObservedAddrInit = {}) {
    super(components.registrar, { protocol: OBSERVED_ADDR_PROTOCOL, name: 'observed-addr', inbound: init.lookup != null ? handlerOptions(OBSERVED_ADDR_LIMITS, false) : undefined })
    this.lookup = init.lookup
    this.log = init.logger ?? createLogger('protocols.observed-addr')
  }

  protected async answer (stream: Stream, connection: Connection): Promise<void> {
    const serve = { protocol: this.protocol, limits: OBSERVED_ADDR_LIMITS, timeoutMs: ANSWER_TIMEOUT_MS, signal: this.stopping, log: this.log, failed: (p: string) => `observed address for ${p} not sent` }
    await serveAnswer(stream, connection, serve, async (framed, signal) => {
      const req = await framed.readMessage(decodeObservedAddrRequest, 'observed-addr request', { signal })
      const ip = this.lookup?.(req.peer)
      await framed.writeFrame(encodeObservedAddrAnswer(ip != null && isIP(ip) !== 0 ? { ip } : {}), { signal })
    })
  }
}

/**
 * Asks the relay at the other end of `connection` (a direct one) where it
 * sees `peer`; undefined when the peer holds no reservation there.
 */
export async function fetchObservedAddr (connection: Connection, peer: string, options: AbortOptions & { timeoutMs?: number } = {}): Promise<string | undefined> {
  const bytes = encodeObservedAddrRequest({ peer })
  const exchange = { protocol: OBSERVED_ADDR_PROTOCOL, limits: OBSERVED_ADDR_LIMITS, timeoutMs: options.timeoutMs ?? OBSERVED_ADDR_TIMEOUT_MS, runOnLimitedConnection: false, signal: options.signal }
  const answer = await request(connection, exchange, async (stream, signal) => {
    await stream.writeFrame(bytes, { signal })
    await stream.stream.close({ signal })
    return await stream.readMessage(decodeObservedAddrAnswer, 'observed-addr answer', { signal })
  })
  return answer.ip
}
