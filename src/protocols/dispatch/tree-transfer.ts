/**
 * A job's directories on the dispatch stream, after the input: the manifest
 * as a payload, then each blob the donor does not hold as a BlobHeader frame
 * and its bytes. Blobs are checked against their CIDs as they arrive and kept
 * by the donor in a bounded content cache (largest-first names in the offer
 * let it say which it has), so a file sent once is not sent again.
 */
import { dagCborCid, parseCid, rawCid } from '../../codec/cid.ts'
import { decodeBlobHeader, encodeBlobHeader } from '../../codec/messages.ts'
import { decodeManifest, MAX_MANIFEST_BYTES } from '../../codec/manifest.ts'
import { WorldComputeError } from '../../core/errors.ts'
import { PayloadTooLargeError, ProtocolViolationError } from '../errors.ts'
import type { DispatchHeader } from '../../codec/messages.ts'
import type { AddressedTree, TreeManifest } from '../../codec/manifest.ts'
import type { FramedStream, PayloadOptions } from '../framing.ts'

/** The donor lacks directory blobs the broker did not send (evicted since its offer): dispatch again with all of them. */
export class FilesNotCachedError extends WorldComputeError {
  constructor (peer: string, taskId: string) {
    super(`donor ${peer} no longer holds some directory files of task ${taskId}: dispatch again with all of them`, 'FILES_NOT_CACHED')
  }
}

/** The blobs of `tree` to send: all but those the donor said it holds, in manifest order. */
export function blobsToSend (tree: AddressedTree, donorHas: readonly string[] | undefined): Array<[string, Uint8Array]> {
  const skip = new Set(donorHas ?? [])
  return [...tree.blobs].filter(([cid]) => !skip.has(cid))
}

/** Broker: the manifest, then each blob to send behind its header. */
export async function writeTree (io: FramedStream, tree: AddressedTree, blobs: Array<[string, Uint8Array]>, sending: (base: number) => PayloadOptions, base: number): Promise<void> {
  await io.writePayload(tree.manifestBytes, sending(base))
  let sent = base + tree.manifestBytes.byteLength
  for (const [cid, bytes] of blobs) {
    await io.writeFrame(encodeBlobHeader({ cid, size: bytes.byteLength }), sending(sent))
    await io.writePayload(bytes, sending(sent))
    sent += bytes.byteLength
  }
}

/** What a donor read of a task's tree: the manifest and the blobs that came with it, verified. */
export interface ReceivedTree {
  manifest: TreeManifest
  blobs: Map<string, Uint8Array>
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
  return { manifest, blobs }
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
