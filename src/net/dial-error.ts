import type { DialPhase, Transport } from '../core/types.ts'

/**
 * Translates whatever a js-libp2p dial rejected with into words and a stable
 * code. js-libp2p v3 rejects with at least these shapes (measured in the
 * namespace lab):
 *  - a Node `Error` with `code` (ECONNREFUSED, EHOSTUNREACH, …) from `net.connect`;
 *  - `AbortError` / `TimeoutError` (a DOMException) when a signal fires, with no
 *    hint of where the dial stalled;
 *  - `AggregateError('All multiaddr dials failed')` without the addresses;
 *  - a WebSocket `ErrorEvent` whose `message` is empty and which is not an
 *    `Error` at all (an untrusted TLS certificate looks like this);
 *  - named libp2p errors (`EncryptionFailedError`, `UnsupportedProtocolError`,
 *    `InvalidMessageError` carrying `NO_RESERVATION`, …).
 */

export interface DialErrorContext {
  /** the furthest phase the dial reached, from progress events */
  phase: DialPhase
  transport: Transport
  elapsedMs: number
  /** set when our own timeout fired, as opposed to a caller's cancellation */
  timedOut?: boolean
  /** set when the caller cancelled (another rung won, shutdown) */
  cancelled?: boolean
}

export interface DialErrorDescription {
  cause: string
  code: string
  phase: DialPhase
}

const SOCKET_CODES: Record<string, { cause: string, phase: DialPhase }> = {
  ECONNREFUSED: { cause: 'connection refused (nothing listens on that port, or a firewall rejects it)', phase: 'tcp-connect' },
  ECONNRESET: { cause: 'connection reset by the remote side or a middlebox', phase: 'tcp-connect' },
  EHOSTUNREACH: { cause: 'host unreachable (no route, or the host does not answer ARP)', phase: 'tcp-connect' },
  ENETUNREACH: { cause: 'network unreachable (no route to that address from here)', phase: 'tcp-connect' },
  ETIMEDOUT: { cause: 'TCP connect timed out (SYN dropped?)', phase: 'tcp-connect' },
  EADDRNOTAVAIL: { cause: 'address not available on this host', phase: 'tcp-connect' },
  EPIPE: { cause: 'connection closed while writing', phase: 'tcp-connect' },
  ENOTFOUND: { cause: 'name does not resolve (DNS answered: no such host)', phase: 'dns' },
  EAI_AGAIN: { cause: 'DNS lookup failed (resolver unreachable or filtered)', phase: 'dns' },
  ECONNABORTED: { cause: 'connection aborted', phase: 'tcp-connect' }
}

const TLS_CODES: Record<string, string> = {
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'TLS certificate not trusted (unknown issuer; set NODE_EXTRA_CA_CERTS for a private CA)',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'TLS certificate not trusted (issuer not in the trust store; a TLS-inspecting proxy? put its CA in the system store or SSL_CERT_FILE)',
  SELF_SIGNED_CERT_IN_CHAIN: 'TLS certificate chain is self-signed (a TLS-inspecting proxy?)',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'TLS certificate is self-signed',
  CERT_HAS_EXPIRED: 'TLS certificate has expired',
  ERR_TLS_CERT_ALTNAME_INVALID: 'TLS certificate does not name this host or IP',
  CERT_NOT_YET_VALID: 'TLS certificate is not yet valid (clock skew?)'
}

interface ErrorLike {
  name?: unknown
  message?: unknown
  code?: unknown
  cause?: unknown
  errors?: unknown
  error?: unknown
  type?: unknown
  detail?: unknown
  reason?: unknown
}

function asObject (err: unknown): ErrorLike {
  return err != null && typeof err === 'object' ? err as ErrorLike : {}
}

function str (v: unknown): string {
  return typeof v === 'string' ? v : ''
}

/** Walks `cause` / `error` chains looking for a Node error code. */
function findCode (err: unknown, depth = 0): string | undefined {
  if (depth > 6) return undefined
  const e = asObject(err)
  const code = str(e.code)
  if (code !== '' && (SOCKET_CODES[code] != null || TLS_CODES[code] != null || code.startsWith('E') || code.startsWith('ERR_'))) {
    return code
  }
  return findCode(e.cause, depth + 1) ?? findCode(e.error, depth + 1)
}

function isErrorEvent (err: unknown): boolean {
  const e = asObject(err)
  return !(err instanceof Error) && e.type === 'error' && ('error' in e || 'message' in e)
}

function stallCause (phase: DialPhase, transport: Transport, seconds: string): string {
  switch (phase) {
    case 'dns': return `DNS lookup did not answer within ${seconds} s (resolver filtered?)`
    case 'proxy': return `the proxy did not open the tunnel within ${seconds} s (proxy unreachable, or dropping packets?)`
    case 'tcp-connect':
      if (transport === 'ws' || transport === 'wss') return `no WebSocket open within ${seconds} s (TCP connect, TLS or HTTP upgrade unanswered: packets dropped?)`
      return `no answer to TCP connect within ${seconds} s (SYN dropped by a firewall?)`
    case 'tls':
      if (transport === 'quic') return `no QUIC handshake reply within ${seconds} s (UDP dropped, or nothing listens on that UDP port)`
      return `TLS handshake did not finish within ${seconds} s`
    case 'ws-upgrade': return `WebSocket upgrade did not finish within ${seconds} s`
    case 'http': return `the relay did not answer the HTTPS poll session request within ${seconds} s (a proxy holding or dropping it?)`
    case 'noise':
      // over TLS a middlebox cannot read the negotiation, so only loss or a dead peer explain it
      if (transport === 'wss') return `the connection opened but the libp2p handshake got no answer within ${seconds} s (packets lost, or the relay is overloaded)`
      return `TCP connected but the libp2p handshake got no answer within ${seconds} s — a protocol-inspecting firewall may be dropping it ("SYN allowed, upgrade blocked"; WebSocket over TLS on 443 hides the handshake), or the peer is too overloaded to answer in time`
    case 'muxer': return `stream multiplexer negotiation did not finish within ${seconds} s`
    case 'protocol': return `protocol negotiation did not finish within ${seconds} s`
    case 'reservation': return `relay did not answer the reservation request within ${seconds} s`
    case 'signalling': return `the WebRTC offer/answer through the relay did not finish within ${seconds} s (the peer does not answer on the signalling protocol, or the relayed connection stalled)`
    case 'ice': return `WebRTC ICE found no working path between the two NATs within ${seconds} s (a symmetric NAT, UDP blocked, or filtering that STUN did not reveal)`
  }
}

/** What the rules below look at: the error, and its name and message as strings. */
interface ErrorView {
  err: unknown
  e: ErrorLike
  name: string
  message: string
  /** elapsed time, for stall causes */
  seconds: string
}

type Rule = (v: ErrorView, ctx: DialErrorContext) => DialErrorDescription | undefined

/**
 * libp2p errors recognised by name or message, in order: the first that
 * matches describes the error. `phase` absent: the phase the dial had reached.
 */
const NAMED: ReadonlyArray<{ test: (name: string, message: string) => boolean, code: string, phase?: DialPhase, cause: (message: string, ctx: DialErrorContext) => string }> = [
  { test: (n, m) => (n === 'EncryptionFailedError' && /does not match/i.test(m)) || /identity key .* does not match/i.test(m), code: 'PEER_ID_MISMATCH', phase: 'noise', cause: m => `the peer is not who the address says (${m})` },
  { test: n => n === 'EncryptionFailedError', code: 'NOISE_FAILED', phase: 'noise', cause: m => `Noise handshake failed: ${m}` },
  { test: (n, m) => n === 'MuxerUnavailableError' || /multiplexer/i.test(m), code: 'MUXER_FAILED', phase: 'muxer', cause: m => `stream multiplexer failed: ${m}` },
  { test: n => n === 'UnsupportedProtocolError', code: 'UNSUPPORTED_PROTOCOL', phase: 'protocol', cause: m => `the peer does not speak the protocol: ${m}` },
  { test: (_n, m) => /RTCPeerConnection connection state became/.test(m), code: 'ICE_FAILED', phase: 'ice', cause: m => `WebRTC ICE failed: ${m} (no candidate pair worked between the two NATs)` },
  { test: n => n === 'SDPHandshakeFailedError', code: 'SDP_FAILED', phase: 'signalling', cause: m => `WebRTC SDP offer/answer failed: ${m}` },
  { test: (_n, m) => /NO_RESERVATION/.test(m), code: 'NO_RESERVATION', phase: 'protocol', cause: () => 'the relay holds no reservation for that peer (it is not connected through this relay)' },
  { test: (_n, m) => /RESERVATION_REFUSED|reservation failed with status/i.test(m), code: 'RESERVATION_REFUSED', phase: 'reservation', cause: m => `the relay refused the reservation: ${m}` },
  { test: n => n === 'NoValidAddressesError', code: 'NO_ADDRESSES', cause: () => 'no dialable address known for that peer' },
  { test: n => n === 'TransportUnavailableError', code: 'NO_TRANSPORT', cause: m => `no transport can dial this address: ${m}` },
  { test: (_n, m) => /dial self/i.test(m), code: 'DIAL_SELF', cause: () => 'that address is this node itself' },
  { test: (n, m) => /muxer closed|connection closed|ConnectionClosed/i.test(`${n} ${m}`), code: 'CONNECTION_CLOSED', cause: (m, ctx) => `connection closed during ${ctx.phase}: ${m}` }
]

function cancelledRule (v: ErrorView, ctx: DialErrorContext): DialErrorDescription | undefined {
  if (ctx.cancelled !== true) return undefined
  // say what the attempt had seen: a TCP that connected and then heard nothing is the
  // signature of a protocol-inspecting firewall, even when a faster rung won first
  if ((ctx.transport === 'tcp' || ctx.transport === 'ws') && (ctx.phase === 'noise' || ctx.phase === 'muxer')) {
    return { cause: `cancelled after ${v.seconds} s (another attempt won, or shutting down): TCP connected but the libp2p handshake had no answer yet`, code: 'CANCELLED', phase: ctx.phase }
  }
  return { cause: 'cancelled (another attempt won, or shutting down)', code: 'CANCELLED', phase: ctx.phase }
}

/**
 * Our proxy code (proxy-tunnel.ts, proxy-transports.ts) already says what the
 * proxy did; checked before the socket codes, or a refused connection to the
 * proxy would read as the target refusing.
 */
function proxyRule ({ e, name, message }: ErrorView): DialErrorDescription | undefined {
  // a PAC (pac.ts) that failed chose no route: the dial fails at the proxy phase with its PAC_* code
  if ((name === 'ProxyTunnelError' || name === 'ProxyAuthError' || (name.startsWith('Pac') && str(e.code).startsWith('PAC_'))) && str(e.code) !== '') {
    return { cause: message, code: str(e.code), phase: 'proxy' }
  }
  if (name !== 'ProxiedDialError' || str(e.code) === '') return undefined
  const inner = findCode(e.cause)
  const via = str((e as { proxy?: unknown }).proxy)
  if (inner != null && TLS_CODES[inner] != null) {
    return { cause: `${TLS_CODES[inner]} (TLS inside the tunnel through ${via})`, code: 'TLS_UNTRUSTED', phase: 'tls' }
  }
  const phase = str((e as { phase?: unknown }).phase)
  return { cause: message, code: str(e.code), phase: phase === 'tls' ? 'tls' : 'ws-upgrade' }
}

/**
 * The HTTPS poll transport's errors carry the phase they failed at and a
 * code (https-poll/errors.ts); an untrusted certificate reads as any other rung's.
 */
function pollRule ({ e, name, message }: ErrorView): DialErrorDescription | undefined {
  if (name !== 'HttpsPollError' || str(e.code) === '') return undefined
  const inner = findCode(e.cause)
  if (inner != null && TLS_CODES[inner] != null) return { cause: `${TLS_CODES[inner]} (${message})`, code: 'TLS_UNTRUSTED', phase: 'tls' }
  const phase = str((e as { phase?: unknown }).phase)
  return { cause: message, code: str(e.code), phase: phase === 'tls' || phase === 'tcp-connect' ? phase : 'http' }
}

function aggregateRule ({ e, name }: ErrorView, ctx: DialErrorContext): DialErrorDescription | undefined {
  if (name !== 'AggregateError' || !Array.isArray(e.errors)) return undefined
  const parts = (e.errors as unknown[]).map(inner => describeDialError(inner, ctx))
  const unique = [...new Set(parts.map(p => p.cause))]
  const first = parts[0]
  return {
    cause: `all ${parts.length} address(es) failed: ${unique.join('; ')}`,
    code: first?.code ?? 'ALL_FAILED',
    phase: first?.phase ?? ctx.phase
  }
}

function codeRule ({ err }: ErrorView, ctx: DialErrorContext): DialErrorDescription | undefined {
  const code = findCode(err)
  if (code != null && TLS_CODES[code] != null) {
    return { cause: TLS_CODES[code], code: 'TLS_UNTRUSTED', phase: 'tls' }
  }
  if (code == null || SOCKET_CODES[code] == null) return undefined
  const known = SOCKET_CODES[code]
  // a reset after the TCP handshake completed happened at the phase we had reached
  const phase = code === 'ECONNRESET' || code === 'EPIPE' ? ctx.phase : known.phase
  return { cause: known.cause, code, phase }
}

function errorEventRule ({ err, e, seconds }: ErrorView, ctx: DialErrorContext): DialErrorDescription | undefined {
  if (!isErrorEvent(err)) return undefined
  const inner = asObject(e.error)
  const innerMsg = str(inner.message) !== '' ? str(inner.message) : str(e.message)
  if (ctx.timedOut === true) {
    return { cause: stallCause(ctx.phase, ctx.transport, seconds), code: 'TIMEOUT', phase: ctx.phase }
  }
  const detail = innerMsg !== '' ? innerMsg : 'no reason given'
  const hint = ctx.transport === 'wss'
    ? ' (an untrusted TLS certificate, a proxy refusing the CONNECT, or a reset: WebSocket errors carry no detail)'
    : ' (refused, reset, or a proxy refusing the CONNECT: WebSocket errors carry no detail)'
  return { cause: `WebSocket failed: ${detail}${hint}`, code: 'WEBSOCKET_ERROR', phase: ctx.phase === 'tcp-connect' ? 'ws-upgrade' : ctx.phase }
}

function timeoutRule ({ name, seconds }: ErrorView, ctx: DialErrorContext): DialErrorDescription | undefined {
  if (name !== 'TimeoutError' && name !== 'AbortError' && ctx.timedOut !== true) return undefined
  return { cause: stallCause(ctx.phase, ctx.transport, seconds), code: 'TIMEOUT', phase: ctx.phase }
}

function namedRule ({ name, message }: ErrorView, ctx: DialErrorContext): DialErrorDescription | undefined {
  const known = NAMED.find(n => n.test(name, message))
  return known == null ? undefined : { cause: known.cause(message, ctx), code: known.code, phase: known.phase ?? ctx.phase }
}

/**
 * A DOM Event thrown as is (an 'abort' or 'close' event of a stream or
 * signal under the dial): String() of it says only "[object Event]".
 */
function domEventRule ({ err, e }: ErrorView, ctx: DialErrorContext): DialErrorDescription | undefined {
  if (err instanceof Error || typeof e.type !== 'string' || e.type === '') return undefined
  if (!(typeof Event === 'undefined' || err instanceof Event || 'timeStamp' in e)) return undefined
  const detail = [asObject(e.detail).message, e.detail, asObject(e.reason).message, e.reason].map(v => typeof v === 'string' ? v : '').find(v => v !== '') ?? ''
  const what = e.type === 'abort'
    ? 'aborted: an abort signal under the dial fired with no reason (the connection or stream it ran on went away?)'
    : e.type === 'close'
      ? 'the connection or stream under the dial closed'
      : `a "${e.type}" event with no error attached`
  return { cause: `${what}${detail !== '' ? ` (${detail})` : ''} during ${ctx.phase}`, code: `EVENT_${e.type.toUpperCase()}`, phase: ctx.phase }
}

/** Tried in order; the first rule that recognises the error describes it. */
const RULES: readonly Rule[] = [cancelledRule, proxyRule, pollRule, aggregateRule, codeRule, errorEventRule, timeoutRule, namedRule, domEventRule]

export function describeDialError (err: unknown, ctx: DialErrorContext): DialErrorDescription {
  const e = asObject(err)
  const view: ErrorView = { err, e, name: str(e.name), message: str(e.message), seconds: (ctx.elapsedMs / 1000).toFixed(1) }
  for (const rule of RULES) {
    const found = rule(view, ctx)
    if (found != null) return found
  }
  const text = view.message !== '' ? view.message : (err instanceof Error ? err.toString() : String(err))
  return { cause: `${view.name !== '' && view.name !== 'Error' ? view.name + ': ' : ''}${text}`, code: view.name !== '' ? view.name : 'UNKNOWN', phase: ctx.phase }
}

/** Maps js-libp2p's progress event names to the phase the dial has reached. */
export function phaseForProgress (event: string, transport: Transport, current: DialPhase): DialPhase {
  switch (event) {
    case 'dial-queue:calculated-addresses':
    case 'transport-manager:selected-transport':
      return current === 'dns' ? (transport === 'quic' ? 'tls' : 'tcp-connect') : current
    case 'tcp:open-connection':
    case 'websockets:open-connection':
      return 'tcp-connect'
    // a dial through a proxy (proxy-transports.ts): the tunnel, then what runs inside it
    case 'proxy:open-tunnel':
      return 'proxy'
    case 'proxy:tunnel-open':
      return transport === 'wss' ? 'tls' : transport === 'ws' ? 'ws-upgrade' : 'tcp-connect'
    case 'websockets:upgrade':
      return 'ws-upgrade'
    // the HTTPS poll transport (https-poll/transport.ts): TLS to the relay, then its session request
    case 'https-poll:tls':
      return 'tls'
    case 'https-poll:open-session':
      return 'http'
    case 'upgrader:encrypt-outbound-connection':
      return 'noise'
    case 'upgrader:multiplex-outbound-connection':
      return 'muxer'
    // @libp2p/webrtc private-to-private (initiate-connection.js): SDP over the relay, then ICE
    case 'webrtc:dial-relay':
    case 'webrtc:reuse-relay-connection':
    case 'webrtc:open-signaling-stream':
    case 'webrtc:send-sdp-offer':
    case 'webrtc:read-sdp-answer':
      return 'signalling'
    case 'webrtc:read-ice-candidates':
    case 'webrtc:add-ice-candidate':
    case 'webrtc:end-of-ice-candidates':
      return 'ice'
    case 'webrtc:close-signaling-stream':
      return 'muxer'
    case 'connection:opened':
    case 'dial-queue:already-connected':
      return 'protocol'
    default:
      return current
  }
}

/** The phase a dial to this address starts in. */
export function initialPhase (target: string, transport: Transport): DialPhase {
  if (transport === 'webrtc') return 'signalling'
  if (/\/(dns|dns4|dns6|dnsaddr)\//.test(target)) return 'dns'
  return transport === 'quic' ? 'tls' : 'tcp-connect'
}
