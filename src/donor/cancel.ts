import { WorldComputeError } from '../core/errors.ts'
import { createLogger, type Logger } from '../log/logger.ts'
import type { CancelRequest, CancelResponse } from '../protocols/cancel/index.ts'

/** Why a run was abandoned: the broker that dispatched it cancelled it. */
export class TaskCancelledError extends WorldComputeError {
  readonly taskId: string
  constructor (taskId: string) {
    super(`task ${taskId} was cancelled by its broker`, 'TASK_CANCELLED')
    this.taskId = taskId
  }
}

/** What the cancel answer needs from the job runner. */
export interface CancellableTasks {
  cancelTask: (peer: string, taskId: string) => 'stopped' | 'dropped' | 'unknown'
}

/**
 * The donor's answer to `/worldcompute/cancel/1.0.0`: each task the broker
 * (`peer`, the authenticated end of the connection) names is stopped if it
 * runs, dropped if it is only held, and `unknown` otherwise — another
 * broker's task, a finished one, or a second cancel of the same task are all
 * answered without touching anything.
 */
export function cancelTasks (runner: CancellableTasks, req: CancelRequest, context: { peer: string }, log: Logger = createLogger('donor.jobs')): CancelResponse {
  const res: CancelResponse = { stopped: [], dropped: [], unknown: [] }
  for (const taskId of new Set(req.taskIds)) res[runner.cancelTask(context.peer, taskId)].push(taskId)
  if (res.stopped.length + res.dropped.length > 0) {
    log.info(`broker ${context.peer} cancelled ${res.stopped.length} running and ${res.dropped.length} waiting task(s): their slots are free`, { peer: context.peer, code: 'TASK_CANCELLED', stopped: res.stopped, dropped: res.dropped })
  }
  return res
}
