import { isPrivateIp } from '@libp2p/utils'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { BlockList, isIP } from 'node:net'
import { Netmask } from 'netmask'
import type { Cidr } from '../config/cidr.ts'
import type { Logger } from '../log/logger.ts'

/**
 * Which addresses count as public, and which we advertise.
 *
 * js-libp2p decides "private" with `isPrivateIp` in @libp2p/utils: RFC 1918,
 * loopback, link-local, CGNAT and the TEST-NETs among others. That one
 * function drives identify (private observed addresses are dropped), the
 * address manager (private transport addresses need no AutoNAT check and
 * public ones are hidden until verified), the AutoNAT v2 client (tests only
 * public addresses) and server (refuses to dial back private ones), and the
 * dialer's address sorting. A private deployment (a campus on 10.0.0.0/8) or
 * our namespace lab (TEST-NET "internet") therefore gets no AutoNAT at all.
 *
 * `publicRanges` (config.json "publicRanges", `--public-range CIDR`) lists
 * ranges to treat as public anyway. js-libp2p has no option for it:
 * @libp2p/utils keeps its IPv4 ranges in a module-private list of `netmask`
 * `Netmask` objects and asks each `contains(ip)`. We wrap
 * `Netmask.prototype.contains` so it answers "no" for an IP inside a
 * configured public range — nothing else in this process uses `netmask`
 * (`npm ls netmask`: only @libp2p/utils). `applyPublicRanges` checks after
 * patching that libp2p's `isPrivateIp` really follows, and says so loudly
 * when a libp2p upgrade has changed how it decides.
 * IPv6: libp2p tests IPv6 with regular expressions we cannot reach, so an
 * IPv6 public range affects only our own view (announce filter, status,
 * reachability); a relay announces its IPv6 addresses through that view.
 * IPv6 scopes follow the IPv4 ones: `::1` is loopback, ULA (fc00::/7) and
 * the documentation prefix 2001:db8::/32 are private unless a public range
 * says otherwise (the namespace lab passes `--public-range 2001:db8::/32`),
 * fe80::/10 is link-local, and an address in a NAT64 prefix (64:ff9b::/96,
 * RFC 6052) or an IPv4-mapped one has the scope of the IPv4 address inside.
 */

/** RFC 6052's well-known NAT64 prefix: the IPv4 address is the last 32 bits. */
export const NAT64_WELL_KNOWN_PREFIX = '64:ff9b::/96'

const nat64 = new BlockList()
nat64.addSubnet('64:ff9b::', 96, 'ipv6')
const linkLocal = new BlockList()
linkLocal.addSubnet('fe80::', 10, 'ipv6')
linkLocal.addSubnet('169.254.0.0', 16, 'ipv4')

const publicV4 = new BlockList()
const publicV6 = new BlockList()
const configured: string[] = []
let patched = false

/**
 * Treats these ranges as public for the rest of the process (a union with
 * any applied before: one process runs one node, and tests may add more).
 * Returns the ranges libp2p still treats as private after the patch (empty
 * when everything took effect).
 */
export function applyPublicRanges (ranges: readonly Cidr[], log?: Logger): string[] {
  for (const r of ranges) {
    if (configured.includes(r.text)) continue
    configured.push(r.text)
    ;(r.family === 'ipv4' ? publicV4 : publicV6).addSubnet(r.address, r.prefix, r.family)
  }
  if (ranges.length > 0) patchLibp2p()
  const notEffective = ranges.filter(r => r.family === 'ipv4' && isPrivateIp(r.address) === true).map(r => r.text)
  if (notEffective.length > 0) {
    log?.warn(`js-libp2p still treats ${notEffective.join(', ')} as private after applying publicRanges: its private-range check changed (see src/net/address-scope.ts); AutoNAT and identify will ignore these addresses`)
  }
  if (ranges.length > 0) log?.info(`treating as public: ${configured.join(', ')}`)
  return notEffective
}

/** The ranges in effect, as text. */
export function publicRanges (): string[] {
  return [...configured]
}

function inPublicRange (ip: string): boolean {
  const v = isIP(ip)
  if (v === 4) return publicV4.check(ip, 'ipv4')
  if (v === 6) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip)
    if (mapped != null) return publicV4.check(mapped[1], 'ipv4')
    return publicV6.check(ip, 'ipv6')
  }
  return false
}

function patchLibp2p (): void {
  if (patched) return
  patched = true
  const original = Netmask.prototype.contains
  Netmask.prototype.contains = function (this: Netmask, ip: string | Netmask): boolean {
    if (typeof ip === 'string' && inPublicRange(ip)) return false
    return original.call(this, ip)
  }
}

/** The 16 bytes of an IPv6 address (`::` and an IPv4 tail expanded), or undefined when it is not one. */
export function ipv6Bytes (ip: string): Uint8Array | undefined {
  if (isIP(ip) !== 6) return undefined
  let text = ip.replace(/%.*$/, '')
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (v4 != null) {
    const o = v4[1].split('.').map(Number)
    text = `${text.slice(0, -v4[1].length)}${((o[0] << 8) | o[1]).toString(16)}:${((o[2] << 8) | o[3]).toString(16)}`
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined]
  const left = head === '' ? [] : head.split(':')
  const right = tail == null || tail === '' ? [] : tail.split(':')
  const groups = [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right]
  const out = new Uint8Array(16)
  groups.forEach((g, i) => { const n = parseInt(g, 16); out[i * 2] = n >> 8; out[i * 2 + 1] = n & 0xff })
  return out
}

/** An IPv6 address from its 16 bytes, in the short form (RFC 5952). */
export function ipv6Text (bytes: Uint8Array): string {
  const groups: string[] = []
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16))
  // the URL parser writes IPv6 hosts in the canonical short form
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1)
}

/** The IPv4 address inside an IPv4-mapped (::ffff:0:0/96) or NAT64 (64:ff9b::/96) IPv6 address. */
export function embeddedIpv4 (ip: string): string | undefined {
  const b = ipv6Bytes(ip)
  if (b == null) return undefined
  const mapped = b.subarray(0, 10).every(x => x === 0) && b[10] === 0xff && b[11] === 0xff
  if (!mapped && !nat64.check(ip.replace(/%.*$/, ''), 'ipv6')) return undefined
  return `${b[12]}.${b[13]}.${b[14]}.${b[15]}`
}

export function isLoopbackIp (ip: string): boolean {
  const inner = embeddedIpv4(ip)
  if (inner != null) return isLoopbackIp(inner)
  return (isIP(ip) === 4 && ip.startsWith('127.')) || ip === '::1' || ip === '0:0:0:0:0:0:0:1'
}

/** fe80::/10 and 169.254.0.0/16: reachable only on the same link (an IPv6 one needs a zone to be dialled). */
export function isLinkLocalIp (ip: string): boolean {
  const v = isIP(ip)
  if (v === 0) return false
  const inner = embeddedIpv4(ip)
  if (inner != null) return isLinkLocalIp(inner)
  return linkLocal.check(ip.replace(/%.*$/, ''), v === 4 ? 'ipv4' : 'ipv6')
}

/** Public: inside a configured public range, or not private to js-libp2p. */
export function isPublicIp (ip: string): boolean {
  if (isIP(ip) === 0) return false
  if (inPublicRange(ip)) return true
  // a NAT64 address is as public as the IPv4 address it translates to
  const inner = embeddedIpv4(ip)
  if (inner != null) return isPublicIp(inner)
  return isPrivateIp(ip) !== true
}

export type AddrScope = 'loopback' | 'link-local' | 'private' | 'public' | 'name'

/** The scope of a multiaddr's first component; for a circuit address, that of the relay. */
export function scopeOf (ma: Multiaddr | string): AddrScope {
  const first = (typeof ma === 'string' ? multiaddr(ma) : ma).getComponents()[0]
  if (first == null) return 'name'
  if (first.name !== 'ip4' && first.name !== 'ip6') return 'name'
  const ip = first.value ?? ''
  if (isLoopbackIp(ip)) return 'loopback'
  if (isLinkLocalIp(ip)) return 'link-local'
  return isPublicIp(ip) ? 'public' : 'private'
}

function isCircuit (ma: Multiaddr): boolean {
  return ma.getComponents().some(c => c.name === 'p2p-circuit')
}

/**
 * libp2p's `addresses.announceFilter`: what we tell the mesh (identify,
 * capacity announcements, `status`). Kept:
 * - addresses given with `--announce` (the operator said so);
 * - circuit addresses (reachable wherever the relay is; the relay chose what
 *   to advertise);
 * - DNS names;
 * - public direct addresses.
 * Dropped: loopback, link-local and private (outside publicRanges) direct
 * addresses — peers elsewhere would waste a dial on them, or reach a service
 * of their own LAN at the same address — except when every direct address is loopback:
 * a node that runs on 127.0.0.1 only (the demo, tests) is talking to itself.
 * `keepPrivateAsLastResort` (relays): a relay has no circuit address to fall
 * back on, and one that advertises nothing hands out unusable reservations,
 * so when no public address is left it keeps its private ones (a private
 * deployment that did not set publicRanges still works) — never link-local
 * ones, which no peer off the relay's own link can dial.
 */
export function makeAnnounceFilter (explicit: readonly Multiaddr[] = [], options: { keepPrivateAsLastResort?: boolean } = {}): (addrs: Multiaddr[]) => Multiaddr[] {
  const keep = new Set(explicit.map(ma => ma.toString()))
  return (addrs) => {
    const direct = addrs.filter(ma => !isCircuit(ma))
    const loopbackOnly = direct.length > 0 && direct.every(ma => scopeOf(ma) === 'loopback')
    if (loopbackOnly) return addrs
    const useful = addrs.filter(ma => {
      if (isCircuit(ma)) return true
      const text = ma.toString()
      if (keep.has(text) || keep.has(text.replace(/\/p2p\/[^/]+$/, ''))) return true
      const scope = scopeOf(ma)
      return scope === 'public' || scope === 'name'
    })
    if (useful.length === 0 && options.keepPrivateAsLastResort === true) {
      return addrs.filter(ma => scopeOf(ma) !== 'loopback' && scopeOf(ma) !== 'link-local')
    }
    return useful
  }
}

/**
 * True for an address on a public IP: not private to js-libp2p (RFC 1918,
 * loopback, link-local, CGNAT, ULA, TEST-NET, …) or inside a configured
 * public range. The namespace lab's TEST-NET "internet" therefore counts as
 * public only when the lab passes --public-range.
 */
export function isPublicAddr (ma: Multiaddr): boolean {
  return scopeOf(ma) === 'public'
}
