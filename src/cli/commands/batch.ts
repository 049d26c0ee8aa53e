import { createHash } from 'node:crypto'
import { appendFileSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import { create as createDigest } from 'multiformats/hashes/digest'
import { pause } from '../../core/async.ts'
import { duration } from '../../core/format.ts'
import { UsageError } from '../args.ts'
import { printJson, type Output } from '../output.ts'
import type { ApiClient } from '../../api/client.ts'
import type { SubmitJobRequest } from '../../api/routes.ts'
import type { JobView } from '../../core/job.ts'

/**
 * `job submit MODULE --batch DIR --out OUT`: one job per regular file of DIR
 * (its stdin), a bounded number in flight, each answer written to
 * `OUT/<file>.stdout` / `.stderr` and its status to `OUT/summary.json`.
 *
 * The summary survives a killed run: every change is appended to
 * `OUT/summary.journal` before anything depends on it, and folded into
 * `summary.json` (written whole to a temporary file, then renamed) about once
 * a second and at the end; a 10,000-entry summary rewritten on every change
 * would cost gigabytes of writes. A run reads both back, so it skips inputs
 * already `succeeded` with the same content (by name and input CID), waits
 * for jobs a killed run submitted instead of submitting them twice, and runs
 * everything else.
 */

/** One input's line in summary.json; `inputCid` says which content of the file it ran. */
export interface BatchEntry {
  file: string
  jobId: string | null
  /** a job status (`succeeded`, `failed`, …, `cancelled`), or `submitting` / `running` while under way, `error` when it could not be submitted */
  status: string
  exitCode: number | null
  outputCid: string | null
  inputCid: string
  /** why it could not be submitted, or the job's message when it did not succeed */
  message?: string
}

export interface BatchSummary {
  module: string
  moduleCid: string
  updatedAt: string
  total: number
  succeeded: number
  failed: number
  inputs: BatchEntry[]
}

export interface BatchOptions {
  api: Pick<ApiClient, 'call' | 'submitJobByCid'>
  modulePath: string
  module: Buffer
  dir: string
  out: string
  /** jobs in flight at once */
  parallel: number
  /** everything of a submission but the bytes */
  request: Omit<SubmitJobRequest, 'module' | 'input'>
  json: boolean
  o: Output
  /** stops the batch: no more submissions, in-flight jobs cancelled */
  signal: AbortSignal
  /** progress: a redrawn line (TTY), plain lines every `plainEveryMs`, or none */
  progress: 'tty' | 'plain' | 'none'
}

/** Default jobs in flight. */
export const DEFAULT_PARALLEL = 8
const POLL_MS = 250
const FLUSH_MS = 1_000
const PLAIN_PROGRESS_MS = 10_000
/** Statuses that are not a job's final answer. */
const UNDER_WAY = new Set(['submitting', 'running', 'queued'])

/** CIDv1 raw sha2-256 of the bytes, as the broker names an input. */
export function inputCidOf (bytes: Uint8Array): string {
  const hash = createHash('sha256').update(bytes).digest()
  return CID.createV1(0x55, createDigest(0x12, new Uint8Array(hash.buffer, hash.byteOffset, hash.byteLength))).toString()
}

/** The regular files of DIR, sorted by name (byte order, the same on every machine). */
export function batchInputs (dir: string): string[] {
  let entries
  try {
    entries = readdirSync(dir, { withFileTypes: true })
  } catch (err) {
    throw new UsageError(`job submit: cannot read --batch ${dir}: ${(err as Error).message}`)
  }
  return entries.filter(e => e.isFile()).map(e => e.name).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
}

/** summary.json and its journal: what is known of each input, durable as it changes. */
export class BatchState {
  private readonly entries = new Map<string, BatchEntry>()
  private readonly out: string
  private readonly module: string
  private readonly moduleCid: string
  private readonly summaryPath: string
  private readonly journalPath: string
  private dirty = false

  constructor (out: string, module: string, moduleCid: string, o: Output) {
    this.out = out
    this.module = module
    this.moduleCid = moduleCid
    this.summaryPath = join(out, 'summary.json')
    this.journalPath = join(out, 'summary.journal')
    mkdirSync(out, { recursive: true })
    this.load(o)
  }

  private load (o: Output): void {
    let previous: BatchSummary | undefined
    try {
      previous = JSON.parse(readFileSync(this.summaryPath, 'utf8')) as BatchSummary
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new UsageError(`job submit: ${this.summaryPath} is not a batch summary (${(err as Error).message}): move it aside or choose another --out`)
    }
    const journal = readLines(this.journalPath)
    const sameModule = previous == null || previous.moduleCid === this.moduleCid
    if (!sameModule) o.err(`${this.out} holds a batch of another module (${previous?.module ?? '?'}): every input runs again`)
    for (const e of [...(sameModule ? previous?.inputs ?? [] : []), ...(sameModule ? journal : [])]) this.entries.set(e.file, e)
  }

  get (file: string): BatchEntry | undefined {
    return this.entries.get(file)
  }

  /** Job IDs some input already stands for. */
  jobIds (): Set<string> {
    return new Set([...this.entries.values()].map(e => e.jobId).filter(id => id != null))
  }

  /** Records a change: in the journal at once, in summary.json at the next flush. */
  record (entry: BatchEntry): void {
    this.entries.set(entry.file, entry)
    appendFileSync(this.journalPath, JSON.stringify(entry) + '\n')
    this.dirty = true
  }

  summary (files: string[]): BatchSummary {
    const inputs = files.map(f => this.entries.get(f)).filter(e => e != null)
    return {
      module: this.module,
      moduleCid: this.moduleCid,
      updatedAt: new Date().toISOString(),
      total: files.length,
      succeeded: inputs.filter(e => e.status === 'succeeded').length,
      failed: inputs.filter(e => !UNDER_WAY.has(e.status) && e.status !== 'succeeded').length,
      inputs
    }
  }

  /** Writes summary.json whole (temporary file, then rename), then empties the journal it now contains. */
  flush (files: string[], force = false): void {
    if (!this.dirty && !force) return
    const tmp = `${this.summaryPath}.${process.pid}.tmp`
    writeFileSync(tmp, JSON.stringify(this.summary(files), null, 2) + '\n')
    renameSync(tmp, this.summaryPath)
    writeFileSync(this.journalPath, '')
    this.dirty = false
  }
}

function readLines (path: string): BatchEntry[] {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
  // a line cut short by a kill is the last one: everything before it is whole
  return text.split('\n').filter(l => l.trim() !== '').flatMap(l => {
    try {
      return [JSON.parse(l) as BatchEntry]
    } catch {
      return []
    }
  })
}

/** Counts for the progress line. */
interface Counts {
  done: number
  failed: number
  running: number
  skipped: number
  /** finished in this run, for the rate */
  finishedNow: number
}

/** Writes a file whole or not at all. */
function writeWhole (path: string, bytes: Uint8Array | string): void {
  const tmp = `${path}.${process.pid}.tmp`
  writeFileSync(tmp, bytes)
  renameSync(tmp, path)
}

function outputBytes (text: string | undefined, base64: string | undefined): Buffer {
  return base64 != null ? Buffer.from(base64, 'base64') : Buffer.from(text ?? '', 'utf8')
}

/** One batch run: the state, the counts, the queue of inputs. */
class BatchRun {
  readonly counts: Counts = { done: 0, failed: 0, running: 0, skipped: 0, finishedNow: 0 }
  private next = 0
  private recent?: JobView[]
  readonly state: BatchState
  readonly moduleCid: string
  readonly opts: BatchOptions
  readonly files: string[]

  constructor (opts: BatchOptions, files: string[]) {
    this.opts = opts
    this.files = files
    this.moduleCid = inputCidOf(opts.module)
    this.state = new BatchState(opts.out, opts.modulePath.split('/').pop() ?? opts.modulePath, this.moduleCid, opts.o)
  }

  /** Takes inputs off the queue until none is left or the batch is stopped. */
  async worker (): Promise<void> {
    while (!this.opts.signal.aborted && this.next < this.files.length) {
      const file = this.files[this.next++]
      await this.runOne(file)
    }
  }

  private async runOne (file: string): Promise<void> {
    const input = readFileSync(join(this.opts.dir, file))
    const inputCid = inputCidOf(input)
    const prev = this.state.get(file)
    const same = prev?.inputCid === inputCid
    if (same && prev?.status === 'succeeded') {
      this.counts.skipped++
      this.counts.done++
      return
    }
    this.counts.running++
    try {
      let jobId = same && prev != null && UNDER_WAY.has(prev.status) ? prev.jobId ?? await this.findSubmitted(inputCid) : undefined
      jobId ??= await this.submit(file, input, inputCid)
      if (jobId == null) return
      const view = await this.waitFinal(jobId)
      if (view === 'gone') {
        // the daemon does not know the job a killed run recorded: submit it again
        const again = await this.submit(file, input, inputCid)
        if (again == null) return
        await this.finish(file, inputCid, await this.waitFinal(again))
      } else {
        await this.finish(file, inputCid, view)
      }
    } finally {
      this.counts.running--
    }
  }

  /** A job a killed run submitted but did not live to record: the daemon's newest unclaimed job of this module and input. */
  private async findSubmitted (inputCid: string): Promise<string | undefined> {
    this.recent ??= (await this.opts.api.call('jobs', { limit: 1000 })).jobs
    const claimed = this.state.jobIds()
    return this.recent.find(j => j.moduleCid === this.moduleCid && j.inputCid === inputCid && !claimed.has(j.jobId))?.jobId
  }

  /** Submits one input; its job ID, or undefined when the daemon refused it (recorded as `error`). */
  private async submit (file: string, input: Buffer, inputCid: string): Promise<string | undefined> {
    if (this.opts.signal.aborted) return undefined
    const base = { file, inputCid, exitCode: null, outputCid: null }
    this.state.record({ ...base, jobId: null, status: 'submitting' })
    try {
      const accepted = await this.opts.api.submitJobByCid({ ...this.opts.request, input: input.toString('base64') }, this.opts.module, { timeoutMs: 120_000 })
      this.state.record({ ...base, jobId: accepted.jobId, status: 'running' })
      return accepted.jobId
    } catch (err) {
      const code = (err as { code?: string }).code
      // the daemon is gone: the batch cannot go on, and the input is not at fault
      if (code === 'DAEMON_NOT_RUNNING') throw err
      this.state.record({ ...base, jobId: null, status: 'error', message: `${code ?? 'ERROR'}: ${(err as Error).message}` })
      this.counts.failed++
      this.counts.done++
      this.counts.finishedNow++
      return undefined
    }
  }

  /** Polls the job until it has its final answer (the full view), 'gone' when the daemon does not know it, 'stopped' when the batch is. */
  private async waitFinal (jobId: string): Promise<JobView | 'gone' | 'stopped'> {
    for (;;) {
      let v: JobView
      try {
        v = await this.opts.api.call('job', { id: jobId, full: false })
      } catch (err) {
        if ((err as { code?: string }).code === 'JOB_NOT_FOUND') return 'gone'
        throw err
      }
      if (v.final) return await this.opts.api.call('job', { id: jobId, full: true })
      if (await pause(POLL_MS, { signal: this.opts.signal })) return 'stopped'
    }
  }

  private async finish (file: string, inputCid: string, view: JobView | 'gone' | 'stopped'): Promise<void> {
    if (view === 'gone' || view === 'stopped') return
    writeWhole(join(this.opts.out, `${file}.stdout`), outputBytes(view.stdout, view.stdoutBase64))
    writeWhole(join(this.opts.out, `${file}.stderr`), outputBytes(view.stderr, view.stderrBase64))
    const ok = view.status === 'succeeded'
    this.state.record({ file, jobId: view.jobId, status: view.status, exitCode: view.exitCode, outputCid: view.outputCid, inputCid, ...(ok ? {} : { message: view.message }) })
    this.counts.done++
    this.counts.finishedNow++
    if (!ok) this.counts.failed++
  }

  /** After a stop: cancels the jobs under way (`job cancel`) and records what became of them. */
  async cancelUnderWay (): Promise<number> {
    let n = 0
    for (const file of this.files) {
      const e = this.state.get(file)
      if (e == null || !UNDER_WAY.has(e.status) || e.jobId == null) continue
      try {
        const done = await this.opts.api.call('cancelJob', { id: e.jobId })
        this.state.record({ ...e, status: done.job.status, exitCode: done.job.exitCode, outputCid: done.job.outputCid })
        n++
      } catch (err) {
        this.opts.o.err(`could not cancel job ${e.jobId} of ${file}: ${(err as Error).message}`)
      }
    }
    return n
  }
}

/** The progress line: done, running, failed, rate and time left. */
function progressLine (run: BatchRun, started: number): string {
  const c = run.counts
  const elapsed = (Date.now() - started) / 1000
  const rate = elapsed > 0 ? c.finishedNow / elapsed : 0
  const left = run.files.length - c.done
  const eta = rate > 0 ? duration(left / rate * 1000) : '?'
  return `${c.done}/${run.files.length} done (${c.skipped} skipped), ${c.running} running, ${c.failed} failed, ${rate.toFixed(1)}/s, ${eta} left`
}

/** Shows progress as the mode says, and folds the journal into summary.json every second; returns the stop. */
function startTicker (run: BatchRun, started: number): () => void {
  const { opts } = run
  let lastPlain = Date.now()
  const timer = setInterval(() => {
    run.state.flush(run.files)
    if (opts.progress === 'tty') process.stderr.write(`\r\x1b[K${progressLine(run, started)}`)
    else if (opts.progress === 'plain' && Date.now() - lastPlain >= PLAIN_PROGRESS_MS) {
      lastPlain = Date.now()
      opts.o.err(progressLine(run, started))
    }
  }, opts.progress === 'tty' ? 250 : FLUSH_MS)
  return () => {
    clearInterval(timer)
    if (opts.progress === 'tty') process.stderr.write(`\r\x1b[K${progressLine(run, started)}\n`)
  }
}

/**
 * Runs the batch; the exit code: 0 exactly when every input succeeded, 1 when
 * any did not, 130 when stopped (the jobs under way are cancelled first).
 */
export async function runBatch (opts: BatchOptions): Promise<number> {
  const files = batchInputs(opts.dir)
  if (files.length === 0) throw new UsageError(`job submit: --batch ${opts.dir} holds no regular file`)
  const run = new BatchRun(opts, files)
  const started = Date.now()
  const stopTicker = startTicker(run, started)
  try {
    await Promise.all(Array.from({ length: Math.min(opts.parallel, files.length) }, async () => { await run.worker() }))
  } finally {
    stopTicker()
    run.state.flush(files, true)
  }
  if (opts.signal.aborted) {
    const cancelled = await run.cancelUnderWay()
    run.state.flush(files, true)
    opts.o.err(`stopped: ${cancelled} job(s) under way cancelled; ${run.counts.done} of ${files.length} input(s) done; run the same command again to go on`)
    return 130
  }
  const summary = run.state.summary(files)
  if (opts.json) printJson(opts.o, summary)
  else opts.o.err(`${summary.succeeded}/${summary.total} succeeded, ${summary.failed} did not (${join(opts.out, 'summary.json')}) in ${duration(Date.now() - started)}`)
  return summary.succeeded === summary.total ? 0 : 1
}
