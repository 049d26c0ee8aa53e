import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { HTTPS_POLL_PATH } from '../constants.ts'

/**
 * Addresses of the HTTPS long-polling transport:
 * `/ip4/x/tcp/443/tls/http/http-path/wc-poll%2F1/p2p/<id>` (with `/sni/<name>`
 * after `/tls` when the WebSocket address has one). `/http-path` is the
 * multiaddr component for "an HTTP resource under this path", so the address
 * says both that plain request/response HTTP is spoken there and which
 * versioned route table answers; a plain `/tls/http` would claim the whole
 * origin, which is libp2p's HTTP transport's and the relay's WebSocket's.
 * The relay serves these routes on its WebSocket listeners, so every poll
 * address is its `/tls/ws` (or `/ws`) address with the last component swapped.
 */

const PATH_COMPONENT = `/http-path/${encodeURIComponent(HTTPS_POLL_PATH.slice(1))}`

/** The parts of a poll address a client needs to make its requests. */
export interface PollTarget {
  host: string
  port: number
  tls: boolean
  /** TLS server name: `/sni/…`, else a DNS host; undefined for an IP literal */
  servername?: string
  /** the route prefix, `/wc-poll/1` */
  path: string
}

/** True for an address this transport dials or listens on. */
export function isPollAddr (ma: Multiaddr | string): boolean {
  return pollTargetOf(ma) != null
}

/**
 * host, port, TLS and path of `/ip4|ip6|dns*​/h/tcp/N[/tls[/sni/S]]/http/http-path/P[/p2p/id]`;
 * undefined for any other shape.
 */
export function pollTargetOf (ma: Multiaddr | string): PollTarget | undefined {
  const parts = stripPeer(ma.toString()).split('/')
  if (!['ip4', 'ip6', 'dns', 'dns4', 'dns6'].includes(parts[1]) || parts[3] !== 'tcp') return undefined
  const port = Number(parts[4])
  if (!Number.isInteger(port) || port < 0 || port > 65535) return undefined
  let i = 5
  const tls = parts[i] === 'tls'
  if (tls) i++
  let sni: string | undefined
  if (tls && parts[i] === 'sni') { sni = parts[i + 1]; i += 2 }
  if (parts[i] !== 'http' || parts[i + 1] !== 'http-path' || parts.length !== i + 3) return undefined
  const path = `/${decodeURIComponent(parts[i + 2])}`
  const host = parts[2]
  const servername = sni ?? (parts[1].startsWith('dns') ? host : undefined)
  return { host, port, tls, ...(servername != null ? { servername } : {}), path }
}

/**
 * The poll address served beside a WebSocket address (`…/tls/ws` or `…/ws`,
 * `/p2p` kept); undefined when `ws` is not one. Same host, port and SNI: a
 * donor given only a relay's `/tls/ws` address derives it without configuration.
 */
export function pollAddrFor (ws: Multiaddr | string): Multiaddr | undefined {
  const text = ws.toString()
  const m = /^(\/(?:ip4|ip6|dns|dns4|dns6)\/[^/]+\/tcp\/\d+(?:\/tls(?:\/sni\/[^/]+)?)?)\/ws(\/p2p\/[^/]+)?$/.exec(text)
  if (m == null) return undefined
  return multiaddr(`${m[1]}/http${PATH_COMPONENT}${m[2] ?? ''}`)
}

/**
 * `addrs` followed by the poll address of each `/tls/ws` address among them
 * that is not already there: the last rung of a dial to a relay. Plain `/ws`
 * gets none — a network that passes plain HTTP passes its upgrade too, and
 * a relay's 443 is TLS.
 */
export function withPollFallbacks (addrs: readonly Multiaddr[]): Multiaddr[] {
  const known = new Set(addrs.map(a => a.toString()))
  const out = [...addrs]
  for (const a of addrs) {
    if (!a.toString().includes('/tls/')) continue
    const poll = pollAddrFor(a)
    if (poll == null || known.has(poll.toString())) continue
    known.add(poll.toString())
    out.push(poll)
  }
  return out
}

function stripPeer (text: string): string {
  return text.replace(/\/p2p\/[^/]+$/, '')
}

/**
 * A relay's listen or announce addresses with the poll address of each
 * WebSocket one (`/tls/ws` and `/ws`) added: the poll route answers on every
 * WebSocket listener, and a donor that learns the relay's addresses through
 * identify or the mesh topic sees the poll rung beside the WebSocket one.
 */
export function withPollAddrs (addrs: readonly Multiaddr[]): Multiaddr[] {
  const known = new Set(addrs.map(a => a.toString()))
  const polls = addrs.map(a => pollAddrFor(a)).filter((a): a is Multiaddr => a != null && !known.has(a.toString()))
  return [...addrs, ...polls]
}
