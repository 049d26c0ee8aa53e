/**
 * DNS-over-HTTPS endpoints: the built-in list and the check applied to
 * `--doh`, `WORLDCOMPUTE_DOH` and `"doh"` in config.json. The resolver that
 * uses them is src/net/dns-resolver.ts.
 */

/**
 * Public DoH servers (RFC 8484) by IP address: an endpoint given by name would
 * need the very resolver that is failing. Each serves a certificate with an IP
 * SAN for the address used. Only used when nothing is configured; tests always
 * pass their own endpoints.
 */
export const DEFAULT_DOH_ENDPOINTS: readonly string[] = Object.freeze([
  'https://1.1.1.1/dns-query',
  'https://9.9.9.9/dns-query',
  'https://8.8.8.8/dns-query'
])

/** Why a DoH endpoint given by the user is unusable, or undefined when it is fine. */
export function dohEndpointProblem (value: string): string | undefined {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return 'not a URL (e.g. https://1.1.1.1/dns-query)'
  }
  if (url.protocol === 'https:') return undefined
  const host = url.hostname.replace(/^\[|\]$/g, '')
  // plain HTTP only to this machine (a local DoH proxy, tests): anywhere else answers could be read and forged on the way
  if (url.protocol === 'http:' && (host === 'localhost' || host === '::1' || host.startsWith('127.'))) return undefined
  return 'must be an https:// URL (http:// only for a resolver on this machine)'
}
