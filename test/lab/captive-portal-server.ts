/**
 * A hotel-style captive portal's web server, run inside a site router's
 * namespace by the captive portal lab scenario (test/lab/captive.test.ts):
 * every request on either port, whatever its path or Host, gets a 302 to the
 * sign-in page; the https port serves a self-signed certificate (what the
 * browser of a guest sees before signing in). Prints one JSON line once both
 * ports listen; stops on SIGTERM.
 *
 *   node captive-portal-server.ts <http port> <https port> <cert.pem> <key.pem> <sign-in URL>
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { createServer as createTlsServer } from 'node:https'
import { readFileSync } from 'node:fs'

const [httpPort, httpsPort, certFile, keyFile, signIn] = process.argv.slice(2)
if (signIn == null) {
  process.stderr.write('usage: captive-portal-server.ts <http port> <https port> <cert.pem> <key.pem> <sign-in URL>\n')
  process.exit(2)
}

let requests = 0
const answer = (req: IncomingMessage, res: ServerResponse): void => {
  requests++
  process.stderr.write(`${new Date().toISOString()} ${req.socket.remoteAddress ?? '?'} ${req.method ?? '?'} ${req.headers.host ?? '-'}${req.url ?? ''} → 302\n`)
  res.writeHead(302, { location: signIn, 'content-type': 'text/html', connection: 'close' })
  res.end(`<html><body><a href="${signIn}">Sign in to the hotel network</a></body></html>`)
}

const plain = createServer(answer)
const tls = createTlsServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) }, answer)
await Promise.all([
  new Promise<void>(resolve => { plain.listen(Number(httpPort), '0.0.0.0', resolve) }),
  new Promise<void>(resolve => { tls.listen(Number(httpsPort), '0.0.0.0', resolve) })
])
process.stdout.write(JSON.stringify({ ready: true, http: Number(httpPort), https: Number(httpsPort) }) + '\n')
process.on('SIGTERM', () => {
  process.stderr.write(`portal stopping after ${requests} request(s)\n`)
  plain.closeAllConnections()
  tls.closeAllConnections()
  plain.close()
  tls.close(() => { process.exit(0) })
})
