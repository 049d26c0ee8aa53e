/**
 * The CLI's side of a job's files: `--dir` trees sent with `job submit`, and
 * `--save DIR` (on `job submit` and `job result`) writing the agreed output
 * files under `DIR/<guest path>`. Files the job removed are listed, never
 * deleted: DIR is the user's, and a removal in the guest says nothing about it.
 */
import { lstat, mkdir, realpath, writeFile } from 'node:fs/promises'
import { dirname, join, resolve, sep } from 'node:path'
import { UsageError } from './args.ts'
import { DirArgError, parseDirArg, readDirTrees } from './dir-args.ts'
import { errorWithCode } from '../core/errors.ts'
import { isNormalGuestPath } from '../core/tree.ts'
import type { ApiClient } from '../api/client.ts'
import type { SubmitDir } from '../api/routes.ts'
import type { Output } from './output.ts'

/** An output file could not be written under the --save directory (or would land outside it). */
export class SaveFilesError extends errorWithCode('SAVE_FILES_FAILED') {}

/** The `--dir` values read into the API's shape; undefined without any. `maxBytes`: what the payload limit leaves. */
export async function submittedDirs (values: string[] | undefined, maxBytes: number): Promise<SubmitDir[] | undefined> {
  if (values == null || values.length === 0) return undefined
  try {
    const dirs = await readDirTrees(values.map(parseDirArg), { maxBytes })
    return dirs.map(d => ({
      guest: d.guest,
      files: d.files.map(f => ({ path: f.path, data: Buffer.from(f.data.buffer, f.data.byteOffset, f.data.byteLength).toString('base64') })),
      ...(d.emptyDirs != null ? { emptyDirs: d.emptyDirs } : {})
    }))
  } catch (err) {
    if (err instanceof DirArgError) throw new UsageError(`job submit: ${err.message}`)
    throw err
  }
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
