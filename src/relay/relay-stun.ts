import { isIPv4 } from 'node:net'
import { networkInterfaces } from 'node:os'
import { StunResponder } from '../net/stun/responder.ts'
import type { RelayConfig } from '../config/config.ts'
import type { Logger } from '../log/logger.ts'
import type { Multiaddr } from '@multiformats/multiaddr'

/**
 * The relay's STUN responder (net/stun/responder.ts): where it binds and what
 * it tells donors. Donors ask the IP they reached the relay on, on the ports
 * the relay's identify agent version names, so it binds:
 * - the specific IPv4 addresses of `--listen` when there are any (two of them:
 *   "change IP" works too);
 * - else every interface, naming the first `--announce` IPv4 as its
 *   own address in RESPONSE-ORIGIN / OTHER-ADDRESS: `::` (one dual-stack
 *   socket answers IPv4 and IPv6 donors alike) on a host with IPv6, else
 *   0.0.0.0.
 * A responder that cannot open its ports (another STUN server on 3478, two
 * relays on one host) is not a reason to stop relaying: the relay says so at
 * WARN and announces no STUN ports, and donors report `natMapping: unknown`.
 */

function ip4Of (ma: Multiaddr): string | undefined {
  const c = ma.getComponents()[0]
  return c?.name === 'ip4' && c.value != null ? c.value : undefined
}

function hostHasIpv6 (): boolean {
  return Object.values(networkInterfaces()).some(list => (list ?? []).some(a => a.family === 'IPv6'))
}

export function stunBindAddresses (config: Pick<RelayConfig, 'listen' | 'announce'>, hasIpv6: () => boolean = hostHasIpv6): { addresses: string[], advertised?: string } {
  const specific = [...new Set(config.listen.map(ip4Of).filter((ip): ip is string => ip != null && ip !== '0.0.0.0'))]
  const announced = config.announce.map(ip4Of).find((ip): ip is string => ip != null && isIPv4(ip))
  if (specific.length > 0) return { addresses: specific.slice(0, 2), ...(announced != null ? { advertised: announced } : {}) }
  return { addresses: [hasIpv6() ? '::' : '0.0.0.0'], ...(announced != null ? { advertised: announced } : {}) }
}

export async function startRelayStun (config: Pick<RelayConfig, 'listen' | 'announce' | 'stunPorts'>, log: Logger): Promise<StunResponder | undefined> {
  if (config.stunPorts.length === 0) {
    log.info('STUN responder off (--no-stun): donors connected only to this relay cannot classify their NAT')
    return undefined
  }
  const { addresses, advertised } = stunBindAddresses(config)
  const responder = new StunResponder({ addresses, ports: config.stunPorts, ...(advertised != null ? { advertisedAddress: advertised } : {}), logger: log })
  try {
    await responder.start()
    return responder
  } catch (err) {
    log.warn(`${(err as Error).message}; relaying goes on without STUN, and donors connected only to this relay report their NAT type as unknown`, { phase: 'stun', transport: 'udp' })
    return undefined
  }
}

/**
 * The STUN endpoints to print in the start-up line, as `/ip4/…/udp/PORT`:
 * the bound IPs, or for a wildcard bind the announced IP, else the relay's
 * own advertised IPv4s.
 */
export function stunAddrs (responder: Pick<StunResponder, 'endpoints'> | undefined, advertisedAddrs: readonly string[]): string[] {
  if (responder == null) return []
  const out: string[] = []
  for (const e of responder.endpoints()) {
    if (e.address !== '0.0.0.0' && e.address !== '::') {
      out.push(`/${isIPv4(e.address) ? 'ip4' : 'ip6'}/${e.address}/udp/${e.port}`)
      continue
    }
    const families = e.address === '::' ? 'ip[46]' : 'ip4'
    const ips = [...new Set(advertisedAddrs.map(a => new RegExp(`^/(${families})/([^/]+)/`).exec(a)).filter(m => m != null).map(m => `/${m[1]}/${m[2]}`))]
    for (const ip of ips) out.push(`${ip}/udp/${e.port}`)
  }
  return [...new Set(out)]
}
