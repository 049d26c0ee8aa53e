/**
 * TLS-inspecting squids (ssl_bump: peek, stare, bump, re-sign with a
 * "corporate" CA): the tls scenario's, told to pass WebSocket upgrades, and
 * the https-poll scenario's, which passes none, as commercial inspecting
 * gateways behave: without the `http_upgrade_request_protocols` lines squid
 * strips `Upgrade` from the bumped request and the relay sees a plain GET.
 */
import { execFileSync } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { tail } from './processes.ts'
import { squidCommonConf } from './proxy-services.ts'
import { RUN_ROOT } from './scenario.ts'
import { labEnv, type Lab, type LabProcess } from './topology.ts'

export const SQUID = ['/usr/sbin/squid', '/usr/bin/squid'].find(p => existsSync(p))
const CERTGEN = ['/usr/lib/squid/security_file_certgen', '/usr/lib64/squid/security_file_certgen'].find(p => existsSync(p))

/** squid-openssl is what CI installs; a missing or GnuTLS squid fails the scenario with this message. */
export function squidProblem (): string | undefined {
  if (SQUID == null || CERTGEN == null) return 'squid with ssl-bump is not installed (apt-get install squid-openssl; .ci/run installs it)'
  const v = execFileSync(SQUID, ['-v']).toString()
  if (!v.includes('--with-openssl') || !v.includes('--enable-ssl-crtd')) return 'the installed squid has no OpenSSL ssl-bump (Debian squid is GnuTLS; install squid-openssl)'
  return undefined
}

export interface BumpingSquid {
  proc: LabProcess
  dir: string
  /** its access log (written when a tunnel closes) */
  log: string
  stop: () => Promise<void>
}

export interface BumpingSquidInit {
  host: string
  ip: string
  port: number
  /** the corporate CA squid re-signs with (files readable by user proxy) */
  corp: { caCert: string, caKey: string }
  /** the CA squid checks the relay's certificate against */
  relayCa: string
  /** squid's hosts file (the lab has no DNS) */
  hosts: string
  /** pass WebSocket upgrades inside bumped connections (squid then relays them as a dumb tunnel) @default false */
  passUpgrade?: boolean
  /** its folder under runDir @default 'squid-no-upgrade' */
  dirName?: string
}

/** The squid that passes no WebSocket upgrade (the https-poll scenario's). */
export async function startUpgradeStrippingSquid (lab: Lab, runDir: string, init: BumpingSquidInit): Promise<BumpingSquid> {
  return await startBumpingSquid(lab, runDir, { ...init, passUpgrade: false })
}

/** Starts a bumping squid on an internet host and waits (bounded) until it accepts connections. */
export async function startBumpingSquid (lab: Lab, runDir: string, init: BumpingSquidInit): Promise<BumpingSquid> {
  const dir = join(runDir, init.dirName ?? 'squid-no-upgrade')
  mkdirSync(dir, { recursive: true })
  for (let d = runDir; d.startsWith(RUN_ROOT) && d.length >= RUN_ROOT.length; d = dirname(d)) chmodSync(d, 0o711)
  const db = join(dir, 'ssl_db')
  execFileSync(CERTGEN ?? 'security_file_certgen', ['-c', '-s', db, '-M', '4MB'], { stdio: ['ignore', 'ignore', 'pipe'] })
  const log = join(dir, 'access.log')
  const conf = [
    `http_port ${init.ip}:${init.port} ssl-bump tls-cert=${init.corp.caCert} tls-key=${init.corp.caKey} generate-host-certificates=on dynamic_cert_mem_cache_size=4MB`,
    `sslcrtd_program ${CERTGEN ?? ''} -s ${db} -M 4MB`,
    'sslcrtd_children 2 startup=1 idle=1',
    `tls_outgoing_options cafile=${init.relayCa}`,
    'acl step1 at_step SslBump1',
    'acl step2 at_step SslBump2',
    'ssl_bump peek step1',
    'ssl_bump stare step2',
    'ssl_bump bump all',
    // without http_upgrade_request_protocols squid's default drops the Upgrade header; protocol
    // names are case-sensitive and WHATWG clients send `Upgrade: websocket`
    ...(init.passUpgrade === true ? ['http_upgrade_request_protocols websocket allow all', 'http_upgrade_request_protocols WebSocket allow all'] : []),
    ...squidCommonConf(dir, log, init.hosts),
    'acl CONNECT method CONNECT',
    'acl tls_port port 443',
    'http_access deny CONNECT !tls_port',
    'http_access allow all',
    ''
  ].join('\n')
  writeFileSync(join(dir, 'squid.conf'), conf, { mode: 0o644 })
  execFileSync('chown', ['-R', 'proxy:proxy', dir])
  const proc = lab.exec(init.host, [SQUID ?? 'squid', '-N', '-d', '1', '-f', join(dir, 'squid.conf')], { env: labEnv(), logFile: join(dir, 'squid.out') })
  const deadline = Date.now() + 20_000
  const cacheLog = join(dir, 'cache.log')
  while (Date.now() < deadline) {
    const text = existsSync(cacheLog) ? readFileSync(cacheLog, 'utf8') : ''
    if (/Accepting SSL bumped HTTP Socket connections|Accepting HTTP Socket connections/.test(text)) {
      return { proc, dir, log, stop: async () => { await proc.stop(5_000) } }
    }
    if (!proc.running()) throw new Error(`squid exited (${String((await proc.exited).code)}) before it was ready:\n${tail(text)}\n${proc.stderr()}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  throw new Error(`squid not ready within 20 s:\n${existsSync(cacheLog) ? tail(readFileSync(cacheLog, 'utf8')) : '(no log)'}\n${proc.stderr()}`)
}
