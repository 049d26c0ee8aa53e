/**
 * Logging for the network benchmarks: the project's logger, filtered by
 * WORLDCOMPUTE_LOG (default `warn` plus whatever the bench asks to count),
 * with a sink that counts lines matching named patterns and passes at most a
 * few warnings and errors through to stderr, so a burst of identical warnings
 * neither floods the output nor goes unnoticed.
 */
import { configureLogging } from '../../src/log/logger.ts'

export interface LogCounts {
  /** lines matching each named pattern */
  matched: Record<string, number>
  warn: number
  error: number
  /** warn/error lines not shown on stderr */
  suppressed: number
  /** the distinct warning texts seen, PeerIds and job IDs blanked, with counts */
  kinds: Map<string, number>
}

export function benchLogging (opts: { extraSpec?: string, count?: Record<string, RegExp>, showAtMost?: number } = {}): { counts: LogCounts, spec: string } {
  const spec = process.env.WORLDCOMPUTE_LOG ?? ['warn', opts.extraSpec].filter(s => s != null && s !== '').join(',')
  const counts: LogCounts = { matched: {}, warn: 0, error: 0, suppressed: 0, kinds: new Map() }
  const patterns = Object.entries(opts.count ?? {})
  for (const [name] of patterns) counts.matched[name] = 0
  const showAtMost = opts.showAtMost ?? 10
  configureLogging({
    spec,
    format: 'text',
    sink: (line) => {
      for (const [name, re] of patterns) if (re.test(line)) counts.matched[name]++
      // text lines: "HH:MM:SS.mmm LEVEL component: message"
      const level = line.slice(13, 18).trim()
      if (level !== 'WARN' && level !== 'ERROR') {
        if (process.env.WORLDCOMPUTE_LOG != null) process.stderr.write(line + '\n')
        return
      }
      if (level === 'WARN') counts.warn++
      else counts.error++
      const kind = line.slice(19).replace(/12D3Koo\w+/g, '<peer>').replace(/job-[0-9a-f]+(\.r\d+\.a\d+)?/g, '<job>').replace(/\d+(\.\d+)? ?ms/g, '<n> ms').slice(0, 200)
      counts.kinds.set(kind, (counts.kinds.get(kind) ?? 0) + 1)
      if (counts.warn + counts.error <= showAtMost) process.stderr.write(line + '\n')
      else counts.suppressed++
    }
  })
  return { counts, spec }
}

/** Warnings and errors so far: take one before the measured part, pass it to describeWarnings. */
export function problemsSoFar (c: LogCounts): number {
  return c.warn + c.error
}

/** "3 warnings (2 kinds): 'offer … failed' ×2, …" */
export function describeWarnings (c: LogCounts, beforeMeasuring?: number): string {
  if (c.warn + c.error === 0) return 'no warnings or errors logged'
  const during = beforeMeasuring != null ? `; ${c.warn + c.error - beforeMeasuring} of them while measuring, the rest while starting and warming up` : ''
  const top = [...c.kinds.entries()].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([k, n]) => `"${k.slice(0, 120)}" ×${n}`)
  return `${c.warn} warning(s), ${c.error} error(s) logged (${c.suppressed} not shown${during}); most frequent: ${top.join('; ')}`
}
