/**
 * The CLI's side of a job's files: `--dir` trees sent with `job submit`, and
 * `--save DIR` (on `job submit` and `job result`) writing the agreed output
 * files under `DIR/<guest path>`. Files the job removed are listed, never
 * deleted: DIR is the user's, and a removal in the guest says nothing about it.
 */
import { lstat, mkdir, realpath, stat, writeFile } from 'node:fs/promises'
import { dirname, join, resolve, sep } from 'node:path'
import { UsageError } from './args.ts'
import { DirArgError, parseDirArg, readDirTreesLeavingLarge, type LargeFile } from './dir-args.ts'
import { BLOB_UPLOAD_THRESHOLD_BYTES, fileRawCid } from '../api/blobs.ts'
import { errorWithCode } from '../core/errors.ts'
import { isNormalGuestPath } from '../core/tree.ts'
import type { ApiClient } from '../api/client.ts'
import type { SubmitDir } from '../api/routes.ts'
import type { Output } from './output.ts'

/** An output file could not be written under the --save directory (or would land outside it). */
export class SaveFilesError extends errorWithCode('SAVE_FILES_FAILED') {}

/** The `--dir` values read into the API's shape, every file inline; undefined without any. `maxBytes`: what the payload limit leaves. */
export async function submittedDirs (values: string[] | undefined, maxBytes: number): Promise<SubmitDir[] | undefined> {
  return (await preparedDirs(values, maxBytes))?.dirs
}

/** Where files over the threshold go before the submit: `PUT /v1/blobs/{cid}`, streamed from `path`. */
export interface DirUploads {
  put: (cid: string, path: string) => Promise<unknown>
  /** files over this size are uploaded, the rest go inline @default 8 MiB (BLOB_UPLOAD_THRESHOLD_BYTES, as a module or input) */
  overBytes?: number
}

/**
 * The `--dir` values in the API's shape, and the bytes of all their files.
 * With `uploads`, a file over its threshold is not read into the submit: it
 * is hashed and streamed to the daemon as a blob and named by `cid` (empty
 * `data`), so a big file neither sits in this process nor in a JSON body.
 * `maxBytes` bounds only the files sent inline.
 */
export async function preparedDirs (values: string[] | undefined, maxBytes: number, uploads?: DirUploads): Promise<{ dirs: SubmitDir[], bytes: number } | undefined> {
  if (values == null || values.length === 0) return undefined
  try {
    const read = await readDirTreesLeavingLarge(values.map(parseDirArg), { maxBytes, largeOverBytes: uploads != null ? uploads.overBytes ?? BLOB_UPLOAD_THRESHOLD_BYTES : Infinity })
    const dirs: SubmitDir[] = read.dirs.map(d => ({
      guest: d.guest,
      files: d.files.map(f => ({ path: f.path, data: Buffer.from(f.data.buffer, f.data.byteOffset, f.data.byteLength).toString('base64') })),
      ...(d.emptyDirs != null ? { emptyDirs: d.emptyDirs } : {})
    }))
    let bytes = dirBytes(dirs)
    for (const file of read.large) {
      const cid = await uploadLarge(file, uploads)
      dirs.find(d => d.guest === file.guest)?.files.push({ path: file.path, data: '', cid })
      bytes += file.size
    }
    return { dirs, bytes }
  } catch (err) {
    if (err instanceof DirArgError) throw new UsageError(`job submit: ${err.message}`)
    throw err
  }
}

/** Hashes a large file and uploads it; refused when it changes while hashed (the daemon's CID check catches a change after). */
async function uploadLarge (file: LargeFile, uploads: DirUploads | undefined): Promise<string> {
  if (uploads == null) throw new Error('a large directory file was left unread without an upload target')
  const cid = await fileRawCid(file.host)
  const after = await stat(file.host)
  if (after.size !== file.size) throw new DirArgError(`${file.host} changed while it was read (${file.size} → ${after.size} bytes); submit again once it is written`)
  await uploads.put(cid, file.host)
  return cid
}

/** Bytes of the files of submitted directories (base64 decoded). */
export function dirBytes (dirs: SubmitDir[] | undefined): number {
  let n = 0
  for (const d of dirs ?? []) for (const f of d.files) n += Buffer.byteLength(f.data, 'base64')
  return n
}

/**
 * Writes the job's agreed output files under `dir` (created as needed) and
 * lists the files it removed. Refuses any path that would land outside `dir`,
 * through '..' or a symbolic link already in it.
 */
export async function saveJobFiles (api: Pick<ApiClient, 'call'>, jobId: string, dir: string, o: Output): Promise<void> {
  const { files, removed } = await api.call('jobFiles', { id: jobId }, { timeoutMs: 120_000 })
  await mkdir(dir, { recursive: true })
  const root = await realpath(resolve(dir))
  for (const file of files) {
    const target = await targetOf(root, file.path)
    await writeFile(target, Buffer.from(file.data, 'base64')).catch((err: NodeJS.ErrnoException) => {
      throw new SaveFilesError(`cannot write ${target} (${err.code ?? err.message})`, { cause: err })
    })
  }
  o.err(`saved ${files.length} file(s) of job ${jobId} under ${root}`)
  for (const path of removed) o.err(`  removed by the job (not deleted here): ${path}`)
}

/** Where a guest path goes under `root`, its parent directories created; refused when it would leave `root`. */
async function targetOf (root: string, guestPath: string): Promise<string> {
  if (!isNormalGuestPath(guestPath) || guestPath === '/') throw new SaveFilesError(`refusing output file "${guestPath.slice(0, 80)}": not a normalised guest path`)
  const target = join(root, ...guestPath.slice(1).split('/'))
  if (!target.startsWith(root + sep)) throw new SaveFilesError(`refusing output file ${guestPath}: it would be written outside ${root}`)
  await mkdir(dirname(target), { recursive: true })
  const parent = await realpath(dirname(target))
  if (parent !== root && !parent.startsWith(root + sep)) throw new SaveFilesError(`refusing output file ${guestPath}: a symbolic link under ${root} leads outside it`)
  // absent is the usual case: only an existing symbolic link matters here
  const existing = await lstat(target).catch((err: NodeJS.ErrnoException) => { if (err.code === 'ENOENT') return undefined; throw err })
  if (existing?.isSymbolicLink() === true) throw new SaveFilesError(`refusing output file ${guestPath}: ${target} is a symbolic link`)
  return target
}
