/**
 * How a relay tells donors where its STUN responder is, with no extra
 * configuration and no extra round trip: its identify agent version carries
 * the ports (`worldcompute/0.1.0 stun=3478,3479`), and the donor asks the
 * same IP it reached the relay on. Identify runs on every connection anyway,
 * and older peers simply have no `stun=` token.
 */

const TOKEN = /(?:^|\s)stun=(\d{1,5}(?:,\d{1,5})?)(?:\s|$)/

export function agentWithStun (agent: string, ports: readonly number[]): string {
  return ports.length > 0 ? `${agent} stun=${ports.join(',')}` : agent
}

/** The STUN ports a peer's agent version announces, or [] */
export function stunPortsFromAgent (agent: string | undefined): number[] {
  const m = agent != null ? TOKEN.exec(agent) : null
  if (m == null) return []
  return m[1].split(',').map(Number).filter(p => Number.isInteger(p) && p > 0 && p <= 65535)
}
