/**
 * Entry point of a worker thread in the sandbox process: runs one prepared
 * module at a time and posts the outcome back. The thread is disposable: the
 * sandbox terminates it at the job's deadline and starts a new one, so nothing
 * here needs to survive a job.
 */

import { parentPort } from 'node:worker_threads'
import type { WorkerMessage, WorkerRequest } from './protocol.ts'
import { runModule, type RunOutcome } from './run-module.ts'

const port = parentPort
if (port === null) {
  throw new Error('src/executor/worker.ts is a worker_threads entry point; the sandbox process starts it')
}

port.on('message', (req: WorkerRequest) => {
  let outcome: RunOutcome
  try {
    outcome = runModule(req.module, req.spec)
  } catch (err) {
    // runModule classifies guest failures itself; anything reaching here is a host-side bug
    outcome = {
      status: 'failed',
      error: `executor error: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`,
      stdout: new Uint8Array(0),
      stderr: new Uint8Array(0),
      fuelUsed: 0
    }
  }
  const reply: WorkerMessage = { type: 'done', runId: req.runId, outcome }
  // transfer the output buffers instead of copying them (they can be up to outputBytes)
  port.postMessage(reply, [outcome.stdout.buffer as ArrayBuffer, outcome.stderr.buffer as ArrayBuffer].filter(uniqueBuffers()))
})

/** postMessage throws on a transfer list that names one ArrayBuffer twice; empty buffers gain nothing from transfer. */
function uniqueBuffers (): (b: ArrayBuffer) => boolean {
  const seen = new Set<ArrayBuffer>()
  return (b) => {
    if (seen.has(b) || b.byteLength === 0) return false
    seen.add(b)
    return true
  }
}

// tell the sandbox the code is loaded, so that a job's deadline never pays for the thread's start-up
port.postMessage({ type: 'ready' } satisfies WorkerMessage)
