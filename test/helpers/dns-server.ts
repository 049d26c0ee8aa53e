/**
 * A small authoritative DNS server for tests and the namespace lab: answers
 * from a fixed zone over RFC 8484 DNS-over-HTTPS (GET ?dns= and POST
 * application/dns-message) and over plain UDP port 53. Wire format by
 * @dnsquery/dns-packet (the codec @multiformats/dns uses), so the client under
 * test talks to a real DNS encoder/decoder, not to a stub of itself.
 */
import { createSocket, type Socket } from 'node:dgram'
import { execFileSync } from 'node:child_process'
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { decode, encode, RECURSION_AVAILABLE, RECURSION_DESIRED, type Answer, type Packet } from '@dnsquery/dns-packet'

export interface ZoneEntry { A?: string[], AAAA?: string[], TXT?: string[] }
/** name (no trailing dot, lower case) → records */
export type Zone = Record<string, ZoneEntry>

export interface QueryLog { transport: 'doh' | 'udp', name: string, type: string, answered: number }

/** The response to one wire-format query: NOERROR with the zone's records, NXDOMAIN for an unknown name. */
export function answerQuery (query: Uint8Array, zone: Zone, log?: QueryLog[], transport: 'doh' | 'udp' = 'doh'): Uint8Array {
  const q = decode(query) as Packet
  const answers: Answer[] = []
  let known = false
  for (const question of q.questions ?? []) {
    const entry = zone[question.name.toLowerCase().replace(/\.$/, '')]
    if (entry != null) known = true
    const records = entry?.[question.type as keyof ZoneEntry] ?? []
    for (const data of records) answers.push({ type: question.type as 'A', name: question.name, ttl: 60, data } as Answer)
    log?.push({ transport, name: question.name, type: question.type, answered: records.length })
  }
  // rcode in the low 4 bits of the flags: 3 = NXDOMAIN (RFC 1035 §4.1.1)
  const flags = RECURSION_DESIRED | RECURSION_AVAILABLE | (known ? 0 : 3)
  return encode({ type: 'response', id: q.id ?? 0, flags, questions: q.questions, answers })
}

export interface DohServer {
  url: string
  queries: QueryLog[]
  close: () => Promise<void>
}

/** A DoH server on `host:port` (0: any free port), HTTPS when a certificate is given. */
export async function startDohServer (opts: { zone: Zone, host?: string, port?: number, tls?: { cert: string, key: string } }): Promise<DohServer> {
  const queries: QueryLog[] = []
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const reply = (body: Uint8Array): void => {
      res.writeHead(200, { 'content-type': 'application/dns-message', 'content-length': body.byteLength })
      res.end(body)
    }
    const fail = (status: number, why: string): void => { res.writeHead(status, { 'content-type': 'text/plain' }); res.end(why) }
    const url = new URL(req.url ?? '/', 'http://x')
    if (url.pathname !== '/dns-query') { fail(404, 'not found'); return }
    try {
      if (req.method === 'GET') {
        const dns = url.searchParams.get('dns')
        if (dns == null) { fail(400, 'missing dns parameter'); return }
        reply(answerQuery(Buffer.from(dns, 'base64url'), opts.zone, queries))
        return
      }
      if (req.method === 'POST') {
        const chunks: Buffer[] = []
        req.on('data', (c: Buffer) => chunks.push(c))
        req.on('end', () => {
          try { reply(answerQuery(Buffer.concat(chunks), opts.zone, queries)) } catch (err) { fail(400, (err as Error).message) }
        })
        return
      }
      fail(405, 'method not allowed')
    } catch (err) {
      fail(400, `bad DNS message: ${(err as Error).message}`)
    }
  }
  const server: Server = opts.tls != null
    ? createHttpsServer({ cert: readFileSync(opts.tls.cert), key: readFileSync(opts.tls.key) }, handler)
    : createHttpServer(handler)
  const host = opts.host ?? '127.0.0.1'
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port ?? 0, host, () => resolve())
  })
  const address = server.address()
  const port = typeof address === 'object' && address != null ? address.port : 0
  return {
    url: `${opts.tls != null ? 'https' : 'http'}://${host}:${port}/dns-query`,
    queries,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}

export interface UdpDnsServer {
  port: number
  queries: QueryLog[]
  close: () => Promise<void>
}

/**
 * Plain DNS over UDP. `silent`: receives and never answers, like a resolver
 * whose replies (or queries) a firewall drops.
 */
export async function startUdpDns (opts: { zone?: Zone, host?: string, port?: number, silent?: boolean }): Promise<UdpDnsServer> {
  const queries: QueryLog[] = []
  const socket: Socket = createSocket('udp4')
  socket.on('message', (msg, rinfo) => {
    if (opts.silent === true || opts.zone == null) return
    try {
      socket.send(answerQuery(msg, opts.zone, queries, 'udp'), rinfo.port, rinfo.address)
    } catch (err) {
      process.stderr.write(`dns-server: bad UDP query from ${rinfo.address}: ${(err as Error).message}\n`)
    }
  })
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject)
    socket.bind(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve())
  })
  return {
    port: socket.address().port,
    queries,
    close: async () => { await new Promise<void>(resolve => socket.close(() => resolve())) }
  }
}

export interface TestCa { dir: string, caCert: string, caKey: string }

/** A private CA made with openssl (installed by .ci/run). */
export function makeCa (dir: string, name = 'WorldCompute Test DNS CA'): TestCa {
  const caKey = join(dir, 'ca.key')
  const caCert = join(dir, 'ca.pem')
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', caKey, '-out', caCert, '-days', '2', '-subj', `/CN=${name}`])
  return { dir, caCert, caKey }
}

/** A server certificate signed by `ca` for the given subjectAltNames (e.g. `IP:198.51.100.53`, `DNS:relay.lab.test`). */
export function issueCert (ca: TestCa, name: string, sans: string[]): { cert: string, key: string } {
  const key = join(ca.dir, `${name}.key`)
  const csr = join(ca.dir, `${name}.csr`)
  const cert = join(ca.dir, `${name}.pem`)
  const ext = join(ca.dir, `${name}.ext`)
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${name}`])
  writeFileSync(ext, `subjectAltName=${sans.join(',')}\nextendedKeyUsage=serverAuth\n`)
  openssl(['x509', '-req', '-in', csr, '-CA', ca.caCert, '-CAkey', ca.caKey, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', ext])
  return { cert, key }
}

function openssl (args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] })
}
