import { BlockList, isIP } from 'node:net'
import { ConfigError } from '../core/errors.ts'

/**
 * Proxy settings from the environment, parsed once at start-up: which proxy
 * (if any) a dial to a given host and port must go through.
 *
 * Variables, each in a lower-case and an upper-case form. **The lower-case
 * form wins when it is set, even to the empty string** (which then means "no
 * proxy"), as in curl; the upper-case form is read only when the lower-case
 * one is absent.
 *
 *   https_proxy / HTTPS_PROXY   WebSocket dials (TLS and plain)
 *   http_proxy  / HTTP_PROXY    plain (non-TLS) WebSocket dials, before HTTPS_PROXY
 *   all_proxy   / ALL_PROXY     any dial above without its own variable, and raw TCP dials
 *   no_proxy    / NO_PROXY      hosts that are dialled directly
 *
 * Which variable a dial uses:
 *   - `wss` (WebSocket over TLS): https_proxy, else all_proxy;
 *   - `ws` (plain WebSocket): http_proxy, else https_proxy, else all_proxy.
 *     We never forward requests; a WebSocket always goes through a CONNECT
 *     tunnel, so the proxy sees the same thing as for HTTPS. A network that
 *     sets only HTTPS_PROXY (the common case) would otherwise leave relays
 *     with a plain `ws` listener unreachable;
 *   - `tcp` (libp2p over raw TCP): all_proxy only — SOCKS5, or an HTTP proxy
 *     that allows CONNECT to the port. HTTPS_PROXY is not used for raw TCP:
 *     it names a proxy for HTTPS, and many refuse CONNECT to other ports;
 *   - QUIC (UDP) can never use a proxy.
 *
 * Differences from curl, on purpose: upper-case HTTP_PROXY is honoured (curl
 * ignores it because of "httpoxy", a CGI problem a daemon does not have), and
 * loopback targets (127.0.0.0/8, ::1, localhost) never use a proxy, as in Go's
 * net/http: a local relay or test mesh must not hairpin through a proxy.
 *
 * Proxy URLs: `http://[user:pass@]host[:port]`, `https://…` (TLS to the
 * proxy), `socks5://[user:pass@]host[:port]` (the target's name is resolved
 * here), `socks5h://…` (the proxy resolves it). No scheme means `http://`.
 * Default ports as in curl: 1080, or 443 for `https://`. User and password
 * are percent-decoded. Anything else is a {@link ProxyConfigError} naming
 * the variable, never echoing the credentials.
 *
 * NO_PROXY (comma- or space-separated, case-insensitive), as curl ≥ 7.86:
 *   `*`                         every host: no proxy at all
 *   `example.com`, `.example.com`, `*.example.com`
 *                               that domain and every name under it (the
 *                               leading `.` or `*.` changes nothing); never a
 *                               look-alike (`notexample.com`) and never an IP
 *   `192.0.2.7`, `::1`, `[::1]` that IP literal
 *   `10.0.0.0/8`, `fd00::/8`    any IP literal in that range (names are not
 *                               resolved to check them)
 *   `host:port`, `[v6]:port`    as above, for that port only
 */

export const PROXY_KINDS = ['http', 'https', 'socks5', 'socks5h'] as const
export type ProxyKind = typeof PROXY_KINDS[number]

/** What a dial is, for choosing the variable. */
export type ProxiedUse = 'wss' | 'ws' | 'tcp'

export interface ProxySpec {
  kind: ProxyKind
  /** host name or IP literal (an IPv6 literal without brackets) */
  host: string
  port: number
  username?: string
  password?: string
  /** the variable it came from, e.g. `HTTPS_PROXY` */
  source: string
  /** the URL with any credentials replaced by `***`: the only form ever logged or shown */
  url: string
}

export type NoProxyRule =
  | { type: 'all' }
  | { type: 'domain', domain: string, port?: number }
  | { type: 'ip', ip: string, port?: number }
  | { type: 'cidr', network: string, prefix: number, family: 4 | 6, port?: number }

export interface ProxyEnvironment {
  /** from https_proxy / HTTPS_PROXY */
  https?: ProxySpec
  /** from http_proxy / HTTP_PROXY */
  http?: ProxySpec
  /** from all_proxy / ALL_PROXY */
  all?: ProxySpec
  noProxy: NoProxyRule[]
  /** the variable NO_PROXY rules came from, when any */
  noProxySource?: string
  /**
   * loopback targets are dialled directly whatever the variables say
   * @default true (tests on 127.0.0.1 turn it off to go through a local proxy)
   */
  directLoopback?: boolean
}

/** A proxy variable does not hold something we can use; the message names the variable. */
export class ProxyConfigError extends ConfigError {
  readonly variable: string
  constructor (variable: string, message: string, options?: { cause?: unknown }) {
    super(`${variable}: ${message}`, options)
    this.variable = variable
  }
}

/** No proxy from the environment: the default. */
export const NO_PROXY_ENVIRONMENT: ProxyEnvironment = Object.freeze({ noProxy: [] }) as ProxyEnvironment

/** The lower-case variable when set (even empty), else the upper-case one. */
function pick (env: NodeJS.ProcessEnv, lower: string): { name: string, value: string } | undefined {
  const upper = lower.toUpperCase()
  if (env[lower] !== undefined) return { name: lower, value: env[lower] as string }
  if (env[upper] !== undefined) return { name: upper, value: env[upper] as string }
  return undefined
}

export function parseProxyEnvironment (env: NodeJS.ProcessEnv = process.env): ProxyEnvironment {
  const out: ProxyEnvironment = { noProxy: [] }
  for (const [key, variable] of [['https', 'https_proxy'], ['http', 'http_proxy'], ['all', 'all_proxy']] as const) {
    const v = pick(env, variable)
    if (v == null || v.value.trim() === '') continue
    out[key] = parseProxyUrl(v.value, v.name)
  }
  const np = pick(env, 'no_proxy')
  if (np != null && np.value.trim() !== '') {
    out.noProxy = parseNoProxy(np.value, np.name)
    out.noProxySource = np.name
  }
  return out
}

/** Replaces the user-info of every URL in `text` with `***`: safe to log. */
export function redactCredentials (text: string): string {
  // a `NAME=` before the URL is kept (tried first, or the user-info would swallow it)
  return text.replace(/((?:^|[\s,;("'[])[a-z_][a-z0-9_]*=|^|[\s,;("'[])([a-z][a-z0-9+.-]*:\/\/)?([^\s/@,;'"()[\]]+)@/gi, (_m, pre: string, scheme: string | undefined) => `${pre}${scheme ?? ''}***@`)
}

/**
 * A proxy URL as typed, for an error about it: everything up to its LAST `@`
 * is user information. A password with an unencoded `/`, `?` or `#` makes the
 * URL parser (and redactCredentials, which stops at those) read part of the
 * password as the host or the path, so this never asks the parser.
 */
function redactedProxyUrl (raw: string): string {
  return raw.includes('@') ? raw.replace(/^([a-z][a-z0-9+.-]*:\/\/)?.*@/i, (_m, scheme: string | undefined) => `${scheme ?? ''}***@`) : raw
}

export function parseProxyUrl (value: string, source: string): ProxySpec {
  const raw = value.trim()
  // `DOMAIN\user` typed as is: percent-encoded, or the URL parser would take the backslash for a path
  const withScheme = (/^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`).replace(/^([a-z][a-z0-9+.-]*:\/\/)([^/@]*@)/i, (_m, scheme: string, userinfo: string) => `${scheme}${userinfo.replaceAll('\\', '%5C')}`)
  let url: URL
  try {
    url = new URL(withScheme)
  } catch (err) {
    throw new ProxyConfigError(source, `"${redactedProxyUrl(raw)}" is not a proxy URL (expected http://[user:pass@]host:port or socks5://…)`, { cause: redactedCause(err) })
  }
  const scheme = url.protocol.slice(0, -1).toLowerCase()
  if (!(PROXY_KINDS as readonly string[]).includes(scheme)) {
    throw new ProxyConfigError(source, `unsupported proxy scheme "${scheme}://" (supported: ${PROXY_KINDS.map(k => `${k}://`).join(', ')})`)
  }
  const kind = scheme as ProxyKind
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
  if (host === '') throw new ProxyConfigError(source, `"${redactedProxyUrl(raw)}" names no proxy host`)
  if (url.pathname !== '/' && url.pathname !== '') {
    // the "path" may be the end of a password with an unencoded `/`: shown only when no `@` is in sight
    const path = raw.includes('@') ? 'a path, or a password with an unencoded "/" (write it as %2F)' : `"${url.pathname}"`
    throw new ProxyConfigError(source, `"${redactedProxyUrl(raw)}": a proxy URL has no path (got ${path})`)
  }
  const port = url.port !== '' ? Number(url.port) : explicitPort(withScheme) ?? (kind === 'https' ? 443 : 1080)
  let username: string | undefined
  let password: string | undefined
  try {
    if (url.username !== '') username = decodeURIComponent(url.username)
    if (url.password !== '') password = decodeURIComponent(url.password)
  } catch (err) {
    throw new ProxyConfigError(source, 'the user or password is not valid percent-encoding', { cause: redactedCause(err) })
  }
  const hostText = isIP(host) === 6 ? `[${host}]` : host
  const spec: ProxySpec = {
    kind,
    host,
    port,
    source,
    url: `${kind}://${username != null || password != null ? '***@' : ''}${hostText}:${port}`
  }
  if (username != null) spec.username = username
  if (password != null) spec.password = password
  return spec
}

/**
 * The port written in a URL's authority: the URL parser drops one equal to
 * the scheme's default (`http://proxy:80` has `port` ""), which would
 * otherwise become curl's default 1080.
 */
function explicitPort (url: string): number | undefined {
  const m = /^[a-z][a-z0-9+.-]*:\/\/(?:[^@/]*@)?(?:\[[^\]]*\]|[^:/@]*):(\d+)(?:\/|$)/i.exec(url)
  return m != null ? Number(m[1]) : undefined
}

/** A URL parse error repeats the input, credentials included: keep only its name. */
function redactedCause (err: unknown): Error {
  return new Error(`${(err as Error)?.name ?? 'Error'} (details withheld: the value may hold credentials)`)
}

export function parseNoProxy (value: string, source = 'NO_PROXY'): NoProxyRule[] {
  const rules: NoProxyRule[] = []
  for (const entry of value.split(/[,\s]+/)) {
    const e = entry.trim().toLowerCase()
    if (e === '') continue
    if (e === '*') {
      rules.push({ type: 'all' })
      continue
    }
    rules.push(parseNoProxyEntry(e, source))
  }
  return rules
}

function parseNoProxyEntry (e: string, source: string): NoProxyRule {
  let hostPart = e
  let port: number | undefined
  const bracketed = /^\[([^\]]+)\](?::(\d+))?(\/\d+)?$/.exec(e)
  if (bracketed != null) {
    hostPart = bracketed[1] + (bracketed[3] ?? '')
    if (bracketed[2] != null) port = Number(bracketed[2])
  } else if ((e.match(/:/g) ?? []).length === 1) {
    // one colon: host:port (a bare IPv6 literal has several)
    const at = e.lastIndexOf(':')
    const p = e.slice(at + 1)
    if (!/^\d+$/.test(p)) throw new ProxyConfigError(source, `"${e}": the port after ":" is not a number`)
    hostPart = e.slice(0, at)
    port = Number(p)
  }
  if (port != null && (port < 1 || port > 65535)) throw new ProxyConfigError(source, `"${e}": port ${port} is out of range`)
  const withPort = <T extends NoProxyRule>(r: T): T => port != null ? { ...r, port } : r
  const slash = hostPart.indexOf('/')
  if (slash !== -1) {
    const network = hostPart.slice(0, slash)
    const prefix = Number(hostPart.slice(slash + 1))
    const family = isIP(network)
    if (family === 0) throw new ProxyConfigError(source, `"${e}": a range needs an IP address before "/"`)
    const max = family === 4 ? 32 : 128
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) throw new ProxyConfigError(source, `"${e}": prefix length must be 0-${max}`)
    return withPort({ type: 'cidr', network, prefix, family: family as 4 | 6 })
  }
  if (isIP(hostPart) !== 0) return withPort({ type: 'ip', ip: normaliseIp(hostPart) })
  // `.example.com`, `*.example.com` and `example.com` all mean the domain and its subdomains (curl ≥ 7.86)
  const domain = hostPart.replace(/^\*?\.+/, '').replace(/\.$/, '')
  if (domain === '' || !/^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/.test(domain)) {
    throw new ProxyConfigError(source, `"${e}" is not a host name, IP address, range (a.b.c.d/n) or *`)
  }
  return withPort({ type: 'domain', domain })
}

function normaliseIp (ip: string): string {
  if (isIP(ip) !== 6) return ip
  // one spelling per address, so `::1` and `0:0::1` compare equal (the URL parser compresses it)
  return new URL(`http://[${ip}]/`).hostname.slice(1, -1)
}

/** Strips IPv6 brackets and a trailing dot, lower-cases. */
function normaliseHost (host: string): string {
  let h = host.trim().toLowerCase()
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1)
  if (h.endsWith('.')) h = h.slice(0, -1)
  return isIP(h) !== 0 ? normaliseIp(h) : h
}

/** Whether one NO_PROXY rule sends a dial to `host:port` direct. */
export function matchesNoProxyRule (rule: NoProxyRule, host: string, port: number): boolean {
  if (rule.type === 'all') return true
  if (rule.port != null && rule.port !== port) return false
  const h = normaliseHost(host)
  const family = isIP(h)
  switch (rule.type) {
    case 'ip':
      return family !== 0 && h === rule.ip
    case 'cidr': {
      if (family !== rule.family) return false
      const list = new BlockList()
      const type = rule.family === 4 ? 'ipv4' : 'ipv6'
      list.addSubnet(rule.network, rule.prefix, type)
      return list.check(h, type)
    }
    case 'domain':
      // names only: an IP literal never matches a domain rule
      return family === 0 && (h === rule.domain || h.endsWith(`.${rule.domain}`))
  }
}

export function bypassesProxy (rules: readonly NoProxyRule[], host: string, port: number): boolean {
  return rules.some(r => matchesNoProxyRule(r, host, port))
}

/** Loopback is always dialled directly (see the file comment). */
export function isLoopbackHost (host: string): boolean {
  const h = normaliseHost(host)
  if (h === 'localhost' || h.endsWith('.localhost')) return true
  if (isIP(h) === 4) return h.startsWith('127.')
  return h === '::1'
}

/** The proxy a dial to `host:port` must use, or undefined for a direct dial. */
export function proxyFor (env: ProxyEnvironment, use: ProxiedUse, host: string, port: number): ProxySpec | undefined {
  const candidate = use === 'wss'
    ? env.https ?? env.all
    : use === 'ws'
      ? env.http ?? env.https ?? env.all
      : env.all
  if (candidate == null) return undefined
  if (env.directLoopback !== false && isLoopbackHost(host)) return undefined
  if (bypassesProxy(env.noProxy, host, port)) return undefined
  return candidate
}

/** True when the environment names at least one proxy. */
export function hasProxy (env: ProxyEnvironment): boolean {
  return env.https != null || env.http != null || env.all != null
}

/** One line for the start-up log: every proxy (redacted) and the NO_PROXY rules. */
export function describeProxyEnvironment (env: ProxyEnvironment): string {
  const parts: string[] = []
  if (env.https != null) parts.push(`WebSocket dials via ${env.https.url} (${env.https.source})`)
  if (env.http != null) parts.push(`plain WebSocket dials via ${env.http.url} (${env.http.source})`)
  if (env.all != null) parts.push(`TCP dials (and WebSocket dials without their own variable) via ${env.all.url} (${env.all.source})`)
  if (parts.length === 0) return 'no proxy in the environment'
  if (env.noProxy.length > 0) parts.push(`except ${env.noProxy.length} ${env.noProxySource ?? 'NO_PROXY'} rule(s)`)
  parts.push('QUIC cannot use a proxy')
  return parts.join('; ')
}
