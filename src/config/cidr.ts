import { isIP } from 'node:net'
import { ConfigError } from '../core/errors.ts'

/** An address range from the config (`publicRanges`), parsed at the edge. */
export interface Cidr {
  address: string
  prefix: number
  family: 'ipv4' | 'ipv6'
  text: string
}

/** Parses `10.0.0.0/8`, `2001:db8::/32`, or a bare IP (a /32 or /128); `source` names where it came from. */
export function parseCidr (value: string, source: string): Cidr {
  const text = value.trim()
  const [address, prefixText, ...rest] = text.split('/')
  const version = isIP(address ?? '')
  if (version === 0 || rest.length > 0) {
    throw new ConfigError(`invalid address range for ${source}: "${value}" (expected CIDR such as 10.0.0.0/8 or 2001:db8::/32)`)
  }
  const max = version === 4 ? 32 : 128
  const prefix = prefixText == null ? max : (/^\d+$/.test(prefixText) ? Number(prefixText) : NaN)
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) {
    throw new ConfigError(`invalid prefix length for ${source}: "${value}" (0–${max} for IPv${version})`)
  }
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6', text: `${address}/${prefix}` }
}

