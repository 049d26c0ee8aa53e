/**
 * @packageDocumentation
 *
 * `/worldcompute/dispatch/1.0.0`: a task's bytes go to a donor, its output and
 * a signed receipt come back, both streamed in frames of at most 256 KiB
 * (payloads up to 64 MiB each), over direct or relayed connections.
 *
 * ```ts
 * services: {
 *   dispatch: dispatch({ admit: (req, { peer }) => runner.admit(req, { peer }), runTask: (req, o) => runner.runTask(req, o) })   // donor
 *   dispatch: dispatch()                                                                 // broker
 * }
 * const result = await node.services.dispatch.dispatch(connectionOrPeerId, task, { signal })
 * // result.receiptVerified === true, or it threw ReceiptInvalidError
 * ```
 */
import { DispatchService } from './dispatch.ts'
import type { DispatchComponents, DispatchInit } from './dispatch.ts'

export { DispatchService } from './dispatch.ts'
export type {
  Admission, AdmissionRequest, AdmitTask, DispatchComponents, DispatchContext, DispatchInit, DispatchOptions, DispatchProgressEvent, DispatchResult, DispatchTask, RunTask
} from './dispatch.ts'
export type { DispatchHeader, DispatchResultHeader, RefusalCode } from '../../codec/messages.ts'
export { REFUSAL_CODES } from '../../codec/messages.ts'
export { DISPATCH_PROTOCOL, MAX_FRAME_BYTES, MAX_OUTPUT_BYTES, MAX_PAYLOAD_BYTES } from './constants.ts'
export { FilesNotCachedError } from './tree-transfer.ts'
export { dataLimitOf, dispatchBytes, RelayDataLimitError } from './relay-limit.ts'
export type { PayloadFetcher } from './pull.ts'

export function dispatch (init: DispatchInit = {}): (components: DispatchComponents) => DispatchService {
  return (components) => new DispatchService(components, init)
}
