import { duration } from '../core/format.ts'
import type { DoctorCheck, DoctorObservations } from '../core/doctor.ts'

/**
 * `port-mapping`: `yes` when the home router granted a mapping (the protocol
 * and external address said, and whether AutoNAT v2 confirmed it from
 * outside); `no` when a gateway answered and refused, or a mapping was
 * granted that the outside could not dial; `unknown` when no gateway
 * answered, mapping does not apply here, or it is switched off (which one is said).
 */
export function checkPortMapping (obs: Pick<DoctorObservations, 'portMapping'>): DoctorCheck {
  const check = (value: DoctorCheck['value'], detail: string): DoctorCheck => ({ name: 'port-mapping', value, detail })
  const o = obs.portMapping
  if (o == null) return check('unknown', 'not checked by this build')
  const s = o.status
  const last = s.failures[s.failures.length - 1]
  const lastText = last != null ? `${last.protocol} ${last.phase}: ${last.cause}` : undefined
  switch (s.state) {
    case 'off': return check('unknown', `switched off: ${s.reason}`)
    case 'not-applicable': return check('unknown', `not applicable: ${s.reason}`)
    case 'discovering': return check('unknown', `the gateway ${s.gateway ?? '?'} did not answer within ${duration(o.waitedMs)}`)
    case 'mapped': return mapped(o, check)
    case 'failed': {
      const refusal = s.failures.find(f => f.code === 'PORT_MAPPING_REFUSED')
      return refusal != null
        ? check('no', `the gateway ${refusal.gateway} answered and refused a mapping (${refusal.protocol}: ${refusal.cause})`)
        : check('unknown', `no gateway answered PCP, NAT-PMP or UPnP at ${s.gateway ?? '?'}${lastText != null ? ` (last: ${lastText})` : ''}`)
    }
    case 'lost': return check('no', `a mapping was granted by ${s.gateway ?? '?'} but its lease was lost unrenewed${lastText != null ? ` (${lastText})` : ''}`)
    case 'removed': return check('unknown', `the mapping was already removed when the doctor read it: ${s.reason}`)
  }
}

function mapped (o: NonNullable<DoctorObservations['portMapping']>, check: (value: DoctorCheck['value'], detail: string) => DoctorCheck): DoctorCheck {
  const s = o.status
  const protocol = s.protocol?.toUpperCase() ?? '?'
  const leases = s.mappings.map(m => `${m.transport} ${m.external} → ${m.internal}`).join(', ')
  const confirmed = s.mappings.filter(m => m.confirmed)
  if (confirmed.length > 0) {
    return check('yes', `${protocol} at ${s.gateway ?? '?'} mapped ${leases}; AutoNAT v2 confirmed ${confirmed.map(m => m.external).join(', ')} from outside`)
  }
  return check('no', `${protocol} at ${s.gateway ?? '?'} mapped ${leases}, but AutoNAT v2 did not confirm it within ${duration(o.waitedMs)}: the outside could not dial it (another NAT or a firewall upstream?)`)
}
