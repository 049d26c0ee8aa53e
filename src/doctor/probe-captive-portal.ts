import { portalProbeUrls, probeCaptivePortal, type CaptivePortalProbeOptions } from '../net/captive-portal.ts'
import type { CaptivePortalObservation } from '../core/doctor.ts'
import type { Multiaddr } from '@multiformats/multiaddr'

/**
 * The doctor's captive portal probe: the relays' WebSocket addresses asked
 * once each for `/generate_204`, directly (a portal sits in front of this
 * device's own connections, not behind a proxy). Never rejects: the doctor
 * starts it beside its other probes and reads it at the end, and an
 * interrupted run ends through the doctor's own abort checks.
 */
export async function observeCaptivePortal (bootstrap: readonly Multiaddr[], options: CaptivePortalProbeOptions = {}): Promise<CaptivePortalObservation> {
  const urls = portalProbeUrls(bootstrap)
  try {
    return { ...await probeCaptivePortal(urls, options), urls }
  } catch (err) {
    return { state: 'unknown', urls, answers: [], detail: `the probe did not finish: ${(err as Error).message}`, checkedAt: new Date().toISOString() }
  }
}
