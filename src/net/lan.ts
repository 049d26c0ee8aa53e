/**
 * Peers on one private network: which of this node's listen addresses a peer
 * on the same network could dial, and whether a peer's private address lies
 * on one of this host's own networks. Private addresses are announced to
 * nobody (address-scope.ts makeAnnounceFilter); they travel only in the
 * nat-info answer to a peer that asks, for a dial across the LAN instead of a
 * relay or WebRTC.
 */

import { BlockList, isIP } from 'node:net'
import { networkInterfaces } from 'node:os'
import { scopeOf } from './address-scope.ts'
import { parseAddr } from './parse-addr.ts'
import { transportOf, viaRelay } from './transport-of.ts'

/** The TCP and QUIC addresses among `bound` (this node's listeners) that are on a private network: loopback and link-local left out. */
export function lanListenAddrs (bound: readonly string[], max: number): string[] {
  const tcp: string[] = []
  const quic: string[] = []
  for (const a of bound) {
    const ma = parseAddr(a)
    if (ma == null || viaRelay(ma) || scopeOf(ma) !== 'private') continue
    const transport = transportOf(ma)
    if (transport === 'tcp') tcp.push(a)
    else if (transport === 'quic') quic.push(a)
  }
  // TCP first, so that it is kept when more than `max` are bound: a LAN that filters UDP still passes TCP
  return [...new Set([...tcp, ...quic])].slice(0, max)
}

/** This host's own networks (`10.1.0.2/24`), from its interfaces: loopback and other internal ones left out. */
export function ownSubnets (): string[] {
  return Object.values(networkInterfaces()).flatMap(list => (list ?? []).filter(i => !i.internal && i.cidr != null).map(i => i.cidr as string))
}

/** The IP of an `ip:port` or `[ipv6]:port` endpoint (a STUN mapped address); undefined when it is neither. */
export function endpointIp (endpoint: string | undefined): string | undefined {
  if (endpoint == null) return undefined
  const bracketed = /^\[([^\]]+)\]:\d+$/.exec(endpoint)
  const ip = bracketed != null ? bracketed[1] : endpoint.replace(/:\d+$/, '')
  return isIP(ip) !== 0 ? ip : undefined
}

/**
 * Of a peer's `addrs`, those it may be reached at across this host's own
 * networks (`subnets`, CIDR strings with this host's address in each, as
 * os.networkInterfaces gives them): direct TCP or QUIC on a private IP inside
 * one of them, and not this host's own (a bridge such as Docker's has the
 * same address on every machine). A malformed address or subnet is skipped:
 * what a peer sends is only a hint.
 */
export function addrsOnOwnLan (addrs: readonly string[], subnets: readonly string[]): string[] {
  const ours = new BlockList()
  const self = new Set<string>()
  for (const cidr of subnets) {
    const [net, bits] = cidr.split('/')
    const family = isIP(net)
    if (family === 0 || bits == null || !/^\d+$/.test(bits)) continue
    ours.addSubnet(net, Number(bits), family === 4 ? 'ipv4' : 'ipv6')
    self.add(net)
  }
  return addrs.filter(a => {
    const ma = parseAddr(a)
    if (ma == null) return false
    const transport = transportOf(ma)
    if ((transport !== 'tcp' && transport !== 'quic') || viaRelay(ma) || scopeOf(ma) !== 'private') return false
    const first = ma.getComponents()[0]
    const ip = first?.value
    return ip != null && (first.name === 'ip4' || first.name === 'ip6') && !self.has(ip) && ours.check(ip, first.name === 'ip4' ? 'ipv4' : 'ipv6')
  })
}

