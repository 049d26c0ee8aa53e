import { cleanup } from 'node-datachannel'
import { RTCIceCandidate, RTCPeerConnection, RTCPeerConnectionIceEvent } from 'node-datachannel/polyfill'
import { errorWithCode } from '../core/errors.ts'
import type { Logger } from '../log/logger.ts'
import type { Transport } from '@libp2p/interface'
import type { webRTC, WebRTCTransportComponents, WebRTCTransportInit } from '@libp2p/webrtc'

/** @libp2p/webrtc's private-to-private transport could not be loaded (a broken or changed installation). */
export class WebRtcLoadError extends errorWithCode('WEBRTC_LOAD_FAILED') {}

/** What `private-to-private/transport.js` of @libp2p/webrtc exports that we use. */
interface PrivateToPrivateModule {
  WebRTCTransport?: new (components: WebRTCTransportComponents, init?: WebRTCTransportInit) => Transport
}

/**
 * The private-to-private WebRTC transport's factory (what `webRTC` of
 * @libp2p/webrtc returns), loaded without the package's index: the index also
 * loads the WebRTC-direct transport, whose certificate code (ASN.1, X.509, a
 * WebCrypto polyfill, reflect-metadata: about 1 MB of source, over 200 modules)
 * every daemon would hold in its heap for nothing, since no daemon listens on
 * or dials /webrtc-direct. The package exports only its index, so the module
 * is found beside it; a missing or changed one fails with `WebRtcLoadError`.
 */
export async function loadWebRtc (): Promise<typeof webRTC> {
  const url = new URL('./private-to-private/transport.js', import.meta.resolve('@libp2p/webrtc'))
  let mod: PrivateToPrivateModule
  try {
    mod = await import(url.href) as PrivateToPrivateModule
  } catch (err) {
    throw new WebRtcLoadError(`WebRTC: cannot load @libp2p/webrtc's transport from ${url.href}: ${(err as Error).message}`, { cause: err })
  }
  const Transport = mod.WebRTCTransport
  if (typeof Transport !== 'function') throw new WebRtcLoadError(`WebRTC: ${url.href} exports no WebRTCTransport class (an @libp2p/webrtc this daemon was not written for)`)
  return (init) => (components) => new Transport(components, init)
}

/**
 * node-datachannel (under @libp2p/webrtc) runs native threads that keep the
 * Node process alive until its `cleanup()` is called, and a WebRTC peer
 * connection whose remote side went away first is not always released when
 * libp2p stops (measured: the process never exited after the dialling node
 * stopped before the listening one). @libp2p/webrtc no longer calls
 * `cleanup()` on stop because it closes every connection of every node in
 * the process (js-libp2p PR 2498), so we call it when the last node in this
 * process that uses WebRTC has stopped.
 */
let users = 0

export function acquireWebRtc (): void {
  users++
}

export function releaseWebRtc (log: Logger): void {
  if (users === 0) return
  users--
  if (users > 0) return
  try {
    cleanup()
  } catch (err) {
    log.warn(`WebRTC: releasing node-datachannel's native threads failed (the process may not exit by itself): ${(err as Error).message}`, { transport: 'webrtc' })
  }
}

/** Extra candidates this node offers for a symmetric NAT that hands out ports in sequence. */
export interface PortPrediction {
  /** the step between consecutive flows' ports, as the STUN probe saw it */
  delta: number
  /** how many next ports to offer after each server-reflexive candidate @default 6 */
  count?: number
}

let prediction: PortPrediction | undefined
let patched = false

/**
 * Port prediction for a symmetric NAT that allocates ports in sequence
 * (net/stun/classify.ts `portDelta`): ICE's server-reflexive candidate is the
 * port the NAT gave the flow to the relay's STUN server, useless to the peer
 * (a new flow gets a new port); the flow that carries our first check to the
 * peer gets one of the NEXT ports. So after each server-reflexive candidate
 * this node also signals that address with the next `count` ports (step
 * `delta`): the peer's checks to those open its own NAT (a port-restricted
 * cone lets in only what it has sent to), and our check, leaving through one
 * of them, meets that opening. Candidates travel in libp2p's own WebRTC
 * signalling, so the peer needs nothing new. Process-wide: node-datachannel
 * creates the RTCPeerConnections inside @libp2p/webrtc, out of our reach but
 * for their prototype. `undefined` turns it off.
 */
export function setPortPrediction (next: PortPrediction | undefined): void {
  prediction = next
  if (next != null && !patched) {
    patched = true
    patchCandidateEvents()
  }
}

export function portPrediction (): PortPrediction | undefined {
  return prediction
}

/** `candidate:… <ip> <port> typ srflx …` with its port moved `k` steps, a lower priority and its own foundation; undefined for any other candidate. */
export function predictedCandidate (line: string, delta: number, k: number): string | undefined {
  const f = line.split(' ')
  // candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> …
  if (f.length < 8 || f[6] !== 'typ' || f[7] !== 'srflx' || f[2].toLowerCase() !== 'udp') return undefined
  const port = Number(f[5]) + delta * k
  if (!Number.isInteger(port) || port < 1 || port > 65535) return undefined
  const priority = Math.max(1, Number(f[3]) - k)
  return [`${f[0]}p${k}`, f[1], f[2], String(priority), f[4], String(port), ...f.slice(6)].join(' ')
}

function patchCandidateEvents (): void {
  const proto = RTCPeerConnection.prototype as { dispatchEvent: (event: Event) => boolean }
  const dispatch = proto.dispatchEvent
  proto.dispatchEvent = function (this: RTCPeerConnection, event: Event): boolean {
    const result = dispatch.call(this, event)
    const p = prediction
    const candidate = (event as Partial<RTCPeerConnectionIceEvent>).candidate
    if (p == null || event.type !== 'icecandidate' || candidate?.candidate == null) return result
    for (let k = 1; k <= (p.count ?? 6); k++) {
      const line = predictedCandidate(candidate.candidate, p.delta, k)
      if (line == null) break
      dispatch.call(this, new RTCPeerConnectionIceEvent(new RTCIceCandidate({ candidate: line, sdpMid: candidate.sdpMid ?? '0' })))
    }
    return result
  }
}
