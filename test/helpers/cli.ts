/** Runs the real `bin/worldcompute` as a child process, the way users and other tools do. */
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'

export const BIN = fileURLToPath(new URL('../../bin/worldcompute', import.meta.url))

export interface CliResult { code: number | null, stdout: string, stderr: string }

/** Environment for children: no inherited bootstrap or data dir, so nothing outside the test leaks in. */
export function cleanEnv (extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env }
  delete env.WORLDCOMPUTE_BOOTSTRAP
  delete env.WORLDCOMPUTE_DATA_DIR
  delete env.WORLDCOMPUTE_LOG
  delete env.WORLDCOMPUTE_API_PORT
  return { ...env, ...extra }
}

export async function runCli (args: string[], opts: { env?: Record<string, string>, timeoutMs?: number } = {}): Promise<CliResult> {
  return await new Promise((resolve, reject) => {
    const child = spawn(BIN, args, { env: cleanEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`worldcompute ${args.join(' ')} did not finish within ${opts.timeoutMs ?? 30_000} ms\nstdout: ${stdout}\nstderr: ${stderr}`))
    }, opts.timeoutMs ?? 30_000)
    child.once('error', reject)
    child.once('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

export interface LongRunning {
  proc: ChildProcess
  stderr: () => string
  stdoutLines: string[]
  /** SIGTERM, then SIGKILL after 10 s; resolves with the exit code (null when killed) */
  stop: () => Promise<number | null>
}

export function startCli (args: string[], opts: { env?: Record<string, string> } = {}): LongRunning {
  const proc = spawn(BIN, args, { env: cleanEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  const stdoutLines: string[] = []
  proc.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
  if (proc.stdout != null) createInterface({ input: proc.stdout }).on('line', (l) => { stdoutLines.push(l) })
  const exited = new Promise<number | null>(resolve => proc.once('exit', (code) => resolve(code)))
  return {
    proc,
    stderr: () => stderr,
    stdoutLines,
    stop: async () => {
      if (proc.exitCode == null && proc.signalCode == null) {
        proc.kill('SIGTERM')
        const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000)
        const code = await exited
        clearTimeout(timer)
        return code
      }
      return proc.exitCode
    }
  }
}

export async function firstJson (p: LongRunning, timeoutMs = 20_000): Promise<any> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const line = p.stdoutLines.find(l => l.startsWith('{'))
    if (line != null) return JSON.parse(line)
    if (p.proc.exitCode != null) break
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  throw new Error(`no JSON line on stdout within ${timeoutMs} ms; stderr:\n${p.stderr()}`)
}

/**
 * A relay and two relay-only daemons under `root` (data dirs `relay`,
 * `submitter`, `executor`) started through the real CLI; the submitter runs
 * nothing itself. `--no-direct`: these tests check the relayed path (on
 * loopback WebRTC would upgrade it). Pushes every process onto `started`, in
 * start order, so the caller stops them in reverse.
 */
export async function startCliMesh (root: string, started: LongRunning[], executorArgs: string[] = []): Promise<void> {
  const relay = startCli(['relay', '--data-dir', join(root, 'relay'), '--json', '--listen', '/ip4/127.0.0.1/tcp/0'])
  started.push(relay)
  const info = await firstJson(relay)
  const addr: string = info.announceAddrs.find((a: string) => a.startsWith('/ip4/127.0.0.1/tcp/'))
  for (const [name, extra] of [['submitter', ['--no-execute']], ['executor', executorArgs]] as const) {
    started.push(startCli(['daemon', '--data-dir', join(root, name), '--listen', '/p2p-circuit', '--api-port', '0', '--bootstrap', addr, '--no-direct', ...extra]))
  }
}
