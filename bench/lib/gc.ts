/**
 * A full, synchronous V8 garbage collection on demand, for benchmarks whose
 * timed phases share one process: collected at a phase's edges, what one
 * phase leaves in the heap is not collected inside the next one's timing.
 *
 * `--expose-gc` is set at run time rather than on the command line, so
 * `node bench/x.ts` and bench/run.ts need no flag: V8 then puts `gc` on
 * contexts created afterwards, and one such context hands it over.
 */
import { constants, performance, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

let collect: (() => void) | undefined

function gcFunction (): () => void {
  const own = (globalThis as { gc?: () => void }).gc
  if (typeof own === 'function') return own
  setFlagsFromString('--expose-gc')
  const fn: unknown = runInNewContext('gc')
  if (typeof fn !== 'function') throw new Error('V8 did not expose gc() after --expose-gc')
  return fn as () => void
}

/** Runs a full (major, synchronous) collection; returns its wall time, ms. */
export function fullGc (): number {
  collect ??= gcFunction()
  const t0 = performance.now()
  collect()
  return performance.now() - t0
}

/** V8's collections in a window of this process's time, by kind, as `gc` performance entries report them. */
export interface GcTotals {
  /** scavenges of the young generation */
  minorMs: number
  /** mark-compact collections and incremental marking steps, not forced */
  majorMs: number
  majors: number
  /** collections forced with gc() */
  forcedMs: number
}

/**
 * Every collection V8 reports while it listens, with its start and duration,
 * so a timed phase can be told how much of its time went to collecting (and
 * which kind). Entries arrive a tick after the collection: read a window once
 * it has ended.
 */
export class GcLog {
  private readonly entries: Array<{ start: number, ms: number, kind: number, forced: boolean }> = []
  private readonly observer: PerformanceObserver

  constructor () {
    this.observer = new PerformanceObserver(list => {
      for (const e of list.getEntries()) {
        const detail = (e as PerformanceEntry & { detail?: { kind?: number, flags?: number } }).detail
        this.entries.push({ start: e.startTime, ms: e.duration, kind: detail?.kind ?? 0, forced: ((detail?.flags ?? 0) & constants.NODE_PERFORMANCE_GC_FLAGS_FORCED) !== 0 })
      }
    })
    this.observer.observe({ entryTypes: ['gc'] })
  }

  /** Collections that started in [from, to) (performance.now() times). */
  between (from: number, to: number): GcTotals {
    const t: GcTotals = { minorMs: 0, majorMs: 0, majors: 0, forcedMs: 0 }
    for (const e of this.entries) {
      if (e.start < from || e.start >= to) continue
      if (e.forced) t.forcedMs += e.ms
      else if (e.kind === constants.NODE_PERFORMANCE_GC_MINOR) t.minorMs += e.ms
      else if (e.kind === constants.NODE_PERFORMANCE_GC_MAJOR || e.kind === constants.NODE_PERFORMANCE_GC_INCREMENTAL) {
        t.majorMs += e.ms
        if (e.kind === constants.NODE_PERFORMANCE_GC_MAJOR) t.majors++
      }
    }
    return t
  }

  stop (): void {
    this.observer.disconnect()
  }
}
