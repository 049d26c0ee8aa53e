import { duration, shortPeerId } from '../core/format.ts'
import type { DoctorCheck, DoctorObservations, RungObservation } from '../core/doctor.ts'

/**
 * `ipv6`: did a relay answer over IPv6?
 *  - `yes`: a relay was reached over IPv6 (which, over which rung), by the
 *    doctor's own rung or the donor's reservation path;
 *  - `no`: the host has a global IPv6 address or an IPv6 default route, a
 *    relay has an IPv6 address, and every IPv6 dial failed (with the causes);
 *  - `unknown`: no IPv6 on this host, or no relay with an IPv6 address (so
 *    nothing was tried), or the doctor did not look.
 * An address inside the NAT64 prefix is IPv6 too: a relay reached through
 * NAT64 counts, and says so.
 */

function isV6 (addr: string | undefined): boolean {
  return addr?.startsWith('/ip6/') === true
}

function where (r: Pick<RungObservation, 'addr' | 'transport'>, nat64?: string): string {
  const host = r.addr.split('/')[2] ?? r.addr
  const viaNat64 = nat64 != null && host.startsWith(nat64.replace(/::\/96$/, ':'))
  return `${r.transport} [${host}]${viaNat64 ? ` (through the network's NAT64 ${nat64 ?? ''})` : ''}`
}

export function checkIpv6 (obs: DoctorObservations): DoctorCheck {
  const v6 = obs.ipv6
  const nat64 = v6?.nat64Prefix
  const won = obs.rungs.filter(r => isV6(r.addr) && r.outcome === 'success')
  if (won.length > 0) {
    const r = won[0]
    return { name: 'ipv6', value: 'yes', detail: `relay ${shortPeerId(r.relay)} reached over IPv6: ${where(r, nat64)} connected in ${duration(r.durationMs)}${won.length > 1 ? ` (${won.length} IPv6 rungs connected)` : ''}` }
  }
  const held = obs.reservations.find(r => isV6(r.addr))
  if (held?.addr != null) {
    return { name: 'ipv6', value: 'yes', detail: `the reservation on relay ${shortPeerId(held.peerId)} is held over IPv6: ${where({ addr: held.addr, transport: held.transport }, nat64)}` }
  }
  if (v6 == null) return { name: 'ipv6', value: 'unknown', detail: 'IPv6 was not checked' }
  const hasV6 = v6.globalAddrs.length > 0 || v6.defaultRoute === true
  if (!hasV6) {
    return { name: 'ipv6', value: 'unknown', detail: `this host has no IPv6 (no global address${v6.defaultRoute === false ? ', no default route' : ''}): not tested` }
  }
  const tried = obs.rungs.filter(r => isV6(r.addr) && r.outcome !== 'not-tried')
  if (tried.length === 0) {
    return { name: 'ipv6', value: 'unknown', detail: `this host has IPv6 (${v6.globalAddrs[0] ?? 'a default route'}) but no bootstrap relay has an IPv6 address${v6.ipv4 ? '' : ' and the network gives no NAT64 prefix'}: not tested` }
  }
  if (!tried.some(r => r.outcome === 'failure')) {
    return { name: 'ipv6', value: 'unknown', detail: `the IPv6 dials to the relays were cancelled before they ended (${tried.map(r => where(r, nat64)).join(', ')})` }
  }
  const causes = tried.map(r => `${where(r, nat64)}: ${r.outcome === 'cancelled' ? `cancelled at ${r.phase ?? 'start'}` : `${r.cause ?? 'failed'}${r.code != null ? ` (${r.code})` : ''}`}`)
  const route = v6.defaultRoute === false ? 'no IPv6 default route; ' : ''
  return { name: 'ipv6', value: 'no', detail: `this host has IPv6 (${v6.globalAddrs[0] ?? 'a default route'}) but every IPv6 dial to a relay failed: ${route}${causes.join('; ')}` }
}
