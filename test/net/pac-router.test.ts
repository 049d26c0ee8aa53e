/**
 * PAC answers routing real dials on 127.0.0.1: a real relay (TCP and
 * WebSocket listeners), real libp2p nodes in this process, and a small HTTP
 * CONNECT proxy on Node's http server. A PAC named by the operator sends
 * dials through the proxy it names; its candidates are tried in order; a PAC
 * that throws fails the dial with its code (no direct fallback); and with
 * nothing configured, a failed direct dial starts WPAD (here DHCP option 252
 * in a lease file), after which dials follow the PAC found.
 */
import assert from 'node:assert/strict'
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http'
import { connect as netConnect, type Socket } from 'node:net'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { after, afterEach, before, describe, it } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { MeshNode } from '../../src/net/mesh-node.ts'
import { DialTelemetry } from '../../src/net/telemetry.ts'
import type { ProxyDiscoveryInit } from '../../src/net/proxy-discovery.ts'
import { configureLogging, resetLogging } from '../../src/log/logger.ts'
import { freePort, startTestRelay, tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'
import type { RelayHandle } from '../../src/daemon/daemon.ts'

const dir = tempDir('wc-pac-')
let relay: RelayHandle
let relayId: string
let tcpAddr: Multiaddr
let wsAddr: Multiaddr
const cleanups: Array<() => Promise<void>> = []

interface TestProxy { port: number, connects: string[], close: () => Promise<void> }

/** An HTTP CONNECT proxy that pipes to the target; it also serves `pacs` by path on GET. */
async function startProxy (pacs: Record<string, string> = {}): Promise<TestProxy> {
  const connects: string[] = []
  const sockets = new Set<Socket>()
  const server: HttpServer = createHttpServer((req, res) => {
    const body = pacs[req.url ?? '']
    if (body == null) res.writeHead(404).end()
    else res.writeHead(200, { 'content-type': 'application/x-ns-proxy-autoconfig' }).end(body)
  })
  server.on('connect', (req: IncomingMessage, client: Socket, head: Buffer) => {
    sockets.add(client)
    client.on('close', () => sockets.delete(client))
    client.on('error', () => client.destroy())
    const target = req.url ?? ''
    connects.push(target)
    const at = target.lastIndexOf(':')
    const upstream = netConnect({ host: target.slice(0, at), port: Number(target.slice(at + 1)) }, () => {
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
  return {
    port: (server.address() as { port: number }).port,
    connects,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}

let pacCount = 0
/** A PAC file on disk, as a file:// URL. */
function pacFile (body: string): string {
  const path = join(dir.path, `p${++pacCount}.pac`)
  writeFileSync(path, body)
  return pathToFileURL(path).href
}

/** A node with no proxy in its environment and loopback not exempt (the relay is on 127.0.0.1). */
async function startDialer (proxyDiscovery: ProxyDiscoveryInit): Promise<{ mesh: MeshNode, telemetry: DialTelemetry }> {
  const telemetry = new DialTelemetry()
  const mesh = await MeshNode.create({ privateKey: await generateKeyPair('Ed25519'), listen: [], telemetry, proxy: { noProxy: [], directLoopback: false }, proxyDiscovery })
  await mesh.start()
  cleanups.push(async () => { await mesh.stop() })
  return { mesh, telemetry }
}

const portOf = (ma: Multiaddr): number => Number(ma.toString().split('/')[4])

before(async () => {
  configureLogging({ spec: 'error', sink: () => {} })
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

describe('dials routed by a PAC', () => {
  it('a WebSocket dial goes through the proxy the operator\'s PAC names, and status shows the PAC, its answer and the proxy in use', async () => {
    const proxy = await startProxy()
    cleanups.push(proxy.close)
    const url = pacFile(`function FindProxyForURL(url, host) { return url.indexOf('http://') === 0 ? "PROXY 127.0.0.1:${proxy.port}" : "DIRECT" }`)
    const { mesh, telemetry } = await startDialer({ explicit: { url, source: 'flag' } })
    const conn = await mesh.components.dialler.dialTransport(wsAddr, { purpose: 'bootstrap', signal: AbortSignal.timeout(10_000) })
    assert.equal(conn.remotePeer.toString(), relayId)
    assert.deepEqual(proxy.connects, [`127.0.0.1:${portOf(wsAddr)}`])
    assert.equal(telemetry.recent().find(a => a.target === wsAddr.toString())?.outcome, 'success')
    const discovery = mesh.components.proxies.discovery?.()
    assert.equal(discovery?.state, 'found')
    assert.equal(discovery?.source, 'flag')
    assert.deepEqual(discovery?.answers, [{ url: `http://127.0.0.1:${portOf(wsAddr)}/`, answer: `PROXY 127.0.0.1:${proxy.port}` }])
    const status = mesh.components.proxies.status([relayId])
    assert.deepEqual(status.map(s => [s.url, s.inUse, s.relays]), [[`http://127.0.0.1:${proxy.port}`, true, [relayId]]])
    assert.match(status[0].source, /^PAC file:/)
    await conn.close()
  })

  it('status counts every tunnel through one PAC proxy as one entry, whichever answer named it', async () => {
    const proxy = await startProxy()
    cleanups.push(proxy.close)
    const url = pacFile(`function FindProxyForURL(url, host) { return "PROXY 127.0.0.1:${proxy.port}" }`)
    const { mesh } = await startDialer({ explicit: { url, source: 'flag' } })
    const ws = await mesh.components.dialler.dialTransport(wsAddr, { purpose: 'bootstrap', signal: AbortSignal.timeout(10_000) })
    const tcp = await mesh.components.dialler.dialTransport(tcpAddr, { purpose: 'bootstrap', signal: AbortSignal.timeout(10_000) })
    const status = mesh.components.proxies.status([relayId])
    assert.equal(status.length, 1)
    assert.deepEqual([status[0].url, [...status[0].usedFor].sort(), status[0].inUse, status[0].tunnels], [`http://127.0.0.1:${proxy.port}`, ['tcp', 'ws'], true, 2])
    await ws.close()
    await tcp.close()
  })

  it('tries the PAC\'s candidates in order: a dead proxy first, then a working one', async () => {
    const proxy = await startProxy()
    cleanups.push(proxy.close)
    const dead = await freePort()
    const url = pacFile(`function FindProxyForURL(url, host) { return "PROXY 127.0.0.1:${dead}; PROXY 127.0.0.1:${proxy.port}" }`)
    const { mesh } = await startDialer({ explicit: { url, source: 'config' } })
    const conn = await mesh.components.dialler.dialTransport(tcpAddr, { purpose: 'bootstrap', signal: AbortSignal.timeout(10_000) })
    assert.equal(conn.remotePeer.toString(), relayId)
    assert.deepEqual(proxy.connects, [`127.0.0.1:${portOf(tcpAddr)}`])
    await conn.close()
  })

  it('a PAC that throws fails the dial with PAC_EVALUATION_FAILED and no direct attempt', async () => {
    const url = pacFile('function FindProxyForURL(url, host) { throw new Error("no route for you") }')
    const { mesh, telemetry } = await startDialer({ explicit: { url, source: 'flag' } })
    await assert.rejects(mesh.components.dialler.dialTransport(tcpAddr, { purpose: 'bootstrap', signal: AbortSignal.timeout(10_000) }))
    const record = telemetry.recent().find(a => a.target === tcpAddr.toString())
    assert.equal(record?.outcome, 'failure')
    assert.equal(record?.code, 'PAC_EVALUATION_FAILED')
    assert.match(record?.cause ?? '', /no route for you/)
    assert.equal(mesh.components.connections.open().length, 0, 'the relay was not reached directly')
    assert.match(mesh.components.proxies.discovery?.()?.answers[0]?.answer ?? '', /^error PAC_EVALUATION_FAILED/)
  })

  it('with nothing configured, a failed direct dial starts WPAD (DHCP option 252), and later dials follow the PAC found', async () => {
    const proxy = await startProxy({ '/wpad.dat': '' })
    cleanups.push(proxy.close)
    const pac = `function FindProxyForURL(url, host) { return "PROXY 127.0.0.1:${proxy.port}" }`
    const served = await startProxy({ '/wpad.dat': pac })
    cleanups.push(served.close)
    const leases = join(dir.path, 'leases')
    mkdirSync(leases, { recursive: true })
    writeFileSync(join(leases, 'dhclient.eth0.leases'), `lease {\n  interface "eth0";\n  option wpad "http://127.0.0.1:${served.port}/wpad.dat";\n}\n`)
    const resolvConf = join(dir.path, 'resolv.conf')
    writeFileSync(resolvConf, 'nameserver 127.0.0.53\n')
    const { mesh } = await startDialer({ leaseDirs: [{ dir: leases, match: /\.leases$/ }], resolvConfPath: resolvConf })
    assert.equal(mesh.components.proxies.discovery?.()?.state, 'not-needed')
    // a direct dial to a closed port fails: the network's proxy is looked for
    const closed = multiaddr(`/ip4/127.0.0.1/tcp/${await freePort()}/p2p/${relayId}`)
    await assert.rejects(mesh.components.dialler.dialTransport(closed, { purpose: 'bootstrap', signal: AbortSignal.timeout(10_000) }))
    await waitFor('WPAD to find the PAC', () => mesh.components.proxies.discovery?.()?.state === 'found', 10_000)
    const status = mesh.components.proxies.discovery?.()
    assert.equal(status?.source, 'wpad-dhcp')
    assert.equal(status?.url, `http://127.0.0.1:${served.port}/wpad.dat`)
    assert.ok(status?.looked.includes(`${join(leases, 'dhclient.eth0.leases')}: option 252 http://127.0.0.1:${served.port}/wpad.dat`))
    const conn = await mesh.components.dialler.dialTransport(tcpAddr, { purpose: 'bootstrap', signal: AbortSignal.timeout(10_000) })
    assert.equal(conn.remotePeer.toString(), relayId)
    assert.deepEqual(proxy.connects, [`127.0.0.1:${portOf(tcpAddr)}`])
    await conn.close()
  })
})
