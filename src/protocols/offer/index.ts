/**
 * @packageDocumentation
 *
 * `/worldcompute/offer/1.0.0`: broker → donor `{ jobId, taskId, moduleCid,
 * moduleSize, inputSize, limits }`, donor → broker `{ accept, reason?, code?,
 * hasModule, freeSlots }` (`code`: why it declined, see DECLINE_CODES). One
 * dag-cbor frame each way.
 *
 * ```ts
 * services: {
 *   offer: offer({ decideOffer: (req) => donor.decide(req) })   // donor
 *   offer: offer()                                               // broker
 * }
 * const answer = await node.services.offer.offer(peerIdOrConnection, req, { signal })
 * ```
 */
import { OfferService } from './offer.ts'
import type { OfferComponents, OfferInit } from './offer.ts'

export { OfferService } from './offer.ts'
export type { DecideOffer, OfferComponents, OfferContext, OfferInit } from './offer.ts'
export type { DeclineCode, OfferRequest, OfferResponse } from '../../codec/messages.ts'
export { DECLINE_CODES } from '../../codec/messages.ts'
export { OFFER_PROTOCOL } from './constants.ts'

export function offer (init: OfferInit = {}): (components: OfferComponents) => OfferService {
  return (components) => new OfferService(components, init)
}
