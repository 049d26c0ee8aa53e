/**
 * TLS interception detection on loopback, with real TLS everywhere: a relay
 * certificate from a private "relay CA", and a small TLS-terminating
 * middlebox in the test that re-signs for the same address with an "Example
 * Corp Inspection CA" (both made by openssl), the way an inspecting firewall
 * or proxy does. The namespace-lab version with squid's ssl_bump is
 * test/lab/tls.test.ts.
 */
import assert from 'node:assert/strict'
import { mkdirSync, readFileSync } from 'node:fs'
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http'
import { connect as netConnect, type AddressInfo, type Socket } from 'node:net'
import { join } from 'node:path'
import { connect as tlsConnect, createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls'
import { after, before, describe, it } from 'node:test'
import { judgeInterception, leafFingerprintOfPem, normalizeFingerprint, pathUsesTls, probeTlsChain, TlsProbeError } from '../../src/net/tls-intercept.ts'
import { parseProxyEnvironment } from '../../src/net/proxy-env.ts'
import { decodeRelayInfo, encodeRelayInfo } from '../../src/protocols/relay-info/index.ts'
import { firstJson, runCli, startCli, type LongRunning } from '../helpers/cli.ts'
import { tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'
import { makeTestCerts, type TestCerts } from '../helpers/tls.ts'

const CORP_CA = 'Example Corp Inspection CA'
const RELAY_CA = 'WorldCompute Test Relay CA'

const dir = tempDir('wc-tls-intercept-')
const closers: Array<() => Promise<unknown>> = []
let relayPki: TestCerts
let corpPki: TestCerts

function pki (name: string, ca: string): TestCerts {
  const d = join(dir.path, name)
  mkdirSync(d)
  return makeTestCerts(d, ca)
}

async function listening<T extends TlsServer | HttpServer> (server: T): Promise<number> {
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  closers.push(async () => { await new Promise(resolve => server.close(resolve)) })
  return (server.address() as AddressInfo).port
}

/** Joins two sockets; either side ending or failing ends both. */
function splice (a: Socket, b: Socket): void {
  a.pipe(b)
  b.pipe(a)
  const end = (): void => { a.destroy(); b.destroy() }
  a.once('error', end)
  b.once('error', end)
  a.once('close', end)
  b.once('close', end)
}

/**
 * A TLS-terminating middlebox: accepts TLS with a certificate the corporate
 * CA issued for 127.0.0.1, opens its own TLS to the real server (verifying
 * the relay CA, as an inspecting proxy verifies upstream), and relays the
 * plaintext between the two.
 */
async function startInterceptor (upstreamPort: number): Promise<number> {
  const server = createTlsServer({ cert: readFileSync(corpPki.cert), key: readFileSync(corpPki.key) }, (client: TLSSocket) => {
    const upstream = tlsConnect({ host: '127.0.0.1', port: upstreamPort, ca: readFileSync(relayPki.caCert) })
    splice(client, upstream)
  })
  return await listening(server)
}

/** An HTTP CONNECT proxy whose every tunnel leads into the interceptor (the path an inspecting proxy gives). */
async function startConnectProxy (interceptorPort: number): Promise<{ port: number, connects: string[] }> {
  const connects: string[] = []
  const server = createHttpServer()
  server.on('connect', (req, client: Socket, head: Buffer) => {
    connects.push(req.url ?? '')
    const upstream = netConnect({ host: '127.0.0.1', port: interceptorPort }, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
      if (head.length > 0) upstream.write(head)
      splice(client, upstream)
    })
    upstream.once('error', () => { client.destroy() })
  })
  return { port: await listening(server), connects }
}

/** A plain TLS server with the relay's certificate (what the relay's WSS listener presents). */
async function startRelayTls (): Promise<number> {
  const server = createTlsServer({ cert: readFileSync(relayPki.cert), key: readFileSync(relayPki.key) }, (s) => { s.end() })
  return await listening(server)
}

before(() => {
  relayPki = pki('relay', RELAY_CA)
  corpPki = pki('corp', CORP_CA)
})

after(async () => {
  for (const close of closers.reverse()) await close()
  dir.cleanup()
})

describe('TLS interception probe', () => {
  it('sees the relay\'s own certificate on a direct path, untrusted here, and judges it not intercepted', async () => {
    const port = await startRelayTls()
    const seen = await probeTlsChain('127.0.0.1', port, undefined)
    const own = leafFingerprintOfPem(readFileSync(relayPki.cert))
    assert.equal(seen.leaf.fingerprint256, own.fingerprint256)
    assert.equal(seen.issuerName, RELAY_CA)
    assert.equal(seen.via, 'direct')
    assert.equal(seen.trusted, false, 'the test CA is not in this process\'s store')
    assert.match(seen.trustError ?? '', /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER/)
    assert.equal(seen.chain[0].subject, 'CN=127.0.0.1')
    const verdict = judgeInterception([own.fingerprint256.toLowerCase()], seen)
    assert.equal(verdict.intercepted, 'no', 'fingerprints compare whatever their case')
    assert.equal(verdict.interceptor, undefined)
  })

  it('through a CONNECT proxy whose path re-signs TLS, sees the corporate CA\'s certificate and names it as the interceptor', async () => {
    const relayPort = await startRelayTls()
    const interceptor = await startInterceptor(relayPort)
    const proxy = await startConnectProxy(interceptor)
    const env = parseProxyEnvironment({ HTTPS_PROXY: `http://127.0.0.1:${proxy.port}` })
    assert.ok(env.https != null)
    const seen = await probeTlsChain('127.0.0.1', relayPort, undefined, { proxy: env.https })
    assert.deepEqual(proxy.connects, [`127.0.0.1:${relayPort}`], 'the probe asked the proxy for the relay\'s address')
    assert.equal(seen.via, `http://127.0.0.1:${proxy.port}`)
    assert.equal(seen.issuerName, CORP_CA)
    assert.equal(seen.leaf.fingerprint256, leafFingerprintOfPem(readFileSync(corpPki.cert)).fingerprint256)
    const verdict = judgeInterception([leafFingerprintOfPem(readFileSync(relayPki.cert)).fingerprint256], seen)
    assert.equal(verdict.intercepted, 'yes')
    assert.equal(verdict.interceptor, CORP_CA)
    assert.match(verdict.reason, new RegExp(`TLS is intercepted by '${CORP_CA}'`))
    assert.match(verdict.reason, /Noise still authenticates/)
  })

  it('cannot judge a relay that publishes no certificate: unknown, not a guess', async () => {
    const port = await startRelayTls()
    const seen = await probeTlsChain('127.0.0.1', port, undefined)
    const verdict = judgeInterception([], seen)
    assert.equal(verdict.intercepted, 'unknown')
    assert.match(verdict.reason, /publishes no TLS certificate/)
  })

  it('a refused port is a TlsProbeError at tcp-connect, a non-TLS server one at tls', async () => {
    const plain = createHttpServer((_req, res) => { res.end('not tls') })
    const plainPort = await listening(plain)
    const err = await probeTlsChain('127.0.0.1', plainPort, undefined, { timeoutMs: 3_000 }).then(() => undefined, (e: unknown) => e)
    assert.ok(err instanceof TlsProbeError, String(err))
    assert.equal(err.phase, 'tls')
    // a port nothing listens on: take one that was just free
    const s = createHttpServer()
    const freePort = await new Promise<number>(resolve => s.listen(0, '127.0.0.1', () => { const p = (s.address() as AddressInfo).port; s.close(() => { resolve(p) }) }))
    const refused = await probeTlsChain('127.0.0.1', freePort, undefined).then(() => undefined, (e: unknown) => e)
    assert.ok(refused instanceof TlsProbeError, String(refused))
    assert.equal(refused.phase, 'tcp-connect')
    assert.equal(refused.code, 'ECONNREFUSED')
  })

  it('relay-info carries fingerprints and refuses malformed ones', () => {
    const own = leafFingerprintOfPem(readFileSync(relayPki.cert))
    const msg = decodeRelayInfo(encodeRelayInfo({ tls: [{ fingerprint256: own.fingerprint256, subject: own.subject, issuer: own.issuer }] }))
    assert.equal(msg.tls[0].fingerprint256, own.fingerprint256)
    assert.equal(msg.tls[0].issuer, `CN=${RELAY_CA}`)
    assert.throws(() => decodeRelayInfo(encodeRelayInfo({ tls: [{ fingerprint256: 'nope', subject: '', issuer: '' }] })), /SHA-256 fingerprint/)
    assert.equal(normalizeFingerprint('ab:cd'), 'AB:CD')
  })
})

describe('a daemon behind a TLS-intercepting middlebox', () => {
  const started: LongRunning[] = []
  after(async () => { for (const p of started) await p.stop() })

  it('trusts the corporate CA from the system store (SSL_CERT_FILE), joins over wss, reports the interception by name; with --refuse-intercepted it refuses the path and says why', async () => {
    const relay = startCli(['relay', '--data-dir', join(dir.path, 'relay-node'), '--json', '--no-stun',
      '--listen', '/ip4/127.0.0.1/tcp/0/tls/ws', '--tls-cert', relayPki.cert, '--tls-key', relayPki.key])
    started.push(relay)
    const info = await firstJson(relay)
    const wss: string = info.announceAddrs.find((a: string) => a.includes('/tls/ws'))
    const relayPort = Number(wss.split('/')[4])
    assert.equal(info.tlsCertificate?.fingerprint256, leafFingerprintOfPem(readFileSync(relayPki.cert)).fingerprint256, 'the relay publishes its certificate')
    const interceptPort = await startInterceptor(relayPort)
    const intercepted = `/ip4/127.0.0.1/tcp/${interceptPort}/tls/ws/p2p/${String(info.peerId)}`

    // the corporate CA only in the "system store": no NODE_EXTRA_CA_CERTS
    const env = { SSL_CERT_FILE: corpPki.caCert }
    const donorDir = join(dir.path, 'donor')
    const donor = startCli(['daemon', '--data-dir', donorDir, '--listen', '/p2p-circuit', '--api-port', '0', '--no-execute', '--bootstrap', intercepted], { env })
    started.push(donor)
    const status = await waitFor('an intercepted wss reservation, checked', async () => {
      const res = await runCli(['status', '--data-dir', donorDir, '--json'])
      if (res.code !== 0) return undefined
      const s = JSON.parse(res.stdout)
      return s.relays[0]?.tlsIntercepted === 'yes' ? s : undefined
    }, 20_000)
    assert.equal(status.relays[0].transport, 'wss')
    assert.equal(status.relays[0].tlsInterceptor, CORP_CA)
    assert.equal(status.bootstrap[0].tlsIntercepted, 'yes')
    await waitFor('the WARN line', () => new RegExp(`WARN .*TLS to relay ${String(info.peerId)} is intercepted by '${CORP_CA}'`).test(donor.stderr()) ? true : undefined, 5_000)
    const human = await runCli(['status', '--data-dir', donorDir])
    assert.match(human.stdout, new RegExp(`TLS intercepted by '${CORP_CA}'`))

    const refusingDir = join(dir.path, 'refusing')
    const refusing = startCli(['daemon', '--data-dir', refusingDir, '--listen', '/p2p-circuit', '--api-port', '0', '--no-execute', '--refuse-intercepted', '--bootstrap', intercepted], { env })
    started.push(refusing)
    const refused = await waitFor('the refusal in status', async () => {
      const res = await runCli(['status', '--data-dir', refusingDir, '--json'])
      if (res.code !== 0) return undefined
      const s = JSON.parse(res.stdout)
      return /refused the path .*intercepted by/.test(s.bootstrap[0]?.lastError ?? '') ? s : undefined
    }, 20_000)
    assert.equal(refused.relays.length, 0, 'not dispatchable')
    assert.equal(refused.bootstrap[0].tlsIntercepted, 'yes')
    assert.match(refused.bootstrap[0].lastError, new RegExp(`intercepted by '${CORP_CA}' and --refuse-intercepted is set`))
    assert.match(refusing.stderr(), /refusing this path \(--refuse-intercepted\)/)
    assert.doesNotMatch(refusing.stderr(), /lost connection to relay/, 'closing a refused path is not reported as a lost relay')

    // the same relay reached directly, its CA in the system store: not intercepted
    const directDir = join(dir.path, 'direct')
    const direct = startCli(['daemon', '--data-dir', directDir, '--listen', '/p2p-circuit', '--api-port', '0', '--no-execute', '--bootstrap', wss], { env: { SSL_CERT_FILE: relayPki.caCert } })
    started.push(direct)
    const clean = await waitFor('a checked direct wss reservation', async () => {
      const res = await runCli(['status', '--data-dir', directDir, '--json'])
      if (res.code !== 0) return undefined
      const s = JSON.parse(res.stdout)
      return s.relays[0] != null && s.relays[0].tlsIntercepted !== 'unknown' ? s : undefined
    }, 20_000)
    assert.equal(clean.relays[0].tlsIntercepted, 'no', clean.relays[0].tlsCheck)
    // still refused after the check (bounded: a few more rounds)
    const again = JSON.parse((await runCli(['status', '--data-dir', refusingDir, '--json'])).stdout)
    assert.equal(again.relays.length, 0)
    for (const [name, p] of [['donor', donor], ['refusing', refusing], ['direct', direct]] as const) {
      const started = Date.now()
      const code = await p.stop()
      assert.equal(code, 0, `${name} exits 0 on SIGTERM (took ${Date.now() - started} ms):\n${p.stderr().split('\n').slice(-15).join('\n')}`)
    }
  })
})

describe('which relay paths get the TLS interception check', () => {
  const peer = '12D3KooWQDkDvGNNGUoD3kFFaVSzTZ3udBbj3zMxiFHdb7aAmDgY'

  it('WebSocket over TLS and HTTPS polling over TLS do; their plain forms, TCP and QUIC do not', () => {
    assert.equal(pathUsesTls(`/ip4/192.0.2.1/tcp/443/tls/ws/p2p/${peer}`), true)
    assert.equal(pathUsesTls(`/dns4/relay.example/tcp/443/tls/sni/relay.example/http/http-path/wc-poll%2F1/p2p/${peer}`), true)
    assert.equal(pathUsesTls(`/ip4/192.0.2.1/tcp/80/http/http-path/wc-poll%2F1/p2p/${peer}`), false)
    assert.equal(pathUsesTls(`/ip4/192.0.2.1/tcp/80/ws/p2p/${peer}`), false)
    assert.equal(pathUsesTls(`/ip4/192.0.2.1/tcp/4001/p2p/${peer}`), false)
    assert.equal(pathUsesTls(`/ip4/192.0.2.1/udp/4001/quic-v1/p2p/${peer}`), false)
  })
})
