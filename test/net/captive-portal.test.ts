import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createTlsServer } from 'node:https'
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer, type Socket } from 'node:net'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { decide, portalProbeUrls, probeCaptivePortal, relayOfProbeUrl, signInUrlOf } from '../../src/net/captive-portal.ts'
import { HttpRouteTable } from '../../src/net/ws-http-routes.ts'
import { servePortalProbe } from '../../src/relay/portal-probe.ts'
import { PORTAL_PROBE_HEADER } from '../../src/net/constants.ts'
import { issueCert, makeCa } from '../helpers/dns-server.ts'

type Handler = (req: IncomingMessage, res: ServerResponse) => void

const RELAY_ID = '12D3KooWRelayPeerIdForTheProbeTest'

async function listen (server: Server | TcpServer): Promise<number> {
  await new Promise<void>(resolve => { server.listen(0, '127.0.0.1', resolve) })
  return (server.address() as AddressInfo).port
}

async function close (server: Server | TcpServer | undefined): Promise<void> {
  if (server == null) return
  if ('closeAllConnections' in server) server.closeAllConnections()
  await new Promise<void>(resolve => { server.close(() => { resolve() }) })
}

describe('the captive portal probe', () => {
  const servers: Array<Server | TcpServer> = []
  let relay = ''
  let redirect = ''
  let metaRefresh = ''
  let relayWithoutRoute = ''
  let silent = ''
  let refused = ''
  let portalTls = ''
  let relayTls = ''
  let bigPage = ''
  let seenByPortal = 0
  let dir = ''
  const held: Socket[] = []

  async function http (handler: Handler): Promise<string> {
    const server = createServer(handler)
    servers.push(server)
    return `http://127.0.0.1:${await listen(server)}/generate_204`
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'wc-portal-'))
    // the relay's own route, served by the same route table the WebSocket listener asks
    const table = new HttpRouteTable()
    servePortalProbe(table, RELAY_ID)
    const relayHandler: Handler = (req, res) => { if (!table.handle(req, res)) res.writeHead(400).end('Only WebSockets') }
    relay = await http(relayHandler)
    redirect = await http((req, res) => { seenByPortal++; res.writeHead(302, { location: 'http://portal.lab.example/login?orig=x' }).end() })
    metaRefresh = await http((req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' }).end('<html><head><meta http-equiv="refresh" content="0; url=/splash?ap=1&amp;x=2"></head><body>Welcome</body></html>')
    })
    relayWithoutRoute = await http((req, res) => { res.writeHead(400, { 'content-type': 'text/plain' }).end('Only websockets are supported') })
    bigPage = await http((req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' })
      res.end(`<html><body>${'x'.repeat(200_000)}<a href="/too-far">sign in</a></body></html>`)
    })
    // accepts and never answers
    const black = createTcpServer((socket) => { held.push(socket) })
    servers.push(black)
    silent = `http://127.0.0.1:${await listen(black)}/generate_204`
    const gone = createTcpServer()
    refused = `http://127.0.0.1:${await listen(gone)}/generate_204`
    await close(gone)
    const ca = makeCa(dir, 'Hotel Portal CA')
    const cert = issueCert(ca, 'portal', ['IP:127.0.0.1'])
    const tlsOptions = { cert: readFileSync(cert.cert), key: readFileSync(cert.key) }
    const portal = createTlsServer(tlsOptions, (req, res) => { res.writeHead(302, { location: 'https://portal.lab.example/login' }).end() })
    servers.push(portal)
    portalTls = `https://127.0.0.1:${await listen(portal)}/generate_204`
    const relayOverTls = createTlsServer(tlsOptions, relayHandler)
    servers.push(relayOverTls)
    relayTls = `https://127.0.0.1:${await listen(relayOverTls)}/generate_204`
  })

  after(async () => {
    for (const socket of held) socket.destroy()
    for (const s of servers) await close(s)
    rmSync(dir, { recursive: true, force: true })
  })

  it('says no when the relay answers 204 with its PeerId', async () => {
    const r = await probeCaptivePortal([relay])
    assert.equal(r.state, 'no')
    assert.equal(r.answers[0].outcome, 'relay')
    assert.match(r.answers[0].detail, new RegExp(RELAY_ID))
  })

  it('says yes with the Location of a redirect, and does not follow it', async () => {
    const before = seenByPortal
    const r = await probeCaptivePortal([redirect])
    assert.equal(r.state, 'yes')
    assert.equal(r.url, 'http://portal.lab.example/login?orig=x')
    assert.equal(r.answers[0].status, 302)
    assert.equal(seenByPortal - before, 1, 'one request per address')
  })

  it('says yes with the target of a page\'s meta refresh, made absolute', async () => {
    const r = await probeCaptivePortal([metaRefresh])
    assert.equal(r.state, 'yes')
    assert.equal(r.url, new URL('/splash?ap=1&x=2', metaRefresh).toString())
  })

  it('says yes over https, naming who issued the portal\'s certificate', async () => {
    const r = await probeCaptivePortal([portalTls])
    assert.equal(r.state, 'yes')
    assert.equal(r.url, 'https://portal.lab.example/login')
    assert.equal(r.answers[0].certIssuer, 'Hotel Portal CA')
    assert.equal(r.answers[0].certTrusted, false)
  })

  it('says no when the relay answers over TLS', async () => {
    const r = await probeCaptivePortal([relayTls])
    assert.equal(r.state, 'no')
    assert.equal(r.answers[0].outcome, 'relay')
  })

  it('says unknown when nothing answers, within the timeout', async () => {
    const t0 = Date.now()
    const r = await probeCaptivePortal([silent, refused], { timeoutMs: 300 })
    assert.equal(r.state, 'unknown')
    assert.deepEqual(r.answers.map(a => a.outcome), ['silent', 'silent'])
    assert.match(r.answers[0].detail, /no answer within 300 ms/)
    assert.match(r.answers[1].detail, /ECONNREFUSED/)
    assert.ok(Date.now() - t0 < 5_000, 'bounded by the timeout')
  })

  it('does not take a relay without the probe route for a portal', async () => {
    const r = await probeCaptivePortal([relayWithoutRoute])
    assert.equal(r.state, 'unknown')
    assert.equal(r.answers[0].outcome, 'other')
  })

  it('reads a page only up to the body cap', async () => {
    const r = await probeCaptivePortal([bigPage], { maxBodyBytes: 1024 })
    assert.equal(r.state, 'yes')
    assert.equal(r.url, bigPage, 'the link beyond the cap is not seen: the page itself is the sign-in URL')
  })

  it('says yes when a portal answers on one address and the relay on another', async () => {
    const r = await probeCaptivePortal([redirect, relay])
    assert.equal(r.state, 'yes')
  })

  it('is answered by the relay\'s route only for GET and HEAD of its path', async () => {
    const head = await fetch(relay, { method: 'HEAD' })
    assert.equal(head.status, 204)
    assert.equal(head.headers.get(PORTAL_PROBE_HEADER), RELAY_ID)
    for (const [url, method] of [[relay, 'POST'], [relay.replace('generate_204', 'other'), 'GET']]) {
      const res = await fetch(url, { method })
      assert.equal(res.status, 400, `${method} ${url} is left to the listener`)
      await res.arrayBuffer()
    }
  })

  it('stops at once when its signal aborts', async () => {
    const controller = new AbortController()
    const running = probeCaptivePortal([silent], { timeoutMs: 10_000, signal: controller.signal })
    controller.abort(new Error('stopping'))
    await assert.rejects(running, /stopping/)
  })
})

describe('portalProbeUrls', () => {
  it('turns WebSocket addresses into probe URLs, plain HTTP first, at most N', () => {
    const p = '/p2p/12D3KooWRelayPeerIdForTheProbeTest'
    const urls = portalProbeUrls([
      `/ip4/198.51.100.10/tcp/443/tls/ws${p}`,
      `/ip4/198.51.100.10/tcp/4001${p}`,
      `/ip4/198.51.100.10/udp/4001/quic-v1${p}`,
      `/ip4/198.51.100.10/tcp/80/ws${p}`,
      `/dns4/relay.example/tcp/443/wss${p}`,
      `/ip6/2001:db8::1/tcp/80/ws${p}`,
      `/ip4/198.51.100.10/tcp/80/ws${p}`
    ], 3)
    assert.deepEqual(urls, [
      'http://198.51.100.10:80/generate_204',
      'http://[2001:db8::1]:80/generate_204',
      'https://198.51.100.10:443/generate_204'
    ])
  })
})

describe('signInUrlOf', () => {
  const base = 'http://198.51.100.10:80/generate_204'
  it('finds a script\'s location assignment', () => {
    assert.equal(signInUrlOf('<script>window.location.href = "https://wifi.example/auth";</script>', base), 'https://wifi.example/auth')
  })
  it('finds the first form\'s action', () => {
    assert.equal(signInUrlOf('<html><form method="post" action="/login"><input></form></html>', base), 'http://198.51.100.10/login')
  })
  it('falls back to the URL asked', () => {
    assert.equal(signInUrlOf('<html><body>Please sign in</body></html>', base), base)
  })
})

describe('decide', () => {
  it('never calls silence a portal', () => {
    assert.equal(decide([{ url: 'http://x/', outcome: 'silent', detail: 'timeout' }], 'now').state, 'unknown')
    assert.equal(decide([], 'now').state, 'unknown')
  })
})

describe('relayOfProbeUrl', () => {
  const relay = '12D3KooWGvdtpGj2EWhKEukHYaHEdK7BTGXyivp27nDq4ChkZwHk'
  const bootstrap = [`/ip4/198.51.100.10/tcp/4001/p2p/${relay}`, `/ip4/198.51.100.10/tcp/80/ws/p2p/${relay}`, '/ip4/198.51.100.11/tcp/80/ws']

  it('names the relay whose WebSocket address gave the probe URL', () => {
    assert.equal(relayOfProbeUrl(bootstrap, 'http://198.51.100.10:80/generate_204'), relay)
  })

  it('names nobody for a URL of an address without a PeerId, or of no address at all', () => {
    assert.equal(relayOfProbeUrl(bootstrap, 'http://198.51.100.11:80/generate_204'), undefined)
    assert.equal(relayOfProbeUrl(bootstrap, 'http://203.0.113.9:80/generate_204'), undefined)
  })
})
