/**
 * @packageDocumentation
 *
 * `/worldcompute/capacity/1.0.0`: how brokers find executors.
 *
 * - request/response: open a stream, read the peer's capacity (or `null`
 *   from a node that runs no jobs);
 * - gossip: donors publish their capacity on `CAPACITY_TOPIC` when it
 *   changes, when a peer joins the topic, and every `announceIntervalMs`
 *   (30 s) unchanged; listeners keep a table that forgets a donor after
 *   three silent intervals;
 * - on connect: a peer whose identify lists the protocol is asked at once;
 * - `/worldcompute/capacity-table/1.0.0`: a node with `serveTable` (a relay)
 *   answers with the executors it heard of, a frame each, then an empty
 *   frame; a node that starts listening asks every connected peer that
 *   serves it, so it learns the mesh within a round trip.
 *
 * ```ts
 * services: {
 *   pubsub: gossipsub({ runOnLimitedConnection: true }),
 *   capacity: capacity({ getCapacity: () => donor.capacity() })
 * }
 * node.services.capacity.addEventListener('executor:added', evt => { … })
 * ```
 *
 * The service must come after `pubsub` in `services`: libp2p hands each
 * service the components built so far.
 */
import { CapacityService } from './capacity.ts'
import type { CapacityComponents, CapacityInit } from './capacity.ts'

export { CapacityService } from './capacity.ts'
export type { CapacityComponents, CapacityEvents, CapacityInfo, CapacityInit, CapacityPubSub, CapacityPubSubEvents, PubSubMessage, SubscriptionChange } from './capacity.ts'
export type { Capacity, CapacityResponse } from '../../codec/messages.ts'
export { CAPACITY_PROTOCOL, CAPACITY_TABLE_PROTOCOL, CAPACITY_TOPIC } from './constants.ts'
/** Gossip payload helpers: the announcement on CAPACITY_TOPIC is one dag-cbor Capacity. */
export { encodeCapacity as encodeCapacityAnnouncement, decodeCapacity as decodeCapacityAnnouncement } from '../../codec/messages.ts'

export function capacity (init: CapacityInit = {}): (components: CapacityComponents) => CapacityService {
  return (components) => new CapacityService(components, init)
}
