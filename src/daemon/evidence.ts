/**
 * Evidence bundles for the CLI (`doctor --evidence`, `evidence validate`):
 * the CLI reaches roles only through the daemon layer. Kept apart from
 * daemon/doctor.ts so `evidence validate` does not load js-libp2p.
 */
export { validateEvidence, writeEvidenceBundle, EVIDENCE_FILES, EvidenceError } from '../doctor/evidence.ts'
export type { EvidenceValidation, WriteEvidenceOptions } from '../doctor/evidence.ts'
