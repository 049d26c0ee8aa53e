import { WorldComputeError } from '../../core/errors.ts'
import type { DispatchTask } from './dispatch.ts'
import type { Connection } from '@libp2p/interface'

/**
 * A relay circuit carries at most its relay's data limit (`--relay-data-limit`,
 * 64 MiB by default) and is then reset: bulk data needs a direct connection.
 * A task whose bytes do not fit what the circuit has left, with no direct
 * connection to be had, fails with this error naming the limit rather than
 * with a stream reset half-way. Not the executor's fault, nor the job's.
 */
export class RelayDataLimitError extends WorldComputeError {
  /** bytes the circuit may still carry */
  readonly limit: number
  /** bytes the task needs to send */
  readonly bytes: number
  constructor (executor: string, taskId: string, bytes: number, limit: number, why: string, options?: { cause?: unknown }) {
    super(`task ${taskId}: its ${bytes} bytes are over the ${limit} bytes the relay circuit to executor ${executor} may carry (the relay's --relay-data-limit), and no direct connection could be made (${why}): run it where this node reaches the executor directly, or on a relay with a larger --relay-data-limit`, 'RELAY_DATA_LIMIT', options)
    this.limit = limit
    this.bytes = bytes
  }
}

/** What a dispatch of `task` sends: the module (unless the donor holds it), the input and the tree's blobs. */
export function dispatchBytes (task: Pick<DispatchTask, 'input' | 'tree'> & { module?: { byteLength: number } }): number {
  let tree = 0
  if (task.tree != null) {
    tree = task.tree.manifestBytes.byteLength
    for (const bytes of task.tree.blobs.values()) tree += bytes.byteLength
  }
  return (task.module?.byteLength ?? 0) + task.input.byteLength + tree
}

/** The bytes a limited (relayed) connection may still carry; undefined when it has no data limit. */
export function dataLimitOf (conn: Pick<Connection, 'limits'>): number | undefined {
  const bytes = conn.limits?.bytes
  return bytes != null ? Number(bytes) : undefined
}
