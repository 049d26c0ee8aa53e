/**
 * The lab's DNS host: a DNS-over-HTTPS server (RFC 8484, TLS with a
 * certificate from the scenario's private CA) on <ip>:443 and plain DNS on
 * <ip>:53/udp, both answering from one zone. Run inside a lab namespace with
 * the pinned Node; prints "ready" once both listen; runs until killed.
 *
 *   dns-service.ts <ip> <zone.json> <cert.pem> <key.pem>
 */
import { readFileSync } from 'node:fs'
import { startDohServer, startUdpDns, type Zone } from '../helpers/dns-server.ts'

const [ip, zoneFile, cert, key] = process.argv.slice(2)
if (ip == null || zoneFile == null || cert == null || key == null) {
  process.stderr.write('usage: dns-service.ts <ip> <zone.json> <cert.pem> <key.pem>\n')
  process.exit(2)
}
const zone = JSON.parse(readFileSync(zoneFile, 'utf8')) as Zone
const doh = await startDohServer({ zone, host: ip, port: 443, tls: { cert, key } })
const udp = await startUdpDns({ zone, host: ip, port: 53 })
process.stdout.write('ready\n')
// one line per query on stderr: the scenario's log shows who asked what, over which path
let seen = { doh: 0, udp: 0 }
setInterval(() => {
  for (const [name, log] of [['doh', doh.queries], ['udp', udp.queries]] as const) {
    for (const q of log.slice(seen[name])) process.stderr.write(`${new Date().toISOString()} ${name} query ${q.name} ${q.type}: ${q.answered} answer(s)\n`)
    seen = { ...seen, [name]: log.length }
  }
}, 200)
process.on('SIGTERM', () => {
  void Promise.all([doh.close(), udp.close()]).then(() => process.exit(0))
})
