/**
 * The `captive-portal` site firewall of the namespace lab (topology.ts) and
 * what the scenario does with it: before sign-in, every TCP 80 and 443
 * connection from the LAN is redirected to the portal's web server on the
 * router (captive-portal-server.ts) and everything else out is dropped, UDP
 * included; "signing in" lets one host out by normal NAT egress, as a portal
 * does after login.
 */
import type { Lab } from './topology.ts'

/** Where the portal's web server listens on the router (every LAN address). */
export const PORTAL_HTTP_PORT = 8080
export const PORTAL_HTTPS_PORT = 8443

/** filter table, after the ESTABLISHED accept: nothing from the LAN is forwarded (the redirected flows end on the router) */
export function captivePortalFilterRules (): string[] {
  return ['-A FORWARD -i lan -j DROP']
}

/** nat table: every TCP 80/443 from the LAN, whatever its destination, lands on the portal */
export function captivePortalNatRules (): string[] {
  return [
    `-A PREROUTING -i lan -p tcp --dport 80 -j REDIRECT --to-ports ${PORTAL_HTTP_PORT}`,
    `-A PREROUTING -i lan -p tcp --dport 443 -j REDIRECT --to-ports ${PORTAL_HTTPS_PORT}`
  ]
}

/**
 * The portal lets `host` out: its packets skip the redirect and are
 * forwarded (and masqueraded by the site's NAT) like on an open network.
 * Inserted first in both chains, so the rules above no longer see the host.
 */
export async function signIn (lab: Lab, host: string): Promise<void> {
  const site = lab.siteOf(host)
  if (site == null) throw new Error(`${host} is not behind a site router`)
  const router = `router:${site.name}`
  const ip = lab.ip(host)
  for (const rule of [
    ['-t', 'nat', '-I', 'PREROUTING', '1', '-i', 'lan', '-s', ip, '-j', 'ACCEPT'],
    ['-t', 'filter', '-I', 'FORWARD', '1', '-i', 'lan', '-o', 'wan', '-s', ip, '-j', 'ACCEPT']
  ]) {
    const r = await lab.run(router, ['iptables', ...rule], { timeoutMs: 10_000 })
    if (r.code !== 0) throw new Error(`iptables ${rule.join(' ')} in ${lab.ns(router)} failed (${String(r.code)}): ${r.stderr}`)
  }
}
