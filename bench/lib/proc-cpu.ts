/**
 * CPU time of process groups from /proc (Linux): for every live process whose
 * process group is one of the given leaders (a lab process and everything it
 * spawned — a daemon and its sandbox), utime + stime of the process itself
 * plus cutime + cstime (children it has already reaped, e.g. a restarted
 * sandbox). Two snapshots subtract into CPU ms per group. Keyed by pid and
 * start time, so a reused pid is never mistaken for the process it replaced.
 */
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'

/** clock ticks per second (`getconf CLK_TCK`; 100 on every Linux we run on) */
export const CLK_TCK = ((): number => {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { timeout: 5_000 }).toString().trim())
    return Number.isInteger(n) && n > 0 ? n : 100
  } catch (err) {
    process.stderr.write(`proc-cpu: getconf CLK_TCK failed (${(err as Error).message}); assuming 100\n`)
    return 100
  }
})()

interface ProcStat {
  pid: number
  comm: string
  ppid: number
  pgid: number
  /** own utime + stime, ticks */
  self: number
  /** reaped children's cutime + cstime, ticks */
  children: number
  /** start time since boot, ticks: with pid, identifies the process */
  start: number
}

/** Fields of /proc/PID/stat; the command name is in parentheses and may contain spaces. */
export function parseStat (text: string): ProcStat {
  const open = text.indexOf('(')
  const close = text.lastIndexOf(')')
  const f = text.slice(close + 2).split(' ')
  // f[0] is field 3 (state): field n is f[n - 3]
  return {
    pid: Number(text.slice(0, open).trim()),
    comm: text.slice(open + 1, close),
    ppid: Number(f[1]),
    pgid: Number(f[2]),
    self: Number(f[11]) + Number(f[12]),
    children: Number(f[13]) + Number(f[14]),
    start: Number(f[19])
  }
}

export interface CpuSnapshot {
  at: number
  /** `${pid}:${start}` → the process's stat */
  procs: Map<string, ProcStat>
}

/** Every live process whose process group leader is in `groups`. */
export function snapshot (groups: ReadonlySet<number>): CpuSnapshot {
  const procs = new Map<string, ProcStat>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let text: string
    try {
      text = readFileSync(`/proc/${entry}/stat`, 'utf8')
    } catch (err) {
      // exited between readdir and read: it is not ours to count any more
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ESRCH') continue
      throw new Error(`reading /proc/${entry}/stat: ${(err as Error).message}`)
    }
    const s = parseStat(text)
    if (groups.has(s.pgid)) procs.set(`${s.pid}:${s.start}`, s)
  }
  return { at: Date.now(), procs }
}

/**
 * CPU ms used between two snapshots, per process group. A process that exited
 * in between is lost unless its parent reaped it (then it is in the parent's
 * `children`); one that started in between counts from zero.
 */
export function cpuBetween (a: CpuSnapshot, b: CpuSnapshot): { perGroup: Map<number, number>, procs: number, exited: number } {
  const perGroup = new Map<number, number>()
  for (const [key, s] of b.procs) {
    const before = a.procs.get(key)
    const ticks = (s.self + s.children) - (before != null ? before.self + before.children : 0)
    perGroup.set(s.pgid, (perGroup.get(s.pgid) ?? 0) + ticks * 1000 / CLK_TCK)
  }
  let exited = 0
  for (const key of a.procs.keys()) if (!b.procs.has(key)) exited++
  return { perGroup, procs: b.procs.size, exited }
}

/** Processes per group in a snapshot, e.g. to report that each daemon has its sandbox. */
export function membersPerGroup (s: CpuSnapshot): Map<number, string[]> {
  const out = new Map<number, string[]>()
  for (const p of s.procs.values()) out.set(p.pgid, [...(out.get(p.pgid) ?? []), `${p.pid} ${p.comm}`])
  return out
}
