/**
 * Small statistics for benchmarks: medians with min–max, and ratios of medians.
 * Nothing here asserts on time.
 */
import { performance } from 'node:perf_hooks'

export interface Summary {
  n: number
  median: number
  min: number
  max: number
}

export function summarize (values: readonly number[]): Summary {
  if (values.length === 0) return { n: 0, median: NaN, min: NaN, max: NaN }
  const s = [...values].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  const median = s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2
  return { n: s.length, median, min: s[0], max: s[s.length - 1] }
}

/** Sig-fig friendly number: 3 significant digits, no exponent for ordinary sizes. */
export function num (x: number): string {
  if (!Number.isFinite(x)) return String(x)
  const a = Math.abs(x)
  if (a >= 100) return x.toFixed(0)
  if (a >= 10) return x.toFixed(1)
  if (a >= 1) return x.toFixed(2)
  return x.toPrecision(2)
}

/** "123 ms (118–140)" */
export function fmt (s: Summary, unit: string): string {
  return `${num(s.median)} ${unit} (${num(s.min)}–${num(s.max)})`
}

export function ratioText (r: number): string {
  return Number.isFinite(r) ? `${r >= 10 ? r.toFixed(1) : r.toFixed(2)}×` : 'n/a'
}

/**
 * Per-round paired ratios a[i]/b[i] (rounds were interleaved, so each pair saw
 * the same machine load), summarised.
 */
export function pairedRatios (a: readonly number[], b: readonly number[]): Summary {
  const n = Math.min(a.length, b.length)
  const rs: number[] = []
  for (let i = 0; i < n; i++) rs.push(a[i] / b[i])
  return summarize(rs)
}

/** Rotates a list by `k` (so each round runs the variants in a different order). */
export function rotate<T> (xs: readonly T[], k: number): T[] {
  const n = xs.length
  if (n === 0) return []
  const s = ((k % n) + n) % n
  return [...xs.slice(s), ...xs.slice(0, s)]
}

/**
 * Event-loop utilisation of this process per kind of work: how much of the
 * wall time its event loop was busy. Near 1 means the measurement is CPU bound
 * in this process (all in-process nodes share the loop); near 0 means it waits.
 */
export class EluMeter {
  private readonly acc = new Map<string, { active: number, idle: number, cpuUs: number }>()

  async measure<T> (kind: string, fn: () => Promise<T>): Promise<T> {
    const start = performance.eventLoopUtilization()
    const cpu = process.cpuUsage()
    try {
      return await fn()
    } finally {
      const d = performance.eventLoopUtilization(start)
      const c = process.cpuUsage(cpu)
      const a = this.acc.get(kind) ?? { active: 0, idle: 0, cpuUs: 0 }
      a.active += d.active
      a.idle += d.idle
      a.cpuUs += c.user + c.system
      this.acc.set(kind, a)
    }
  }

  /** CPU time (user + system, all threads) this process spent inside `measure(kind)`, ms. */
  cpuMs (kind: string): number {
    return (this.acc.get(kind)?.cpuUs ?? NaN) / 1000
  }

  utilization (kind: string): number {
    const a = this.acc.get(kind)
    return a == null || a.active + a.idle === 0 ? NaN : a.active / (a.active + a.idle)
  }
}
