import { publicRanges, scopeOf } from './address-scope.ts'
import { viaRelay } from './transport-of.ts'
import type { Reachability } from '../core/types.ts'
import type { ReachabilityView } from './components.ts'
import type { NodeCore } from './node-core.ts'
import type { Multiaddr } from '@multiformats/multiaddr'

interface AddressEntry { multiaddr: Multiaddr, verified: boolean, type: string, expires: number, lastVerified?: number }

type Verdict = { value: Reachability, reason: string }

const isPublic = (e: { multiaddr: Multiaddr }): boolean => scopeOf(e.multiaddr) === 'public'

/**
 * Reachability as far as we know it, with the reason, from what AutoNAT v2
 * has verified (js-libp2p v3 has no reachability event or property: a
 * transport address on a public IP is `verified` once one AutoNAT v2 server
 * dialled it back, and marked unverified with an expiry after 8 failed
 * dial-backs). A donor that listens only through relays is private by
 * choice; addresses libp2p counts as private (RFC 1918, TEST-NET, … minus
 * publicRanges) are never tested, so they say "private" at once.
 */
export class AutoNatReachability implements ReachabilityView {
  private readonly core: NodeCore

  constructor (core: NodeCore) {
    this.core = core
  }

  reachability (): Verdict {
    const entries = this.core.internals.addressManager.getAddressesWithMetadata() as AddressEntry[]
    // a `/p2p-circuit/webrtc` address is signalled through a relay: not a direct listen address
    const direct = entries.filter(e => !viaRelay(e.multiaddr))
    return confirmed(direct) ?? this.fromOwnAddresses(direct.filter(e => e.type === 'transport'))
  }

  /**
   * Our own bound addresses decide when nothing is confirmed: an unverified
   * observed address (what a peer saw of a NAT mapping) is a guess that
   * AutoNAT may never settle in a small mesh (it needs 4 confirmations from 4 networks).
   */
  private fromOwnAddresses (own: AddressEntry[]): Verdict {
    const publicDirect = own.filter(isPublic)
    if (own.length === 0) {
      return { value: 'private', reason: 'listening only through relays (--listen /p2p-circuit)' }
    }
    if (publicDirect.length === 0) {
      const ranges = publicRanges()
      const hosts = own.map(e => e.multiaddr.toString().split('/')[2]).filter((v, i, a) => a.indexOf(v) === i).join(', ')
      return { value: 'private', reason: `no public address on any interface (${hosts}): reachable only through relays${ranges.length === 0 ? '; a private deployment can declare its ranges public with --public-range / "publicRanges"' : ''}` }
    }
    const failed = publicDirect.filter(e => !e.verified && e.expires > 0)
    if (failed.length === publicDirect.length) {
      return { value: 'private', reason: `AutoNAT v2: peers could not dial back ${failed[0].multiaddr.toString()} (a NAT or firewall in the way): reachable only through relays` }
    }
    const first = publicDirect[0].multiaddr.toString()
    const progress = this.autonatProgress(publicDirect[0].multiaddr)
    return {
      value: 'unknown',
      reason: progress != null
        ? `AutoNAT v2 is checking ${first}: ${progress.success} dial-back(s) succeeded, ${progress.failure} failed so far`
        : `AutoNAT v2 has not checked ${first} yet (it needs a connected peer running an AutoNAT v2 server, such as a relay)`
    }
  }

  /** The AutoNAT v2 client's running tally for an address (its private state; undefined when absent or changed). */
  private autonatProgress (ma: Multiaddr): { success: number, failure: number } | undefined {
    const client = (this.core.libp2p.services.autoNAT as { client?: { dialResults?: Map<string, { success: number, failure: number }> } } | undefined)?.client
    const results = client?.dialResults
    if (!(results instanceof Map)) return undefined
    const r = results.get(ma.toString())
    return r != null && typeof r.success === 'number' ? { success: r.success, failure: r.failure } : undefined
  }
}

/** An announced or AutoNAT-verified public address settles it. */
function confirmed (direct: AddressEntry[]): Verdict | undefined {
  const announced = direct.filter(e => e.type === 'announce' && isPublic(e))
  if (announced.length > 0) {
    return { value: 'public', reason: `announced public address ${announced[0].multiaddr.toString()} (--announce; not checked by AutoNAT)` }
  }
  const verified = direct.filter(e => e.verified && isPublic(e))
  if (verified.length > 0) {
    return { value: 'public', reason: `AutoNAT v2 confirmed ${verified[0].multiaddr.toString()} is dialable from outside` }
  }
  return undefined
}
