/**
 * A job's directories on the dispatch stream, after the input: the manifest
 * as a payload, then each blob the donor does not hold as a BlobHeader frame
 * and its bytes. Blobs are checked against their CIDs as they arrive and kept
 * by the donor in a bounded content cache (largest-first names in the offer
 * let it say which it has), so a file sent once is not sent again. A big
 * file, to a donor that fetches by CID, is not on the stream at all: the
 * header names it (`pullFiles`) and the donor fetches it into its content
 * store (pull.ts), as a big module or input.
 */
import { dagCborCid, parseCid, rawCid } from '../../codec/cid.ts'
import { decodeBlobHeader, encodeBlobHeader, MAX_PULL_FILES } from '../../codec/messages.ts'
import { decodeManifest, MAX_MANIFEST_BYTES } from '../../codec/manifest.ts'
import { WorldComputeError } from '../../core/errors.ts'
import { PayloadTooLargeError, ProtocolViolationError } from '../errors.ts'
import type { DispatchHeader } from '../../codec/messages.ts'
import type { AddressedTree, TreeManifest } from '../../codec/manifest.ts'
import type { FramedStream, Payload, PayloadOptions } from '../framing.ts'

/** The donor lacks directory blobs the broker did not send (evicted since its offer): dispatch again with all of them. */
export class FilesNotCachedError extends WorldComputeError {
  constructor (peer: string, taskId: string) {
    super(`donor ${peer} no longer holds some directory files of task ${taskId}: dispatch again with all of them`, 'FILES_NOT_CACHED')
  }
}

/** The blobs of `tree` to send: all but those the donor said it holds, in manifest order. */
export function blobsToSend (tree: AddressedTree, donorHas: readonly string[] | undefined): Array<[string, Payload]> {
  const skip = new Set(donorHas ?? [])
  return [...tree.blobs].filter(([cid]) => !skip.has(cid))
}

/**
 * Broker: which of the blobs to send go on the stream and which the donor
 * fetches (over `thresholdBytes`, for a donor that fetches; at most
 * MAX_PULL_FILES, the rest pushed).
 */
export function splitPulledFiles (blobs: Array<[string, Payload]>, thresholdBytes: number | undefined): { push: Array<[string, Payload]>, pull: Array<[string, Payload]> } {
  if (thresholdBytes == null) return { push: blobs, pull: [] }
  const pull = blobs.filter(([, bytes]) => bytes.byteLength > thresholdBytes).slice(0, MAX_PULL_FILES)
  const pulled = new Set(pull.map(([cid]) => cid))
  return { push: blobs.filter(([cid]) => !pulled.has(cid)), pull }
}

/** Broker: the manifest, then each blob to send behind its header (a blob file read in chunks, not whole). */
export async function writeTree (io: FramedStream, tree: AddressedTree, blobs: Array<[string, Payload]>, sending: (base: number) => PayloadOptions, base: number): Promise<void> {
  await io.writePayload(tree.manifestBytes, sending(base))
  let sent = base + tree.manifestBytes.byteLength
  for (const [cid, bytes] of blobs) {
    await io.writeFrame(encodeBlobHeader({ cid, size: bytes.byteLength }), sending(sent))
    await io.writePayload(bytes, sending(sent))
    sent += bytes.byteLength
  }
}

/** A directory file the header names for the donor to fetch, with its size from the manifest. */
export interface PulledFile {
  cid: string
  size: number
}

/** What a donor read of a task's tree: the manifest, the blobs that came with it (verified), and the files to fetch. */
export interface ReceivedTree {
  manifest: TreeManifest
  blobs: Map<string, Uint8Array>
  /** `pullFiles` of the header, each a file of the manifest, in canonical spelling */
  pull: PulledFile[]
  /** the pulled files' bytes once fetched, read from the content store (not kept in the cache of pushed files too) */
  fetched: Map<string, Uint8Array>
}

/**
 * Donor: reads the manifest and the blobs announced in the header, each
 * blob at most `maxBlobBytes` and checked against its CID. A manifest or blob
 * that does not match its CID is the broker's protocol violation.
 */
export async function readTree (io: FramedStream, header: DispatchHeader, maxBlobBytes: number, options: PayloadOptions): Promise<ReceivedTree | undefined> {
  if (header.manifestCid == null || header.manifestSize == null) return undefined
  if (header.manifestSize > MAX_MANIFEST_BYTES) throw new PayloadTooLargeError(`manifest: announced ${header.manifestSize} bytes, over the ${MAX_MANIFEST_BYTES}-byte limit`, MAX_MANIFEST_BYTES)
  const bytes = await io.readPayload(header.manifestSize, 'manifest', options)
  if (!(parseCid(header.manifestCid)?.equals(dagCborCid(bytes)) ?? false)) {
    throw new ProtocolViolationError(`task ${header.taskId}: the manifest does not match manifestCid ${header.manifestCid}`)
  }
  const manifest = decodeManifest(bytes)
  const blobs = new Map<string, Uint8Array>()
  for (let i = 0; i < (header.blobCount ?? 0); i++) {
    const blob = await io.readMessage(decodeBlobHeader, 'blob header', options)
    if (blob.size > maxBlobBytes) throw new PayloadTooLargeError(`directory file ${blob.cid}: announced ${blob.size} bytes, over this donor's ${maxBlobBytes}-byte limit`, maxBlobBytes)
    const data = await io.readPayload(blob.size, 'directory file', options)
    const cid = rawCid(data)
    if (!(parseCid(blob.cid)?.equals(cid) ?? false)) throw new ProtocolViolationError(`task ${header.taskId}: a directory file does not match its CID ${blob.cid}`)
    blobs.set(cid.toString(), data)
  }
  return { manifest, blobs, pull: filesToPull(header, manifest, maxBlobBytes), fetched: new Map() }
}

/** The header's `pullFiles` with their sizes: each must be a file of the manifest, at most `maxBlobBytes`. */
function filesToPull (header: DispatchHeader, manifest: TreeManifest, maxBlobBytes: number): PulledFile[] {
  if (header.pullFiles == null || header.pullFiles.length === 0) return []
  const sizes = new Map<string, number>()
  for (const dir of manifest.dirs) for (const file of dir.files) sizes.set(parseCid(file.cid)?.toString() ?? file.cid, file.size)
  return header.pullFiles.map(name => {
    const cid = parseCid(name)?.toString() ?? name
    const size = sizes.get(cid)
    if (size == null) throw new ProtocolViolationError(`task ${header.taskId}: pullFiles names ${name}, which is no file of its manifest`)
    if (size > maxBlobBytes) throw new PayloadTooLargeError(`directory file ${cid}: ${size} bytes, over this donor's ${maxBlobBytes}-byte limit`, maxBlobBytes)
    return { cid, size }
  })
}

/** Donor, for a dispatch it refused: reads past the tree, keeping nothing. */
export async function skipTree (io: FramedStream, header: DispatchHeader, options: PayloadOptions): Promise<void> {
  if (header.manifestSize == null) return
  await io.skipPayload(header.manifestSize, 'manifest', options)
  for (let i = 0; i < (header.blobCount ?? 0); i++) {
    const blob = await io.readMessage(decodeBlobHeader, 'blob header', options)
    await io.skipPayload(blob.size, 'directory file', options)
  }
}
