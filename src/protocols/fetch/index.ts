/**
 * @packageDocumentation
 *
 * `/worldcompute/fetch/1.0.0`: a donor fetches a big module, input or directory file by CID
 * from the broker that dispatched it, over the dispatch's own connection,
 * into its on-disk content store; the broker serves only the CIDs of tasks it
 * dispatched to that donor.
 *
 * ```ts
 * services: {
 *   fetch: fetch({ serve: true })            // broker
 *   fetch: fetch({ store: contentStore })    // donor
 * }
 * const release = node.services.fetch.grant(donorPeerId, cid, payload)   // broker, while the dispatch lasts
 * const bytes = await node.services.fetch.fetch(connection, { cid, size, what: 'input' }, { signal })   // donor
 * ```
 */
import { FetchService } from './fetch.ts'
import type { FetchComponents, FetchInit } from './fetch.ts'

export { FetchService } from './fetch.ts'
export type { ContentSink, ContentWrite, FetchComponents, FetchInit, FetchWant, GrantOptions, OffsetPayloadSource } from './fetch.ts'
export { ContentCidMismatchError, ContentStoreFullError, ContentTooLargeError, FetchFailedError, FetchRefusedError } from './errors.ts'
export { CONTENT_STORE_BYTES, FETCH_PROTOCOL, PULL_THRESHOLD_BYTES } from './constants.ts'

export function fetch (init: FetchInit = {}): (components: FetchComponents) => FetchService {
  return (components) => new FetchService(components, init)
}
