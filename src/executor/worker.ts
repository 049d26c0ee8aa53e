/**
 * Entry point of a worker thread in the sandbox process: checks, prepares and
 * runs one module at a time and posts the outcome back. Preparation is here,
 * not on the sandbox's main thread, because it is heavy work on bytes a
 * stranger chose: here it is bounded by the worker's resource limits and by
 * the sandbox's preparation budget (it terminates the thread), and the main
 * thread stays free to keep every other job's deadline. The thread is
 * disposable: nothing here needs to survive a job.
 */

import { MessageChannel, parentPort, receiveMessageOnPort } from 'node:worker_threads'
import { InstrumentationError, InvalidModuleError, ModuleRejectedError } from './errors.ts'
import { WASM_PAGE_BYTES } from './instrument.ts'
import { PreparedModuleCache, prepareModule, preparedKey, type PreparedModule } from './prepare.ts'
import type { WorkerMessage, WorkerRequest } from './protocol.ts'
import { runModule, SpareInstance, type RunOutcome } from './run-module.ts'
import { STREAM_CHUNK_BYTES } from './stream-io.ts'

const port = parentPort
if (port === null) {
  throw new Error('src/executor/worker.ts is a worker_threads entry point; the sandbox process starts it')
}

/**
 * The instance the next job of the last job's module (and limits) takes,
 * made once that job's result is on its way: jobs of one module often come
 * one after another. Only for a module whose initial memory is at most
 * SPARE_MAX_MEMORY_BYTES, which is what an idle worker holds for it.
 */
let spare: { key: string, instance: SpareInstance } | undefined
/** The most initial guest memory a spare instance may hold while its worker waits (a wasi-sdk C program starts with 128 KiB, a Rust one with about 1 MiB) */
const SPARE_MAX_MEMORY_BYTES = 4 * 1024 * 1024

port.on('message', (req: WorkerRequest) => {
  // this thread's CPU time (getrusage RUSAGE_THREAD): real work only, so neither a queue nor a suspension counts
  const cpuStart = process.threadCpuUsage()
  const prepared = prepare(req)
  if ('status' in prepared) {
    post({ type: 'done', runId: req.runId, outcome: { ...prepared, cpuTimeMs: cpuMsSince(cpuStart) } })
    return
  }
  // the metered bytes stay here: the sandbox's cache needs only the compiled module and its size
  const fresh = prepared === req.cached ? undefined : { ...prepared, bytes: new Uint8Array(0) }
  if (req.runStarted !== true) post({ type: 'prepared', runId: req.runId, fresh })
  let stdoutStreamed = 0
  const stdoutSink = {
    chunkBytes: STREAM_CHUNK_BYTES,
    flush: (bytes: Uint8Array) => {
      stdoutStreamed += bytes.byteLength
      port?.postMessage({ type: 'stdout', runId: req.runId, bytes, taken } satisfies WorkerMessage, [bytes.buffer as ArrayBuffer])
    },
    spare: returnedBuffer
  }
  const key = preparedKey(req.moduleCid, req.prepare)
  const ahead = spare?.key === key ? spare.instance : undefined
  spare = undefined
  let outcome: RunOutcome
  try {
    outcome = runModule(prepared.module, req.spec, { stdoutSink, spare: ahead })
  } catch (err) {
    // runModule classifies guest failures itself; anything reaching here is a host-side bug (what streamed still counts)
    outcome = failed(`executor error: ${describe(err)}`)
  }
  post({ type: 'done', runId: req.runId, outcome: { ...outcome, cpuTimeMs: cpuMsSince(cpuStart) }, stdoutStreamed })
  spare = spareFor(key, prepared)
})

/** A spare instance of `prepared` for its next job, when its initial memory is small enough to hold while waiting. */
function spareFor (key: string, prepared: PreparedModule): { key: string, instance: SpareInstance } | undefined {
  if (prepared.memory.initialPages * WASM_PAGE_BYTES > SPARE_MAX_MEMORY_BYTES) return undefined
  try {
    return { key, instance: new SpareInstance(prepared.module) }
  } catch {
    // not a failure of anything: the next job of this module instantiates it itself and reports what goes wrong then
    return undefined
  }
}

/**
 * Stdout chunks come back here once the sandbox has sent them (the `returns`
 * port of our `ready`), to be written again: read synchronously, since the
 * guest's run holds this thread. Unreferenced: it never keeps the thread alive.
 */
const returns = new MessageChannel()
returns.port1.unref()
/** buffers taken off `returns` so far: the sandbox gives back only a few more than that */
let taken = 0

/** A returned stdout buffer of at least `capacity` bytes, if one is there (smaller ones are dropped). */
function returnedBuffer (capacity: number): Uint8Array<ArrayBuffer> | undefined {
  for (let m = receiveMessageOnPort(returns.port1); m !== undefined; m = receiveMessageOnPort(returns.port1)) {
    taken++
    const buffer = m.message as ArrayBuffer
    if (buffer.byteLength >= capacity) return new Uint8Array(buffer)
  }
  return undefined
}

function cpuMsSince (start: NodeJS.CpuUsage): number {
  const used = process.threadCpuUsage(start)
  return (used.user + used.system) / 1000
}

/** The prepared module, or the outcome that ends the job before it runs. */
function prepare (req: WorkerRequest): PreparedModule | RunOutcome {
  if (req.moduleKept === true && req.cached !== undefined) return req.cached
  const cache = new PreparedModuleCache({ maxEntries: 1 })
  if (req.cached !== undefined) cache.set(preparedKey(req.moduleCid, req.prepare), req.cached)
  try {
    // the CID is checked first, cached or not
    return prepareModule(req.bytes, req.moduleCid, req.prepare, cache)
  } catch (err) {
    if (err instanceof InvalidModuleError || err instanceof ModuleRejectedError) return { ...failed(err.message), status: err.status }
    if (err instanceof InstrumentationError) return failed(`executor error: ${err.message}`)
    // an allocation the module's size asked for failed (a RangeError): the job's own failure, not the executor's
    return failed(`preparing the module failed: ${describe(err)}`)
  }
}

function failed (error: string): RunOutcome {
  return { status: 'failed', error, stdout: new Uint8Array(0), stderr: new Uint8Array(0), fuelUsed: 0 }
}

function describe (err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err)
}

function post (message: WorkerMessage): void {
  if (message.type !== 'done') {
    port?.postMessage(message)
    return
  }
  const { outcome } = message
  // transfer the output buffers and the changed files instead of copying them (together up to outputBytes)
  const buffers = [outcome.stdout, outcome.stderr, ...(outcome.files ?? []).map(f => f.data)].map(b => b.buffer as ArrayBuffer)
  port?.postMessage(message, buffers.filter(uniqueBuffers()))
}

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
port.postMessage({ type: 'ready', returns: returns.port2 } satisfies WorkerMessage, [returns.port2])
