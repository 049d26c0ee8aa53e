/**
 * Memory of processes as the kernel counts it (/proc/PID/status), the
 * processes a process forked (/proc/PID/stat's ppid), and a small child
 * process wrapper for the memory benchmark: stdout lines kept, stderr to a
 * log file, stop = SIGTERM then SIGKILL, each bounded in time.
 *
 * RSS is what the budget is about (what a donor sees in `top`), so this reads
 * the kernel's figures rather than anything the process reports about itself:
 * V8's heap is only part of a Node process's RSS (code pages of the 100+ MB
 * node binary, native libraries, buffers outside the heap).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createWriteStream, readdirSync, readFileSync } from 'node:fs'
import { createSocket } from 'node:dgram'

export interface MemSample {
  /** VmRSS, KiB */
  rssKb: number
  /** RssAnon (heap, stacks, anonymous mappings), KiB */
  anonKb: number
  /** RssFile (mapped files: the node binary's code, libraries), KiB */
  fileKb: number
  /** VmHWM: the peak RSS so far, KiB */
  hwmKb: number
  /** Threads */
  threads: number
}

/** One reading of /proc/PID/status; throws with the PID when the process is gone. */
export function readMem (pid: number): MemSample {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8')
  } catch (err) {
    throw new Error(`cannot read /proc/${pid}/status (has the process exited?): ${(err as Error).message}`)
  }
  const field = (name: string): number => {
    const m = new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(text)
    if (m == null) throw new Error(`/proc/${pid}/status has no ${name} line`)
    return Number(m[1])
  }
  return { rssKb: field('VmRSS'), anonKb: field('RssAnon'), fileKb: field('RssFile'), hwmKb: field('VmHWM'), threads: field('Threads') }
}

/**
 * Like readMem, for a process that may be on its way out (a child found in
 * /proc a moment ago): undefined once it has exited or is a zombie, which has
 * no memory left to count.
 */
export function readMemIfLive (pid: number): MemSample | undefined {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8')
  } catch {
    return undefined
  }
  if (/^State:\s+[ZX]/m.test(text)) return undefined
  return readMem(pid)
}

/** The command line of a process, for reports ("node …/sandbox-process.ts 1"). */
export function cmdline (pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(s => s !== '').join(' ')
  } catch (err) {
    return `(pid ${pid}: ${(err as Error).message})`
  }
}

function ppidOf (pid: number): number | undefined {
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    // the process ended between readdir and this read: it is no one's child any more
    return undefined
  }
  // "pid (comm) state ppid …": comm may hold spaces and parentheses, so split after the last ')'
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return Number(rest[1])
}

/** Every live descendant of `pid` (children, their children, …), found through /proc/*\/stat. */
export function descendants (pid: number): number[] {
  const parent = new Map<number, number>()
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const p = ppidOf(Number(name))
    if (p != null) parent.set(Number(name), p)
  }
  const out: number[] = []
  let frontier = [pid]
  // bounded: a process tree is finite and each pid is visited once
  for (let depth = 0; depth < 16 && frontier.length > 0; depth++) {
    const next: number[] = []
    for (const [child, p] of parent) if (frontier.includes(p) && !out.includes(child)) next.push(child)
    out.push(...next)
    frontier = next
  }
  return out
}

export function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    // ESRCH: no such process (EPERM cannot happen: we run as the owner)
    return false
  }
}

/** A UDP port on 127.0.0.1 that was free a moment ago (the STUN responder's ports). */
export async function freeUdpPort (): Promise<number> {
  const sock = createSocket('udp4')
  return await new Promise<number>((resolve, reject) => {
    sock.once('error', reject)
    sock.bind(0, '127.0.0.1', () => {
      const { port } = sock.address()
      sock.close(() => { resolve(port) })
    })
  })
}

/**
 * The environment for the processes under test: ours without anything that
 * would change what they do (proxies, a WORLDCOMPUTE_* override, NODE_OPTIONS).
 */
export function cleanEnv (extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (/proxy$/i.test(k) || k.startsWith('WORLDCOMPUTE_') || k === 'NODE_OPTIONS') continue
    env[k] = v
  }
  return { ...env, ...extra }
}

export interface Proc {
  pid: number
  logFile: string
  child: ChildProcess
  stdoutLines: string[]
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  running: () => boolean
  /** SIGTERM, then SIGKILL after `graceMs`; also SIGKILLs descendants still alive then. */
  stop: (graceMs?: number) => Promise<void>
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** Spawns `cmd args` with stdout kept line by line and stderr appended to `logFile`. */
export function spawnProc (cmd: string, args: string[], opts: { env: NodeJS.ProcessEnv, logFile: string }): Proc {
  const child = spawn(cmd, args, { env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] })
  if (child.pid == null) throw new Error(`could not spawn ${cmd} ${args.join(' ')}`)
  const pid = child.pid
  const log = createWriteStream(opts.logFile, { flags: 'a' })
  child.stderr?.pipe(log)
  const stdoutLines: string[] = []
  let partial = ''
  child.stdout?.setEncoding('utf8')
  child.stdout?.on('data', (chunk: string) => {
    partial += chunk
    const lines = partial.split('\n')
    partial = lines.pop() ?? ''
    // bounded: a chatty process cannot grow this without limit
    for (const l of lines) if (stdoutLines.length < 10_000) stdoutLines.push(l)
  })
  let done = false
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => {
    child.once('exit', (code, signal) => { done = true; resolve({ code, signal }) })
    child.once('error', (err) => {
      log.write(`spawn error: ${err.message}\n`)
      done = true
      resolve({ code: null, signal: null })
    })
  })
  const stop = async (graceMs = 10_000): Promise<void> => {
    // the tree as it is now: a daemon stopped by SIGKILL would orphan its sandbox
    const tree = done ? [] : descendants(pid)
    if (!done) child.kill('SIGTERM')
    const deadline = Date.now() + graceMs
    while (!done && Date.now() < deadline) await sleep(50)
    if (!done) {
      child.kill('SIGKILL')
      await Promise.race([exited, sleep(5_000)])
    }
    for (const d of tree) {
      if (isAlive(d)) {
        try {
          process.kill(d, 'SIGKILL')
        } catch (err) {
          process.stderr.write(`bench: cannot kill leftover child ${d} of ${pid}: ${(err as Error).message}\n`)
        }
      }
    }
    log.end()
  }
  return { pid, logFile: opts.logFile, child, stdoutLines, exited, running: () => !done, stop }
}

/** Waits (bounded) for the first stdout line that parses as JSON, e.g. the relay's start-up line. */
export async function firstJsonLine<T> (p: Proc, what: string, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const line = p.stdoutLines.find(l => l.startsWith('{'))
    if (line != null) return JSON.parse(line) as T
    if (!p.running()) {
      const { code, signal } = await p.exited
      throw new Error(`${what} exited (code ${String(code)}, signal ${String(signal)}) before printing its JSON start-up line; its stderr ends:\n${logTail(p.logFile)}`)
    }
    await sleep(50)
  }
  throw new Error(`${what} printed no JSON start-up line within ${timeoutMs} ms; its stderr ends:\n${logTail(p.logFile)}`)
}

/** The last lines of a log file, for error messages. */
export function logTail (file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch (err) {
    return `(cannot read ${file}: ${(err as Error).message})`
  }
}
