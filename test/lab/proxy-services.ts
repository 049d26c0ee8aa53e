/**
 * The lab's proxies on an internet host, shared by the proxy scenarios
 * (proxy.test.ts) and the doctor's (doctor.test.ts): a real squid with basic
 * auth (htpasswd), its files in the run folder, stopped at clean-up.
 */
import { execFileSync } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { tail } from './processes.ts'
import { RUN_ROOT } from './scenario.ts'
import { labEnv, type Lab, type LabProcess } from './topology.ts'

export const PROXY = { name: 'proxy', ip: '198.51.100.30' }
export const SQUID_PORT = 3128
export const SOCKS_PORT = 1080
export const USER = 'donor'
// a password with characters that need percent-encoding in the URL
export const PASSWORD = 'c0rp:pr0xy@pass'
export const PROXY_URL = `http://${USER}:${encodeURIComponent(PASSWORD)}@${PROXY.ip}:${SQUID_PORT}`

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

export function which (tool: string): string | undefined {
  for (const dir of ['/usr/sbin', '/usr/bin', '/sbin', '/bin']) {
    if (existsSync(join(dir, tool))) return join(dir, tool)
  }
  return undefined
}

export const SQUID = which('squid')
export const DANTED = which('danted')
export const NCSA = ['/usr/lib/squid/basic_ncsa_auth', '/usr/lib64/squid/basic_ncsa_auth'].find(p => existsSync(p))
export const squidMissing = SQUID == null || NCSA == null ? 'squid with basic_ncsa_auth is not installed (apt-get install squid): skipped' : undefined
export const danteMissing = DANTED == null ? 'Dante is not installed (apt-get install dante-server): skipped' : undefined

export interface Service { proc: LabProcess, dir: string, log: string, stop: () => Promise<void> }

/**
 * The service writes its files as an unprivileged user (squid drops to
 * `proxy`): the run folder (mkdtemp, 0700) must be traversable, and the
 * service's own folder writable by it.
 */
export function serviceDir (runDir: string, name: string, owner?: string): string {
  const dir = join(runDir, name)
  mkdirSync(dir, { recursive: true })
  for (let d = runDir; d.startsWith(RUN_ROOT) && d.length >= RUN_ROOT.length; d = dirname(d)) chmodSync(d, 0o711)
  if (owner != null) execFileSync('chown', ['-R', `${owner}:${owner}`, dir])
  return dir
}

/** Waits (bounded) for a line in a log file, failing early if the service exited. */
export async function waitForLog (proc: LabProcess, file: string, re: RegExp, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const text = existsSync(file) ? readFileSync(file, 'utf8') : ''
    if (re.test(text)) return
    if (!proc.running()) throw new Error(`${what} exited (${String((await proc.exited).code)}) before it was ready:\n${tail(text)}\n${proc.stderr()}`)
    await sleep(100)
  }
  throw new Error(`${what} not ready within ${timeoutMs} ms:\n${existsSync(file) ? tail(readFileSync(file, 'utf8')) : '(no log)'}\n${proc.stderr()}`)
}

/**
 * The squid.conf lines every lab squid shares: its files in `dir`, no cache,
 * no ICP/HTCP/pinger, a quick shutdown, no DNS server (127.0.0.1 answers
 * nothing) and the given hosts file (or `none`).
 */
export function squidCommonConf (dir: string, log: string, hostsFile: string): string[] {
  return [
    `pid_filename ${join(dir, 'squid.pid')}`,
    `cache_log ${join(dir, 'cache.log')}`,
    `access_log stdio:${log}`,
    'cache deny all',
    'netdb_filename none',
    'icp_port 0',
    'htcp_port 0',
    // no ICMP pinger helper: one process fewer to stop, and the lab's routers drop ICMP anyway
    'pinger_enable off',
    'shutdown_lifetime 1 seconds',
    'dns_nameservers 127.0.0.1',
    `hosts_file ${hostsFile}`,
    `coredump_dir ${dir}`
  ]
}

/**
 * squid 5 on an internet host: CONNECT to ports 443 and 4001 only, for
 * users in an htpasswd file (basic_ncsa_auth, an APR1 hash made by `openssl
 * passwd -apr1`); nothing cached, nothing written outside its folder.
 */
export async function startSquid (lab: Lab, runDir: string): Promise<Service> {
  const dir = serviceDir(runDir, 'squid', 'proxy')
  const hash = execFileSync('openssl', ['passwd', '-apr1', PASSWORD]).toString().trim()
  writeFileSync(join(dir, 'passwd'), `${USER}:${hash}\n`, { mode: 0o644 })
  const log = join(dir, 'access.log')
  const conf = [
    `http_port ${PROXY.ip}:${SQUID_PORT}`,
    // nothing resolves in the lab and nothing needs to: every target is an IP literal
    ...squidCommonConf(dir, log, 'none'),
    `auth_param basic program ${NCSA ?? ''} ${join(dir, 'passwd')}`,
    'auth_param basic realm worldcompute-lab',
    'auth_param basic children 2 startup=1',
    'acl authed proxy_auth REQUIRED',
    'acl tunnel_ports port 443 4001',
    'acl CONNECT method CONNECT',
    'http_access deny CONNECT !tunnel_ports',
    'http_access allow authed',
    'http_access deny all',
    ''
  ].join('\n')
  writeFileSync(join(dir, 'squid.conf'), conf, { mode: 0o644 })
  // -N: stay in the foreground (one process group the lab can stop); -d1: start-up errors on stderr
  const proc = lab.exec(PROXY.name, [SQUID ?? 'squid', '-N', '-d', '1', '-f', join(dir, 'squid.conf')], { env: labEnv(), logFile: join(dir, 'squid.out') })
  await waitForLog(proc, join(dir, 'cache.log'), /Accepting HTTP Socket connections/, 'squid')
  return { proc, dir, log, stop: async () => { await proc.stop(5_000) } }
}
