import { execFileSync } from 'node:child_process'
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { arch, hostname, platform, release } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { WorldComputeError } from '../core/errors.ts'
import { redactCredentials } from '../net/proxy-env.ts'
import type { DoctorReport } from '../core/doctor.ts'
import type { DialAttempt } from '../core/types.ts'
import { configuredProxies } from './check-proxy-discovery.ts'

/**
 * Evidence bundles: one folder per run, by phase, area and UTC start time
 * (so the runs of one area sort by time),
 * `<root>/phase<N>/<area>/<UTC yyyymmddThhmmssZ>/` holding
 *
 *   run.log        the run's log lines (< 10 MB)
 *   metadata.json  run_id, area, git_sha, software_version, started_at, ended_at,
 *                  machines[…network_profile], env
 *   results.json   overall: pass|fail|partial, assertions[{name, expected, observed, pass}]
 *   trace.jsonl    one `dial_attempt` record per attempt:
 *                  ts, target, transport, phase, outcome, cause, duration_ms
 *   index.md       the report for a person
 *
 * Nothing secret goes in: proxy credentials are replaced by `***` in every
 * file, and only named environment variables are kept. The validator checks
 * the same rules, so a bundle sent back from the field can be checked before
 * anyone reads it.
 */

export const EVIDENCE_FILES = ['run.log', 'metadata.json', 'results.json', 'trace.jsonl', 'index.md'] as const
/** Each file under 10 MB: bundles are sent back from the field, and only run.log grows with the run */
export const MAX_FILE_BYTES = 10 * 1024 * 1024
export const DEFAULT_AREA = 'firewall-traversal'
export const DEFAULT_PHASE = 1
const STAMP = /^\d{8}T\d{6}Z$/
const OUTCOMES = new Set(['success', 'failure', 'cancelled'])
/** A URL with a user and a password that is not our `***` redaction. */
const CREDENTIAL_URL = /\b[a-z][a-z0-9+.-]*:\/\/([^\s/@:"'`]+):([^\s/@"'`]+)@/gi

/** Environment variables a bundle keeps (values redacted): what shapes the network path, nothing else. */
const KEPT_ENV = ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'ALL_PROXY', 'all_proxy', 'NO_PROXY', 'no_proxy',
  'WORLDCOMPUTE_BOOTSTRAP', 'WORLDCOMPUTE_DOH', 'WORLDCOMPUTE_LOG', 'NODE_EXTRA_CA_CERTS', 'NODE_USE_ENV_PROXY', 'SSL_CERT_FILE', 'SSL_CERT_DIR']

export class EvidenceError extends WorldComputeError {
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, 'EVIDENCE_INVALID', options)
  }
}

/** `20261129T203524Z` */
export function utcStamp (d: Date): string {
  return d.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z')
}

function gitSha (): string {
  const root = fileURLToPath(new URL('../../', import.meta.url))
  try {
    return execFileSync('git', ['-C', root, 'rev-parse', 'HEAD'], { stdio: ['ignore', 'pipe', 'ignore'], timeout: 5_000 }).toString().trim()
  } catch {
    // an installed copy without its .git: the version says which release it is
    return 'unknown'
  }
}

export interface WriteEvidenceOptions {
  /** DIR of `--evidence DIR` */
  root: string
  report: DoctorReport
  trace: readonly DialAttempt[]
  /** the run's log lines */
  log: string
  env?: NodeJS.ProcessEnv
  /** the command line, for index.md */
  command?: string
  area?: string
  phase?: number
  /** a name for this machine in metadata.json @default hostname() */
  machine?: string
}

/** A string with every proxy credential replaced by `***`. */
function clean (text: string): string {
  return redactCredentials(text).replace(CREDENTIAL_URL, (m, user: string, pass: string) => pass === '***' || user === '***' ? m : m.replace(`${user}:${pass}@`, '***@'))
}

function cleanJson (value: unknown): string {
  return clean(JSON.stringify(value, null, 2)) + '\n'
}

export function traceRecord (a: DialAttempt): Record<string, unknown> {
  return {
    type: 'dial_attempt',
    ts: a.ts,
    target: a.target,
    transport: a.transport,
    phase: a.phase,
    outcome: a.outcome,
    cause: a.cause,
    duration_ms: Math.round(a.duration_ms),
    code: a.code,
    ...(a.peerId != null ? { peer_id: a.peerId } : {}),
    purpose: a.purpose
  }
}

function overallOf (report: DoctorReport, assertions: Array<{ pass: boolean }>): 'pass' | 'fail' | 'partial' {
  if (!report.canDonate) return 'fail'
  return assertions.every(a => a.pass) ? 'pass' : 'partial'
}

/** What a check should say on a network with nothing in the way (a proxy is expected to work only when one is configured). */
export function expectedOf (name: string, report: DoctorReport): string {
  if (name === 'proxy') return report.observations.proxies.length > 0 ? 'yes' : 'no'
  // PAC / WPAD is expected to find a proxy only where discovery had to run (no proxy configured, direct dials failed)
  if (name === 'proxy-discovery') return configuredProxies(report.observations).length > 0 || (report.observations.proxyDiscovery?.state ?? 'not-needed') === 'not-needed' ? 'unknown' : 'yes'
  if (name === 'proxy-auth') return report.observations.proxies.some(p => p.auth != null) ? 'yes' : 'unknown'
  // IPv6 and the HTTPS fallback are expected to work only where there is something to try them with
  if (name === 'ipv6') return (report.observations.ipv6?.globalAddrs.length ?? 0) > 0 ? 'yes' : 'unknown'
  // a home router's mapping is expected to be confirmed only where one was granted
  if (name === 'port-mapping') return (report.observations.portMapping?.status.mappings.length ?? 0) > 0 ? 'yes' : 'unknown'
  if (name === 'https-fallback') return (report.observations.httpsFallback?.attempts.length ?? 0) > 0 ? 'yes' : 'unknown'
  return name === 'tls-intercepted' || name === 'clock-skew' || name === 'captive-portal' ? 'no' : 'yes'
}

/** Writes the bundle; returns its folder. */
export function writeEvidenceBundle (o: WriteEvidenceOptions): string {
  const area = o.area ?? DEFAULT_AREA
  const started = new Date(o.report.startedAt)
  const base = join(resolve(o.root), `phase${o.phase ?? DEFAULT_PHASE}`, area)
  // two runs within one second: the second gets -2, -3 … rather than overwriting the first
  let dir = join(base, utcStamp(started))
  for (let i = 2; existsSync(dir) && i < 100; i++) dir = join(base, `${utcStamp(started)}-${i}`)
  if (existsSync(dir)) throw new EvidenceError(`cannot find a free folder name under ${base} for ${utcStamp(started)}`)
  mkdirSync(dir, { recursive: true })
  const env = o.env ?? process.env
  const r = o.report
  const checks = Object.fromEntries(r.checks.map(c => [c.name, c.value]))
  const metadata = {
    run_id: `doctor-${utcStamp(started)}-${(r.peerId ?? 'unknown').slice(-8)}`,
    area,
    git_sha: gitSha(),
    software_version: r.version,
    started_at: r.startedAt,
    ended_at: r.endedAt,
    machines: [{
      name: o.machine ?? hostname(),
      role: 'donor (worldcompute doctor)',
      os: `${platform()} ${release()} ${arch()}`,
      node: process.version,
      peer_id: r.peerId,
      network_profile: {
        can_donate: r.canDonate,
        path: r.path ?? null,
        nat_mapping: r.natMapping,
        nat_filtering: r.observations.nat.filtering,
        udp: r.observations.nat.udp,
        mapped_address: r.observations.nat.mappedAddress ?? null,
        reachability: r.observations.reachability.value,
        proxies: r.observations.proxies.map(p => ({ url: p.url, source: p.source, in_use: p.inUse })),
        proxy_discovery: r.observations.proxyDiscovery != null ? { state: r.observations.proxyDiscovery.state, source: r.observations.proxyDiscovery.source ?? null, url: r.observations.proxyDiscovery.url ?? null } : null,
        checks
      }
    }],
    env: Object.fromEntries(KEPT_ENV.filter(k => env[k] !== undefined).map(k => [k, clean(env[k] ?? '')])),
    command: o.command ?? 'worldcompute doctor'
  }
  const assertions = [
    { name: 'can-donate', expected: true, observed: r.canDonate, pass: r.canDonate },
    ...r.checks.map(c => ({ name: `check:${c.name}`, expected: expectedOf(c.name, r), observed: c.value, pass: c.value === expectedOf(c.name, r), detail: c.detail }))
  ]
  const results = { overall: overallOf(r, assertions), verdict: r.verdict, assertions, allowlist: r.allowlist }
  let log = clean(o.log)
  if (Buffer.byteLength(log) >= MAX_FILE_BYTES) {
    // keep the end: the last lines explain how the run ended
    const note = '[run.log truncated to its last 9 MB]\n'
    log = note + Buffer.from(log).subarray(-9 * 1024 * 1024).toString('utf8')
  }
  writeFileSync(join(dir, 'run.log'), log)
  writeFileSync(join(dir, 'metadata.json'), cleanJson(metadata))
  writeFileSync(join(dir, 'results.json'), cleanJson(results))
  writeFileSync(join(dir, 'trace.jsonl'), o.trace.map(a => clean(JSON.stringify(traceRecord(a)))).join('\n') + (o.trace.length > 0 ? '\n' : ''))
  writeFileSync(join(dir, 'index.md'), clean(indexOf(r, results.overall, o.trace.length, metadata.git_sha, metadata.command)))
  return dir
}

function indexOf (r: DoctorReport, overall: string, attempts: number, sha: string, command: string): string {
  const lines = [
    `# worldcompute doctor — ${r.startedAt}`,
    '',
    `**${r.canDonate ? 'Can donate' : 'Cannot donate'}** (overall: ${overall}). ${r.verdict}`,
    '',
    `- command: \`${command}\``,
    `- version ${r.version}, git ${sha}, ran as ${r.peerId ?? '?'} (throw-away identity) from ${r.startedAt} to ${r.endedAt}`,
    r.path != null ? `- path: relay ${r.path.relay} over ${r.path.transport}${r.path.viaProxy ? ` through proxy ${r.path.proxy ?? ''}` : ''}${r.path.addr != null ? ` (${r.path.addr})` : ''}` : '- path: none (no reservation)',
    `- NAT mapping: ${r.natMapping}; ${attempts} dial attempt(s) in trace.jsonl`,
    '',
    '| check | value | detail |',
    '|---|---|---|',
    ...r.checks.map(c => `| ${c.name} | ${c.value} | ${c.detail.replaceAll('|', '\\|').replaceAll('\n', ' ')} |`),
    '',
    r.allowlist.length > 0 ? 'To improve this, ask the network administrators to allow:' : 'Nothing to ask the network administrators for.',
    ...r.allowlist.map(a => `- ${a}`),
    '',
    'Files: `run.log` (log lines), `metadata.json` (machine and network profile), `results.json` (assertions), `trace.jsonl` (every dial attempt).',
    ''
  ]
  return lines.join('\n')
}

export interface EvidenceValidation {
  /** the bundle folder checked */
  bundle: string
  ok: boolean
  /** what is wrong, one sentence each */
  problems: string[]
  /** dial_attempt records read */
  attempts: number
  overall?: string
}

/**
 * Checks a bundle folder, or every bundle under a root given as
 * `--evidence` DIR (`phase*` / area / stamp). Never throws on a bad bundle:
 * it lists what is wrong.
 */
export function validateEvidence (path: string): EvidenceValidation[] {
  const target = resolve(path)
  if (!existsSync(target)) throw new EvidenceError(`${target} does not exist`)
  if (!lstatSync(target).isDirectory()) throw new EvidenceError(`${target} is not a folder: give the bundle folder (…/phase1/firewall-traversal/<stamp>) or the --evidence folder`)
  if (EVIDENCE_FILES.some(f => existsSync(join(target, f)))) return [validateBundle(target)]
  const bundles: string[] = []
  // bounded walk: phase*/<area>/<stamp>, at most 1000 bundles
  for (const phase of readdirSync(target).filter(n => /^phase\d+$/.test(n)).sort()) {
    for (const area of safeDirs(join(target, phase))) {
      for (const stamp of safeDirs(join(target, phase, area))) {
        if (bundles.length < 1000) bundles.push(join(target, phase, area, stamp))
      }
    }
  }
  if (bundles.length === 0) throw new EvidenceError(`${target} holds no evidence bundle (neither ${EVIDENCE_FILES.join(', ')} nor phase<N>/<area>/<stamp>/ folders)`)
  return bundles.map(validateBundle)
}

function safeDirs (dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).filter(d => d.isDirectory()).map(d => d.name).sort()
}

function isIso (v: unknown): boolean {
  return typeof v === 'string' && /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/.test(v) && !Number.isNaN(Date.parse(v))
}

function readJson (file: string, problems: string[]): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(readFileSync(file, 'utf8')) as unknown
    if (v == null || typeof v !== 'object' || Array.isArray(v)) {
      problems.push(`${file}: must hold a JSON object`)
      return undefined
    }
    return v as Record<string, unknown>
  } catch (err) {
    problems.push(`${file}: not valid JSON (${(err as Error).message})`)
    return undefined
  }
}

export function validateBundle (dir: string): EvidenceValidation {
  const problems: string[] = []
  const name = dir.split(/[\\/]/).filter(Boolean).pop() ?? ''
  if (!STAMP.test(name.replace(/-\d+$/, ''))) problems.push(`folder name "${name}" is not a UTC stamp yyyymmddThhmmssZ`)
  for (const f of EVIDENCE_FILES) checkFile(dir, f, problems)
  const meta = existsSync(join(dir, 'metadata.json')) ? readJson(join(dir, 'metadata.json'), problems) : undefined
  if (meta != null) checkMetadata(meta, problems)
  const results = existsSync(join(dir, 'results.json')) ? readJson(join(dir, 'results.json'), problems) : undefined
  if (results != null) checkResults(results, problems)
  const overall = typeof results?.overall === 'string' ? results.overall : undefined
  const attempts = checkTrace(join(dir, 'trace.jsonl'), problems)
  return { bundle: dir, ok: problems.length === 0, problems, attempts, ...(overall != null ? { overall } : {}) }
}

/** One required file: present, a regular file, under the size cap, not empty (but for the two that may be), and with no credentials in a URL. */
function checkFile (dir: string, f: string, problems: string[]): void {
  const file = join(dir, f)
  if (!existsSync(file)) { problems.push(`${f} is missing`); return }
  const st = lstatSync(file)
  if (!st.isFile()) { problems.push(`${f} is not a regular file`); return }
  if (st.size >= MAX_FILE_BYTES) problems.push(`${f} is ${st.size} bytes; it must be under ${MAX_FILE_BYTES} (10 MB)`)
  if (st.size === 0 && f !== 'run.log' && f !== 'trace.jsonl') problems.push(`${f} is empty`)
  if (st.size < MAX_FILE_BYTES) {
    const text = readFileSync(file, 'utf8')
    for (const m of text.matchAll(CREDENTIAL_URL)) {
      if (m[1] !== '***' && m[2] !== '***') { problems.push(`${f} contains credentials in a URL (${m[0].replace(m[2], '…')}): redact them as ***`); break }
    }
  }
}

function isObject (v: unknown): v is Record<string, unknown> {
  return v != null && typeof v === 'object' && !Array.isArray(v)
}

function checkMetadata (meta: Record<string, unknown>, problems: string[]): void {
  for (const k of ['run_id', 'area', 'git_sha', 'software_version']) {
    if (typeof meta[k] !== 'string' || meta[k] === '') problems.push(`metadata.json: "${k}" must be a non-empty string`)
  }
  for (const k of ['started_at', 'ended_at']) if (!isIso(meta[k])) problems.push(`metadata.json: "${k}" must be an ISO 8601 UTC time, got ${JSON.stringify(meta[k])}`)
  if (isIso(meta.started_at) && isIso(meta.ended_at) && Date.parse(meta.ended_at as string) < Date.parse(meta.started_at as string)) problems.push('metadata.json: ended_at is before started_at')
  const machines = meta.machines
  if (!Array.isArray(machines) || machines.length === 0) {
    problems.push('metadata.json: "machines" must be a non-empty array')
  } else {
    machines.forEach((m: unknown, i) => {
      const mm = m as Record<string, unknown> | null
      if (mm == null || typeof mm !== 'object') problems.push(`metadata.json: machines[${i}] must be an object`)
      else if (!isObject(mm.network_profile)) problems.push(`metadata.json: machines[${i}].network_profile must be an object`)
    })
  }
  if (!isObject(meta.env)) problems.push('metadata.json: "env" must be an object')
  else for (const [k, v] of Object.entries(meta.env)) if (typeof v !== 'string') problems.push(`metadata.json: env.${k} must be a string`)
}

function checkResults (results: Record<string, unknown>, problems: string[]): void {
  if (!['pass', 'fail', 'partial'].includes(String(results.overall))) problems.push(`results.json: "overall" must be pass, fail or partial, got ${JSON.stringify(results.overall)}`)
  const list = results.assertions
  if (!Array.isArray(list) || list.length === 0) {
    problems.push('results.json: "assertions" must be a non-empty array')
    return
  }
  let failed = 0
  list.forEach((a: unknown, i) => {
    const aa = a as Record<string, unknown> | null
    if (aa == null || typeof aa !== 'object') { problems.push(`results.json: assertions[${i}] must be an object`); return }
    if (typeof aa.name !== 'string' || aa.name === '') problems.push(`results.json: assertions[${i}].name must be a non-empty string`)
    if (!('expected' in aa)) problems.push(`results.json: assertions[${i}] (${String(aa.name)}) has no "expected"`)
    if (!('observed' in aa)) problems.push(`results.json: assertions[${i}] (${String(aa.name)}) has no "observed"`)
    if (typeof aa.pass !== 'boolean') problems.push(`results.json: assertions[${i}] (${String(aa.name)}).pass must be true or false`)
    if (aa.pass === false) failed++
  })
  if (results.overall === 'pass' && failed > 0) problems.push(`results.json: overall is "pass" but ${failed} assertion(s) failed`)
  if (results.overall !== 'pass' && failed === 0 && ['fail', 'partial'].includes(String(results.overall))) problems.push(`results.json: overall is "${String(results.overall)}" but every assertion passed`)
}

/** Checks trace.jsonl (at most 20 problems reported); returns how many dial_attempt records it holds. */
function checkTrace (traceFile: string, problems: string[]): number {
  if (!existsSync(traceFile) || !lstatSync(traceFile).isFile() || lstatSync(traceFile).size >= MAX_FILE_BYTES) return 0
  let attempts = 0
  let reported = 0
  readFileSync(traceFile, 'utf8').split('\n').forEach((line, i) => {
    if (line.trim() === '' || reported >= 20) return
    const bad = (why: string): void => { problems.push(`trace.jsonl line ${i + 1}: ${why}`); reported++ }
    let rec: unknown
    try {
      rec = JSON.parse(line)
    } catch (err) {
      bad(`not JSON (${(err as Error).message})`)
      return
    }
    if (!isObject(rec)) { bad('not a JSON object'); return }
    if (rec.type !== 'dial_attempt') { bad(`"type" must be "dial_attempt", got ${JSON.stringify(rec.type)}`); return }
    attempts++
    checkTraceRecord(rec, bad)
  })
  return attempts
}

function checkTraceRecord (rec: Record<string, unknown>, bad: (why: string) => void): void {
  if (!isIso(rec.ts)) bad(`"ts" must be an ISO 8601 UTC time, got ${JSON.stringify(rec.ts)}`)
  for (const k of ['target', 'transport', 'phase', 'cause']) if (typeof rec[k] !== 'string' || (k !== 'cause' && rec[k] === '')) bad(`"${k}" must be a${k === 'cause' ? '' : ' non-empty'} string`)
  if (!OUTCOMES.has(String(rec.outcome))) bad(`"outcome" must be success, failure or cancelled, got ${JSON.stringify(rec.outcome)}`)
  if (rec.outcome !== 'success' && (typeof rec.cause !== 'string' || rec.cause.trim() === '')) bad('a failed or cancelled attempt must say its cause')
  if (typeof rec.duration_ms !== 'number' || !Number.isFinite(rec.duration_ms) || rec.duration_ms < 0) bad(`"duration_ms" must be a number ≥ 0, got ${JSON.stringify(rec.duration_ms)}`)
}
