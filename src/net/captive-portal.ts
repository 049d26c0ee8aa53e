import { request as httpRequest, type IncomingMessage } from 'node:http'
import { request as httpsRequest } from 'node:https'
import type { TLSSocket } from 'node:tls'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { AGENT_VERSION, PORTAL_PROBE_HEADER, PORTAL_PROBE_PATH } from './constants.ts'
import type { CaptivePortalProbe, PortalProbeAnswer } from '../core/types.ts'
import type { AbortOptions } from '@libp2p/interface'

/**
 * Is this network a captive portal (a hotel's or a café's sign-in page that
 * answers every TCP 80/443 connection until someone signs in)? Relays answer
 * `GET /generate_204` on their WebSocket listeners with a bare 204
 * (src/relay/portal-probe.ts); anything else coming back from a relay's
 * address is someone else answering in its place.
 *
 * Always a direct request, never through a configured proxy: a portal sits in
 * front of this device's own connections, and a proxy's answer would tell
 * about the proxy's network instead.
 *
 * Bounded: one request per relay address, at most `maxTargets` addresses,
 * a short timeout each, redirects never followed (the `Location` is the
 * sign-in page: we read it, we do not fetch it), bodies read up to
 * `maxBodyBytes`.
 */

/** Plain HTTP first (portals intercept that for sure), then HTTPS, at most this many in all. */
export const DEFAULT_PORTAL_PROBE_TARGETS = 4

/** One probe request, connect to last body byte. */
export const DEFAULT_PORTAL_PROBE_TIMEOUT_MS = 3_000

/** What is read of an answer's body to find the sign-in link. */
export const DEFAULT_PORTAL_PROBE_BODY_BYTES = 64 * 1024

export interface CaptivePortalProbeOptions extends AbortOptions {
  /** @default DEFAULT_PORTAL_PROBE_TIMEOUT_MS */
  timeoutMs?: number
  /** @default DEFAULT_PORTAL_PROBE_BODY_BYTES */
  maxBodyBytes?: number
  /** the CA certificates the https requests verify against (reported, never enforced) @default Node's store */
  ca?: string | Buffer | Array<string | Buffer>
}

/**
 * The probe URLs of the relays' WebSocket addresses: `http://host:port/generate_204`
 * for `/ws`, `https://…` for `/wss` and `/tls/ws`; plain ones first, duplicates
 * dropped, at most `max`. Other addresses (TCP, QUIC, `/dnsaddr`) have no HTTP listener.
 */
export function portalProbeUrls (addrs: ReadonlyArray<Multiaddr | string>, max = DEFAULT_PORTAL_PROBE_TARGETS): string[] {
  const plain: string[] = []
  const tls: string[] = []
  for (const a of addrs) {
    const target = probeUrlOf(typeof a === 'string' ? multiaddr(a) : a)
    if (target == null) continue
    const list = target.startsWith('https:') ? tls : plain
    if (!list.includes(target)) list.push(target)
  }
  return [...plain, ...tls].slice(0, Math.max(0, max))
}

/** The PeerId of the relay behind a probe URL (the first address of `addrs` that gives it and names one). */
export function relayOfProbeUrl (addrs: ReadonlyArray<Multiaddr | string>, url: string): string | undefined {
  for (const a of addrs) {
    const ma = typeof a === 'string' ? multiaddr(a) : a
    if (probeUrlOf(ma) !== url) continue
    const peer = ma.getComponents().findLast(c => c.name === 'p2p')?.value
    if (peer != null) return peer
  }
  return undefined
}

function probeUrlOf (ma: Multiaddr): string | undefined {
  const parts = ma.getComponents()
  const [host, tcp] = parts
  if (host == null || tcp?.name !== 'tcp' || host.value == null || tcp.value == null) return undefined
  if (!['ip4', 'ip6', 'dns', 'dns4', 'dns6'].includes(host.name)) return undefined
  const names = parts.slice(2).map(p => p.name)
  const ws = names.includes('ws')
  const secure = names.includes('wss') || (ws && names.includes('tls'))
  if (!ws && !secure) return undefined
  const h = host.name === 'ip6' ? `[${host.value}]` : host.value
  return `${secure ? 'https' : 'http'}://${h}:${tcp.value}${PORTAL_PROBE_PATH}`
}

/**
 * Asks every URL once, in parallel, and decides: a portal answered anywhere →
 * `yes` (its sign-in URL, the first plain-HTTP one preferred); otherwise a relay's
 * 204 → `no`; otherwise (nothing answered, or only answers that are neither) →
 * `unknown`: silence is not a portal.
 */
export async function probeCaptivePortal (urls: readonly string[], options: CaptivePortalProbeOptions = {}): Promise<CaptivePortalProbe> {
  const answers = await Promise.all(urls.map(async url => await askOnce(url, options)))
  options.signal?.throwIfAborted()
  return decide(answers, new Date().toISOString())
}

/** The probe's verdict from its answers (exported for tests of the combination rule). */
export function decide (answers: PortalProbeAnswer[], checkedAt: string): CaptivePortalProbe {
  const words = answers.map(a => `${a.url}: ${a.detail}`).join('; ')
  const portal = answers.find(a => a.outcome === 'portal')
  if (portal != null) {
    return { state: 'yes', url: portal.signInUrl ?? portal.url, answers, detail: `a sign-in page answered in place of the relay (${words})`, checkedAt }
  }
  if (answers.some(a => a.outcome === 'relay')) return { state: 'no', answers, detail: words, checkedAt }
  return {
    state: 'unknown',
    answers,
    detail: answers.length === 0 ? 'no relay has a WebSocket address to probe' : `no sign-in page and no relay answered (${words})`,
    checkedAt
  }
}

/** One request; never throws (an abort by `options.signal` included: the caller checks it). */
async function askOnce (url: string, options: CaptivePortalProbeOptions): Promise<PortalProbeAnswer> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_PORTAL_PROBE_TIMEOUT_MS
  const signal = AbortSignal.any([...(options.signal != null ? [options.signal] : []), AbortSignal.timeout(timeoutMs)])
  try {
    const { res, body, cert } = await exchange(url, options, signal)
    return classify(url, res, body, cert)
  } catch (err) {
    const e = err as Error & { code?: string }
    const why = signal.aborted && options.signal?.aborted !== true ? `no answer within ${timeoutMs} ms` : `${e.code != null ? `${e.code}: ` : ''}${e.message}`
    return { url, outcome: 'silent', detail: why }
  }
}

interface Exchanged {
  res: IncomingMessage
  body: string
  cert?: { issuer: string, trusted: boolean }
}

function exchange (url: string, options: CaptivePortalProbeOptions, signal: AbortSignal): Promise<Exchanged> {
  const secure = url.startsWith('https:')
  const headers = { 'user-agent': AGENT_VERSION, accept: '*/*', connection: 'close' }
  const maxBody = options.maxBodyBytes ?? DEFAULT_PORTAL_PROBE_BODY_BYTES
  return new Promise<Exchanged>((resolve, reject) => {
    // certificates are read, not enforced: a portal's own certificate is the evidence we want to report
    const req = secure
      ? httpsRequest(url, { headers, signal, agent: false, rejectUnauthorized: false, ...(options.ca != null ? { ca: options.ca } : {}) })
      : httpRequest(url, { headers, signal, agent: false })
    req.once('error', reject)
    req.once('response', (res) => {
      const cert = secure ? certOf(res.socket as TLSSocket) : undefined
      const chunks: Buffer[] = []
      let size = 0
      const done = (): void => { resolve({ res, body: Buffer.concat(chunks).toString('utf8'), ...(cert != null ? { cert } : {}) }) }
      res.on('data', (chunk: Buffer) => {
        if (size >= maxBody) return
        chunks.push(chunk.subarray(0, maxBody - size))
        size += Math.min(chunk.length, maxBody - size)
        if (size >= maxBody) { done(); res.destroy() }
      })
      res.once('end', done)
      res.once('error', reject)
    })
    req.end()
  })
}

function certOf (socket: TLSSocket): { issuer: string, trusted: boolean } | undefined {
  const cert = socket.getPeerCertificate?.()
  if (cert == null || Object.keys(cert).length === 0) return undefined
  const issuer = cert.issuer?.O ?? cert.issuer?.CN ?? 'an unnamed issuer'
  return { issuer: Array.isArray(issuer) ? issuer.join(', ') : issuer, trusted: socket.authorized }
}

const REDIRECTS = new Set([301, 302, 303, 307, 308])

function classify (url: string, res: IncomingMessage, body: string, cert?: Exchanged['cert']): PortalProbeAnswer {
  const status = res.statusCode ?? 0
  const tls = cert != null ? { certIssuer: cert.issuer, certTrusted: cert.trusted } : {}
  const certWords = cert != null ? `, certificate issued by ${cert.issuer}${cert.trusted ? '' : ' (not trusted here)'}` : ''
  if (status === 204) {
    const relay = res.headers[PORTAL_PROBE_HEADER]
    return { url, outcome: 'relay', status, ...tls, detail: `204 from ${relay != null ? `relay ${String(relay)}` : 'the relay'}${certWords}` }
  }
  if (REDIRECTS.has(status)) {
    const location = res.headers.location
    const signInUrl = location != null ? absolute(location, url) : url
    return { url, outcome: 'portal', status, signInUrl, ...tls, detail: `${status} redirect to ${signInUrl}${certWords}` }
  }
  const html = /html/i.test(String(res.headers['content-type'] ?? '')) || /<(html|body|form|meta)\b/i.test(body)
  // RFC 6585's "Network Authentication Required" is the portal's own status; any HTML page stands in for the relay
  if (status === 511 || html) {
    const signInUrl = signInUrlOf(body, url)
    return { url, outcome: 'portal', status, signInUrl, ...tls, detail: `${status} with a page (${html ? 'HTML' : 'no HTML'}) whose sign-in link is ${signInUrl}${certWords}` }
  }
  // not a page and not our 204: a relay without the probe route answers 400, and that is no sign-in page
  return { url, outcome: 'other', status, ...tls, detail: `${status} without a page: neither a sign-in page nor the relay's probe answer (a relay older than the probe?)${certWords}` }
}

/**
 * Where a sign-in page sends its visitor: a meta refresh, a script's
 * `location = '…'`, the first form's action, the first link; else the page
 * itself (`fallback`).
 */
export function signInUrlOf (html: string, fallback: string): string {
  const patterns = [
    /<meta[^>]+http-equiv\s*=\s*["']?refresh["']?[^>]*content\s*=\s*["'][^"']*?url\s*=\s*['"]?([^"'>\s]+)/i,
    /(?:window\.|document\.|top\.)?location(?:\.href)?\s*=\s*["']([^"']+)["']/i,
    /location\.(?:replace|assign)\(\s*["']([^"']+)["']/i,
    /<form[^>]+action\s*=\s*["']([^"']+)["']/i,
    /<a[^>]+href\s*=\s*["']([^"'#][^"']*)["']/i
  ]
  for (const p of patterns) {
    const found = p.exec(html)?.[1]
    if (found != null) return absolute(decodeEntities(found), fallback)
  }
  return fallback
}

function decodeEntities (s: string): string {
  return s.replace(/&amp;/g, '&').replace(/&#x2F;/gi, '/').replace(/&#47;/g, '/')
}

function absolute (link: string, base: string): string {
  try {
    return new URL(link, base).toString()
  } catch {
    // a link that is not a URL is still what the page says: shown as is
    return link
  }
}
