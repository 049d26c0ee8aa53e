import { decodeOfferRequest, decodeOfferResponse, encodeOfferRequest, encodeOfferResponse, MAX_REASON_LENGTH } from '../../codec/messages.ts'
import { createLogger, type Logger } from '../../log/logger.ts'
import { codeOf, messageOf } from '../errors.ts'
import { handlerOptions, request, serveAnswer } from '../exchange.ts'
import { PEER_TEXT_LENGTH, sanitiseForPeer } from '../sanitise.ts'
import { ProtocolService } from '../service.ts'
import { ANSWER_TIMEOUT_MS, OFFER_LIMITS, OFFER_PROTOCOL, OFFER_TIMEOUT_MS } from './constants.ts'
import type { OfferRequest, OfferResponse } from '../../codec/messages.ts'
import type { ProtocolRegistrar, ProtocolTarget, StreamOpener } from '../components.ts'
import type { AbortOptions, Connection, Stream } from '@libp2p/interface'

export interface OfferContext {
  /** the broker's PeerId */
  peer: string
  connection: Connection
}

export type DecideOffer = (req: OfferRequest, context: OfferContext) => OfferResponse | Promise<OfferResponse>

export interface OfferInit {
  /**
   * Donor side: answers each offer. Without it this node does not handle the
   * protocol (a broker only sends offers), so identify does not list it.
   */
  decideOffer?: DecideOffer
  /**
   * Broker side: the whole round trip (open, ask, answer).
   *
   * @default 10000
   */
  timeoutMs?: number
  /**
   * @default createLogger('protocols.offer')
   */
  logger?: Logger
}

export interface OfferComponents {
  registrar: ProtocolRegistrar
  connectionManager: StreamOpener
}

/**
 * `/worldcompute/offer/1.0.0`: a broker asks a donor whether it would run a
 * task (sizes, limits, module CID); the donor answers accept or refuse (with
 * a decline code and the reason in words), with whether it already has the
 * module and how many slots are free.
 */
export class OfferService extends ProtocolService {
  private readonly components: OfferComponents
  private readonly decideOffer: DecideOffer | undefined
  private readonly timeoutMs: number
  private readonly log: Logger

  constructor (components: OfferComponents, init: OfferInit = {}) {
    // donors behind NAT are offered work through relays: limited connections
    super(components.registrar, { protocol: OFFER_PROTOCOL, name: 'offer', inbound: init.decideOffer != null ? handlerOptions(OFFER_LIMITS, true) : undefined })
    this.components = components
    this.decideOffer = init.decideOffer
    this.timeoutMs = init.timeoutMs ?? OFFER_TIMEOUT_MS
    this.log = init.logger ?? createLogger('protocols.offer')
  }

  /** Offers a task to a donor; resolves with its answer (a refusal is an answer, not an error). */
  async offer (target: ProtocolTarget, req: OfferRequest, options: AbortOptions = {}): Promise<OfferResponse> {
    // encode first: a bad request is our bug and should fail before any I/O
    const bytes = encodeOfferRequest(req)
    const exchange = { protocol: this.protocol, limits: OFFER_LIMITS, timeoutMs: this.timeoutMs, connectionManager: this.components.connectionManager, signal: options.signal }
    return await request(target, exchange, async (stream, signal) => {
      await stream.writeFrame(bytes, { signal })
      await stream.stream.close({ signal })
      return await stream.readMessage(decodeOfferResponse, 'offer response', { signal })
    })
  }

  protected async answer (stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString()
    const serve = { protocol: this.protocol, limits: OFFER_LIMITS, timeoutMs: ANSWER_TIMEOUT_MS, signal: this.stopping, log: this.log, failed: (p: string) => `offer from ${p} dropped` }
    await serveAnswer(stream, connection, serve, async (framed, signal) => {
      const req = await framed.readMessage(decodeOfferRequest, 'offer request', { signal })
      const answer = await this.decide(req, { peer, connection })
      await framed.writeFrame(encodeOfferResponse(answer), { signal })
    })
  }

  private async decide (req: OfferRequest, context: OfferContext): Promise<OfferResponse> {
    const decide = this.decideOffer
    if (decide == null) {
      return { accept: false, reason: 'this node does not run jobs', code: 'not-executing', hasModule: false, freeSlots: 0 }
    }
    try {
      const decided = await decide(req, context)
      // the wire boundary: a reason says why, never this donor's paths or stack frames (a sandbox start error can carry both)
      const answer = decided.reason != null ? { ...decided, reason: sanitiseForPeer(decided.reason, Math.min(PEER_TEXT_LENGTH, MAX_REASON_LENGTH)) } : decided
      this.log.debug(`offer of task ${req.taskId} from ${context.peer}: ${answer.accept ? 'accepted' : `refused (${answer.reason ?? 'no reason'})`}`, { peer: context.peer, task: req.taskId, code: answer.code })
      return answer
    } catch (err) {
      // the donor's own decision code failed: refuse with a reason rather than leave the broker waiting
      this.log.warn(`deciding offer of task ${req.taskId} from ${context.peer} failed: ${messageOf(err)}`, { peer: context.peer, task: req.taskId, code: codeOf(err) })
      return { accept: false, reason: 'the donor could not decide (internal error)', code: 'internal-error', hasModule: false, freeSlots: 0 }
    }
  }
}
