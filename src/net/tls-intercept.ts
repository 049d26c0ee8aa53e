import { X509Certificate } from 'node:crypto'
import { connect as netConnect, type Socket } from 'node:net'
import { connect as tlsConnect, getCACertificates, setDefaultCACertificates, type DetailedPeerCertificate, type PeerCertificate, type TLSSocket } from 'node:tls'
import { WorldComputeError } from '../core/errors.ts'
import { authority, openTunnel, ProxyTunnelError } from './proxy-tunnel.ts'
import { pollTargetOf } from './https-poll/address.ts'
import { uplinkTransport } from './transport-of.ts'
import type { ProxySpec } from './proxy-env.ts'
import type { Logger } from '../log/logger.ts'
import type { AbortOptions } from '@libp2p/interface'

/**
 * TLS interception: which certificate chain does this machine really get
 * when it opens TLS to a relay, and is it the relay's own?
 *
 * A TLS-inspecting proxy or firewall terminates TLS itself and re-signs a
 * certificate for the same name with a corporate CA that IT put in the
 * system trust store. The WebSocket then opens fine, and Noise inside it
 * still authenticates the relay's PeerId end to end, so the mesh keeps
 * working; but the donor should know, and say so, by the interceptor's name.
 * The relay publishes the SHA-256 fingerprints of its own certificates over
 * the Noise-secured connection (`/worldcompute/relay-info/1.0.0`); a
 * different leaf on the donor's side means a middlebox re-signed it.
 *
 * Exported for the daemon (the reservation manager checks each WSS relay
 * path) and for `worldcompute doctor`:
 *
 * ```ts
 * const seen = await probeTlsChain('198.51.100.10', 443, undefined, { proxy, signal })
 * seen.leaf.fingerprint256   // 'AB:CD:…'
 * seen.issuerName            // 'Example Corp Inspection CA'
 * const verdict = judgeInterception(publishedFingerprints, seen)   // { intercepted: 'yes', interceptor: '…', reason }
 * ```
 */

/** One certificate of a chain, as reports show it. */
export interface CertSummary {
  /** `CN=…, O=…` */
  subject: string
  issuer: string
  /** SHA-256 of the DER certificate, `AB:CD:…` (Node's `fingerprint256` format) */
  fingerprint256: string
  validTo?: string
}

/** The chain a TLS handshake to `host:port` presented, as this machine saw it. */
export interface TlsChain {
  host: string
  port: number
  servername?: string
  /** `direct`, or the proxy URL (credentials redacted) the probe went through */
  via: string
  leaf: CertSummary
  /** leaf first, up to the root the peer sent or the local store completed */
  chain: CertSummary[]
  /** the leaf issuer's common name (else organisation, else the whole name): who signed what we got */
  issuerName: string
  /** the chain verifies against this process's trust store (default CAs + system store + NODE_EXTRA_CA_CERTS) */
  trusted: boolean
  /** why it does not verify (`UNABLE_TO_VERIFY_LEAF_SIGNATURE`, …) */
  trustError?: string
}

export type Interception = 'yes' | 'no' | 'unknown'

export interface InterceptionVerdict {
  intercepted: Interception
  /** who re-signed the certificate, when intercepted */
  interceptor?: string
  /** in words, for status and logs */
  reason: string
}

/** A TLS probe that could not see a certificate chain; `phase` says how far it got. */
export class TlsProbeError extends WorldComputeError {
  readonly phase: 'proxy' | 'tcp-connect' | 'tls'
  constructor (message: string, code: string, phase: 'proxy' | 'tcp-connect' | 'tls', options?: { cause?: unknown }) {
    super(message, code, options)
    this.phase = phase
  }
}

export interface ProbeTlsOptions extends AbortOptions {
  /** go through this proxy (an HTTP CONNECT or SOCKS5 tunnel), as the WebSocket dial did @default direct */
  proxy?: ProxySpec
  /** upper bound for the whole probe @default 5000 */
  timeoutMs?: number
}

const DEFAULT_PROBE_TIMEOUT_MS = 5_000

/** `CN=…, O=…` from the object form Node gives for subject/issuer. */
export function formatName (name: Record<string, string | string[]> | undefined): string {
  if (name == null) return ''
  return Object.entries(name).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : v}`).join(', ')
}

function shortName (name: Record<string, string | string[]> | undefined): string {
  const pick = (v: string | string[] | undefined): string | undefined => Array.isArray(v) ? v[0] : v
  return pick(name?.CN) ?? pick(name?.O) ?? formatName(name)
}

function summary (cert: PeerCertificate): CertSummary {
  return {
    subject: formatName(cert.subject as unknown as Record<string, string>),
    issuer: formatName(cert.issuer as unknown as Record<string, string>),
    fingerprint256: cert.fingerprint256,
    ...(cert.valid_to != null ? { validTo: cert.valid_to } : {})
  }
}

/**
 * The chain an open TLS socket presented, leaf first. Node links each
 * certificate to its issuer; a self-signed root links to itself.
 */
export function chainOf (socket: TLSSocket, host: string, port: number, via: string, servername?: string): TlsChain {
  const leafCert = socket.getPeerCertificate(true)
  if (leafCert == null || Object.keys(leafCert).length === 0 || leafCert.fingerprint256 == null) {
    throw new TlsProbeError(`TLS to ${authority(host, port)} (${via}) completed without a peer certificate`, 'TLS_NO_CERTIFICATE', 'tls')
  }
  const chain: CertSummary[] = []
  const seen = new Set<string>()
  let cert: DetailedPeerCertificate | undefined = leafCert
  // bounded: a chain is a handful of certificates; a loop in the links ends at a repeat
  while (cert != null && chain.length < 10 && !seen.has(cert.fingerprint256)) {
    seen.add(cert.fingerprint256)
    chain.push(summary(cert))
    cert = cert.issuerCertificate
  }
  const error = socket.authorizationError
  return {
    host,
    port,
    ...(servername != null ? { servername } : {}),
    via,
    leaf: chain[0],
    chain,
    issuerName: shortName(leafCert.issuer as unknown as Record<string, string>),
    trusted: socket.authorized,
    ...(error != null ? { trustError: String((error as { code?: string }).code ?? error) } : {})
  }
}

/**
 * Opens TLS to `host:port` (through `proxy` when given, as the WebSocket dial
 * would) and returns the chain presented, whether or not it is trusted: an
 * untrusted chain is exactly what a diagnosis wants to see. Sends nothing
 * after the handshake.
 */
export async function probeTlsChain (host: string, port: number, servername: string | undefined, options: ProbeTlsOptions = {}): Promise<TlsChain> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS
  const timeout = AbortSignal.timeout(timeoutMs)
  const signal = options.signal != null ? AbortSignal.any([options.signal, timeout]) : timeout
  signal.throwIfAborted()
  const via = options.proxy?.url ?? 'direct'
  const target = authority(host, port)
  let raw: Socket
  if (options.proxy != null) {
    try {
      raw = await openTunnel(options.proxy, host, port, { signal, timeoutMs })
    } catch (err) {
      if (err instanceof ProxyTunnelError) throw new TlsProbeError(`TLS probe of ${target}: ${err.message}`, err.code, 'proxy', { cause: err })
      throw err
    }
  } else {
    raw = await tcpOpen(host, port, signal)
  }
  return await new Promise<TlsChain>((resolve, reject) => {
    const socket = tlsConnect({
      socket: raw,
      // an IP address is not a valid SNI name (RFC 6066 §3)
      servername: servername ?? undefined,
      // we want to see the chain, trusted or not; `authorized` says which
      rejectUnauthorized: false,
      ALPNProtocols: ['http/1.1']
    })
    const finish = (err: Error | undefined, chain?: TlsChain): void => {
      signal.removeEventListener('abort', onAbort)
      socket.destroy()
      raw.destroy()
      if (err != null) reject(err)
      else resolve(chain as TlsChain)
    }
    const onAbort = (): void => {
      finish(timeout.aborted && options.signal?.aborted !== true
        ? new TlsProbeError(`TLS probe of ${target} (${via}): no TLS handshake within ${(timeoutMs / 1000).toFixed(1)} s`, 'TIMEOUT', 'tls', { cause: signal.reason })
        : signal.reason as Error)
    }
    signal.addEventListener('abort', onAbort, { once: true })
    socket.once('secureConnect', () => {
      try {
        finish(undefined, chainOf(socket, host, port, via, servername))
      } catch (err) {
        finish(err as Error)
      }
    })
    socket.once('error', (err: NodeJS.ErrnoException) => {
      finish(new TlsProbeError(`TLS probe of ${target} (${via}): handshake failed: ${err.message}`, err.code ?? 'TLS_FAILED', 'tls', { cause: err }))
    })
  })
}

async function tcpOpen (host: string, port: number, signal: AbortSignal): Promise<Socket> {
  return await new Promise<Socket>((resolve, reject) => {
    const socket = netConnect({ host, port })
    const done = (err?: Error): void => {
      signal.removeEventListener('abort', onAbort)
      socket.removeListener('connect', onConnect)
      socket.removeListener('error', onError)
      if (err == null) {
        resolve(socket)
      } else {
        socket.destroy()
        reject(err)
      }
    }
    const onConnect = (): void => { done() }
    const onError = (err: NodeJS.ErrnoException): void => {
      done(new TlsProbeError(`TLS probe of ${authority(host, port)}: TCP connect failed: ${err.message}`, err.code ?? 'TCP_FAILED', 'tcp-connect', { cause: err }))
    }
    const onAbort = (): void => {
      done(new TlsProbeError(`TLS probe of ${authority(host, port)}: no answer to TCP connect`, 'TIMEOUT', 'tcp-connect', { cause: signal.reason }))
    }
    socket.once('connect', onConnect)
    socket.once('error', onError)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

/** `AB:CD:…`, upper case with colons, whatever the input's case or separators. */
export function normalizeFingerprint (fp: string): string {
  const hex = fp.replace(/[^0-9a-fA-F]/g, '').toUpperCase()
  return hex.match(/.{2}/g)?.join(':') ?? ''
}

/** SHA-256 fingerprint of the first (leaf) certificate of a PEM file's contents. */
export function leafFingerprintOfPem (pem: string | Buffer): { fingerprint256: string, subject: string, issuer: string } {
  const cert = new X509Certificate(pem)
  return { fingerprint256: cert.fingerprint256, subject: cert.subject.replaceAll('\n', ', '), issuer: cert.issuer.replaceAll('\n', ', ') }
}

/**
 * Compares the leaf this machine saw with the fingerprints the relay
 * published over the authenticated channel. No published fingerprint (a relay
 * behind a TLS-terminating front such as nginx, or an old relay) cannot be
 * judged: `unknown`, never a guess.
 */
export function judgeInterception (published: readonly string[] | undefined, seen: TlsChain): InterceptionVerdict {
  if (published == null || published.length === 0) {
    return { intercepted: 'unknown', reason: `the relay publishes no TLS certificate (TLS terminated in front of it, or an older relay); the certificate seen was issued by '${seen.issuerName}'` }
  }
  const mine = new Set(published.map(normalizeFingerprint))
  if (mine.has(normalizeFingerprint(seen.leaf.fingerprint256))) {
    return { intercepted: 'no', reason: `the certificate seen (${seen.via}) is the relay's own, issued by '${seen.issuerName}'` }
  }
  return {
    intercepted: 'yes',
    interceptor: seen.issuerName,
    reason: `TLS is intercepted by '${seen.issuerName}': the certificate seen (${seen.via}) for ${authority(seen.host, seen.port)} is ${seen.leaf.fingerprint256.slice(0, 23)}… issued by ${seen.leaf.issuer}, not one the relay published (${[...mine].map(f => `${f.slice(0, 23)}…`).join(', ')}); a middlebox re-signed it. Noise still authenticates the relay's PeerId end to end`
  }
}

/**
 * Makes this process's TLS clients (the WebSocket dials, DoH, TLS probes)
 * trust the operating system's store as well as Node's bundled CAs and
 * NODE_EXTRA_CA_CERTS, the way `node --use-system-ca` does, without
 * re-executing the process: a TLS-inspecting proxy's corporate CA is put in
 * the system store by IT, and a donor must work behind it with no flag. On
 * Linux, Node reads the OS store with OpenSSL's rules, so SSL_CERT_FILE and
 * SSL_CERT_DIR are honoured. Returns how many certificates were added.
 */
export function trustSystemCertificates (log?: Logger): { added: number, total: number } {
  let defaults: string[]
  let system: string[]
  try {
    defaults = getCACertificates('default')
    system = getCACertificates('system')
  } catch (err) {
    log?.warn(`cannot read the system certificate store (${(err as Error).message}); TLS trusts only Node's bundled CAs and NODE_EXTRA_CA_CERTS, so a TLS-inspecting proxy's CA is not trusted`)
    return { added: 0, total: 0 }
  }
  const known = new Set(defaults)
  const extra = system.filter(c => !known.has(c))
  if (extra.length > 0) setDefaultCACertificates([...defaults, ...extra])
  log?.debug(`TLS trust: ${defaults.length} default CA certificates + ${extra.length} from the system store (SSL_CERT_FILE=${process.env.SSL_CERT_FILE ?? 'unset'}, SSL_CERT_DIR=${process.env.SSL_CERT_DIR ?? 'unset'})`)
  return { added: extra.length, total: defaults.length + extra.length }
}

/**
 * Whether a relay path runs over TLS a middlebox could re-sign: WebSocket over
 * TLS, or HTTPS long polling over TLS (both reach the relay's TLS listener,
 * so the same check applies).
 */
export function pathUsesTls (addr: string): boolean {
  const transport = uplinkTransport(addr)
  return transport === 'wss' || (transport === 'https-poll' && pollTargetOf(addr)?.tls === true)
}
