import { fetchRelayInfo } from '../protocols/relay-info/index.ts'
import { messageOf } from '../protocols/errors.ts'
import { judgeInterception, pathUsesTls, probeTlsChain, type TlsChain } from '../net/tls-intercept.ts'
import { wsTargetOf } from '../net/ws-diagnose.ts'
import type { TlsInterception } from '../core/types.ts'
import type { ProxyRoutes } from '../net/components.ts'
import type { AbortOptions, Connection } from '@libp2p/interface'

/** What the donor knows about TLS interception on one relay path. */
export interface RelayTlsCheck {
  intercepted: TlsInterception
  /** who re-signed the certificate, when intercepted */
  interceptor?: string
  /** in words, for status and the log */
  reason: string
  /** the path checked */
  addr: string
  /** the chain the donor saw, when one was seen */
  seen?: TlsChain
  /** the check could not run (relay-info or the TLS probe failed); the reason says where */
  failed?: boolean
}

/**
 * Checks a relay connection made over WebSocket-over-TLS (or HTTPS polling): asks the relay
 * (over this Noise-authenticated connection) which certificate it serves,
 * and compares it with the chain this donor was served on the same path —
 * read from the proxied dial's own TLS socket when it went through a proxy,
 * else from a TLS probe of the same host:port through the same proxy route
 * (a transparent inspecting firewall re-signs the probe just as it re-signed
 * the WebSocket). Never throws: a check that cannot run is `unknown` with
 * the reason.
 */
export async function checkRelayTls (proxies: ProxyRoutes, conn: Connection, addr: string, options: AbortOptions = {}): Promise<RelayTlsCheck> {
  const target = pathUsesTls(addr) ? wsTargetOf(addr) : undefined
  if (target == null || !target.tls) {
    return { intercepted: 'unknown', addr, reason: 'not checked: this path does not use TLS' }
  }
  let published: string[]
  try {
    const info = await fetchRelayInfo(conn, { signal: options.signal })
    published = info.tls.map(c => c.fingerprint256)
  } catch (err) {
    return { intercepted: 'unknown', addr, failed: true, reason: `not checked: the relay did not answer relay-info (${messageOf(err)}; an older relay?)` }
  }
  let seen = proxies.seenChain(addr)
  if (seen == null) {
    const proxy = proxies.proxyFor('wss', target.host, target.port)
    try {
      seen = await probeTlsChain(target.host, target.port, target.servername, { proxy, signal: options.signal })
    } catch (err) {
      return { intercepted: 'unknown', addr, failed: true, reason: `not checked: the TLS probe of ${target.host}:${target.port}${proxy != null ? ` through ${proxy.url}` : ''} failed: ${messageOf(err)}` }
    }
  }
  const verdict = judgeInterception(published, seen)
  return { ...verdict, addr, seen }
}
