/**
 * Big modules and inputs fetched by CID rather than pushed on the dispatch
 * stream: the broker names them in the header (`pullModule`, `pullInput`)
 * and grants the donor a fetch of them while the dispatch lasts; the donor
 * takes them from its content store, fetching what it lacks over the
 * dispatch's own connection (the fetch protocol, protocols/fetch).
 */
import { codeOf, messageOf } from '../errors.ts'
import { ContentStoreFullError, ContentTooLargeError, FetchRefusedError, PULL_THRESHOLD_BYTES, type FetchService } from '../fetch/index.ts'
import type { DispatchHeader, RefusalCode } from '../../codec/messages.ts'
import type { Connection } from '@libp2p/interface'

/** What the dispatch service uses of the fetch service: grants (broker), fetches and the store's copies (donor). */
export type PayloadFetcher = Pick<FetchService, 'grant' | 'fetch' | 'held'>

/** Which parts of a task the donor pulls. */
export interface Pulls { module?: boolean, input?: boolean }

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
export async function pulledPayloads (fetcher: PayloadFetcher | undefined, header: DispatchHeader, connection: Connection, signal: AbortSignal): Promise<{ module?: Uint8Array, input?: Uint8Array } | { refusal: { code: RefusalCode, reason: string } }> {
  if (header.pullModule !== true && header.pullInput !== true) return {}
  if (fetcher == null) return { refusal: { code: 'other', reason: 'this donor does not fetch by CID: send the module and input on the dispatch stream' } }
  try {
    const module = header.pullModule === true ? await fetcher.fetch(connection, { cid: header.moduleCid, size: header.moduleSize, what: 'module' }, { signal }) : undefined
    const input = header.pullInput === true ? await fetcher.fetch(connection, { cid: header.inputCid, size: header.inputSize, what: 'input' }, { signal }) : undefined
    return { ...(module != null ? { module } : {}), ...(input != null ? { input } : {}) }
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
