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
 *   "change IP" works too), and beside them, on a second responder, its
 *   specific IPv6 addresses (one responder per family: "change IP" answers
 *   from the other IP of the asker's own family);
 * - else every interface, naming the first `--announce` IPv4 as its
 *   own address in RESPONSE-ORIGIN / OTHER-ADDRESS: `::` (one dual-stack
 *   socket answers IPv4 and IPv6 donors alike) on a host with IPv6, else
 *   0.0.0.0.
 * A responder that cannot open its ports (another STUN server on 3478, two
 * relays on one host) is not a reason to stop relaying: the relay says so at
 * WARN and announces no STUN ports for it, and donors that reach the relay
 * only on that family report `natMapping: unknown`.
 */

/** What the relay service needs of its STUN responders: where they answer, and stopping them. */
export type RelayStun = Pick<StunResponder, 'endpoints' | 'stop'>

/** Where one responder binds (one or two IPs of one family, or a wildcard) and the IP it names for a wildcard. */
export interface StunBind {
  addresses: string[]
  advertised?: string
}

function ipOf (ma: Multiaddr, family: 'ip4' | 'ip6'): string | undefined {
  const c = ma.getComponents()[0]
  return c?.name === family && c.value != null ? c.value : undefined
}

/** The specific (not wildcard) IPs of one family among the listen addresses, at most two. */
function specificIps (listen: readonly Multiaddr[], family: 'ip4' | 'ip6'): string[] {
  const wildcard = family === 'ip4' ? '0.0.0.0' : '::'
  return [...new Set(listen.map(ma => ipOf(ma, family)).filter((ip): ip is string => ip != null && ip !== wildcard))].slice(0, 2)
}

function hostHasIpv6 (): boolean {
  return Object.values(networkInterfaces()).some(list => (list ?? []).some(a => a.family === 'IPv6'))
}

export function stunBindAddresses (config: Pick<RelayConfig, 'listen' | 'announce'>, hasIpv6: () => boolean = hostHasIpv6): StunBind[] {
  const v4 = specificIps(config.listen, 'ip4')
  const v6 = specificIps(config.listen, 'ip6')
  const announced = config.announce.map(ma => ipOf(ma, 'ip4')).find((ip): ip is string => ip != null && isIPv4(ip))
  const advertised = announced != null ? { advertised: announced } : {}
  if (v4.length === 0 && v6.length === 0) return [{ addresses: [hasIpv6() ? '::' : '0.0.0.0'], ...advertised }]
  return [...(v4.length > 0 ? [{ addresses: v4, ...advertised }] : []), ...(v6.length > 0 ? [{ addresses: v6 }] : [])]
}

/** The responders of one relay as one: endpoints of those that started, stopped together. */
class RelayStunResponders implements RelayStun {
  private readonly responders: readonly StunResponder[]

  constructor (responders: readonly StunResponder[]) {
    this.responders = responders
  }

  endpoints (): ReturnType<StunResponder['endpoints']> {
    return this.responders.flatMap(r => r.endpoints())
  }

  async stop (): Promise<void> {
    await Promise.all(this.responders.map(async r => { await r.stop() }))
  }
}

export async function startRelayStun (config: Pick<RelayConfig, 'listen' | 'announce' | 'stunPorts'>, log: Logger): Promise<RelayStun | undefined> {
  if (config.stunPorts.length === 0) {
    log.info('STUN responder off (--no-stun): donors connected only to this relay cannot classify their NAT')
    return undefined
  }
  const started: StunResponder[] = []
  for (const { addresses, advertised } of stunBindAddresses(config)) {
    const responder = new StunResponder({ addresses, ports: config.stunPorts, ...(advertised != null ? { advertisedAddress: advertised } : {}), logger: log })
    try {
      await responder.start()
      started.push(responder)
    } catch (err) {
      log.warn(`${(err as Error).message}; relaying goes on without STUN on ${addresses.join(', ')}, and donors that reach this relay only there report their NAT type as unknown`, { phase: 'stun', transport: 'udp' })
    }
  }
  return started.length > 0 ? new RelayStunResponders(started) : undefined
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
