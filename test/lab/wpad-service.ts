/**
 * A site's own network services for the WPAD scenarios: plain DNS on
 * <ip>:53/udp answering from one zone (wpad.<search domain> among it) and an
 * HTTP server on <ip>:80 serving the files of one folder (wpad.dat, other
 * PAC files), as a corporate network's DNS and WPAD host do. Run inside a lab
 * namespace (the site router) with the pinned Node; prints "ready" once both
 * listen; one line per request on stderr; runs until killed.
 *
 *   wpad-service.ts <ip> <zone.json> <folder>
 */
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { basename, join } from 'node:path'
import { startUdpDns, type Zone } from '../helpers/dns-server.ts'

const [ip, zoneFile, folder] = process.argv.slice(2)
if (ip == null || zoneFile == null || folder == null) {
  process.stderr.write('usage: wpad-service.ts <ip> <zone.json> <folder>\n')
  process.exit(2)
}
const zone = JSON.parse(readFileSync(zoneFile, 'utf8')) as Zone
const udp = await startUdpDns({ zone, host: ip, port: 53 })
const http = createServer((req, res) => {
  // one folder, no sub-paths: `/wpad.dat` → <folder>/wpad.dat
  const name = basename(new URL(req.url ?? '/', 'http://x').pathname)
  let body: Buffer | undefined
  try {
    body = readFileSync(join(folder, name))
  } catch (err) {
    process.stderr.write(`${new Date().toISOString()} http GET ${req.url ?? ''} from ${req.socket.remoteAddress ?? '?'}: 404 (${(err as NodeJS.ErrnoException).code ?? String(err)})\n`)
    res.writeHead(404).end()
    return
  }
  process.stderr.write(`${new Date().toISOString()} http GET ${req.url ?? ''} (Host ${req.headers.host ?? '?'}) from ${req.socket.remoteAddress ?? '?'}: 200, ${body.length} bytes\n`)
  res.writeHead(200, { 'content-type': 'application/x-ns-proxy-autoconfig', 'content-length': body.length }).end(body)
})
await new Promise<void>(resolve => http.listen(80, ip, resolve))
process.stdout.write('ready\n')
let seen = 0
setInterval(() => {
  for (const q of udp.queries.slice(seen)) process.stderr.write(`${new Date().toISOString()} dns query ${q.name} ${q.type}: ${q.answered} answer(s)\n`)
  seen = udp.queries.length
}, 200)
process.on('SIGTERM', () => {
  http.close()
  void udp.close().then(() => process.exit(0))
})
