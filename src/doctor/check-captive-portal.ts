import type { DoctorCheck, DoctorObservations } from '../core/doctor.ts'

/**
 * `captive-portal`: yes when a sign-in page answered in place of a relay (a
 * bad yes: nothing gets out until someone signs in), no when a relay answered
 * the probe itself, unknown when nothing answered or the probe did not run.
 */
export function checkCaptivePortal (obs: DoctorObservations): DoctorCheck {
  const p = obs.captivePortal
  if (p == null) return { name: 'captive-portal', value: 'unknown', detail: 'not checked by this build' }
  if (p.urls.length === 0) return { name: 'captive-portal', value: 'unknown', detail: 'no bootstrap relay has a WebSocket address to ask: not checked' }
  const asked = p.answers.map(a => `${a.url}: ${a.detail}`).join('; ')
  if (p.state === 'yes') {
    return { name: 'captive-portal', value: 'yes', detail: `this network shows a sign-in page (captive portal) at ${p.url ?? '?'} instead of the relays: open it in a browser, sign in, and run the doctor again (${asked})` }
  }
  if (p.state === 'no') return { name: 'captive-portal', value: 'no', detail: `no sign-in page: the relay answered the probe (${asked})` }
  return { name: 'captive-portal', value: 'unknown', detail: `${p.detail}: silence is no sign of a portal` }
}

/** The verdict's first sentence when a portal is in the way. */
export function captivePortalSentence (obs: DoctorObservations): string | undefined {
  const p = obs.captivePortal
  if (p?.state !== 'yes') return undefined
  return `This network shows a sign-in page (captive portal): sign in at ${p.url ?? '?'} in a browser and run the doctor again.`
}
