import { errorWithCode } from '../core/errors.ts'
import type { DeclineCode } from '../codec/messages.ts'
import type { TaskRow } from './job-store.ts'

/**
 * The executor declined a task whose offer rode its dispatch (no offer
 * stream came first): the answer an offer would have had. Nothing ran, so
 * it is no attempt: the broker handles it as a declined offer.
 */
export class OfferDeclinedError extends errorWithCode('OFFER_DECLINED') {
  readonly peer: string
  /** the executor's decline code (`code` is this error's own, OFFER_DECLINED) */
  readonly decline: DeclineCode | undefined
  readonly freeSlots: number | undefined
  /** the executor's reason, in its words */
  readonly reason: string
  constructor (peer: string, decline: { code?: DeclineCode, reason?: string, freeSlots?: number }, options?: { cause?: unknown }) {
    super(`executor ${peer} declined: ${decline.reason ?? 'no reason given'}`, options)
    this.peer = peer
    this.reason = decline.reason ?? 'no reason given'
    this.decline = decline.code
    this.freeSlots = decline.freeSlots
  }
}

/**
 * How a job's attempts are counted, so that no single peer can spend them.
 *
 * A failed task is either a failure that may be honest (the path broke, the
 * sandbox crashed: charged to its replica's attempt budget) or an answer that
 * proves misbehaviour (a receipt that does not verify, a result that breaks
 * the protocol: Noise protects the bytes on the way, so only the executor can
 * have sent them). Misbehaviour is never charged: the peer is excluded from
 * the job instead, and the job goes on with the executors left. Otherwise one
 * identity claiming every slot and answering garbage could end any job in
 * seconds while an honest donor is busy.
 */

/** Failure codes that prove the executor misbehaved (the codes of codec/errors.ts and protocols/errors.ts). */
export const MISBEHAVIOUR_CODES: ReadonlySet<string> = new Set(['RECEIPT_INVALID', 'MALFORMED_MESSAGE', 'PAYLOAD_TOO_LARGE'])

/** The code a failed task was recorded with (`CODE: message`, as the broker writes it). */
export function failureCode (task: Pick<TaskRow, 'failure'>): string | undefined {
  const m = /^([A-Z][A-Z0-9_]*): /.exec(task.failure ?? '')
  return m?.[1]
}

/** True when the task failed because its executor misbehaved. */
export function misbehaved (task: Pick<TaskRow, 'state' | 'failure'>): boolean {
  return task.state === 'failed' && MISBEHAVIOUR_CODES.has(failureCode(task) ?? '')
}

/**
 * A dispatch the executor refused before running anything (`DISPATCH_REFUSED`:
 * it holds no accepted offer of ours for the task — the hold lapsed on a slow
 * path, or the executor restarted). Honest and cheap, so the first one of a
 * replica is not charged; every further one is, so a peer that accepts offers
 * and then refuses every dispatch cannot keep a job going round for ever.
 */
export function refused (task: Pick<TaskRow, 'state' | 'failure'>): boolean {
  return task.state === 'failed' && failureCode(task) === 'DISPATCH_REFUSED'
}

/** Failed attempts charged to a replica's budget: every failure but misbehaviour and a first refusal. */
export function charged (tasks: ReadonlyArray<Pick<TaskRow, 'state' | 'failure'>>): number {
  const failed = tasks.filter(t => t.state === 'failed' && !misbehaved(t))
  const refusals = failed.filter(refused).length
  return failed.length - Math.min(refusals, 1)
}

/**
 * Declines that pass by themselves (a task ends there, its owner resumes it):
 * the executor is asked again for the same job.
 */
export const BUSY_DECLINES: ReadonlySet<DeclineCode | undefined> = new Set<DeclineCode>(['busy', 'memory-budget', 'paused'])
