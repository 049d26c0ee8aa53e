/**
 * Content addressing of a job's directories (`job submit --dir`).
 *
 * Every file is a blob named by its CIDv1 raw sha2-256, as modules and inputs
 * are. The tree is a manifest: dag-cbor of the preopens sorted by guest
 * path, each with its files (path, CID, size) and empty directories sorted by
 * path; its CIDv1 dag-cbor names the whole tree. Blobs travel apart from the
 * manifest, so a donor that already holds one is not sent it again.
 *
 * Results: the files a job created or changed travel as one dag-cbor
 * document (`encodeOutputFiles`) after stdout and stderr, and `outputCid`
 * covers them (see receipt.ts `encodeOutput`).
 */
import * as dagCbor from '@ipld/dag-cbor'
import { comparePaths, isNormalGuestPath, isUnder, MAX_GUEST_PATH_BYTES, findNested } from '../core/tree.ts'
import { dagCborCidString, rawCidString } from './cid.ts'
import { MalformedMessageError } from './errors.ts'
import { decodeBounded, FieldReader } from './validate.ts'
import type { JobDir, JobFile } from '../core/job.ts'
import type { AbortOptions } from '@libp2p/interface'

/** Preopened directories of one job. */
export const MAX_PREOPENS = 64
/** Files and empty directories of one job's tree, all preopens together. */
export const MAX_TREE_ENTRIES = 65_536
/** A manifest at MAX_TREE_ENTRIES with long paths; checked before parsing. */
export const MAX_MANIFEST_BYTES = 32 * 1024 * 1024

/** One file of a manifest: its guest path, the CID of its bytes and their size. */
export interface ManifestFile {
  path: string
  cid: string
  size: number
}

export interface ManifestDir {
  guest: string
  files: ManifestFile[]
  emptyDirs: string[]
}

/** A job's tree without its bytes, as the broker sends it and the donor checks it. */
export interface TreeManifest {
  dirs: ManifestDir[]
}

/** A file's bytes read in chunks from where they are kept (a blob file on the broker), with their size. */
export interface BlobSource {
  /** the size it must have: a source that yields another size fails the send */
  readonly byteLength: number
  /** its bytes from the start, in chunks of any size */
  chunks: (options?: AbortOptions) => AsyncIterable<Uint8Array>
}

/** A tree file's bytes, or their source for a file too big to hold in memory. */
export type TreeBlob = Uint8Array | BlobSource

/** A file whose CID is known already (checked when its blob was stored), so it is not read to be addressed. */
export interface AddressedFile {
  path: string
  cid: string
  data: TreeBlob
}

/** A preopen to address: its files given as bytes, or as blobs already addressed. */
export interface TreeDir {
  guest: string
  files: Array<JobFile | AddressedFile>
  emptyDirs?: string[]
}

/** A tree split into its manifest and its blobs by CID. */
export interface AddressedTree {
  manifest: TreeManifest
  /** dag-cbor of the manifest, exactly as sent and hashed */
  manifestBytes: Uint8Array
  /** CIDv1 dag-cbor sha2-256 of `manifestBytes` */
  manifestCid: string
  /** every distinct file's bytes (or their source, for a stored blob file), by CID */
  blobs: Map<string, TreeBlob>
}

/** Files the job created or changed, and the ones it removed (see ExecuteResult). */
export interface OutputFiles {
  files: JobFile[]
  removed: string[]
}

/**
 * Addresses a tree: sorts it, hashes each file given as bytes (a file given
 * with its CID keeps it), and encodes the manifest. Throws
 * MalformedMessageError (type "manifest") naming the entry when a path is not
 * normalised, not under its preopen, or given twice, or a CID is not raw.
 */
export function addressTree (dirs: TreeDir[]): AddressedTree {
  const blobs = new Map<string, TreeBlob>()
  const sorted = [...dirs].sort((a, b) => comparePaths(a.guest, b.guest))
  const manifest: TreeManifest = {
    dirs: sorted.map(d => ({
      guest: d.guest,
      files: [...d.files].sort((a, b) => comparePaths(a.path, b.path)).map(f => {
        const cid = 'cid' in f ? f.cid : rawCidString(f.data)
        blobs.set(cid, f.data)
        return { path: f.path, cid, size: f.data.byteLength }
      }),
      emptyDirs: [...(d.emptyDirs ?? [])].sort(comparePaths)
    }))
  }
  const manifestBytes = encodeManifest(manifest)
  return { manifest, manifestBytes, manifestCid: dagCborCidString(manifestBytes), blobs }
}

/** dag-cbor of a manifest after the decoder's checks, so a tree a donor would refuse fails here. */
export function encodeManifest (manifest: TreeManifest): Uint8Array {
  const wire = { dirs: manifest.dirs.map(d => ({ guest: d.guest, files: d.files.map(f => ({ path: f.path, cid: f.cid, size: f.size })), emptyDirs: d.emptyDirs })) }
  readManifest(new FieldReader('manifest', wire))
  const bytes = dagCbor.encode(wire)
  if (bytes.byteLength > MAX_MANIFEST_BYTES) throw new MalformedMessageError('manifest', '(message)', `is ${bytes.byteLength} bytes, over the ${MAX_MANIFEST_BYTES}-byte limit`)
  return bytes
}

export function decodeManifest (bytes: Uint8Array): TreeManifest {
  return readManifest(new FieldReader('manifest', decodeBounded('manifest', bytes, MAX_MANIFEST_BYTES)))
}

/** The distinct blob CIDs of a manifest, largest file first (what matters most to not send twice). */
export function manifestBlobCids (manifest: TreeManifest): string[] {
  const sizes = new Map<string, number>()
  for (const d of manifest.dirs) for (const f of d.files) sizes.set(f.cid, f.size)
  return [...sizes].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([cid]) => cid)
}

/**
 * The preopens an executor gets: the manifest with each file's bytes from
 * `blob`. Returns the CIDs `blob` did not have instead, when any.
 */
export function treeFromManifest (manifest: TreeManifest, blob: (cid: string) => Uint8Array | undefined): { dirs: JobDir[] } | { missing: string[] } {
  const missing = new Set<string>()
  const dirs = manifest.dirs.map(d => ({
    guest: d.guest,
    files: d.files.map(f => {
      const data = blob(f.cid)
      if (data == null) missing.add(f.cid)
      return { path: f.path, data: data ?? new Uint8Array(0) }
    }),
    ...(d.emptyDirs.length > 0 ? { emptyDirs: d.emptyDirs } : {})
  }))
  return missing.size > 0 ? { missing: [...missing] } : { dirs }
}

// ---- checks ----------------------------------------------------------------

function readManifest (r: FieldReader): TreeManifest {
  const list = r.value.dirs
  if (!Array.isArray(list)) r.fail('dirs', 'must be a list of preopens')
  if (list.length > MAX_PREOPENS) r.fail('dirs', `must have at most ${MAX_PREOPENS} preopens, got ${list.length}`)
  const seen = new Set<string>()
  let entries = 0
  const dirs = list.map((item: unknown, i: number) => {
    const dir = readManifestDir(new FieldReader(r.messageType, item, r.fieldPath(`dirs[${i}]`)), seen)
    entries += dir.files.length + dir.emptyDirs.length
    if (entries > MAX_TREE_ENTRIES) r.fail('dirs', `must have at most ${MAX_TREE_ENTRIES} files and empty directories in all`)
    return dir
  })
  const nested = findNested(dirs.map(d => d.guest), [])
  // each preopen is a tree of its own: a job could write one guest path through both, and its result name it twice
  if (nested !== undefined) r.fail('dirs', `preopens "${nested.outer.slice(0, 80)}" and "${nested.inner.slice(0, 80)}" nest: preopen the outer directory only`)
  return { dirs }
}

function readManifestDir (r: FieldReader, seen: Set<string>): ManifestDir {
  const guest = readGuestPath(r, 'guest')
  if (seen.has(guest)) r.fail('guest', `is preopened twice: "${guest}"`)
  const files = listOf(r, 'files', (m) => {
    const path = checkUnder(m, 'path', readGuestPath(m, 'path'), guest, seen)
    return { path, cid: m.cid('cid', 'raw'), size: m.integer('size', { min: 0, max: Number.MAX_SAFE_INTEGER }) }
  })
  const emptyDirs = listOfStrings(r, 'emptyDirs').map((p, i) => checkUnder(r, `emptyDirs[${i}]`, checkNormal(r, `emptyDirs[${i}]`, p), guest, seen))
  const clash = findNested(files.map(f => f.path), emptyDirs)
  if (clash !== undefined) r.fail('files', `names "${clash.outer.slice(0, 80)}" as a file and "${clash.inner.slice(0, 80)}" under it: a path cannot be both a file and a directory`)
  seen.add(guest)
  return { guest, files, emptyDirs }
}

function readGuestPath (r: FieldReader, key: string): string {
  return checkNormal(r, key, r.string(key, { maxLength: MAX_GUEST_PATH_BYTES }))
}

function checkNormal (r: FieldReader, key: string, path: string): string {
  if (!isNormalGuestPath(path)) r.fail(key, `must be a normalised absolute path (no ".", ".." or empty segments), got ${JSON.stringify(path.slice(0, 80))}`)
  return path
}

/** A path strictly under the preopen `guest`, not seen before in the tree. */
function checkUnder (r: FieldReader, key: string, path: string, guest: string, seen: Set<string>): string {
  if (path === guest || !isUnder(path, guest)) r.fail(key, `must lie under its preopen "${guest}", got ${JSON.stringify(path.slice(0, 80))}`)
  if (seen.has(path)) r.fail(key, `names "${path}" twice`)
  seen.add(path)
  return path
}

function listOf<T> (r: FieldReader, key: string, read: (m: FieldReader) => T): T[] {
  const v = r.value[key]
  if (!Array.isArray(v)) r.fail(key, 'must be a list')
  if (v.length > MAX_TREE_ENTRIES) r.fail(key, `must have at most ${MAX_TREE_ENTRIES} entries, got ${v.length}`)
  return v.map((item: unknown, i: number) => read(new FieldReader(r.messageType, item, r.fieldPath(`${key}[${i}]`))))
}

function listOfStrings (r: FieldReader, key: string): string[] {
  if (!r.has(key)) return []
  return r.stringArray(key, { maxItems: MAX_TREE_ENTRIES, maxItemLength: MAX_GUEST_PATH_BYTES, minItemLength: 1 })
}

// ---- result files ----------------------------------------------------------

/** The files document that follows stdout and stderr in a dispatch answer: dag-cbor `{ files: [{path, data}], removed }`. */
export function encodeOutputFiles (out: OutputFiles): Uint8Array {
  const wire = outputFilesWire(out)
  readOutputFiles(new FieldReader('output files', wire), Number.MAX_SAFE_INTEGER)
  return dagCbor.encode(wire)
}

/** Decodes the files document, its bytes bounded by `maxBytes` (the broker's output limit). */
export function decodeOutputFiles (bytes: Uint8Array, maxBytes: number): OutputFiles {
  return readOutputFiles(new FieldReader('output files', decodeBounded('output files', bytes, maxBytes)), maxBytes)
}

/** The wire shape, also the `files`/`removed` part of the output document that outputCid hashes. */
export function outputFilesWire (out: OutputFiles): { files: Array<{ path: string, data: Uint8Array }>, removed: string[] } {
  return { files: out.files.map(f => ({ path: f.path, data: f.data })), removed: out.removed }
}

function readOutputFiles (r: FieldReader, maxBytes: number): OutputFiles {
  const seen = new Set<string>()
  const files = listOf(r, 'files', (m) => {
    const path = readGuestPath(m, 'path')
    if (seen.has(path)) m.fail('path', `names "${path}" twice`)
    seen.add(path)
    return { path, data: m.bytes('data', { maxBytes }) }
  })
  const removed = listOfStrings(r, 'removed').map((p, i) => checkNormal(r, `removed[${i}]`, p))
  return { files, removed }
}
