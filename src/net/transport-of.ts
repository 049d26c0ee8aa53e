import type { AddrFamily, Transport } from '../core/types.ts'
import type { Multiaddr } from '@multiformats/multiaddr'

/**
 * Names the transport of a multiaddr the way `status` and telemetry show it.
 * A circuit address is `circuit` whatever carries it to the relay; use
 * {@link uplinkTransport} for the relay hop itself. A private-to-private
 * WebRTC address (`…/p2p-circuit/webrtc/p2p/<peer>`) is `webrtc`: the relay
 * only carries its signalling, the data flows directly between the peers
 * (and a WebRTC connection's remoteAddr on the dialling side is that address).
 */
export function transportOf (ma: Multiaddr | string): Transport {
  const names = componentNames(ma)
  const circuit = names.indexOf('p2p-circuit')
  if (circuit !== -1) return names.indexOf('webrtc', circuit) !== -1 ? 'webrtc' : 'circuit'
  return directTransport(names)
}

/**
 * True when an address needs a relay: a circuit address, or a
 * private-to-private WebRTC address (signalled through the relay). Not a
 * direct listen address of this node, not dialable without the relay.
 */
export function viaRelay (ma: Multiaddr | string): boolean {
  return componentNames(ma).includes('p2p-circuit')
}

/** The transport of the hop to the relay in a circuit address (or of a direct address). */
export function uplinkTransport (ma: Multiaddr | string): Transport {
  const names = componentNames(ma)
  const circuit = names.indexOf('p2p-circuit')
  return directTransport(circuit === -1 ? names : names.slice(0, circuit))
}

function directTransport (names: string[]): Transport {
  if (names.includes('webrtc') || names.includes('webrtc-direct')) return 'webrtc'
  if (names.includes('http-path') && names.includes('http')) return 'https-poll'
  if (names.includes('quic-v1') || names.includes('quic')) return 'quic'
  if (names.includes('wss') || (names.includes('ws') && names.includes('tls'))) return 'wss'
  if (names.includes('ws')) return 'ws'
  if (names.includes('tcp')) return 'tcp'
  return 'unknown'
}

function componentNames (ma: Multiaddr | string): string[] {
  const text = typeof ma === 'string' ? ma : ma.toString()
  // a textual scan is enough here and cannot throw on unusual addresses
  return text.split('/').filter(p => p !== '')
}

/** The PeerId of the relay in a circuit address, if any. */
export function relayPeerOf (ma: Multiaddr | string): string | undefined {
  const parts = (typeof ma === 'string' ? ma : ma.toString()).split('/')
  const circuit = parts.indexOf('p2p-circuit')
  if (circuit < 2) return undefined
  for (let i = circuit - 1; i > 0; i--) {
    if (parts[i - 1] === 'p2p') return parts[i]
  }
  return undefined
}

/** The last `/p2p/<id>` of an address: the peer it names. */
/** `ip4` / `ip6` for an IP address (or a circuit through one), undefined for a name. */
export function familyOf (addr: Multiaddr | string): AddrFamily | undefined {
  const text = typeof addr === 'string' ? addr : addr.toString()
  if (text.startsWith('/ip6/')) return 'ip6'
  if (text.startsWith('/ip4/')) return 'ip4'
  return undefined
}

export function peerIdOf (ma: Multiaddr | string): string | undefined {
  const parts = (typeof ma === 'string' ? ma : ma.toString()).split('/')
  for (let i = parts.length - 1; i > 0; i--) {
    if (parts[i - 1] === 'p2p') return parts[i]
  }
  return undefined
}

/**
 * The address of `peerId` through a relay, `…/p2p/RELAY/p2p-circuit/p2p/PEER`,
 * from the address we reach the relay on; without `peerId`, the circuit
 * listen address a reservation on that relay gives us.
 */
export function circuitAddress (relayAddr: Multiaddr | string, relayId: string, peerId?: string): string {
  const base = relayAddr.toString()
  const relay = base.includes('/p2p/') ? base : `${base}/p2p/${relayId}`
  return `${relay}/p2p-circuit${peerId != null ? `/p2p/${peerId}` : ''}`
}

/** The address with `/p2p/<peerId>` at its end (added when missing). */
export function withPeerId (addr: string, peerId: string): string {
  return addr.endsWith(`/p2p/${peerId}`) ? addr : `${addr}/p2p/${peerId}`
}

/**
 * The plain circuit address a private-to-private WebRTC address
 * (`…/p2p-circuit/webrtc/p2p/<peer>`) is signalled over.
 */
export function signallingCircuitOf (webrtcAddr: string): string {
  return webrtcAddr.replace('/p2p-circuit/webrtc/', '/p2p-circuit/')
}
