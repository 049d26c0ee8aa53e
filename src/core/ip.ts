/**
 * IP address arithmetic shared by the roles that count peers by network
 * (the relay's per-IP limits, the broker's distinct replica networks): one
 * reading of an IPv6 address and of an IPv4-mapped one. Pure text work: the
 * addresses were observed on sockets, so they are well-formed.
 */

/** The IPv4 address inside an IPv4-mapped IPv6 address (`::ffff:203.0.113.7`), else undefined. */
export function mappedIpv4 (ip: string): string | undefined {
  return /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip)?.[1]
}

/** The eight 16-bit groups of an IPv6 address (`::` expanded, a zone dropped, a trailing dotted quad folded in). */
export function ipv6Groups (ip: string): number[] {
  let text = ip.split('%')[0]
  const quad = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text)
  if (quad != null) {
    const [a, b, c, d] = quad.slice(1).map(Number)
    text = text.slice(0, quad.index) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined]
  const left = head === '' ? [] : head.split(':')
  const right = tail == null || tail === '' ? [] : tail.split(':')
  const fill = tail == null ? [] : Array<string>(8 - left.length - right.length).fill('0')
  return [...left, ...fill, ...right].map(g => parseInt(g, 16))
}
