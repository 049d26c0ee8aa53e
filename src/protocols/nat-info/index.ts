/**
 * @packageDocumentation
 *
 * `/worldcompute/nat-info/1.0.0`: one peer asks another (over the relayed
 * connection they share) for its NAT mapping, filtering, UDP and whether it
 * takes WebRTC, and for a peer on the same network its private listen
 * addresses; the answer decides whether a dial across the LAN or a
 * private-to-private WebRTC upgrade is worth trying (donor/direct-paths.ts).
 *
 * ```ts
 * services: { natInfo: natInfo({ getInfo: () => ({ mapping, filtering, udp, webrtc: true }) }) }
 * const theirs = await fetchNatInfo(relayedConnection, { signal })
 * ```
 */
import { NatInfoService } from './nat-info.ts'
import type { NatInfoComponents, NatInfoInit } from './nat-info.ts'

export { NatInfoService, decodeNatInfo, encodeNatInfo, fetchNatInfo, MAX_LAN_ADDRS } from './nat-info.ts'
export type { NatInfoComponents, NatInfoInit, NatInfoMessage } from './nat-info.ts'
export { NAT_INFO_PROTOCOL } from './constants.ts'

export function natInfo (init: NatInfoInit = {}): (components: NatInfoComponents) => NatInfoService {
  return (components) => new NatInfoService(components, init)
}
