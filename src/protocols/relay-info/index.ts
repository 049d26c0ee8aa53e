/**
 * @packageDocumentation
 *
 * `/worldcompute/relay-info/1.0.0`: donor → relay, nothing; relay → donor one
 * dag-cbor frame `{ v: 1, tls: [{ fingerprint256, subject, issuer }] }`: the
 * certificates of the relay's own TLS listeners, told over the
 * Noise-authenticated connection so a donor can tell whether the TLS it saw
 * was re-signed by a middlebox (src/net/tls-intercept.ts).
 *
 * ```ts
 * services: { relayInfo: relayInfo({ getInfo: () => ({ tls: [cert] }) }) }   // relay
 * const info = await fetchRelayInfo(connectionToRelay, { signal })          // donor
 * ```
 */
import { RelayInfoService } from './relay-info.ts'
import type { RelayInfoComponents, RelayInfoInit } from './relay-info.ts'

export { RelayInfoService, fetchRelayInfo, encodeRelayInfo, decodeRelayInfo } from './relay-info.ts'
export type { RelayInfoComponents, RelayInfoInit, RelayInfoMessage, RelayTlsCertificate } from './relay-info.ts'
export { RELAY_INFO_PROTOCOL } from './constants.ts'

export function relayInfo (init: RelayInfoInit = {}): (components: RelayInfoComponents) => RelayInfoService {
  return (components) => new RelayInfoService(components, init)
}
