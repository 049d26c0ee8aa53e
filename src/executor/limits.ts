/**
 * Job limits: a request's limits are checked against the donor's maxima. A
 * missing limit takes the default (or the donor's maximum, if lower); a limit
 * above the maximum makes the job `rejected` rather than silently lowered, so
 * the submitter never gets a result computed under limits it did not ask for.
 */

import { DEFAULT_JOB_LIMITS, type JobLimits } from '../core/job.ts'
import { MAX_WASM_PAGES, WASM_PAGE_BYTES } from './instrument.ts'

const KEYS = Object.keys(DEFAULT_JOB_LIMITS) as Array<keyof JobLimits>

/** Hard ceilings set by the machinery, whatever a donor configures. */
const CEILINGS: Readonly<JobLimits> = Object.freeze({
  // setTimeout's maximum delay (2^31 - 1 ms, about 24.8 days)
  deadlineMs: 2 ** 31 - 1,
  // memory32 addresses 4 GiB
  memoryBytes: MAX_WASM_PAGES * WASM_PAGE_BYTES,
  outputBytes: 2 ** 31 - 1,
  payloadBytes: 2 ** 31 - 1,
  // fuel is reported as a JS number and must stay exact
  fuel: Number.MAX_SAFE_INTEGER,
  // the injected depth check compares as i32
  maxCallDepth: 2 ** 31 - 1
})

export type LimitsCheck = { ok: true, limits: JobLimits } | { ok: false, reason: string }

function isCount (v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}

/**
 * Merges donor maxima over the defaults and checks them; throws RangeError for
 * a configuration that cannot work (a programming or config error, not a job's).
 */
export function resolveMaxLimits (maxLimits: Partial<JobLimits> = {}): JobLimits {
  const out = { ...DEFAULT_JOB_LIMITS }
  for (const key of KEYS) {
    const v = maxLimits[key]
    if (v === undefined) continue
    if (!isCount(v) || v > CEILINGS[key]) throw new RangeError(`maxLimits.${key} must be an integer in 0..${CEILINGS[key]}, got ${String(v)}`)
    out[key] = v
  }
  if (out.maxCallDepth < 1) throw new RangeError('maxLimits.maxCallDepth must be at least 1')
  return out
}

/** The effective limits of one job, or why it is refused. */
export function resolveJobLimits (requested: Partial<JobLimits> | undefined, maxima: JobLimits): LimitsCheck {
  const limits = {} as JobLimits
  for (const key of KEYS) {
    const v: unknown = requested?.[key]
    if (v === undefined) {
      limits[key] = Math.min(DEFAULT_JOB_LIMITS[key], maxima[key])
      continue
    }
    if (!isCount(v)) return { ok: false, reason: `limits.${key} must be a non-negative integer, got ${JSON.stringify(v) ?? String(v)}` }
    if (v > maxima[key]) return { ok: false, reason: `limits.${key} ${v} is above this donor's maximum of ${maxima[key]}; ask for at most ${maxima[key]}` }
    limits[key] = v
  }
  if (limits.maxCallDepth < 1) return { ok: false, reason: 'limits.maxCallDepth must be at least 1 (_start itself is one call)' }
  return { ok: true, limits }
}
