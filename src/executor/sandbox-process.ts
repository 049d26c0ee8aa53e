/**
 * Entry point of the sandbox process (started by Executor with
 * child_process.fork under the permission flags of sandbox-launch.ts).
 *
 * It prepares modules (CID, policy, metering; cached), keeps a pool of worker
 * threads, runs one job per worker and enforces each job's wall-clock deadline
 * by terminating the worker (V8 interrupts a wasm loop in about a millisecond)
 * and starting a replacement. It holds no state the parent needs: if it dies,
 * the parent reports the running jobs and starts a new one.
 */

import { Worker } from 'node:worker_threads'
import type { ExecErrorCode, ExecStatus } from '../core/job.ts'
import { InstrumentationError, InvalidModuleError, ModuleRejectedError } from './errors.ts'
import { prepareModule, type PreparedModule } from './prepare.ts'
import type { ParentMessage, SandboxJob, SandboxMessage, SandboxOutcome, WorkerMessage } from './protocol.ts'

const WORKER_ENTRY = new URL('./worker.ts', import.meta.url)

/**
 * Per-worker limits. The heap limits bound the JS side only (not wasm memory,
 * which the module clamp and --wasm-max-mem-pages cover); the 8 MiB stack gives
 * room for the deterministic call-depth limit to trip before V8's own stack
 * overflow, which would happen at a depth that varies between processes.
 */
const WORKER_RESOURCE_LIMITS = { maxOldGenerationSizeMb: 256, maxYoungGenerationSizeMb: 32, stackSizeMb: 8 }

interface Slot {
  worker: Worker
  /** the worker has loaded its code (it said 'ready'); jobs go only to ready workers */
  ready: boolean
  job?: { runId: number, timer: NodeJS.Timeout }
}

interface QueuedRun {
  job: SandboxJob
  prepared: PreparedModule
}

const send = process.send?.bind(process)
if (send === undefined) {
  throw new Error('src/executor/sandbox-process.ts must be started by Executor with child_process.fork (it talks over IPC)')
}

const workerCount = Math.max(1, Number.parseInt(process.argv[2] ?? '1', 10) || 1)
const slots: Slot[] = []
const queue: QueuedRun[] = []

function reply (message: SandboxMessage): void {
  send?.(message)
}

function emptyOutcome (status: ExecStatus, error: string, errorCode?: ExecErrorCode): SandboxOutcome {
  return { status, error, ...(errorCode != null ? { errorCode } : {}), stdout: new Uint8Array(0), stderr: new Uint8Array(0), fuelUsed: 0 }
}

function startWorker (slot: Slot | undefined, onReady?: () => void): Slot {
  const worker = new Worker(WORKER_ENTRY, { resourceLimits: WORKER_RESOURCE_LIMITS, stdout: false, stderr: false })
  const s: Slot = slot ?? { worker, ready: false }
  s.worker = worker
  s.ready = false
  let loaded = false
  worker.on('message', (msg: WorkerMessage) => {
    if (s.worker !== worker) return // a late message from a worker already replaced (deadline or cancel)
    if (msg.type === 'ready') {
      loaded = true
      s.ready = true
      onReady?.()
      pump()
      return
    }
    if (s.job?.runId !== msg.runId) return
    clearTimeout(s.job.timer)
    s.job = undefined
    reply({ type: 'result', runId: msg.runId, outcome: msg.outcome })
    pump()
  })
  const onDeath = (why: string): void => {
    if (s.worker !== worker) return // already replaced (deadline or cancel)
    if (!loaded) {
      // a worker that cannot even load will not load next time either: crash, and let the parent restart us
      fatal(`a worker thread could not start: it ${why}`)
    }
    if (s.job !== undefined) {
      clearTimeout(s.job.timer)
      reply({ type: 'result', runId: s.job.runId, outcome: emptyOutcome('failed', `executor crashed: worker thread ${why}`, 'EXECUTOR_CRASHED') })
      s.job = undefined
    }
    replaceWorker(s)
  }
  worker.on('error', (err) => { onDeath(`failed: ${err.message}`) })
  worker.on('exit', (code) => { onDeath(`exited with code ${code}`) })
  return s
}

/** Stops the slot's worker (if any) and gives the slot a fresh one; the old worker's events are ignored from now on. */
function replaceWorker (slot: Slot): void {
  const old = slot.worker
  startWorker(slot)
  // the old thread's events are ignored from here on; a thread that cannot be stopped would keep a core busy
  // for ever, so that is fatal: the parent then restarts the whole sandbox
  old.terminate().catch((err: unknown) => { fatal('a worker thread could not be terminated', err) })
  pump()
}

/**
 * Ends the sandbox: thrown from an event handler or a promise callback, the
 * error is uncaught, Node prints it to stderr and exits; the parent reports the
 * running jobs as crashed (with that stderr) and starts a new sandbox.
 */
function fatal (message: string, cause?: unknown): never {
  throw new Error(`sandbox: ${message}`, { cause })
}

function pump (): void {
  for (const slot of slots) {
    if (queue.length === 0) return
    if (slot.job !== undefined || !slot.ready) continue
    const run = queue.shift() as QueuedRun
    const { job } = run
    const timer = setTimeout(() => {
      if (slot.job?.runId !== job.runId) return
      slot.job = undefined
      reply({ type: 'result', runId: job.runId, outcome: emptyOutcome('deadline_exceeded', `deadline of ${job.limits.deadlineMs} ms exceeded`) })
      replaceWorker(slot)
    }, job.limits.deadlineMs)
    slot.job = { runId: job.runId, timer }
    slot.worker.postMessage({
      runId: job.runId,
      module: run.prepared.module,
      spec: {
        jobId: job.jobId,
        input: job.input,
        args: job.args,
        env: job.env,
        moduleName: job.moduleName,
        fuel: job.limits.fuel,
        outputBytes: job.limits.outputBytes,
        maxCallDepth: job.limits.maxCallDepth
      }
    })
  }
}

function onRun (job: SandboxJob): void {
  let prepared: PreparedModule
  try {
    prepared = prepareModule(job.module, job.moduleCid, job.limits)
  } catch (err) {
    if (err instanceof InvalidModuleError || err instanceof ModuleRejectedError) {
      reply({ type: 'result', runId: job.runId, outcome: emptyOutcome(err.status, err.message) })
    } else if (err instanceof InstrumentationError) {
      reply({ type: 'result', runId: job.runId, outcome: emptyOutcome('failed', `executor error: ${err.message}`) })
    } else {
      reply({ type: 'result', runId: job.runId, outcome: emptyOutcome('failed', `executor error: ${err instanceof Error ? err.message : String(err)}`) })
    }
    return
  }
  queue.push({ job, prepared })
  pump()
}

function onCancel (runId: number): void {
  const queued = queue.findIndex(q => q.job.runId === runId)
  if (queued >= 0) {
    queue.splice(queued, 1)
    return
  }
  const slot = slots.find(s => s.job?.runId === runId)
  if (slot?.job !== undefined) {
    clearTimeout(slot.job.timer)
    slot.job = undefined
    replaceWorker(slot)
  }
}

process.on('message', (msg: ParentMessage) => {
  if (msg.type === 'run') onRun(msg.job)
  else if (msg.type === 'cancel') onCancel(msg.runId)
})

// the parent went away (or stopped us): nothing left to serve
process.on('disconnect', () => {
  process.exit(0)
})

await Promise.all(Array.from({ length: workerCount }, async () => await new Promise<void>(resolve => {
  slots.push(startWorker(undefined, resolve))
})))
reply({ type: 'ready', workers: slots.length })
