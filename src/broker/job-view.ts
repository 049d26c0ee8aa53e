import { rawCidString } from '../codec/cid.ts'
import { errorWithCode } from '../core/errors.ts'
import { storedOutputFiles } from './job-tree.ts'
import type { OutputFiles } from '../codec/manifest.ts'
import type { JobView, ReplicaView } from '../core/job.ts'
import type { JobRow, TaskRow } from './job-store.ts'

const utf8 = new TextDecoder('utf-8', { fatal: true })

function text (bytes: Uint8Array | null): { text: string, base64?: string } {
  if (bytes == null) return { text: '' }
  try {
    return { text: utf8.decode(bytes) }
  } catch {
    // not valid UTF-8: give a lossy text for reading and the exact bytes in base64
    return { text: new TextDecoder('utf-8').decode(bytes), base64: Buffer.from(bytes).toString('base64') }
  }
}

/** Builds the API's view of a job; `full` adds the agreed stdout and stderr. */
export function jobView (job: JobRow, tasks: TaskRow[], full: boolean): JobView {
  const replicas: ReplicaView[] = tasks.map(t => ({
    executor: t.executor,
    taskId: t.taskId,
    path: t.path,
    state: t.state,
    status: t.outcome?.status ?? null,
    exitCode: t.outcome?.exitCode ?? null,
    outputCid: t.outcome?.outputCid ?? null,
    fuelUsed: t.outcome?.fuelUsed ?? null,
    receiptVerified: t.outcome?.receiptVerified ?? false,
    failure: t.failure
  }))
  const final = job.final
  const end = job.finishedAt != null ? Date.parse(job.finishedAt) : Date.now()
  const view: JobView = {
    jobId: job.jobId,
    status: final != null ? final.status : job.phase === 'queued' ? 'queued' : 'running',
    final: final != null,
    message: final?.message ?? (job.phase === 'queued' ? 'waiting for an executor' : `${tasks.filter(t => t.state === 'done').length}/${job.replicas} replica(s) done`),
    exitCode: final?.exitCode ?? null,
    error: final?.error ?? null,
    outputCid: final?.outputCid ?? null,
    fuelUsed: final?.fuelUsed ?? null,
    durationMs: end - Date.parse(job.createdAt),
    replicasWanted: job.replicas,
    ...(job.executors != null ? { executors: job.executors } : {}),
    replicas,
    moduleCid: job.moduleCid,
    inputCid: job.inputCid,
    createdAt: job.createdAt,
    finishedAt: job.finishedAt,
    ...(job.manifestCid != null ? { manifestCid: job.manifestCid } : {})
  }
  if (full && final?.outputCid != null) {
    const agreeing = tasks.find(t => t.state === 'done' && t.outcome?.outputCid === final.outputCid)
    const out = text(agreeing?.stdout ?? null)
    const err = text(agreeing?.stderr ?? null)
    view.stdout = out.text
    view.stderr = err.text
    if (out.base64 != null) view.stdoutBase64 = out.base64
    if (err.base64 != null) view.stderrBase64 = err.base64
    const files = agreedFiles(job, tasks)
    if (files != null) {
      view.files = files.files.map(f => ({ path: f.path, size: f.data.byteLength, cid: rawCidString(f.data) }))
      view.removedFiles = files.removed
    }
  }
  return view
}

/** The API's answer with the agreed output files' bytes (base64): all of them, or the one at `path`. */
export function jobFilesView (job: JobRow, tasks: TaskRow[], path?: string): { jobId: string, files: Array<{ path: string, size: number, cid: string, data: string }>, removed: string[] } {
  const files = agreedFiles(job, tasks)
  if (files == null) throw new JobFilesUnavailableError(`job ${job.jobId} has no output files${job.manifestCid == null ? ' (it was submitted without --dir)' : job.final == null ? ' yet (it has not finished)' : ' (no agreed result)'}`)
  const chosen = path != null ? files.files.filter(f => f.path === path) : files.files
  if (path != null && chosen.length === 0) throw new JobFilesUnavailableError(`job ${job.jobId} wrote no file ${path}${files.removed.includes(path) ? ' (it removed it)' : ''}`)
  return {
    jobId: job.jobId,
    files: chosen.map(f => ({ path: f.path, size: f.data.byteLength, cid: rawCidString(f.data), data: Buffer.from(f.data).toString('base64') })),
    removed: files.removed
  }
}

/** The output files asked for do not exist (no `--dir`, not finished, no agreement, no such file). */
export class JobFilesUnavailableError extends errorWithCode('JOB_FILES_UNAVAILABLE') {}

/** The output files of a job's agreed result; undefined before agreement, or for a job without directories. */
export function agreedFiles (job: JobRow, tasks: TaskRow[]): OutputFiles | undefined {
  const agreed = job.final?.outputCid
  if (agreed == null || job.manifestCid == null) return undefined
  return storedOutputFiles(tasks.find(t => t.state === 'done' && t.outcome?.outputCid === agreed)?.files ?? null)
}
