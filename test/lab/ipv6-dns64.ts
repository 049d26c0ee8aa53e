/**
 * The lab's DNS64 (RFC 6147) resolver for an IPv6-only site: answers from a
 * zone, and for a name that has A records but no AAAA it answers AAAA records
 * synthesized under the NAT64 prefix (RFC 6052 §2.2, /96: the IPv4 address
 * is the last 32 bits), as the network's own resolver would in front of a
 * NAT64. `ipv4only.arpa` (RFC 7050) is in the zone with its two well-known
 * IPv4 addresses, so a host can discover the prefix. Plain DNS over UDP on
 * <ip6>:53. Run inside a lab namespace with the pinned Node; prints "ready"
 * once it listens; runs until killed.
 *
 *   ipv6-dns64.ts <ip6> <zone.json> [prefix, default 64:ff9b::]
 */
import { createSocket } from 'node:dgram'
import { readFileSync } from 'node:fs'
import { answerQuery, type QueryLog, type Zone } from '../helpers/dns-server.ts'
import { synthesizeNat64 } from '../../src/net/dns-resolver.ts'
import { ipv6Bytes } from '../../src/net/address-scope.ts'

/** The zone as a DNS64 answers it: a synthesized AAAA beside each A-only name. */
export function dns64Zone (zone: Zone, prefix: string): Zone {
  const bytes = ipv6Bytes(prefix)
  if (bytes == null) throw new Error(`not an IPv6 prefix: ${prefix}`)
  const out: Zone = { 'ipv4only.arpa': { A: ['192.0.0.170', '192.0.0.171'] }, ...zone }
  for (const [name, entry] of Object.entries(out)) {
    if ((entry.AAAA ?? []).length > 0 || (entry.A ?? []).length === 0) continue
    out[name] = { ...entry, AAAA: (entry.A ?? []).map(a => synthesizeNat64(bytes.slice(0, 12), a)) }
  }
  return out
}

if (process.argv[1] != null && import.meta.url.endsWith(process.argv[1].split('/').pop() ?? '')) {
  const [ip, zoneFile, prefix = '64:ff9b::'] = process.argv.slice(2)
  if (ip == null || zoneFile == null) {
    process.stderr.write('usage: ipv6-dns64.ts <ip6> <zone.json> [prefix]\n')
    process.exit(2)
  }
  const zone = dns64Zone(JSON.parse(readFileSync(zoneFile, 'utf8')) as Zone, prefix)
  const queries: QueryLog[] = []
  const socket = createSocket({ type: 'udp6', ipv6Only: true })
  socket.on('message', (msg, rinfo) => {
    try {
      socket.send(answerQuery(msg, zone, queries, 'udp'), rinfo.port, rinfo.address)
      const q = queries.at(-1)
      if (q != null) process.stderr.write(`${new Date().toISOString()} dns64 query ${q.name} ${q.type} from ${rinfo.address}: ${q.answered} answer(s)\n`)
    } catch (err) {
      process.stderr.write(`dns64: bad query from ${rinfo.address}: ${(err as Error).message}\n`)
    }
  })
  socket.bind(53, ip, () => { process.stdout.write('ready\n') })
  process.on('SIGTERM', () => { socket.close(() => process.exit(0)) })
}
