import type { DoctorObservations } from '../../src/core/doctor.ts'

/**
 * Doctor observations of a donor that observed nothing yet (no names, rungs,
 * proxies, NAT verdict or reservation), with `over` on top: a check's unit
 * test states only what its check reads.
 */
export function doctorObservations (over: Partial<DoctorObservations> = {}): DoctorObservations {
  return {
    bootstrap: [],
    relays: [],
    dns: [],
    doh: [],
    dohEndpoints: [],
    rungs: [],
    proxies: [],
    nat: { mapping: 'unknown', filtering: 'unknown', udp: 'unknown', reason: 'not measured', servers: [] },
    reachability: { value: 'private', reason: 'listening only through relays' },
    reservations: [],
    reservationErrors: [],
    tls: [],
    clock: { detail: 'not measured' },
    webrtcTransport: false,
    observedMs: 1000,
    ...over
  }
}
