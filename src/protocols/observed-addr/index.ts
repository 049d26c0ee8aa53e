/**
 * @packageDocumentation
 *
 * `/worldcompute/observed-addr/1.0.0`: broker → relay `{ v: 1, peer }`, relay
 * → broker `{ v: 1, ip? }`: the IP address the relay's socket saw the peer's
 * reservation come from. A broker places the replicas of one job in distinct
 * networks by what it or a relay observed, never by what an executor claims
 * (broker/replica-networks.ts).
 *
 * ```ts
 * services: { observedAddr: observedAddr({ lookup: (peer) => hop.observedAddrOf(peer) }) }   // relay
 * const ip = await fetchObservedAddr(connectionToRelay, executorPeerId, { signal })      // broker
 * ```
 */
import { ObservedAddrService } from './observed-addr.ts'
import type { ObservedAddrComponents, ObservedAddrInit } from './observed-addr.ts'

export { ObservedAddrService, directIpOf, fetchObservedAddr, encodeObservedAddrRequest, decodeObservedAddrRequest, encodeObservedAddrAnswer, decodeObservedAddrAnswer } from './observed-addr.ts'
export type { ObservedAddrComponents, ObservedAddrInit, ObservedAddrRequest, ObservedAddrAnswer } from './observed-addr.ts'
export { OBSERVED_ADDR_PROTOCOL } from './constants.ts'

export function observedAddr (init: ObservedAddrInit = {}): (components: ObservedAddrComponents) => ObservedAddrService {
  return (components) => new ObservedAddrService(components, init)
}
