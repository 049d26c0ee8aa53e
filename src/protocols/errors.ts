/**
 * Errors of the protocols of this folder. Each has a stable `code` (they reach the
 * broker's job records and the API) and says which peer, which protocol and
 * which phase.
 */
import { WorldComputeError } from '../core/errors.ts'
import type { RefusalCode } from '../codec/messages.ts'

/** The peer broke the framing: a frame over the limit, a stream that ended early, a missing terminator. */
export class ProtocolViolationError extends WorldComputeError {
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, 'PROTOCOL_VIOLATION', options)
  }
}

/**
 * The stream ended before a frame or payload was complete: the peer closed
 * early, or the connection under the stream went away (for a broker, the
 * path broke rather than the answer being wrong). The code stays
 * PROTOCOL_VIOLATION; the class tells it apart.
 */
export class StreamEndedEarlyError extends ProtocolViolationError {}

/** A payload larger than announced, or than our limit; the stream is cut off. */
export class PayloadTooLargeError extends WorldComputeError {
  readonly limit: number
  constructor (message: string, limit: number, options?: { cause?: unknown }) {
    super(message, 'PAYLOAD_TOO_LARGE', options)
    this.limit = limit
  }
}

export type DispatchPhase = 'open-stream' | 'send' | 'execute' | 'receive'

/**
 * A dispatch made no progress in one phase within its time budget. `send` and
 * `receive` are stall timeouts (reset on every frame), `execute` is the job
 * deadline plus a margin, `open-stream` covers protocol negotiation.
 */
export class DispatchTimeoutError extends WorldComputeError {
  readonly phase: DispatchPhase
  readonly peer: string
  constructor (phase: DispatchPhase, ms: number, peer: string, options?: { cause?: unknown }) {
    super(`dispatch to ${peer}: no progress at ${phase} within ${(ms / 1000).toFixed(1)} s${hint(phase)}`, 'DISPATCH_TIMEOUT', options)
    this.phase = phase
    this.peer = peer
  }
}

function hint (phase: DispatchPhase): string {
  switch (phase) {
    case 'open-stream': return ' (the donor did not accept the dispatch protocol: is it running a donor?)'
    case 'send': return ' (the donor stopped reading: overloaded, or the path is stalled)'
    case 'execute': return ' (the donor did not answer within the job deadline plus margin)'
    case 'receive': return ' (the result stopped arriving part-way)'
  }
}

/** A dispatch failed for a reason other than a timeout: the stream was reset, the donor closed early. */
export class DispatchFailedError extends WorldComputeError {
  readonly phase: DispatchPhase
  readonly peer: string
  constructor (phase: DispatchPhase, peer: string, cause: unknown) {
    super(`dispatch to ${peer} failed during ${phase}: ${messageOf(cause)}`, 'DISPATCH_FAILED', { cause })
    this.phase = phase
    this.peer = peer
  }
}

/**
 * The dispatch said `sendsModule: false` but the donor no longer has the
 * module cached (evicted since its offer said `hasModule`). Retry with the bytes.
 */
export class ModuleNotCachedError extends WorldComputeError {
  readonly moduleCid: string
  constructor (moduleCid: string, peer: string) {
    super(`donor ${peer} does not have module ${moduleCid} cached: dispatch again with the module bytes`, 'MODULE_NOT_CACHED')
    this.moduleCid = moduleCid
  }
}

/**
 * The donor answered that its executor broke under the task (its result
 * carries the code EXECUTOR_CRASHED): not an outcome of the job, so not one
 * to count or compare; run the task elsewhere. The message is the donor's
 * own account; the answer's receipt was verified, so the donor signed it.
 */
export class ExecutorCrashedError extends WorldComputeError {
  readonly peer: string
  readonly taskId: string
  constructor (peer: string, taskId: string, detail: string | undefined) {
    super(detail ?? 'executor crashed', 'EXECUTOR_CRASHED')
    this.peer = peer
    this.taskId = taskId
  }
}

/**
 * The donor refused the dispatch without running anything (its answer
 * carries a refusal code, e.g. `no-offer`: it holds no accepted offer from
 * this broker for the task). Not an outcome of the job: offer it again, here
 * or elsewhere. The answer's receipt was verified.
 */
export class DispatchRefusedError extends WorldComputeError {
  readonly peer: string
  readonly taskId: string
  readonly refusal: RefusalCode
  /** the donor's reason, in its words */
  readonly detail: string | undefined
  constructor (peer: string, taskId: string, refusal: RefusalCode, detail: string | undefined) {
    super(`donor ${peer} refused task ${taskId} (${refusal})${detail != null ? `: ${detail}` : ''}`, 'DISPATCH_REFUSED')
    this.peer = peer
    this.taskId = taskId
    this.refusal = refusal
    this.detail = detail
  }
}

/**
 * Donor side: a task was given up before it had a result, because the broker
 * that sent it went away and did not come back within the grace period (or
 * the task was never admitted). Not a result: nothing is signed for it, and
 * a later dispatch of the same task needs a new offer.
 */
export class TaskAbandonedError extends WorldComputeError {
  readonly taskId: string
  constructor (taskId: string, why: string, options?: { cause?: unknown }) {
    super(`task ${taskId} abandoned: ${why}`, 'TASK_ABANDONED', options)
    this.taskId = taskId
  }
}

/** An inbound stream stopped moving: the peer sent nothing, or read nothing, for too long. */
export class StreamStalledError extends WorldComputeError {
  readonly protocol: string
  readonly peer: string
  constructor (protocol: string, peer: string, doing: 'receiving' | 'sending', ms: number, options?: { cause?: unknown }) {
    super(`${protocol} stream with ${peer} stalled while ${doing}: no progress for ${(ms / 1000).toFixed(1)} s`, 'STREAM_STALLED', options)
    this.protocol = protocol
    this.peer = peer
  }
}

/** A request/response protocol (offer, capacity) got no answer in time. */
export class ProtocolTimeoutError extends WorldComputeError {
  readonly protocol: string
  readonly peer: string
  constructor (protocol: string, peer: string, ms: number, options?: { cause?: unknown }) {
    super(`${protocol} to ${peer}: no answer within ${(ms / 1000).toFixed(1)} s`, 'PROTOCOL_TIMEOUT', options)
    this.protocol = protocol
    this.peer = peer
  }
}

/** A request/response protocol failed other than by timeout (reset, refused protocol, bad answer). */
export class ProtocolRequestError extends WorldComputeError {
  readonly protocol: string
  readonly peer: string
  constructor (protocol: string, peer: string, cause: unknown) {
    super(`${protocol} to ${peer} failed: ${messageOf(cause)}`, 'PROTOCOL_REQUEST_FAILED', { cause })
    this.protocol = protocol
    this.peer = peer
  }
}

/** The message of anything thrown, for log lines: libp2p sometimes rejects with non-Error values. */
export function messageOf (err: unknown): string {
  // ours already read as sentences and carry a `code`; libp2p's need their name ("StreamResetError")
  if (err instanceof WorldComputeError) return err.message
  if (err instanceof Error) {
    const text = err.message !== '' ? err.message : err.name
    return err.name !== 'Error' && !text.includes(err.name) ? `${err.name}: ${text}` : text
  }
  // a DOM Event thrown as is (a stream's or signal's 'abort'/'close'): String() says "[object Event]"
  const ev = err as { type?: unknown, detail?: unknown } | null
  if (ev != null && typeof ev === 'object' && typeof ev.type === 'string' && ev.type !== '') {
    const detail = typeof ev.detail === 'string' && ev.detail !== '' ? `: ${ev.detail}` : ''
    return `a "${ev.type}" event with no error attached${detail}${ev.type === 'abort' ? ' (aborted: the connection or stream under it went away?)' : ''}`
  }
  return String(err)
}

/** The stable code of an error, ours or libp2p's, for structured log fields. */
export function codeOf (err: unknown): string {
  const code = (err as { code?: unknown })?.code
  if (typeof code === 'string') return code
  return err instanceof Error ? err.name : 'UNKNOWN'
}
