import { readFileSync, statSync } from 'node:fs'
import { commonOptions, parse, UsageError, type Options } from '../args.ts'
import { ApiClient } from '../../api/client.ts'
import { resolveDataDir } from '../../config/data-dir.ts'
import { parseBytes, parseDurationMs } from '../../config/config.ts'
import { ConfigError } from '../../core/errors.ts'
import { duration, shortPeerId } from '../../core/format.ts'
import { printJson, type Output } from '../output.ts'
import { DEFAULT_JOB_LIMITS } from '../../core/job.ts'
import { preparedDirs, saveJobFiles } from '../job-files.ts'
import { MAX_SUBMIT_PAYLOAD_BYTES } from '../../api/routes.ts'
import { BLOB_UPLOAD_THRESHOLD_BYTES, fileRawCid } from '../../api/blobs.ts'
import { DEFAULT_PARALLEL, runBatch, type BatchOptions } from './batch.ts'
import type { JobLimits, JobView } from '../../core/job.ts'

export const help = `worldcompute job submit MODULE.wasm [--input FILE|-] [--arg A]... [--env K=V]... [--replicas N]
                        [--executor PEER_ID]... [--dir HOST[::GUEST]]... [--save DIR]
                        [--deadline D] [--fuel N] [--memory SIZE] [--detach]
                        [--data-dir DIR] [--json]
worldcompute job submit MODULE.wasm --batch DIR --out OUT [--parallel N] [--arg A]... [--env K=V]...
                        [--replicas N] [--executor PEER_ID]... [--deadline D] [--fuel N] [--memory SIZE]
                        [--data-dir DIR] [--json]
worldcompute job status JOB_ID [--data-dir DIR] [--json]
worldcompute job result JOB_ID [--save DIR] [--data-dir DIR] [--json]
worldcompute job list [--data-dir DIR] [--json]
worldcompute job cancel JOB_ID [--data-dir DIR] [--json]

Runs a WASI command module (wasm32-wasi from C, Rust, Go, Zig, AssemblyScript…)
on the mesh through the daemon of --data-dir. stdin is the --input file, argv
is the module name and the --arg values, the environment is the --env values.
With --replicas N, N distinct donors run it and a strict majority must agree;
no two of them in one network (an IPv4 /24 or IPv6 /48, as observed), so that
identities from one place cannot out-vote the others (docs/trust-model.md).
--executor PEER_ID (repeatable) runs the job only on these executors, trusted
ones in a private mesh; the network rule then does not apply between them.
submit waits for the answer unless --detach; the exit code is 0 exactly when
the job succeeded, 3 when it was cancelled, 1 for any other answer.
cancel stops every replica of a job (each executor stops the run and frees the
slot) and makes its final status \`cancelled\`; exit code 0 when the job is
cancelled (by this or an earlier cancel), 4 when it had already finished with
another answer (nothing is changed), 1 for an unknown job.
With --batch DIR, one job runs per regular file of DIR (its stdin), in name
order, --parallel N at a time (default 8); OUT gets <file>.stdout,
<file>.stderr and summary.json ({ file, jobId, status, exitCode, outputCid,
inputCid } per input, kept current as it goes; summary.journal holds the
last second's changes until they are folded in). Running it again with the
same OUT skips inputs already succeeded with the same content and waits for
jobs a killed run left under way. Exit code 0 exactly when every input
succeeded, 1 otherwise; Ctrl-C stops submitting, cancels the jobs under way
and exits 130.

job submit:
  --input FILE|-     the job's stdin: a file, or - for this command's stdin
                     (default: empty). A module or input file over 8 MiB is
                     uploaded to the daemon first, streamed, and named by CID;
                     a smaller module is named by CID too, and uploaded only
                     when the daemon does not hold it yet (a module submitted
                     again, or per input of a batch, is sent once)
  --arg A            one argument after the module name; repeatable
  --env K=V          one environment variable; repeatable
  --replicas N       distinct donors that run it; a strict majority must agree
                     (default 1)
  --executor PEER_ID run only on this executor; repeatable
  --dir HOST[::GUEST]
                     preopen the host directory HOST at GUEST (default: HOST
                     made absolute, e.g. data -> /data); repeatable. Its
                     regular files and empty directories go with the job
                     (content-addressed: a donor that holds a file is not sent
                     it again; a file over 8 MiB is uploaded first and named
                     by CID, like a big input); the job reads and writes an
                     in-memory copy, and HOST is never modified. Symbolic
                     links are refused.
  --save DIR         write the files the job created or changed under
                     DIR/<guest path> (also \`job result JOB_ID --save DIR\`);
                     files it removed are listed, not deleted
  --deadline D       how long the job may take: 90s, 10m, 1h, 500ms; a plain
                     number is seconds (default 60s, or the donor's
                     --max-deadline when lower)
  --fuel N           metered WebAssembly blocks the job may run (default 2^50:
                     the deadline binds first for an honest program)
  --memory SIZE      memory the job may use: 64MiB, 1GiB; a plain number is
                     MiB (default 256MiB, or the donor's --max-job-memory
                     when lower)
  --detach           print the job id and return at once; \`job status\` and
                     \`job result\` follow it
  --data-dir DIR     the daemon to submit through (or WORLDCOMPUTE_DATA_DIR)
  --batch DIR        one job per regular file of DIR (with --out)
  --out OUT          where a batch writes its outputs and summary.json
  --parallel N       batch jobs in flight at once (default 8)
  --json             print the final job (or, with --detach, the acceptance;
                     with --batch, the summary) as JSON`

const POLL_MS = 200
const PROGRESS_MS = 10_000

function client (dataDir: string | undefined): ApiClient {
  return new ApiClient({ dataDir: resolveDataDir(dataDir) })
}

function summary (v: JobView): string {
  const replicas = v.replicas.filter(r => r.state === 'done')
  const paths = replicas.map(r => `${shortPeerId(r.executor)} (${r.path ?? '?'}${r.receiptVerified ? ', receipt verified' : ''})`).join(', ')
  return `job ${v.jobId}: ${v.status}${v.exitCode != null && v.exitCode !== 0 ? ` (exit ${v.exitCode})` : ''} in ${(v.durationMs / 1000).toFixed(2)} s — ${v.message}` +
    (v.executors != null ? `\n  only on: ${v.executors.join(', ')}` : '') +
    (paths !== '' ? `\n  executors: ${paths}` : '') +
    (v.fuelUsed != null ? `\n  fuel used: ${v.fuelUsed}` : '')
}

function printResult (o: Output, v: JobView, json: boolean): void {
  if (json) {
    printJson(o, v)
    return
  }
  if (v.stdout != null && v.stdout !== '') process.stdout.write(v.stdout.endsWith('\n') ? v.stdout : v.stdout + '\n')
  if (v.stderr != null && v.stderr !== '') o.err(`--- stderr ---\n${v.stderr.trimEnd()}`)
  o.err(summary(v))
}

/** `job submit` / `job result` of a job that was cancelled. */
export const EXIT_CANCELLED = 3
/** `job cancel` of a job that had already finished with another answer: nothing changed. */
export const EXIT_ALREADY_FINISHED = 4

function exitFor (v: JobView): number {
  return v.status === 'succeeded' ? 0 : v.status === 'cancelled' ? EXIT_CANCELLED : 1
}

async function cancel (argv: string[], o: Output): Promise<number> {
  const { values, positionals } = parse(argv, commonOptions, 'job cancel')
  if (values.help) { o.out(help); return 0 }
  if (positionals.length !== 1) throw new UsageError('job cancel: give exactly one JOB_ID')
  const done = await client(values['data-dir']).call('cancelJob', { id: positionals[0] }, { timeoutMs: 30_000 })
  if (values.json) printJson(o, done)
  else if (done.outcome === 'cancelled') {
    const unreached = done.unreached.length > 0 ? `; not reached in time: ${done.unreached.map(shortPeerId).join(', ')} (the task lapses there by itself)` : ''
    o.out(`job ${done.job.jobId} cancelled: ${done.stopped} task(s) stopped on their executors${unreached}`)
  } else if (done.outcome === 'already-cancelled') o.out(`job ${done.job.jobId} was already cancelled: nothing changed`)
  else o.out(`job ${done.job.jobId} had already finished (${done.job.status}): nothing changed`)
  return done.outcome === 'already-finished' ? EXIT_ALREADY_FINISHED : 0
}

/**
 * Says at once when the daemon knows fewer executors than the job needs:
 * the broker waits for more (up to its own timeout, minutes) and would
 * otherwise say nothing meanwhile.
 */
async function warnFewExecutors (api: ApiClient, replicas: number, o: Output): Promise<void> {
  const { knownExecutors, executorsListening } = await api.call('status', {})
  // a daemon that has not listened yet learns its executors with this job: no count to warn with
  if (knownExecutors == null || executorsListening === false || knownExecutors >= replicas) return
  o.err(`warning: ${replicas} replica(s) wanted but the daemon knows ${knownExecutors} other peer(s) that accept jobs; ` +
    'the job waits for more (a daemon does not run the jobs it submits), and fails as unavailable if none come')
}

async function waitForFinal (api: ApiClient, jobId: string, o: Output, progress: boolean): Promise<JobView> {
  let last = ''
  let shownAt = Date.now()
  const started = shownAt
  // bounded by the job itself: the broker always reaches a final state (result, no agreement, or unavailable)
  for (;;) {
    const v = await api.call('job', { id: jobId, full: false })
    const line = `${v.status}: ${v.message}` + v.replicas.map(r => ` [${shortPeerId(r.executor)} ${r.state}${r.path != null ? ` ${r.path}` : ''}]`).join('')
    // on a terminal, an unchanged state is repeated every PROGRESS_MS with the time waited, so a long wait is visibly alive
    if (progress && (line !== last || Date.now() - shownAt >= PROGRESS_MS)) {
      o.err(`  ${line}${line === last ? ` (${duration(Date.now() - started)} so far)` : ''}`)
      shownAt = Date.now()
    }
    last = line
    if (v.final) return await api.call('job', { id: jobId, full: true })
    await new Promise(resolve => setTimeout(resolve, POLL_MS))
  }
}

/** A positive flag value read by `read`; a value it refuses is a usage error naming the flag. */
function positive (v: string | undefined, flag: string, read: (v: string) => number): number | undefined {
  if (v == null) return undefined
  let n: number
  try {
    n = read(v)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    throw new UsageError(`job submit: ${err.message}`)
  }
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`job submit: ${flag} must be a positive number, got "${v}"`)
  return n
}

/** The limits a submitter asks for: units as on the daemon's flags, plain numbers as seconds and MiB. */
export function jobLimits (values: { deadline?: string, fuel?: string, memory?: string }): Partial<JobLimits> {
  const limits: Partial<JobLimits> = {}
  const deadline = positive(values.deadline, '--deadline', v => parseDurationMs(v, '--deadline'))
  if (deadline != null) limits.deadlineMs = deadline
  const fuel = positive(values.fuel, '--fuel', Number)
  if (fuel != null) limits.fuel = Math.round(fuel)
  const memory = positive(values.memory, '--memory', v => parseBytes(v, '--memory', 'mib'))
  if (memory != null) limits.memoryBytes = memory
  return limits
}

async function submit (argv: string[], o: Output): Promise<number> {
  const { values, positionals } = parse(argv, {
    ...commonOptions,
    input: { type: 'string' },
    arg: { type: 'string', multiple: true },
    env: { type: 'string', multiple: true },
    replicas: { type: 'string' },
    executor: { type: 'string', multiple: true },
    deadline: { type: 'string' },
    fuel: { type: 'string' },
    memory: { type: 'string' },
    detach: { type: 'boolean', default: false },
    dir: { type: 'string', multiple: true },
    save: { type: 'string' },
    batch: { type: 'string' },
    out: { type: 'string' },
    parallel: { type: 'string' }
  }, 'job submit')
  if (values.help) { o.out(help); return 0 }
  if (positionals.length !== 1) throw new UsageError('job submit: give exactly one MODULE.wasm')
  const modulePath = positionals[0]
  const module = submitPart(modulePath, modulePath)
  if (values.batch != null) checkBatchFlags(values)
  else if (values.out != null || values.parallel != null) throw new UsageError('job submit: --out and --parallel go with --batch DIR')
  const input: SubmitPart = values.input === '-' ? inlinePart(readFileSync(0)) : values.input != null ? submitPart(values.input, `--input ${values.input}`) : inlinePart(Buffer.alloc(0))
  const limits = jobLimits(values)
  const replicas = positive(values.replicas, '--replicas', Number) ?? 1
  for (const e of values.env ?? []) if (!e.includes('=')) throw new UsageError(`job submit: --env takes K=V, got "${e}"`)
  if (values.save != null && values.detach) throw new UsageError('job submit: --save waits for the result; with --detach use `job result JOB_ID --save DIR`')
  const api = client(values['data-dir'])
  // directory files over the upload threshold go to the daemon as blobs first, like a big module or input
  const prepared = await preparedDirs(values.dir, MAX_SUBMIT_PAYLOAD_BYTES - inlineBytes(module) - inlineBytes(input), { put: async (cid, path) => await api.putBlob(cid, path) })
  const dirs = prepared?.dirs
  askForPayload(limits, module.size + input.size + (prepared?.bytes ?? 0))

  if (values.executor == null) await warnFewExecutors(api, replicas, o)
  if (values.batch != null) {
    const request = { moduleName: modulePath.split('/').pop() ?? 'main.wasm', args: values.arg ?? [], env: values.env ?? [], replicas, limits, ...(values.executor != null ? { executors: values.executor } : {}) }
    return await submitBatch(api, { ...values, batch: values.batch }, { modulePath, module: module.bytes ?? readFileSync(modulePath), request }, o)
  }
  const inputField = await sendPart(api, input)
  const request = {
    input: inputField.data,
    ...(inputField.cid != null ? { inputCid: inputField.cid } : {}),
    moduleName: modulePath.split('/').pop() ?? 'main.wasm',
    args: values.arg ?? [],
    env: values.env ?? [],
    replicas,
    limits,
    ...(values.executor != null ? { executors: values.executor } : {}),
    ...(dirs != null ? { dirs } : {})
  }
  // a small module is named by CID (uploaded once, when the daemon lacks it): submitting it again sends no module bytes
  const accepted = module.bytes != null
    ? await api.submitJobByCid(request, module.bytes, { timeoutMs: 120_000 })
    : await api.call('submitJob', { ...request, module: '', moduleCid: (await sendPart(api, module)).cid }, { timeoutMs: 120_000 })
  if (values.detach) {
    if (values.json) printJson(o, accepted)
    else o.out(accepted.jobId)
    return 0
  }
  const progress = !values.json && process.stderr.isTTY === true
  if (progress) o.err(`job ${accepted.jobId} accepted (${replicas} replica(s))`)
  const final = await waitForFinal(api, accepted.jobId, o, progress)
  printResult(o, final, values.json)
  if (values.save != null) await saveIfAny(api, final, values.save, o)
  return exitFor(final)
}

/**
 * A module or input of a submit: its bytes when small, else only its path
 * and size: a file over BLOB_UPLOAD_THRESHOLD_BYTES is uploaded as a blob
 * (streamed from disk, `PUT /v1/blobs/{cid}`) and named by CID, so neither
 * this command nor the daemon holds it whole, and no JSON body carries it.
 */
interface SubmitPart { size: number, bytes?: Buffer, path?: string }

function inlinePart (bytes: Buffer): SubmitPart {
  return { size: bytes.byteLength, bytes }
}

/** `what` names the file in a usage error ("--input data.bin"). */
function submitPart (path: string, what: string): SubmitPart {
  try {
    const size = statSync(path).size
    return size > BLOB_UPLOAD_THRESHOLD_BYTES ? { size, path } : inlinePart(readFileSync(path))
  } catch (err) {
    throw new UsageError(`job submit: cannot read ${what}: ${(err as Error).message}`)
  }
}

function inlineBytes (part: SubmitPart): number {
  return part.bytes?.byteLength ?? 0
}

/** The submit's field for a part: base64 bytes, or (uploaded) empty bytes and the blob's CID. */
async function sendPart (api: ApiClient, part: SubmitPart): Promise<{ data: string, cid?: string }> {
  if (part.path == null) return { data: (part.bytes ?? Buffer.alloc(0)).toString('base64') }
  const cid = await fileRawCid(part.path)
  await api.putBlob(cid, part.path)
  return { data: '', cid }
}

/**
 * A job bigger than the default payload limit asks for what it needs, so
 * that donors whose `--max-payload` allows it take it and the others decline
 * it by code (`limits`) instead of the broker refusing it outright.
 */
function askForPayload (limits: Partial<JobLimits>, total: number): void {
  if (total > DEFAULT_JOB_LIMITS.payloadBytes && limits.payloadBytes == null) limits.payloadBytes = total
}

/** `job result` takes `--save DIR` besides the common options. */
const resultOptions = { ...commonOptions, save: { type: 'string' } } as const satisfies Options

/** `--save DIR`: the job's output files, when it had directories and an agreed result. */
async function saveIfAny (api: ApiClient, v: JobView, dir: string, o: Output): Promise<void> {
  if (v.manifestCid == null) {
    o.err(`job ${v.jobId} was submitted without --dir: it has no files to save`)
    return
  }
  if (v.outputCid == null) {
    o.err(`job ${v.jobId} has no agreed result (${v.status}): no files to save`)
    return
  }
  await saveJobFiles(api, v.jobId, dir, o)
}

function checkBatchFlags (values: { input?: string, out?: string, detach: boolean }): void {
  if (values.out == null) throw new UsageError('job submit: --batch DIR needs --out OUT (where the outputs and summary.json go)')
  if (values.input != null) throw new UsageError('job submit: --batch DIR gives each job its stdin: leave out --input')
  if (values.detach) throw new UsageError('job submit: --batch waits for its jobs: leave out --detach')
}

/** `job submit --batch`: runs the batch until done or Ctrl-C (which cancels the jobs under way). */
async function submitBatch (api: ApiClient, values: { batch: string, out?: string, parallel?: string, json: boolean }, job: Pick<BatchOptions, 'modulePath' | 'module' | 'request'>, o: Output): Promise<number> {
  const stop = new AbortController()
  const onSignal = (): void => { stop.abort() }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    return await runBatch({
      ...job,
      api,
      dir: values.batch,
      out: values.out ?? '',
      parallel: Math.round(positive(values.parallel, '--parallel', Number) ?? DEFAULT_PARALLEL),
      json: values.json,
      o,
      signal: stop.signal,
      progress: values.json ? 'none' : process.stderr.isTTY === true ? 'tty' : 'plain'
    })
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}

async function status (argv: string[], o: Output, full: boolean): Promise<number> {
  const { values, positionals } = parse(argv, full ? resultOptions : commonOptions, full ? 'job result' : 'job status')
  const save = 'save' in values && typeof values.save === 'string' ? values.save : undefined
  if (values.help) { o.out(help); return 0 }
  if (positionals.length !== 1) throw new UsageError(`job ${full ? 'result' : 'status'}: give exactly one JOB_ID`)
  const v = await client(values['data-dir']).call('job', { id: positionals[0], full })
  if (full) {
    printResult(o, v, values.json)
    if (save != null && v.final) await saveIfAny(client(values['data-dir']), v, save, o)
    return v.final ? exitFor(v) : 1
  }
  if (values.json) printJson(o, v)
  else {
    o.out(summary(v))
    for (const r of v.replicas) {
      o.out(`  ${r.taskId}  ${r.executor}  ${r.state}${r.path != null ? ` ${r.path}` : ''}${r.status != null ? ` → ${r.status}` : ''}${r.failure != null ? `: ${r.failure}` : ''}`)
    }
  }
  return 0
}

async function list (argv: string[], o: Output): Promise<number> {
  const { values } = parse(argv, commonOptions, 'job list')
  if (values.help) { o.out(help); return 0 }
  const { jobs } = await client(values['data-dir']).call('jobs', { limit: 50 })
  if (values.json) {
    printJson(o, jobs)
    return 0
  }
  if (jobs.length === 0) o.out('no jobs yet; submit one with `worldcompute job submit MODULE.wasm`')
  for (const j of jobs) {
    o.out(`${j.jobId}  ${j.status.padEnd(17)} ${j.createdAt}  ${j.replicas.filter(r => r.state === 'done').length}/${j.replicasWanted} replica(s)  ${j.message}`)
  }
  return 0
}

export async function run (argv: string[], o: Output): Promise<number> {
  const [sub, ...rest] = argv
  switch (sub) {
    case 'submit': return await submit(rest, o)
    case 'status': return await status(rest, o, false)
    case 'result': return await status(rest, o, true)
    case 'list': return await list(rest, o)
    case 'cancel': return await cancel(rest, o)
    case undefined:
    case '--help':
    case '-h':
      o.out(help)
      return sub == null ? 2 : 0
    default:
      throw new UsageError(`job: unknown subcommand "${sub}" (submit, status, result, list, cancel)`)
  }
}
