import { serviceCapabilities } from '@libp2p/interface'
import { decodeOfferRequest, decodeOfferResponse, encodeOfferRequest, encodeOfferResponse } from '../../codec/messages.ts'
import { WorldComputeError } from '../../core/errors.ts'
import { createLogger, type Logger } from '../../log/logger.ts'
import { openProtocolStream, peerOf } from '../components.ts'
import { codeOf, messageOf, ProtocolRequestError, ProtocolTimeoutError } from '../errors.ts'
import { FramedStream } from '../framing.ts'
import { PhaseTimer } from '../timer.ts'
import { ANSWER_TIMEOUT_MS, MAX_BUFFER_BYTES, MAX_FRAME_BYTES, MAX_INBOUND_STREAMS, MAX_OUTBOUND_STREAMS, OFFER_PROTOCOL, OFFER_TIMEOUT_MS } from './constants.ts'
import type { OfferRequest, OfferResponse } from '../../codec/messages.ts'
import type { ProtocolRegistrar, ProtocolTarget, StreamOpener } from '../components.ts'
import type { AbortOptions, Connection, Startable, Stream } from '@libp2p/interface'

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
 * task (sizes, limits, module CID); the donor answers accept or refuse, with
 * whether it already has the module and how many slots are free.
 */
export class OfferService implements Startable {
  readonly protocol = OFFER_PROTOCOL
  readonly [Symbol.toStringTag] = '@worldcompute/offer'
  readonly [serviceCapabilities]: string[] = ['@worldcompute/offer']

  private readonly components: OfferComponents
  private readonly decideOffer: DecideOffer | undefined
  private readonly timeoutMs: number
  private readonly log: Logger
  private started = false
  private shutdown = new AbortController()

  constructor (components: OfferComponents, init: OfferInit = {}) {
    this.components = components
    this.decideOffer = init.decideOffer
    this.timeoutMs = init.timeoutMs ?? OFFER_TIMEOUT_MS
    this.log = init.logger ?? createLogger('protocols.offer')
    this.handleOffer = this.handleOffer.bind(this)
  }

  isStarted (): boolean {
    return this.started
  }

  async start (): Promise<void> {
    if (this.started) return
    this.shutdown = new AbortController()
    if (this.decideOffer != null) {
      await this.components.registrar.handle(this.protocol, this.handleOffer, {
        // donors behind NAT are offered work through relays: limited connections
        runOnLimitedConnection: true,
        maxInboundStreams: MAX_INBOUND_STREAMS,
        maxOutboundStreams: MAX_OUTBOUND_STREAMS
      })
    }
    this.started = true
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.shutdown.abort(new Error('offer service stopped'))
    if (this.decideOffer != null) {
      await this.components.registrar.unhandle(this.protocol)
    }
  }

  /** Offers a task to a donor; resolves with its answer (a refusal is an answer, not an error). */
  async offer (target: ProtocolTarget, req: OfferRequest, options: AbortOptions = {}): Promise<OfferResponse> {
    const peer = peerOf(target).toString()
    // encode first: a bad request is our bug and should fail before any I/O
    const request = encodeOfferRequest(req)
    const timer = new PhaseTimer<'offer'>((_phase, ms) => new ProtocolTimeoutError(this.protocol, peer, ms), options.signal)
    timer.enter('offer', this.timeoutMs)
    let stream: Stream | undefined
    try {
      stream = await openProtocolStream(target, this.protocol, this.components.connectionManager, { signal: timer.signal })
      const framed = new FramedStream(stream, { maxFrameBytes: MAX_FRAME_BYTES, maxBufferBytes: MAX_BUFFER_BYTES })
      await framed.writeFrame(request, { signal: timer.signal })
      await stream.close({ signal: timer.signal })
      return await framed.readMessage(decodeOfferResponse, 'offer response', { signal: timer.signal })
    } catch (err) {
      stream?.abort(err instanceof Error ? err : new Error(String(err)))
      if (timer.expired != null) throw timer.expired
      if (options.signal?.aborted === true || err instanceof WorldComputeError) throw err
      throw new ProtocolRequestError(this.protocol, peer, err)
    } finally {
      timer.dispose()
    }
  }

  private async handleOffer (stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString()
    const signal = AbortSignal.any([this.shutdown.signal, AbortSignal.timeout(ANSWER_TIMEOUT_MS)])
    try {
      const framed = new FramedStream(stream, { maxFrameBytes: MAX_FRAME_BYTES, maxBufferBytes: MAX_BUFFER_BYTES })
      const req = await framed.readMessage(decodeOfferRequest, 'offer request', { signal })
      const answer = await this.decide(req, { peer, connection })
      await framed.writeFrame(encodeOfferResponse(answer), { signal })
      await stream.close({ signal })
    } catch (err) {
      this.log.warn(`offer from ${peer} dropped: ${messageOf(err)}`, { peer, protocol: this.protocol, code: codeOf(err) })
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    }
  }

  private async decide (req: OfferRequest, context: OfferContext): Promise<OfferResponse> {
    const decide = this.decideOffer
    if (decide == null) {
      return { accept: false, reason: 'this node does not run jobs', hasModule: false, freeSlots: 0 }
    }
    try {
      const answer = await decide(req, context)
      this.log.debug(`offer of task ${req.taskId} from ${context.peer}: ${answer.accept ? 'accepted' : `refused (${answer.reason ?? 'no reason'})`}`, { peer: context.peer, task: req.taskId })
      return answer
    } catch (err) {
      // the donor's own decision code failed: refuse with a reason rather than leave the broker waiting
      this.log.warn(`deciding offer of task ${req.taskId} from ${context.peer} failed: ${messageOf(err)}`, { peer: context.peer, task: req.taskId, code: codeOf(err) })
      return { accept: false, reason: 'the donor could not decide (internal error)', hasModule: false, freeSlots: 0 }
    }
  }
}
