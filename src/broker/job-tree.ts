/**
 * A job's directories on the broker: addressed when the job is accepted
 * (its files stored as blobs by CID beside the module and input), loaded
 * again for its run, and the agreed output files read back for the API.
 */
import { MalformedMessageError } from '../codec/errors.ts'
import { addressTree, decodeManifest, decodeOutputFiles } from '../codec/manifest.ts'
import { errorWithCode } from '../core/errors.ts'
import type { AddressedTree, OutputFiles, TreeBlob, TreeDir } from '../codec/manifest.ts'
import type { JobStore } from './job-store.ts'

/** The submitted directories cannot be a job's tree (a path outside its preopen, a path twice, too many entries). */
export class JobTreeInvalidError extends errorWithCode('JOB_TREE_INVALID') {}

/** The tree of a submitted job, or undefined without directories; throws JobTreeInvalidError naming the entry. */
export function submittedTree (dirs: TreeDir[] | undefined): AddressedTree | undefined {
  if (dirs == null || dirs.length === 0) return undefined
  try {
    return addressTree(dirs)
  } catch (err) {
    if (err instanceof MalformedMessageError) throw new JobTreeInvalidError(`the job's directories: ${err.field}: ${err.message}`, { cause: err })
    throw err
  }
}

/** Bytes of the tree's distinct files: what counts against the payload limit. */
export function treeBytes (tree: AddressedTree | undefined): number {
  let n = 0
  for (const bytes of tree?.blobs.values() ?? []) n += bytes.byteLength
  return n
}

/**
 * The stored tree of a job; undefined when the store lost any of it. Each
 * file comes from `fileOf`: the broker gives a blob file's source there (a
 * file uploaded by CID has no bytes in the job store); by default the job
 * store's bytes.
 */
export function loadTree (store: Pick<JobStore, 'getBlob'>, manifestCid: string, fileOf: (cid: string) => TreeBlob | undefined = cid => store.getBlob(cid)): AddressedTree | undefined {
  const manifestBytes = store.getBlob(manifestCid)
  if (manifestBytes == null) return undefined
  const manifest = decodeManifest(manifestBytes)
  const blobs = new Map<string, TreeBlob>()
  for (const dir of manifest.dirs) {
    for (const file of dir.files) {
      const bytes = blobs.get(file.cid) ?? fileOf(file.cid)
      if (bytes == null) return undefined
      blobs.set(file.cid, bytes)
    }
  }
  return { manifest, manifestBytes, manifestCid, blobs }
}

/** A stored task's output files document, decoded (it was checked when it arrived). */
export function storedOutputFiles (bytes: Uint8Array | null): OutputFiles | undefined {
  return bytes != null ? decodeOutputFiles(bytes, Number.MAX_SAFE_INTEGER) : undefined
}
