import type { Output } from '../../cli/output.ts'
import type { DoctorReport } from '../../core/doctor.ts'
import type { EvidenceValidation } from '../../doctor/evidence.ts'

/** `worldcompute doctor` for a person: the verdict, one line per check, then what to ask IT for. */
export function renderDoctor (o: Output, r: DoctorReport): void {
  o.out(r.verdict)
  o.out('')
  o.out('Checks:')
  const width = Math.max(...r.checks.map(c => c.name.length))
  for (const c of r.checks) o.out(`  ${c.name.padEnd(width)}  ${c.value.padEnd(7)}  ${c.detail}`)
  o.out('')
  if (r.allowlist.length > 0) {
    o.out('To improve this, ask your network administrators to allow:')
    for (const a of r.allowlist) o.out(`  - ${a}`)
  } else {
    o.out(r.canDonate
      ? 'Nothing to ask your network administrators for: every check that ran found its path open.'
      : 'Nothing this network could open would help yet: see the checks above.')
  }
  if (r.evidence != null) o.out(`\nEvidence bundle: ${r.evidence}`)
}

export function renderEvidenceValidation (o: Output, results: EvidenceValidation[]): void {
  for (const v of results) {
    if (v.ok) {
      o.out(`valid: ${v.bundle} (overall ${v.overall ?? '?'}, ${v.attempts} dial attempt(s))`)
      continue
    }
    o.out(`INVALID: ${v.bundle}`)
    for (const p of v.problems) o.out(`  - ${p}`)
  }
}
