/**
 * Dials through proxies on 127.0.0.1: a real relay (tcp and ws listeners)
 * and real libp2p nodes in this process, and a small HTTP CONNECT proxy
 * written here on Node's http server (the namespace lab uses a real squid;
 * test/lab/proxy.test.ts). What is checked: the WebSocket and TCP transports
 * really go through the proxy (it logs the CONNECT), with Basic credentials;
 * each way a proxy can say no ends as one dial record with phase `proxy`, a
 * stable code and a cause naming the proxy without its password; `status`
 * says whether the relay path uses the proxy.
 */
import assert from 'node:assert/strict'
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http'
import { connect as netConnect, createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { after, afterEach, before, describe, it } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { MeshNode } from '../../src/net/mesh-node.ts'
import { DialTelemetry } from '../../src/net/telemetry.ts'
import { describeDialError } from '../../src/net/dial-error.ts'
import { openTunnel, ProxyTunnelError } from '../../src/net/proxy-tunnel.ts'
import { parseProxyEnvironment, parseProxyUrl, type ProxyEnvironment } from '../../src/net/proxy-env.ts'
import { configureLogging, resetLogging } from '../../src/log/logger.ts'
import { freePort, startTestRelay, tempDir } from '../helpers/mesh.ts'
import { makeTestCerts } from '../helpers/tls.ts'
import { loadRelayConfig } from '../../src/config/config.ts'
import { startRelay } from '../../src/daemon/daemon.ts'
import { getCACertificates, setDefaultCACertificates } from 'node:tls'
import { mkdirSync, readFileSync } from 'node:fs'
import type { RelayHandle } from '../../src/daemon/daemon.ts'

const USER = 'donor'
const PASSWORD = 'pa55:w0rd'
const dir = tempDir('wc-proxy-')
let relay: RelayHandle
let relayId: string
let tcpAddr: Multiaddr
let wsAddr: Multiaddr
const cleanups: Array<() => Promise<void>> = []
const logLines: string[] = []

interface TestProxy { port: number, connects: string[], close: () => Promise<void> }

/**
 * An HTTP CONNECT proxy: Basic auth when `auth` is set, 403 for ports not in
 * `allowPorts`, then a plain TCP pipe to the target.
 */
async function startProxy (opts: { auth?: boolean, allowPorts?: number[] } = {}): Promise<TestProxy> {
  const connects: string[] = []
  const sockets = new Set<Socket>()
  const server: HttpServer = createHttpServer((_req, res) => { res.writeHead(405).end() })
  server.on('connect', (req: IncomingMessage, client: Socket, head: Buffer) => {
    sockets.add(client)
    client.on('close', () => sockets.delete(client))
    client.on('error', () => client.destroy())
    const target = req.url ?? ''
    connects.push(target)
    const expected = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`
    if (opts.auth === true && req.headers['proxy-authorization'] !== expected) {
      client.end('HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n')
      return
    }
    const at = target.lastIndexOf(':')
    const host = target.slice(0, at).replace(/^\[|\]$/g, '')
    const port = Number(target.slice(at + 1))
    if (opts.allowPorts != null && !opts.allowPorts.includes(port)) {
      client.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n')
      return
    }
    const upstream = netConnect({ host, port }, () => {
      client.write('HTTP/1.1 200 Connection established\r\n\r\n')
      if (head.length > 0) upstream.write(head)
      upstream.pipe(client)
      client.pipe(upstream)
    })
    sockets.add(upstream)
    upstream.on('close', () => { sockets.delete(upstream); client.destroy() })
    upstream.on('error', () => { client.end('HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n') })
    client.on('close', () => upstream.destroy())
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  return {
    port,
    connects,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}

/** Accepts TCP connections and never answers: a proxy that hangs. */
async function silentServer (): Promise<{ port: number, close: () => Promise<void> }> {
  const sockets = new Set<Socket>()
  const server: Server = createServer(socket => { sockets.add(socket); socket.resume() })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as { port: number }).port,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}

/** The proxy settings a donor would get from its environment, with loopback proxied (the relay is on 127.0.0.1). */
function proxyEnv (vars: Record<string, string>): ProxyEnvironment {
  return { ...parseProxyEnvironment(vars), directLoopback: false }
}

async function startDialer (proxy: ProxyEnvironment): Promise<{ mesh: MeshNode, telemetry: DialTelemetry }> {
  const telemetry = new DialTelemetry()
  const mesh = await MeshNode.create({ privateKey: await generateKeyPair('Ed25519'), listen: [], telemetry, proxy })
  await mesh.start()
  cleanups.push(async () => { await mesh.stop() })
  return { mesh, telemetry }
}

before(async () => {
  configureLogging({ spec: 'warn', sink: (line) => { logLines.push(line) } })
  relay = await startTestRelay(join(dir.path, 'relay'), ['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/tcp/0/ws'])
  relayId = relay.info.peerId
  const pick = (test: (a: string) => boolean): Multiaddr => {
    const found = relay.info.announceAddrs.find(a => a.startsWith('/ip4/127.0.0.1/') && test(a))
    assert.ok(found != null, `relay advertises it: ${relay.info.announceAddrs.join(' ')}`)
    return multiaddr(found.includes('/p2p/') ? found : `${found}/p2p/${relayId}`)
  }
  wsAddr = pick(a => a.includes('/ws'))
  tcpAddr = pick(a => a.includes('/tcp/') && !a.includes('/ws'))
})

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

after(async () => {
  await relay.stop()
  resetLogging()
  dir.cleanup()
})

const portOf = (ma: Multiaddr): number => Number(ma.toString().split('/')[4])

describe('dialling relays through a proxy', () => {
  it('a WebSocket dial goes through HTTPS_PROXY with Basic credentials, and status shows the relay path uses it', async () => {
    const proxy = await startProxy({ auth: true })
    cleanups.push(proxy.close)
    const url = `http://${USER}:${encodeURIComponent(PASSWORD)}@127.0.0.1:${proxy.port}`
    const { mesh, telemetry } = await startDialer(proxyEnv({ HTTPS_PROXY: url }))
    const conn = await mesh.components.dialler.dialTransport(wsAddr, { purpose: 'bootstrap', signal: AbortSignal.timeout(10_000) })
    assert.equal(conn.remotePeer.toString(), relayId)
    // the first CONNECT goes without credentials: a password goes in Basic only to a proxy that offered Basic
    assert.deepEqual(proxy.connects, [`127.0.0.1:${portOf(wsAddr)}`, `127.0.0.1:${portOf(wsAddr)}`], 'the proxy saw two CONNECTs (407, then Basic), to the relay\'s WebSocket port')
    // the connection works end to end: libp2p ping over the tunnel
    const rtt = await mesh.components.pinger.rtt(conn.remotePeer.toString())
    assert.ok(rtt >= 0)
    const record = telemetry.recent().find(a => a.target === wsAddr.toString())
    assert.equal(record?.outcome, 'success')
    assert.match(record?.cause ?? '', new RegExp(`through proxy http://\\*\\*\\*@127\\.0\\.0\\.1:${proxy.port}`))
    const status = mesh.components.proxies.status([relayId])
    assert.equal(status.length, 1)
    assert.deepEqual([status[0].auth?.scheme, status[0].auth?.passed, status[0].auth?.offered], ['basic', 1, ['Basic']])
    assert.deepEqual({ ...status[0], tunnels: undefined, auth: undefined }, {
      url: `http://***@127.0.0.1:${proxy.port}`,
      kind: 'http',
      source: 'HTTPS_PROXY',
      usedFor: ['wss', 'ws'],
      noProxyRules: 0,
      inUse: true,
      relays: [relayId],
      tunnels: undefined,
      auth: undefined
    })
    assert.ok(!JSON.stringify(status).includes(PASSWORD), 'no password in status')
    await conn.close()
  })

  it('a TCP dial goes through ALL_PROXY (an HTTP proxy that allows CONNECT to the port)', async () => {
    const proxy = await startProxy({ auth: true })
    cleanups.push(proxy.close)
    const { mesh, telemetry } = await startDialer(proxyEnv({ ALL_PROXY: `http://${USER}:${encodeURIComponent(PASSWORD)}@127.0.0.1:${proxy.port}` }))
    const conn = await mesh.components.dialler.dialTransport(tcpAddr, { purpose: 'bootstrap', signal: AbortSignal.timeout(10_000) })
    assert.equal(conn.remotePeer.toString(), relayId)
    assert.deepEqual(proxy.connects, [`127.0.0.1:${portOf(tcpAddr)}`, `127.0.0.1:${portOf(tcpAddr)}`])
    assert.equal(telemetry.recent().at(-1)?.outcome, 'success')
    assert.deepEqual(mesh.components.proxies.status([relayId])[0].usedFor, ['wss', 'ws', 'tcp'])
    assert.equal(mesh.components.proxies.status([relayId])[0].inUse, true)
    await conn.close()
  })

  it('NO_PROXY sends a matching target direct: the proxy sees nothing', async () => {
    const proxy = await startProxy()
    cleanups.push(proxy.close)
    const { mesh } = await startDialer(proxyEnv({ HTTPS_PROXY: `http://127.0.0.1:${proxy.port}`, NO_PROXY: '127.0.0.0/8' }))
    const conn = await mesh.components.dialler.dialTransport(wsAddr, { purpose: 'bootstrap', signal: AbortSignal.timeout(10_000) })
    assert.equal(conn.remotePeer.toString(), relayId)
    assert.deepEqual(proxy.connects, [])
    assert.equal(mesh.components.proxies.status([relayId])[0].inUse, false)
    await conn.close()
  })

  it('wrong credentials: one failed dial record at phase proxy, code PROXY_AUTH_FAILED, the 407 in the cause, no password anywhere', async () => {
    const proxy = await startProxy({ auth: true })
    cleanups.push(proxy.close)
    const { mesh, telemetry } = await startDialer(proxyEnv({ HTTPS_PROXY: `http://${USER}:nope-${PASSWORD}@127.0.0.1:${proxy.port}` }))
    await assert.rejects(mesh.components.dialler.dialTransport(wsAddr, { purpose: 'bootstrap', signal: AbortSignal.timeout(10_000) }), { name: 'ProxyAuthError', code: 'PROXY_AUTH_FAILED' })
    const records = telemetry.recent().filter(a => a.target === wsAddr.toString())
    assert.equal(records.length, 1)
    assert.equal(records[0].outcome, 'failure')
    assert.equal(records[0].phase, 'proxy')
    assert.equal(records[0].code, 'PROXY_AUTH_FAILED')
    assert.match(records[0].cause, /407 Proxy Authentication Required/)
    assert.match(records[0].cause, /HTTPS_PROXY/)
    const warn = logLines.find(l => l.includes('dial failed') && l.includes(' at proxy: ') && l.includes('407'))
    assert.ok(warn != null, `a WARN line at the default level: ${logLines.join('\n')}`)
    assert.ok(!logLines.some(l => l.includes(PASSWORD)), 'no password in any log line')
  })

  it('a proxy refusing the port (403) is recorded as PROXY_DENIED at phase proxy', async () => {
    const proxy = await startProxy({ allowPorts: [443] })
    cleanups.push(proxy.close)
    const { mesh, telemetry } = await startDialer(proxyEnv({ https_proxy: `http://127.0.0.1:${proxy.port}` }))
    await assert.rejects(mesh.components.dialler.dialTransport(wsAddr, { purpose: 'bootstrap', signal: AbortSignal.timeout(10_000) }))
    const r = telemetry.recent().find(a => a.target === wsAddr.toString())
    assert.deepEqual([r?.outcome, r?.phase, r?.code], ['failure', 'proxy', 'PROXY_DENIED'])
    assert.match(r?.cause ?? '', /403 Forbidden/)
  })
})

describe('WebSocket over TLS inside the tunnel', () => {
  it('TLS to the relay runs inside the CONNECT tunnel: an untrusted certificate fails at tls, a trusted one connects over wss', async () => {
    const certDir = join(dir.path, 'certs')
    mkdirSync(certDir, { recursive: true })
    const certs = makeTestCerts(certDir)
    const tlsRelay = await startRelay(loadRelayConfig({ dataDir: join(dir.path, 'tls-relay'), listen: ['/ip4/127.0.0.1/tcp/0/tls/ws'], tlsCert: certs.cert, tlsKey: certs.key }, {}))
    cleanups.push(async () => { await tlsRelay.stop() })
    const found = tlsRelay.info.announceAddrs.find(a => a.includes('/tls/ws'))
    assert.ok(found != null)
    const wss = multiaddr(found.includes('/p2p/') ? found : `${found}/p2p/${tlsRelay.info.peerId}`)
    const proxy = await startProxy({ auth: true })
    cleanups.push(proxy.close)
    const { mesh, telemetry } = await startDialer(proxyEnv({ HTTPS_PROXY: `http://${USER}:${encodeURIComponent(PASSWORD)}@127.0.0.1:${proxy.port}` }))

    await assert.rejects(mesh.components.dialler.dialTransport(wss, { purpose: 'bootstrap', signal: AbortSignal.timeout(10_000) }), { name: 'ProxiedDialError' })
    const failed = telemetry.recent().find(a => a.target === wss.toString())
    assert.deepEqual([failed?.outcome, failed?.transport, failed?.phase, failed?.code], ['failure', 'wss', 'tls', 'TLS_UNTRUSTED'])
    assert.match(failed?.cause ?? '', /TLS inside the tunnel through http:\/\/\*\*\*@127\.0\.0\.1/)

    // trust the test CA for this process (what NODE_EXTRA_CA_CERTS does at start-up)
    const before = getCACertificates('default')
    setDefaultCACertificates([...before, readFileSync(certs.caCert, 'utf8')])
    cleanups.push(async () => { setDefaultCACertificates(before) })
    const conn = await mesh.components.dialler.dialTransport(wss, { purpose: 'bootstrap', signal: AbortSignal.timeout(10_000) })
    assert.equal(conn.remotePeer.toString(), tlsRelay.info.peerId)
    const port = portOf(wss)
    // the first attempt's CONNECT without credentials (407), then with Basic; the second sends Basic at once
    assert.deepEqual(proxy.connects, [`127.0.0.1:${port}`, `127.0.0.1:${port}`, `127.0.0.1:${port}`], 'every CONNECT went to the relay\'s TLS port')
    assert.equal(mesh.components.proxies.status([tlsRelay.info.peerId])[0].inUse, true)
    await conn.close()
  })
})

describe('each way a proxy fails, as the tunnel reports it', () => {
  const target = '198.51.100.10'
  const check = (err: unknown, code: string, re: RegExp): true => {
    assert.ok(err instanceof ProxyTunnelError, String(err))
    assert.equal(err.code, code)
    assert.match(err.message, re)
    assert.ok(!err.message.includes(PASSWORD))
    const d = describeDialError(err, { phase: 'proxy', transport: 'wss', elapsedMs: 10 })
    assert.deepEqual([d.phase, d.code], ['proxy', code])
    return true
  }

  it('no credentials where the proxy wants them: PROXY_AUTH_REQUIRED, with how to give them', async () => {
    const proxy = await startProxy({ auth: true })
    cleanups.push(proxy.close)
    await assert.rejects(openTunnel(parseProxyUrl(`http://127.0.0.1:${proxy.port}`, 'HTTPS_PROXY'), target, 443), err => check(err, 'PROXY_AUTH_REQUIRED', /requires authentication: 407.*asks for Basic.*http:\/\/user:password@host:port/))
  })

  it('nothing listening on the proxy port: PROXY_UNREACHABLE, "connection refused"', async () => {
    const port = await freePort()
    await assert.rejects(openTunnel(parseProxyUrl(`http://${USER}:${PASSWORD}@127.0.0.1:${port}`, 'HTTPS_PROXY'), target, 443), err => check(err, 'PROXY_UNREACHABLE', /cannot be reached: connection refused/))
  })

  it('a proxy that accepts and never answers: PROXY_TIMEOUT when the tunnel\'s time is up', async () => {
    const silent = await silentServer()
    cleanups.push(silent.close)
    await assert.rejects(openTunnel(parseProxyUrl(`http://127.0.0.1:${silent.port}`, 'HTTPS_PROXY'), target, 443, { timeoutMs: 300 }), err => check(err, 'PROXY_TIMEOUT', /did not answer the CONNECT in time/))
  })

  it('the proxy cannot reach the target: PROXY_TARGET_FAILED (502)', async () => {
    const proxy = await startProxy()
    cleanups.push(proxy.close)
    const closed = await freePort()
    await assert.rejects(openTunnel(parseProxyUrl(`http://127.0.0.1:${proxy.port}`, 'HTTPS_PROXY'), '127.0.0.1', closed), err => check(err, 'PROXY_TARGET_FAILED', /could not reach the target: 502/))
  })

  it('a cancelled dial ends the tunnel with the caller\'s reason, not a proxy error', async () => {
    const silent = await silentServer()
    cleanups.push(silent.close)
    const controller = new AbortController()
    const pending = openTunnel(parseProxyUrl(`http://127.0.0.1:${silent.port}`, 'HTTPS_PROXY'), target, 443, { signal: controller.signal })
    setTimeout(() => { controller.abort(new Error('another rung won')) }, 50)
    await assert.rejects(pending, /another rung won/)
  })
})
