/**
 * NAT kinds beyond the lab's `cone` and `symmetric`, for the direct-path
 * matrix (bench/nat-matrix.ts, test/lab/nat-matrix.test.ts). RFC 4787 terms:
 * mapping EIM (endpoint-independent), ADM (address-dependent), APDM
 * (address-and-port-dependent); filtering EIF, ADF, APDF likewise.
 *
 * Linux conntrack NAT has no memory of a socket's earlier mappings: a flow
 * keeps its source port when that port is free (MASQUERADE), which is what
 * makes it endpoint-independent, and filters on the full 5-tuple of a flow it
 * has seen leave (APDF). The kinds below change one of the two:
 *
 * - `full-cone` (EIM + EIF): MASQUERADE, plus every inbound UDP port of the
 *   WAN address DNAT-ed to the site's one host on the same port. The host's
 *   port is its mapped port (MASQUERADE kept it), so anyone who learned the
 *   mapping can send to it.
 * - `restricted-cone` (EIM + ADF): the same DNAT, but inbound UDP is let in
 *   only from an address the LAN has sent to (`-m recent` records each
 *   destination address on the way out, checks the source on the way in).
 * - `symmetric-seq` (APDM + APDF, predictable): every new UDP flow gets the
 *   NEXT port of a range, whatever its destination: a chain of MASQUERADE
 *   rules, each to one port, with `-m statistic --mode nth` counters hands out 20000, 20001, … in
 *   turn (SNAT to a range would pick a random free port). The "hard side
 *   where port prediction makes it possible": two STUN answers show the step.
 *   TCP keeps `--random-fully` (symmetric, random): only UDP matters here.
 *
 * Not built: address-dependent MAPPING (ADM). It needs a port chosen per
 * (source port, destination address) and kept across destination ports;
 * conntrack SNAT chooses per flow (random or preserved), and this iptables'
 * SNAT takes no base port for a deterministic offset. Filtering-only kinds
 * with APDM and EIF/ADF are not built either: with random ports an inbound
 * packet has no port to be let in on.
 */
import type { SiteSpec } from './topology.ts'

export const EXTRA_NAT_KINDS = ['full-cone', 'restricted-cone', 'symmetric-seq'] as const
export type ExtraNatKind = typeof EXTRA_NAT_KINDS[number]

/** Ports a sequential symmetric NAT hands out in turn (then wraps). */
export const SEQ_PORT_BASE = 20_000
export const SEQ_PORT_COUNT = 400

export function isExtraNatKind (kind: string): kind is ExtraNatKind {
  return (EXTRA_NAT_KINDS as readonly string[]).includes(kind)
}

/** What each kind is in RFC 4787 terms, for tables and assertions. */
export const NAT_KIND_BEHAVIOUR: Record<string, { mapping: string, filtering: string, note: string }> = {
  none: { mapping: 'none', filtering: 'none', note: 'public address, inbound open' },
  cone: { mapping: 'EIM', filtering: 'APDF', note: 'MASQUERADE: port-restricted cone' },
  'full-cone': { mapping: 'EIM', filtering: 'EIF', note: 'MASQUERADE + DNAT of every UDP port to the host' },
  'restricted-cone': { mapping: 'EIM', filtering: 'ADF', note: 'MASQUERADE + DNAT, inbound only from addresses sent to (-m recent)' },
  symmetric: { mapping: 'APDM', filtering: 'APDF', note: 'MASQUERADE --random-fully: random port per flow' },
  'symmetric-seq': { mapping: 'APDM', filtering: 'APDF', note: 'SNAT to the next port of a range per UDP flow: predictable' }
}

/**
 * The FORWARD rules (appended after the ESTABLISHED accept and the LAN's
 * way out) and the nat table body of one extra kind. `lanHost`: the site's
 * one host (inbound is DNAT-ed to it).
 */
export function extraNatRules (site: SiteSpec, kind: ExtraNatKind, lanHost: string | undefined): { filter: string[], nat: string[] } {
  if (site.hosts.length !== 1 && kind !== 'symmetric-seq') throw new Error(`site ${site.name}: NAT kind ${kind} DNATs inbound UDP to one host; give it exactly one`)
  if (kind === 'symmetric-seq') {
    const nat: string[] = []
    // rule i sees the flows rules 0..i-1 did not take and takes the first of every (COUNT - i): flow n gets port BASE + n mod COUNT
    for (let i = 0; i < SEQ_PORT_COUNT - 1; i++) {
      nat.push(`-A POSTROUTING -o wan -p udp -m statistic --mode nth --every ${SEQ_PORT_COUNT - i} --packet 0 -j MASQUERADE --to-ports ${SEQ_PORT_BASE + i}`)
    }
    nat.push(`-A POSTROUTING -o wan -p udp -j MASQUERADE --to-ports ${SEQ_PORT_BASE + SEQ_PORT_COUNT - 1}`)
    nat.push('-A POSTROUTING -o wan -j MASQUERADE --random-fully')
    return { filter: [], nat }
  }
  if (lanHost == null) throw new Error(`site ${site.name}: NAT kind ${kind} needs the host's address`)
  const nat = [
    // inbound UDP to any unprivileged port of the WAN address goes to the host, same port
    `-A PREROUTING -i wan -p udp --dport 1024:65535 -j DNAT --to-destination ${lanHost}`,
    '-A POSTROUTING -o wan -j MASQUERADE'
  ]
  if (kind === 'full-cone') return { filter: ['-A FORWARD -i wan -o lan -p udp -j ACCEPT'], nat }
  return {
    filter: [
      // every address the LAN sends UDP to is remembered (the set is checked on the way in)
      '-I FORWARD 1 -i lan -o wan -p udp -m recent --name adf --rdest --set',
      '-A FORWARD -i wan -o lan -p udp -m recent --name adf --rcheck --rsource --seconds 300 -j ACCEPT'
    ],
    nat
  }
}
