import { readFileSync } from 'node:fs'

/** Cumulative CPU counters, in clock ticks (USER_HZ, 100 a second on Linux). */
export interface CpuSample {
  /** every CPU's time since boot, idle included */
  totalTicks: number
  /** idle and I/O wait */
  idleTicks: number
  /** this daemon's and its sandbox's CPU time */
  ownTicks: number
}

/** Reads the counters; throws where they cannot be read (no /proc). */
export interface CpuSampler {
  sample: () => CpuSample
}

/** USER_HZ: the unit of /proc/stat and /proc/<pid>/stat on every Linux architecture Node runs on. */
const TICKS_PER_SECOND = 100

/** The machine's counters from the `cpu` line of /proc/stat. */
export function parseProcStat (text: string): { totalTicks: number, idleTicks: number } {
  const line = text.split('\n').find(l => l.startsWith('cpu '))
  if (line == null) throw new Error('/proc/stat has no "cpu" line')
  // user nice system idle iowait irq softirq steal (guest time is already inside user and nice)
  const fields = line.trim().split(/\s+/).slice(1, 9).map(Number)
  if (fields.length < 4 || fields.some(n => !Number.isFinite(n))) throw new Error(`/proc/stat "cpu" line does not parse: ${line}`)
  return { totalTicks: fields.reduce((a, b) => a + b, 0), idleTicks: fields[3] + (fields[4] ?? 0) }
}

/** utime + stime of one process from its /proc/<pid>/stat (fields 14 and 15, counted after the command name). */
export function parsePidStat (text: string): number {
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ')
  const ticks = Number(rest[11]) + Number(rest[12])
  if (!Number.isFinite(ticks)) throw new Error('a /proc/<pid>/stat line does not parse')
  return ticks
}

/**
 * The default sampler on Linux: the machine from /proc/stat, this process
 * from process.cpuUsage() (every thread of the daemon) and the sandbox
 * process, a child whose time getrusage does not count until it exits, from
 * its /proc entry. A sandbox that just died is counted as zero.
 */
export function procCpuSampler (sandboxPid: () => number | undefined): CpuSampler {
  return {
    sample: () => {
      const machine = parseProcStat(readFileSync('/proc/stat', 'utf8'))
      const usage = process.cpuUsage()
      let own = (usage.user + usage.system) / 1e6 * TICKS_PER_SECOND
      const pid = sandboxPid()
      if (pid != null) {
        try {
          own += parsePidStat(readFileSync(`/proc/${pid}/stat`, 'utf8'))
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT' && (err as NodeJS.ErrnoException).code !== 'ESRCH') throw err
        }
      }
      return { ...machine, ownTicks: own }
    }
  }
}
