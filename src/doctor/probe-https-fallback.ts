import type { Multiaddr } from '@multiformats/multiaddr'
import { pollAddrFor } from '../net/https-poll/address.ts'
import type { HttpsFallbackObservation, RungObservation } from '../core/doctor.ts'
import type { RelayReservationStatus } from '../core/types.ts'

/**
 * The doctor's targets with the HTTPS poll address of each `/tls/ws` one
 * added, so the last rung is probed on its own like every other (the
 * doctor's ladder derives none: it dials one address at a time).
 */
export function withHttpsFallbackTargets<T extends { relay: string, addr: Multiaddr }> (targets: readonly T[]): T[] {
  const polls: T[] = []
  for (const t of targets) {
    if (!t.addr.toString().includes('/tls/')) continue
    const addr = pollAddrFor(t.addr)
    if (addr != null) polls.push({ ...t, addr })
  }
  return [...targets, ...polls]
}

/** What the probes and the donor's reservation say about the HTTPS fallback. */
export function observeHttpsFallback (rungs: readonly RungObservation[], reservations: readonly Pick<RelayReservationStatus, 'transport'>[]): HttpsFallbackObservation {
  const wss = rungs.filter(r => r.transport === 'wss')
  return {
    attempts: rungs.filter(r => r.transport === 'https-poll'),
    wssReached: wss.some(r => r.outcome === 'success'),
    wssTried: wss.some(r => r.outcome === 'success' || r.outcome === 'failure'),
    reservedOver: reservations.some(r => r.transport === 'https-poll')
  }
}
