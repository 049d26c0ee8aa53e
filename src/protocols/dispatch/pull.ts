/**
 * Big modules, inputs and directory files fetched by CID rather than pushed
 * on the dispatch stream: the broker names them in the header (`pullModule`,
 * `pullInput`, `pullFiles`) and grants the donor a fetch of them while the
 * dispatch lasts; the donor takes them from its content store, fetching what
 * it lacks over the dispatch's own connection (the fetch protocol,
 * protocols/fetch).
 */
import { codeOf, messageOf } from '../errors.ts'
import { ContentStoreFullError, ContentTooLargeError, FetchRefusedError, PULL_THRESHOLD_BYTES, type FetchService } from '../fetch/index.ts'
import type { DispatchHeader, RefusalCode } from '../../codec/messages.ts'
import type { PulledFile } from './tree-transfer.ts'
import type { Payload } from '../framing.ts'
import type { Connection } from '@libp2p/interface'

/** What the dispatch service uses of the fetch service: grants (broker), fetches and the store's copies (donor). */
export type PayloadFetcher = Pick<FetchService, 'grant' | 'fetch' | 'held'>

/** Which parts of a task the donor pulls: the module, the input, directory files (by CID, with the bytes the broker serves). */
export interface Pulls { module?: boolean, input?: boolean, files?: Array<[string, Payload]> }

/** Broker: a module or input over the threshold, for a donor that said it fetches. */
export function pullsOf (task: { module?: { byteLength: number }, input: { byteLength: number }, donorFetches?: boolean }, thresholdBytes = PULL_THRESHOLD_BYTES): Pulls {
  if (task.donorFetches !== true) return {}
  return {
    ...(task.module != null && task.module.byteLength > thresholdBytes ? { module: true } : {}),
    ...(task.input.byteLength > thresholdBytes ? { input: true } : {})
  }
}

/**
 * Donor: the module and input the header says to pull, from the content
 * store or fetched. A donor that cannot keep them (a full disk, a blob over
 * its store) or a broker that does not serve them is a refusal with its code
 * (nothing ran; the broker offers the task elsewhere); a fetch that failed on
 * the way throws, like a dispatch stream that broke.
 */
export async function pulledPayloads (fetcher: PayloadFetcher | undefined, header: DispatchHeader, connection: Connection, signal: AbortSignal): Promise<{ module?: Uint8Array, input?: Uint8Array } | Refused> {
  if (header.pullModule !== true && header.pullInput !== true) return {}
  if (fetcher == null) return { refusal: { code: 'other', reason: 'this donor does not fetch by CID: send the module and input on the dispatch stream' } }
  return await refusing(async () => {
    const module = header.pullModule === true ? await fetcher.fetch(connection, { cid: header.moduleCid, size: header.moduleSize, what: 'module' }, { signal }) : undefined
    const input = header.pullInput === true ? await fetcher.fetch(connection, { cid: header.inputCid, size: header.inputSize, what: 'input' }, { signal }) : undefined
    return { ...(module != null ? { module } : {}), ...(input != null ? { input } : {}) }
  })
}

/**
 * Donor: the directory files the header says to pull, by CID, from the
 * content store or fetched one after another; refusals and failures as
 * `pulledPayloads`. The store keeps the one copy between tasks; the bytes
 * the run gets are those just fetched, or read from the store when held.
 */
export async function pulledFiles (fetcher: PayloadFetcher | undefined, files: readonly PulledFile[], connection: Connection, signal: AbortSignal): Promise<{ files: Map<string, Uint8Array> } | Refused> {
  if (files.length === 0) return { files: new Map() }
  if (fetcher == null) return { refusal: { code: 'other', reason: 'this donor does not fetch by CID: send the directory files on the dispatch stream' } }
  return await refusing(async () => {
    const out = new Map<string, Uint8Array>()
    for (const { cid, size } of files) out.set(cid, await fetcher.fetch(connection, { cid, size, what: 'directory file' }, { signal }))
    return { files: out }
  })
}

/** A pull this donor declines (nothing ran; the broker offers the task elsewhere). */
export interface Refused { refusal: { code: RefusalCode, reason: string } }

/** `pull`'s result, or its failure as a refusal when the failure is one (a full store, a refused fetch); other failures throw. */
async function refusing<T> (pull: () => Promise<T>): Promise<T | Refused> {
  try {
    return await pull()
  } catch (err) {
    const code = refusalOf(err)
    if (code == null) throw err
    return { refusal: { code, reason: `${codeOf(err)}: ${messageOf(err)}` } }
  }
}

function refusalOf (err: unknown): RefusalCode | undefined {
  if (err instanceof ContentStoreFullError) return 'disk-full'
  if (err instanceof ContentTooLargeError) return 'payload-too-large'
  if (err instanceof FetchRefusedError) return 'other'
  return undefined
}
