/**
 * Small formatting helpers shared by log lines, reports and the CLI: one
 * spelling of a duration, a short PeerId and an address's port everywhere.
 */

/** `850 ms` below a second, `1.5 s` from one; `?` when unknown. */
export function duration (ms: number | undefined): string {
  if (ms == null) return '?'
  return ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`
}

/** The first 8 and last 6 characters of a PeerId, for text meant for people (JSON keeps it whole). */
export function shortPeerId (peerId: string): string {
  return peerId.length > 16 ? `${peerId.slice(0, 8)}…${peerId.slice(-6)}` : peerId
}

/** The TCP or UDP port of a multiaddr string (`/ip4/…/tcp/443/…`), if it has one. */
export function portOf (addr: string | undefined): number | undefined {
  if (addr == null) return undefined
  const m = /\/(?:tcp|udp)\/(\d+)/.exec(addr)
  return m != null ? Number(m[1]) : undefined
}
