import { portalProbeUrls, probeCaptivePortal, type CaptivePortalProbeOptions } from '../net/captive-portal.ts'
import type { CaptivePortalObservation } from '../core/doctor.ts'
import type { Multiaddr } from '@multiformats/multiaddr'

/**
 * The doctor's captive portal probe: the relays' WebSocket addresses asked
 * once each for `/generate_204`, directly (a portal sits in front of this
 * device's own connections, not behind a proxy). Never throws but for an abort.
 */
export async function observeCaptivePortal (bootstrap: readonly Multiaddr[], options: CaptivePortalProbeOptions = {}): Promise<CaptivePortalObservation> {
  const urls = portalProbeUrls(bootstrap)
  const result = await probeCaptivePortal(urls, options)
  return { ...result, urls }
}
