/**
 * @packageDocumentation
 *
 * `/worldcompute/cancel/1.0.0`: broker → donor `{ taskIds }`, donor → broker
 * `{ stopped, dropped, unknown }` (each requested ID in one list). One
 * dag-cbor frame each way, on a stream of its own (direct or relayed).
 *
 * ```ts
 * services: {
 *   cancel: cancel({ cancelTasks: (req, { peer }) => runner.cancel(req, { peer }) })   // donor
 *   cancel: cancel()                                                                  // broker
 * }
 * const answer = await node.services.cancel.cancel(connection, { taskIds }, { signal })
 * ```
 */
import { CancelService } from './cancel.ts'
import type { CancelComponents, CancelInit } from './cancel.ts'

export { CancelService } from './cancel.ts'
export type { CancelComponents, CancelInit, CancelTasks } from './cancel.ts'
export type { CancelRequest, CancelResponse } from '../../codec/cancel.ts'
export { CANCEL_PROTOCOL } from './constants.ts'

export function cancel (init: CancelInit = {}): (components: CancelComponents) => CancelService {
  return (components) => new CancelService(components, init)
}
