import { decodeCancelRequest, decodeCancelResponse, encodeCancelRequest, encodeCancelResponse } from '../../codec/cancel.ts'
import { createLogger, type Logger } from '../../log/logger.ts'
import { codeOf, messageOf } from '../errors.ts'
import { handlerOptions, request, serveAnswer } from '../exchange.ts'
import { ProtocolService } from '../service.ts'
import { CANCEL_ANSWER_TIMEOUT_MS, CANCEL_LIMITS, CANCEL_PROTOCOL, CANCEL_TIMEOUT_MS } from './constants.ts'
import type { CancelRequest, CancelResponse } from '../../codec/cancel.ts'
import { peerOf, type ProtocolRegistrar, type ProtocolTarget, type StreamOpener } from '../components.ts'
import type { AbortOptions, Connection, Stream } from '@libp2p/interface'

/**
 * Donor side: stops the tasks `peer` (the authenticated broker) names. Only
 * that broker's tasks can match, so a cancel from anyone else finds nothing.
 */
export type CancelTasks = (req: CancelRequest, context: { peer: string }) => CancelResponse

export interface CancelInit {
  /** Donor side; without it this node does not handle the protocol (a broker only sends cancels). */
  cancelTasks?: CancelTasks
  /**
   * Broker side: the whole round trip (open, ask, answer).
   *
   * @default 5000
   */
  timeoutMs?: number
  /**
   * @default createLogger('protocols.cancel')
   */
  logger?: Logger
}

export interface CancelComponents {
  registrar: ProtocolRegistrar
  connectionManager: StreamOpener
}

/**
 * `/worldcompute/cancel/1.0.0`: a broker names tasks it dispatched to a donor;
 * the donor stops the runs, drops what has not started, frees the slots and
 * answers what it did with each ID. Idempotent: a second cancel of the same
 * task finds it `unknown`.
 */
export class CancelService extends ProtocolService {
  private readonly components: CancelComponents
  private readonly cancelTasks: CancelTasks | undefined
  private readonly timeoutMs: number
  private readonly log: Logger

  constructor (components: CancelComponents, init: CancelInit = {}) {
    // a donor behind NAT got its tasks through a relay: the cancel comes the same way
    super(components.registrar, { protocol: CANCEL_PROTOCOL, name: 'cancel', inbound: init.cancelTasks != null ? handlerOptions(CANCEL_LIMITS, true) : undefined })
    this.components = components
    this.cancelTasks = init.cancelTasks
    this.timeoutMs = init.timeoutMs ?? CANCEL_TIMEOUT_MS
    this.log = init.logger ?? createLogger('protocols.cancel')
  }

  /**
   * Asks a donor to stop tasks this node dispatched to it; resolves with what
   * it did with each task asked about, each once (the first list naming it
   * wins). IDs it names that were not asked about are left out and logged:
   * the broker counts what the answer says, and a donor's answer must not
   * count for tasks it was never asked to stop.
   */
  async cancel (target: ProtocolTarget, req: CancelRequest, options: AbortOptions = {}): Promise<CancelResponse> {
    const bytes = encodeCancelRequest(req)
    const exchange = { protocol: this.protocol, limits: CANCEL_LIMITS, timeoutMs: this.timeoutMs, connectionManager: this.components.connectionManager, signal: options.signal }
    const res = await request(target, exchange, async (stream, signal) => {
      await stream.writeFrame(bytes, { signal })
      await stream.stream.close({ signal })
      return await stream.readMessage(decodeCancelResponse, 'cancel response', { signal })
    })
    const { answer, extra } = asAsked(req, res)
    if (extra > 0) {
      const peer = peerOf(target).toString()
      this.log.warn(`cancel answer from ${peer} names ${extra} task ID(s) it was not asked about, or one twice: left out`, { peer, tasks: req.taskIds.length })
    }
    return answer
  }

  protected async answer (stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString()
    const serve = { protocol: this.protocol, limits: CANCEL_LIMITS, timeoutMs: CANCEL_ANSWER_TIMEOUT_MS, signal: this.stopping, log: this.log, failed: (p: string) => `cancel from ${p} dropped` }
    await serveAnswer(stream, connection, serve, async (framed, signal) => {
      const req = await framed.readMessage(decodeCancelRequest, 'cancel request', { signal })
      await framed.writeFrame(encodeCancelResponse(this.decide(req, peer)), { signal })
    })
  }

  private decide (req: CancelRequest, peer: string): CancelResponse {
    const cancelTasks = this.cancelTasks
    if (cancelTasks == null) return { stopped: [], dropped: [], unknown: req.taskIds }
    try {
      const res = cancelTasks(req, { peer })
      this.log.info(`cancel from ${peer}: ${res.stopped.length} stopped, ${res.dropped.length} dropped, ${res.unknown.length} unknown`, { peer, tasks: req.taskIds.length })
      return res
    } catch (err) {
      // the runner's own bug: the broker learns nothing was stopped rather than waiting for a timeout
      this.log.warn(`cancelling ${req.taskIds.length} task(s) for ${peer} failed: ${messageOf(err)}`, { peer, code: codeOf(err) })
      return { stopped: [], dropped: [], unknown: req.taskIds }
    }
  }
}

/** The answer restricted to the tasks asked about, each once, and how many of the IDs it named were not (or again). */
function asAsked (req: CancelRequest, res: CancelResponse): { answer: CancelResponse, extra: number } {
  const open = new Set(req.taskIds)
  const answer: CancelResponse = { stopped: [], dropped: [], unknown: [] }
  let extra = 0
  for (const list of ['stopped', 'dropped', 'unknown'] as const) {
    for (const id of res[list]) {
      if (open.delete(id)) answer[list].push(id)
      else extra++
    }
  }
  return { answer, extra }
}
