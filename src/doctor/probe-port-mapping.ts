import { pause } from '../core/async.ts'
import type { PortMappingObservation } from '../core/doctor.ts'
import type { PortMappingStatus } from '../core/types.ts'

/** How long the doctor waits, at most, for the gateway questions to end (PCP, then NAT-PMP, then UPnP: a few seconds each when unanswered). */
export const PORT_MAPPING_BUDGET_MS = 15_000

/**
 * Once a mapping is granted, how long the doctor waits, at most, for AutoNAT
 * v2 to confirm it from outside: the servers are asked when the mapping is
 * granted, and their dial-backs took 10–20 s in the lab after a gateway that
 * spoke only the last protocol asked (UPnP) had used most of the first budget.
 */
export const PORT_MAPPING_CONFIRM_MS = 20_000

export interface PortMappingProbeOptions {
  /** when the doctor started (Date.now()), so the wait counts from there @default now */
  startedAt?: number
  /** @default PORT_MAPPING_BUDGET_MS */
  budgetMs?: number
  /** counted from when the mapping was first seen granted @default PORT_MAPPING_CONFIRM_MS */
  confirmMs?: number
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

/**
 * Polls the donor's port mapping until it settles, or the budget ends — or,
 * once a mapping was granted, the confirmation window after the grant, so a
 * mapping obtained late still gets its full chance to be confirmed.
 */
export async function probePortMapping (status: () => PortMappingStatus, options: PortMappingProbeOptions = {}): Promise<PortMappingObservation> {
  const t0 = options.startedAt ?? Date.now()
  const deadline = t0 + (options.budgetMs ?? PORT_MAPPING_BUDGET_MS)
  const confirmMs = options.confirmMs ?? PORT_MAPPING_CONFIRM_MS
  let grantedAt: number | undefined
  let s = status()
  while (!portMappingSettled(s)) {
    if (s.state === 'mapped') grantedAt ??= Date.now()
    if (Date.now() >= (grantedAt != null ? Math.max(deadline, grantedAt + confirmMs) : deadline)) break
    options.signal?.throwIfAborted()
    await pause(options.pollMs ?? 200, { signal: options.signal })
    s = status()
  }
  return { status: s, waitedMs: Date.now() - t0, timedOut: !portMappingSettled(s) }
}
