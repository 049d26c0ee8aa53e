/**
 * Entry point of the sandbox process (started by Executor with
 * child_process.fork under the permission flags of sandbox-launch.ts).
 *
 * It keeps a pool of worker threads and gives each job one: the worker checks
 * the module's CID, prepares it (validation, limits, metering, compilation) or
 * takes it from this process's cache, and runs it. This thread does no heavy
 * work of its own, so it keeps every job's timers on time: a preparation
 * budget, then the job's wall-clock deadline, each enforced by terminating
 * the worker (V8 interrupts a wasm loop in about a millisecond) and starting a
 * replacement. It holds no state the parent needs: if it dies, the parent
 * reports the running jobs and starts a new one.
 */

import { Socket } from 'node:net'
import { Worker, type MessagePort } from 'node:worker_threads'
import type { ExecErrorCode, ExecStatus } from '../core/job.ts'
import { siblingModuleUrl } from '../core/module-url.ts'
import { PreparedModuleCache, preparedKey, type PrepareLimits, type PreparedModule } from './prepare.ts'
import type { ParentMessage, SandboxConfig, SandboxJob, SandboxMessage, SandboxOutcome, WorkerMessage, WorkerRequest } from './protocol.ts'
import { SANDBOX_DATA_FD } from './sandbox-launch.ts'
import { frameHeader, InputInbox, InputPool, wholeInput, type JobInput } from './stream-io.ts'

const WORKER_ENTRY = siblingModuleUrl('./worker.ts', import.meta.url)

/**
 * Per-worker limits. The heap limits bound the JS side only (not wasm memory,
 * which the module clamp and --wasm-max-mem-pages cover). The 32 MiB stack
 * gives room for the deterministic call-depth limit (50,000 frames by
 * default) to trip before V8's own stack overflow, which happens at a depth
 * that depends on frame sizes: a Rust recursion reaches about 100,000 frames
 * in 8 MiB, so 32 MiB leaves 50,000 frames over 600 bytes each. Only the
 * pages a job touches are committed.
 */
const WORKER_RESOURCE_LIMITS = { maxOldGenerationSizeMb: 256, maxYoungGenerationSizeMb: 32, stackSizeMb: 32 }

/** stdout buffers (2 MiB each) given back to a worker and not yet taken: what an idle worker may hold */
const RETURNED_AHEAD = 4

/** A job taken in: its input fills as the parent's chunks arrive, queued or running. */
interface Taken {
  job: SandboxJob
  input: JobInput
}

interface Slot {
  worker: Worker
  /** the worker has loaded its code (it said 'ready'); jobs go only to ready workers */
  ready: boolean
  /** where its stdout buffers go back once sent, to be written again (it said so in 'ready') */
  returns?: MessagePort
  /** buffers given back to it, and taken by it (its last `stdout` says): at most RETURNED_AHEAD apart */
  returned: number
  taken: number
  /** the job the worker has, and the timer of its current phase (preparation, then the run) */
  job?: { job: SandboxJob, runId: number, timer: JobTimer, input: JobInput, prepared?: boolean }
}

/**
 * A job's budget or deadline timer that stands still while the parent has the
 * process stopped (SIGSTOP, the donor controls): a stopped process's timers
 * would all fire the moment it continues, charging the job for time it was
 * not allowed to run.
 */
interface JobTimer {
  fn: () => void
  handle?: NodeJS.Timeout
  /** when it fires (performance.now()), while armed */
  dueAt: number
  /** what is left, while held */
  leftMs: number
}

const send = process.send?.bind(process)
if (send === undefined) {
  throw new Error('src/executor/sandbox-process.ts must be started by Executor with child_process.fork (it talks over IPC)')
}

const config = JSON.parse(process.argv[2] ?? '{}') as SandboxConfig
const workerCount = Math.max(1, config.workers)
const slots: Slot[] = []
const queue: Taken[] = []
/** `moduleKept` jobs whose preparation is no longer cached, waiting for the parent to send the bytes */
const wantingModule = new Map<number, Taken>()
const cache = new PreparedModuleCache()
/** where the inputs on the data socket go, read in place */
const inbox = new InputInbox(new InputPool({ maxBytes: config.inputPoolBytes }))
/** the parent asked to suspend us: timers are held until it says `resume` */
let suspended = false

function armTimer (fn: () => void, ms: number): JobTimer {
  const timer: JobTimer = { fn, dueAt: performance.now() + ms, leftMs: ms }
  if (!suspended) timer.handle = setTimeout(fn, ms)
  return timer
}

function disarm (timer: JobTimer): void {
  clearTimeout(timer.handle)
  timer.handle = undefined
}

/** Holds (`suspend`) or re-arms (`resume`) every job's timer. */
function holdTimers (hold: boolean): void {
  if (suspended === hold) return
  suspended = hold
  const now = performance.now()
  for (const slot of slots) {
    const timer = slot.job?.timer
    if (timer === undefined) continue
    if (hold) {
      timer.leftMs = Math.max(0, timer.dueAt - now)
      disarm(timer)
    } else {
      timer.dueAt = now + timer.leftMs
      timer.handle = setTimeout(timer.fn, timer.leftMs)
    }
  }
}

function reply (message: SandboxMessage): void {
  send?.(message)
}

function emptyOutcome (status: ExecStatus, error: string, errorCode?: ExecErrorCode): SandboxOutcome {
  return { status, error, ...(errorCode != null ? { errorCode } : {}), stdout: new Uint8Array(0), stderr: new Uint8Array(0), fuelUsed: 0 }
}

function prepareLimits (job: SandboxJob): PrepareLimits {
  return { memoryBytes: job.limits.memoryBytes, maxCallDepth: job.limits.maxCallDepth, moduleLimits: config.moduleLimits }
}

function startWorker (slot: Slot | undefined, onReady?: () => void): Slot {
  const worker = new Worker(WORKER_ENTRY, { resourceLimits: WORKER_RESOURCE_LIMITS, stdout: false, stderr: false })
  const s: Slot = slot ?? { worker, ready: false, returned: 0, taken: 0 }
  s.worker = worker
  s.ready = false
  s.returns = undefined
  s.returned = 0
  s.taken = 0
  let loaded = false
  worker.on('message', (msg: WorkerMessage) => {
    if (s.worker !== worker) return // a late message from a worker already replaced (deadline or cancel)
    if (msg.type === 'ready') {
      loaded = true
      s.ready = true
      s.returns = msg.returns
      onReady?.()
      pump()
    } else if (msg.type === 'prepared') {
      onPrepared(s, msg.runId, msg.fresh)
    } else if (msg.type === 'stdout') {
      s.taken = msg.taken ?? s.taken
      if (s.job?.runId === msg.runId) sendStdout(msg.runId, msg.bytes, () => returnPort(s, worker))
    } else {
      onDone(s, msg.runId, msg.stdoutStreamed === undefined ? msg.outcome : { ...msg.outcome, stdoutStreamed: msg.stdoutStreamed })
    }
  })
  const onDeath = (why: string, outOfMemory: boolean): void => {
    if (s.worker !== worker) return // already replaced (deadline or cancel)
    if (!loaded) {
      // a worker that cannot even load will not load next time either: crash, and let the parent restart us
      fatal(`a worker thread could not start: it ${why}`)
    }
    if (s.job !== undefined) {
      disarm(s.job.timer)
      // the worker's heap holds nothing but the job's own instance and output: running out of it is the job's doing
      const outcome = outOfMemory
        ? emptyOutcome('failed', `the job ran out of its worker's memory (${WORKER_RESOURCE_LIMITS.maxOldGenerationSizeMb} MiB heap)`)
        : emptyOutcome('failed', `executor crashed: worker thread ${why}`, 'EXECUTOR_CRASHED')
      reply({ type: 'result', runId: s.job.runId, outcome })
      s.job.input.release()
      s.job = undefined
    }
    replaceWorker(s)
  }
  worker.on('error', (err: Error & { code?: string }) => { onDeath(`failed: ${err.message}`, err.code === 'ERR_WORKER_OUT_OF_MEMORY') })
  worker.on('exit', (code) => { onDeath(`exited with code ${code}`, false) })
  return s
}

/** The worker finished preparing: cache what it prepared, and the run's deadline starts now. */
function onPrepared (slot: Slot, runId: number, fresh: PreparedModule | undefined): void {
  const current = slot.job
  if (current?.runId !== runId) return
  disarm(current.timer)
  current.prepared = true
  if (fresh !== undefined) cache.set(preparedKey(current.job.moduleCid, prepareLimits(current.job)), fresh)
  current.timer = deadlineTimer(slot, current.job)
}

/** The timer of a run's deadline, from now: it ends the slot's job as `deadline_exceeded`. */
function deadlineTimer (slot: Slot, job: SandboxJob): JobTimer {
  const { deadlineMs } = job.limits
  return armTimer(() => {
    endJob(slot, job.runId, emptyOutcome('deadline_exceeded', `deadline of ${deadlineMs} ms exceeded`))
  }, deadlineMs)
}

function onDone (slot: Slot, runId: number, outcome: SandboxOutcome): void {
  if (slot.job?.runId !== runId) return
  disarm(slot.job.timer)
  const prepared = slot.job.prepared === true
  slot.job.input.release()
  slot.job = undefined
  reply({ type: 'result', runId, outcome, prepared })
  pump()
}

/** Ends the slot's job with `outcome` (a budget or deadline ran out) and gives the slot a fresh worker. */
function endJob (slot: Slot, runId: number, outcome: SandboxOutcome): void {
  if (slot.job?.runId !== runId) return
  // the old worker may still read the input while it is terminated: what it does from here on is ignored
  slot.job.input.release()
  slot.job = undefined
  reply({ type: 'result', runId, outcome })
  replaceWorker(slot)
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
 * running jobs as crashed and starts a new sandbox.
 */
function fatal (message: string, cause?: unknown): never {
  throw new Error(`sandbox: ${message}`, { cause })
}

function pump (): void {
  // held: a job started between the parent's `suspend` and its SIGSTOP would run while its owner paused it
  if (suspended) return
  for (const slot of slots) {
    if (slot.job !== undefined || !slot.ready) continue
    let started = false
    // a job that cannot start (its module's bytes are wanted) leaves the slot to the next one
    while (!started && queue.length > 0) started = startJob(slot, queue.shift() as Taken)
    if (queue.length === 0) return
  }
}

/**
 * Hands `job` to the slot's worker, with the cached preparation if there is
 * one, under the preparation budget; false (and the bytes asked for) when it
 * came without its module and the preparation is no longer cached.
 */
function startJob (slot: Slot, taken: Taken): boolean {
  const { job, input } = taken
  const limits = prepareLimits(job)
  const cached = cache.get(preparedKey(job.moduleCid, limits))
  if (job.moduleKept === true && cached === undefined) {
    wantingModule.set(job.runId, taken)
    reply({ type: 'module-wanted', runId: job.runId })
    return false
  }
  // a kept module's cached preparation is the worker's to take as it is, with no work and no check: its run starts
  // with the request, so the deadline starts now and the worker says nothing before its result (one message less)
  const runStarted = job.moduleKept === true && cached !== undefined
  slot.job = { job, runId: job.runId, timer: runStarted ? deadlineTimer(slot, job) : prepareTimer(slot, job), input, prepared: runStarted }
  const request: WorkerRequest = {
    runId: job.runId,
    bytes: ownCopy(job.module),
    moduleCid: job.moduleCid,
    cached,
    moduleKept: job.moduleKept,
    ...(runStarted ? { runStarted } : {}),
    prepare: limits,
    spec: {
      jobId: job.jobId,
      // a streamed input is shared, not moved: this thread goes on filling it while the worker runs the job
      input: input.bytes,
      inputArrived: input.arrived,
      args: job.args,
      env: job.env,
      moduleName: job.moduleName,
      fuel: job.limits.fuel,
      outputBytes: job.limits.outputBytes,
      maxCallDepth: job.limits.maxCallDepth,
      preopens: job.preopens?.map(d => ({ ...d, files: d.files.map(f => ({ path: f.path, data: ownCopy(f.data) })) })),
      // the overlay lives in the worker's memory: it is bounded like the guest's own
      filesystemBytes: job.limits.memoryBytes
    }
  }
  // the bytes move to the worker rather than being cloned on this thread (serialized, then deserialized)
  const files = (request.spec.preopens ?? []).flatMap(d => d.files.map(f => f.data))
  const whole = input.arrived === undefined ? [input.bytes] : []
  slot.worker.postMessage(request, [request.bytes, ...files, ...whole].filter(b => b.byteLength > 0).map(b => b.buffer as ArrayBuffer))
  return true
}

/** The timer of a job's preparation budget, from now: it ends the slot's job as `rejected`. */
function prepareTimer (slot: Slot, job: SandboxJob): JobTimer {
  const budget = config.prepareTimeoutMs
  return armTimer(() => {
    endJob(slot, job.runId, emptyOutcome('rejected', `preparing the module (CID check, validation, metering, compilation) took longer than this executor's budget of ${budget} ms (prepareTimeoutMs)`))
  }, budget)
}

/** The bytes of a job that came without them: it goes first in the queue, where it was. */
function onModule (runId: number, bytes: Uint8Array): void {
  const taken = wantingModule.get(runId)
  if (taken === undefined) return // cancelled meanwhile
  wantingModule.delete(runId)
  queue.unshift({ ...taken, job: { ...taken.job, module: bytes, moduleKept: false } })
  pump()
}

/**
 * The bytes in an ArrayBuffer of their own, which postMessage can transfer.
 * What arrives over IPC is a view into the buffer of the whole message (module,
 * files), and that buffer may also hold the start of the next message:
 * it is never transferred itself. One copy here is cheaper than a structured
 * clone, which serializes and deserializes the whole message buffer.
 */
function ownCopy (b: Uint8Array): Uint8Array {
  return b.byteLength === 0 ? new Uint8Array(0) : b.slice()
}

/**
 * Where a sent stdout buffer of `worker` goes back: its port, while it is the
 * slot's worker and has not more than RETURNED_AHEAD buffers given back and
 * not taken yet (after a job, those wait in the idle worker); else nowhere
 * (the buffer is garbage).
 */
function returnPort (slot: Slot, worker: Worker): MessagePort | undefined {
  if (slot.worker !== worker || slot.returned - slot.taken >= RETURNED_AHEAD) return undefined
  slot.returned++
  return slot.returns
}

/**
 * A stdout chunk to the parent on the data socket; the worker gave it up, so
 * the socket may write it when it can, and then its buffer goes back for a
 * later chunk to the port `returnTo` names, if any.
 */
function sendStdout (runId: number, bytes: Uint8Array, returnTo: () => MessagePort | undefined): void {
  data.cork()
  data.write(frameHeader(runId, bytes.byteLength))
  data.write(bytes, (err) => {
    // a failed write ends the sandbox ('error' handler); only a sent buffer goes back
    if (err == null) returnTo()?.postMessage(bytes.buffer, [bytes.buffer as ArrayBuffer])
  })
  data.uncork()
}

function onRun (job: SandboxJob): void {
  let input: JobInput
  try {
    // an empty or inline input has no frame on the data socket
    input = job.input !== undefined || job.inputLength === 0 ? wholeInput(ownCopy(job.input ?? new Uint8Array(0)), job.inputLength) : inbox.claim(job.runId, job.inputLength)
  } catch (err) {
    fatal(`run ${job.runId}: its input cannot be taken in`, err)
  }
  queue.push({ job, input })
  pump()
}

function onCancel (runId: number): void {
  const wanting = wantingModule.get(runId)
  if (wanting !== undefined) {
    wantingModule.delete(runId)
    wanting.input.release()
    return
  }
  const queued = queue.findIndex(q => q.job.runId === runId)
  if (queued >= 0) {
    queue.splice(queued, 1)[0].input.release()
    return
  }
  const slot = slots.find(s => s.job?.runId === runId)
  if (slot?.job !== undefined) {
    disarm(slot.job.timer)
    slot.job.input.release()
    slot.job = undefined
    replaceWorker(slot)
  }
}

process.on('message', (msg: ParentMessage) => {
  if (msg.type === 'run') onRun(msg.job)
  else if (msg.type === 'module') onModule(msg.runId, msg.bytes)
  else if (msg.type === 'cancel') onCancel(msg.runId)
  else if (msg.type === 'suspend') {
    holdTimers(true)
    reply({ type: 'suspended' })
  } else if (msg.type === 'resume') {
    holdTimers(false)
    pump()
  }
})

// the parent went away (or stopped us): nothing left to serve
process.on('disconnect', () => {
  process.exit(0)
})
/**
 * Inputs in, stdout out, in frames (stream-io.ts); the parent made it before
 * fork, as a connected socket (data-channel.ts). Each read goes straight where its bytes belong (a job's
 * shared input): nothing allocated or copied per piece.
 */
const data = new Socket({
  fd: SANDBOX_DATA_FD,
  readable: true,
  writable: true,
  onread: {
    buffer: () => inbox.next(),
    callback: (n: number) => {
      try {
        inbox.filled(n)
      } catch (err) {
        fatal('the input on the data socket does not add up', err)
      }
      return true
    }
  }
})
// the parent holds the other end for as long as we live: losing it is losing the parent
data.on('error', (err) => { fatal('the data socket to the parent failed', err) })
data.on('end', () => { process.exit(0) })

await Promise.all(Array.from({ length: workerCount }, async () => await new Promise<void>(resolve => {
  slots.push(startWorker(undefined, resolve))
})))
reply({ type: 'ready', workers: slots.length })
