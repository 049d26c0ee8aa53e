/**
 * What a corporate site provides for the WPAD scenarios (wpad.test.ts): an
 * unauthenticated squid on an internet host (a PAC names no credentials), and
 * the site's own DNS and WPAD host on its router's LAN address
 * (wpad-service.ts), reachable from the site's hosts while the `proxy-only`
 * firewall drops everything else they send out.
 */
import assert from 'node:assert/strict'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { NODE } from './processes.ts'
import { PROXY, serviceDir, SQUID, squidCommonConf, SQUID_PORT, waitForLog, type Service } from './proxy-services.ts'
import { labEnv, type Lab, type LabProcess } from './topology.ts'

const WPAD_SERVICE = new URL('./wpad-service.ts', import.meta.url).pathname

/** squid on the proxy host: CONNECT to the relay's ports for anyone, nothing cached. */
export async function startOpenSquid (lab: Lab, runDir: string): Promise<Service> {
  const dir = serviceDir(runDir, 'squid', 'proxy')
  const log = join(dir, 'access.log')
  const conf = [
    `http_port ${PROXY.ip}:${SQUID_PORT}`,
    ...squidCommonConf(dir, log, 'none'),
    'acl tunnel_ports port 443 4001',
    'acl CONNECT method CONNECT',
    'http_access deny CONNECT !tunnel_ports',
    'http_access allow CONNECT',
    'http_access deny all',
    ''
  ].join('\n')
  writeFileSync(join(dir, 'squid.conf'), conf, { mode: 0o644 })
  const proc = lab.exec(PROXY.name, [SQUID ?? 'squid', '-N', '-d', '1', '-f', join(dir, 'squid.conf')], { env: labEnv(), logFile: join(dir, 'squid.out') })
  await waitForLog(proc, join(dir, 'cache.log'), /Accepting HTTP Socket connections/, 'squid')
  return { proc, dir, log, stop: async () => { await proc.stop(5_000) } }
}

/** The LAN address of a host's site router (its default gateway): `10.k.0.1`. */
export function siteRouterIp (lab: Lab, host: string): string {
  return lab.ip(host).replace(/\.\d+$/, '.1')
}

export interface SiteServices { proc: LabProcess, ip: string, stop: () => Promise<void> }

/**
 * DNS (`zone`) and HTTP (`files` by name) on the site router's LAN address,
 * and the host's resolv.conf pointing at it with `search` when given.
 */
export async function startSiteServices (lab: Lab, runDir: string, host: string, opts: { zone: Record<string, { A: string[] }>, files: Record<string, string>, search?: string }): Promise<SiteServices> {
  const site = lab.siteOf(host)
  assert.ok(site != null, `${host} is behind a site router`)
  const ip = siteRouterIp(lab, host)
  const dir = join(runDir, 'site-services')
  const www = join(dir, 'www')
  mkdirSync(www, { recursive: true })
  for (const [name, body] of Object.entries(opts.files)) writeFileSync(join(www, name), body)
  writeFileSync(join(dir, 'zone.json'), JSON.stringify(opts.zone))
  const proc = lab.exec(`router:${site.name}`, [NODE, WPAD_SERVICE, ip, join(dir, 'zone.json'), www], { env: labEnv(), logFile: join(dir, 'service.log') })
  const deadline = Date.now() + 15_000
  while (!proc.stdoutLines.includes('ready') && proc.running() && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 50))
  assert.ok(proc.stdoutLines.includes('ready'), `the site's DNS and WPAD service is ready within 15 s; stderr: ${proc.stderr()}`)
  // `ip netns exec` bind-mounts this over /etc/resolv.conf for every process started in the host afterwards
  writeFileSync(join('/etc/netns', lab.ns(host), 'resolv.conf'), `nameserver ${ip}\n${opts.search != null ? `search ${opts.search}\n` : ''}`)
  return { proc, ip, stop: async () => { await proc.stop(5_000) } }
}
