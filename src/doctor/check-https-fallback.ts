import type { CheckValue, DoctorCheck, DoctorObservations, RungObservation } from '../core/doctor.ts'
import { duration } from '../core/format.ts'

/** One poll probe in a few words. */
function attemptText (r: RungObservation): string {
  const where = `${r.host ?? '?'}:${r.port ?? '?'}${r.proxy != null ? ` through proxy ${r.proxy}` : ''}`
  switch (r.outcome) {
    case 'success': return `${where} connected over HTTPS long polling in ${duration(r.durationMs)}`
    case 'not-tried': return `${where} not tried`
    case 'cancelled': return `${where} cancelled at ${r.phase ?? 'start'}`
    case 'failure': return `${where} failed at ${r.phase ?? 'start'} (${r.code ?? 'UNKNOWN'}) after ${duration(r.durationMs)}: ${r.cause ?? 'unknown cause'}`
  }
}

/**
 * `https-fallback`: yes when the HTTPS long-polling rung reached a relay (and
 * whether it is the only way out: WebSocket over TLS failed), no when it was
 * tried and failed (phase, cause), unknown when it was not tried — no
 * `/tls/ws` bootstrap address to derive it from, or a build without it.
 */
export function checkHttpsFallback (obs: DoctorObservations): DoctorCheck {
  const name = 'https-fallback'
  const seen = obs.httpsFallback
  if (seen == null) return { name, value: 'unknown', detail: 'this doctor did not probe the HTTPS fallback' }
  if (seen.attempts.length === 0) {
    return { name, value: 'unknown', detail: 'no WebSocket-over-TLS (/tls/ws) address in the bootstrap list to derive the HTTPS fallback from: not tried' }
  }
  const ok = seen.attempts.filter(r => r.outcome === 'success')
  if (ok.length > 0 || seen.reservedOver) {
    const reached = ok.length > 0 ? ok.map(attemptText).join('; ') : 'the donor\'s reservation runs over it'
    const only = seen.wssTried && !seen.wssReached
    return {
      name,
      value: 'yes',
      detail: only
        ? `only the HTTPS fallback works here: WebSocket over TLS failed (the proxy passes no WebSocket upgrade?), HTTPS long polling reached the relay: ${reached}`
        : `HTTPS long polling reached the relay${seen.wssReached ? ' (WebSocket over TLS works too, and is preferred)' : ''}: ${reached}`
    }
  }
  const failed = seen.attempts.filter(r => r.outcome === 'failure')
  if (failed.length > 0) return { name, value: 'no', detail: failed.map(attemptText).join('; ') }
  return { name, value: 'unknown', detail: `not completed: ${seen.attempts.map(attemptText).join('; ')}` }
}

/** The verdict's sentence when the fallback is the way out. */
export function httpsFallbackSentence (value: (name: DoctorCheck['name']) => CheckValue): string | undefined {
  if (value('https-fallback') !== 'yes' || value('wss-443') !== 'no') return undefined
  return 'Only the HTTPS fallback (long polling) reaches the relay from here: the proxy passes no WebSocket upgrade. It works, with more latency; letting WebSocket upgrades through would make it faster.'
}

/** What to ask the network for when only the fallback works: the WebSocket upgrade to the relays. */
export function httpsFallbackAllowlist (obs: DoctorObservations, value: (name: DoctorCheck['name']) => CheckValue): string[] {
  if (value('https-fallback') !== 'yes' || value('wss-443') !== 'no') return []
  const hosts = [...new Set((obs.httpsFallback?.attempts ?? []).filter(r => r.outcome === 'success').map(r => `${r.host ?? '?'}:${r.port ?? '?'}`))]
  return hosts.map(h => `WebSocket upgrades (HTTP Upgrade: websocket) to ${h} through the proxy (today only the slower HTTPS long-polling fallback gets through)`)
}
