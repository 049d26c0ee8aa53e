import { pause } from '../core/async.ts'
import type { PortMappingObservation } from '../core/doctor.ts'
import type { PortMappingStatus } from '../core/types.ts'

/** How long the doctor waits, at most, for a mapping to be obtained and confirmed by AutoNAT v2. */
export const PORT_MAPPING_BUDGET_MS = 15_000

export interface PortMappingProbeOptions {
  /** when the doctor started (Date.now()), so the wait counts from there @default now */
  startedAt?: number
  /** @default PORT_MAPPING_BUDGET_MS */
  budgetMs?: number
  /** @default 200 */
  pollMs?: number
  signal?: AbortSignal
}

/**
 * A mapping has settled when asking the gateway is over and, if a mapping
 * was obtained, AutoNAT v2 confirmed one of its addresses: a mapped port the
 * outside cannot dial (a second NAT, a firewall upstream) is not a success.
 */
export function portMappingSettled (s: PortMappingStatus): boolean {
  if (s.state === 'discovering') return false
  if (s.state === 'mapped') return s.mappings.some(m => m.confirmed)
  return true
}

/** Polls the donor's port mapping until it settles or the budget ends. */
export async function probePortMapping (status: () => PortMappingStatus, options: PortMappingProbeOptions = {}): Promise<PortMappingObservation> {
  const t0 = options.startedAt ?? Date.now()
  const deadline = t0 + (options.budgetMs ?? PORT_MAPPING_BUDGET_MS)
  let s = status()
  while (!portMappingSettled(s) && Date.now() < deadline) {
    options.signal?.throwIfAborted()
    await pause(options.pollMs ?? 200, { signal: options.signal })
    s = status()
  }
  return { status: s, waitedMs: Date.now() - t0, timedOut: !portMappingSettled(s) }
}
