import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { makeTestCerts } from '../helpers/tls.ts'
import { MeshNode } from '../../src/net/mesh-node.ts'
import { DEFAULT_RELAY_LIMITS } from '../../src/config/config.ts'
import { isPollAddr, pollAddrFor, pollTargetOf, withPollFallbacks } from '../../src/net/https-poll/address.ts'
import { transportOf } from '../../src/net/transport-of.ts'
import { HTTPS_POLL_PATH } from '../../src/net/constants.ts'
import { portOf } from '../../src/core/format.ts'

const PEER = '12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK'

describe('poll addresses', () => {
  it('are derived from a /tls/ws address with the same host, port and SNI', () => {
    const poll = pollAddrFor(`/dns4/relay.example/tcp/443/tls/sni/relay.example/ws/p2p/${PEER}`)
    assert.equal(poll?.toString(), `/dns4/relay.example/tcp/443/tls/sni/relay.example/http/http-path/wc-poll%2F1/p2p/${PEER}`)
    assert.deepEqual(pollTargetOf(poll ?? ''), { host: 'relay.example', port: 443, tls: true, servername: 'relay.example', path: '/wc-poll/1' })
    assert.equal(transportOf(poll ?? ''), 'https-poll')
  })

  it('are added after a relay\'s WebSocket-over-TLS address only, once', () => {
    const addrs = [multiaddr('/ip4/10.0.0.1/tcp/4001'), multiaddr('/ip4/10.0.0.1/tcp/80/ws'), multiaddr('/ip4/10.0.0.1/tcp/443/tls/ws')]
    const out = withPollFallbacks(addrs).map(a => a.toString())
    assert.deepEqual(out, [...addrs.map(a => a.toString()), '/ip4/10.0.0.1/tcp/443/tls/http/http-path/wc-poll%2F1'])
    assert.deepEqual(withPollFallbacks(withPollFallbacks(addrs)).map(a => a.toString()), out)
  })

  it('are told apart from other HTTP-ish addresses', () => {
    assert.equal(isPollAddr('/ip4/10.0.0.1/tcp/443/tls/http'), false)
    assert.equal(isPollAddr('/ip4/10.0.0.1/tcp/443/tls/ws'), false)
    assert.equal(isPollAddr('/ip4/10.0.0.1/tcp/99999/http/http-path/wc-poll%2F1'), false)
    assert.equal(isPollAddr('/ip4/10.0.0.1/tcp/80/http/http-path/wc-poll%2F1'), true)
  })
})

describe('a libp2p connection over HTTP polling on loopback', () => {
  let relay: MeshNode
  let donor: MeshNode

  before(async () => {
    relay = await MeshNode.create({
      privateKey: await generateKeyPair('Ed25519'),
      listen: [multiaddr('/ip4/127.0.0.1/tcp/0/ws'), multiaddr('/ip4/127.0.0.1/tcp/0/http/http-path/wc-poll%2F1')]
    })
    await relay.start()
    donor = await MeshNode.create({ privateKey: await generateKeyPair('Ed25519'), listen: [] })
    await donor.start()
  })

  after(async () => {
    await donor?.stop()
    await relay?.stop()
  })

  it('listens on the WebSocket listener\'s port without binding one of its own', () => {
    const bound = relay.components.addresses.boundAddrs()
    const ws = bound.find(a => a.endsWith('/ws'))
    assert.ok(ws != null)
    assert.ok(bound.includes(pollAddrFor(ws)?.toString() ?? '-'), `a poll address beside ${ws} in ${bound.join(', ')}`)
  })

  it('is dialled, authenticated by Noise, and carries a protocol both ways', async () => {
    const ws = relay.components.addresses.boundAddrs().find(a => a.endsWith('/ws')) ?? assert.fail('a /ws address')
    const target = pollAddrFor(`${ws}/p2p/${relay.peerId}`) ?? assert.fail('a poll address')
    const conn = await donor.components.dialler.dialTransport(target, { purpose: 'bootstrap', signal: AbortSignal.timeout(10_000) })
    assert.equal(conn.remotePeer.toString(), relay.peerId)
    assert.equal(transportOf(conn.remoteAddr), 'https-poll')
    // the ping protocol on a new stream: multistream-select, then 32 bytes each way
    const rtt = await donor.components.pinger.rtt(relay.peerId, { signal: AbortSignal.timeout(10_000) })
    assert.ok(rtt >= 0)
    const attempts = donor.components.telemetry.recent().filter(a => a.transport === 'https-poll')
    assert.equal(attempts.at(-1)?.outcome, 'success')
    await conn.close()
  })

  it('fails at http with POLL_NOT_SERVED against a WebSocket listener that serves no poll route', async () => {
    const plain = await MeshNode.create({ privateKey: await generateKeyPair('Ed25519'), listen: [multiaddr('/ip4/127.0.0.1/tcp/0/ws')] })
    await plain.start()
    try {
      const ws = plain.components.addresses.boundAddrs().find(a => a.endsWith('/ws')) ?? assert.fail('a /ws address')
      const target = pollAddrFor(`${ws}/p2p/${plain.peerId}`) ?? assert.fail('a poll address')
      await assert.rejects(donor.components.dialler.dialTransport(target, { purpose: 'bootstrap', signal: AbortSignal.timeout(10_000) }), { code: 'POLL_NOT_SERVED', phase: 'http' })
      const record = donor.components.telemetry.recent().filter(a => a.target === target.toString()).at(-1)
      assert.deepEqual([record?.outcome, record?.phase, record?.code], ['failure', 'http', 'POLL_NOT_SERVED'])
    } finally {
      await plain.stop()
    }
  })

  it('refuses a peer that is not the one the address names', async () => {
    const ws = relay.components.addresses.boundAddrs().find(a => a.endsWith('/ws')) ?? assert.fail('a /ws address')
    const other = donor.peerId
    const target = pollAddrFor(`${ws}/p2p/${other}`) ?? assert.fail('a poll address')
    await assert.rejects(donor.components.dialler.dialTransport(target, { purpose: 'bootstrap', signal: AbortSignal.timeout(10_000) }))
  })
})

describe('a relay reached only over HTTP polling', () => {
  let relay: MeshNode
  let donor: MeshNode

  before(async () => {
    relay = await MeshNode.create({
      privateKey: await generateKeyPair('Ed25519'),
      listen: [multiaddr('/ip4/127.0.0.1/tcp/0/ws')],
      relayServer: { limits: DEFAULT_RELAY_LIMITS }
    })
    await relay.start()
    donor = await MeshNode.create({ privateKey: await generateKeyPair('Ed25519'), listen: [] })
    await donor.start()
  })

  after(async () => {
    await donor?.stop()
    await relay?.stop()
  })

  it('announces a poll address beside its WebSocket one by itself', () => {
    const ws = relay.components.addresses.advertisedAddrs().find(a => /\/ws\/p2p\//.test(a)) ?? assert.fail('a /ws address')
    assert.ok(relay.components.addresses.advertisedAddrs().includes(pollAddrFor(ws)?.toString() ?? '-'))
  })

  it('grants a reservation over it, and the donor advertises circuit addresses through the relay', async () => {
    const ws = relay.components.addresses.boundAddrs().find(a => a.endsWith('/ws')) ?? assert.fail('a /ws address')
    const target = pollAddrFor(`${ws}/p2p/${relay.peerId}`) ?? assert.fail('a poll address')
    const conn = await donor.components.dialler.dialTransport(target, { purpose: 'bootstrap', signal: AbortSignal.timeout(10_000) })
    const reserved = await donor.components.reservations.reserve(conn, { signal: AbortSignal.timeout(10_000) })
    assert.ok(reserved.circuitAddrs.length > 0)
    assert.ok(reserved.circuitAddrs.every(a => a.includes(`/p2p/${relay.peerId}/p2p-circuit`)))
  })
})

describe('a relay\'s poll session limits', () => {
  it('come from its limits (--max-poll-sessions, --max-poll-sessions-per-ip): a session past them is refused with 429', async () => {
    const relay = await MeshNode.create({
      privateKey: await generateKeyPair('Ed25519'),
      listen: [multiaddr('/ip4/127.0.0.1/tcp/0/ws')],
      relayServer: { limits: { ...DEFAULT_RELAY_LIMITS, maxPollSessions: 5, maxPollSessionsPerIp: 2 } }
    })
    await relay.start()
    try {
      const ws = relay.components.addresses.boundAddrs().find(a => a.endsWith('/ws')) ?? assert.fail('a /ws address')
      const url = `http://127.0.0.1:${portOf(ws)}${HTTPS_POLL_PATH}/open`
      const statuses: number[] = []
      for (let i = 0; i < 3; i++) {
        const res = await fetch(url, { method: 'POST', signal: AbortSignal.timeout(5_000) })
        await res.arrayBuffer()
        statuses.push(res.status)
      }
      assert.deepEqual(statuses, [200, 200, 429], 'two sessions from one IP, the third refused')
    } finally {
      await relay.stop()
    }
  })
})

describe('HTTPS polling over TLS to a relay\'s /tls/ws listener', () => {
  let relay: MeshNode
  let donor: MeshNode
  let dir = ''
  let caPem = ''
  const defaultCAs = tls.getCACertificates('default')

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'wc-poll-tls-'))
    const certs = makeTestCerts(dir)
    caPem = readFileSync(certs.caCert, 'utf8')
    relay = await MeshNode.create({
      privateKey: await generateKeyPair('Ed25519'),
      listen: [multiaddr('/ip4/127.0.0.1/tcp/0/tls/ws')],
      relayServer: { limits: DEFAULT_RELAY_LIMITS, tls: { certFile: certs.cert, keyFile: certs.key } }
    })
    await relay.start()
    donor = await MeshNode.create({ privateKey: await generateKeyPair('Ed25519'), listen: [] })
    await donor.start()
  })

  after(async () => {
    tls.setDefaultCACertificates(defaultCAs)
    await donor?.stop()
    await relay?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  function pollTarget (): Multiaddr {
    const wss = relay.components.addresses.boundAddrs().find(a => a.endsWith('/tls/ws')) ?? assert.fail('a /tls/ws address')
    return pollAddrFor(`${wss}/p2p/${relay.peerId}`) ?? assert.fail('a poll address')
  }

  it('fails at tls with TLS_UNTRUSTED when the certificate\'s issuer is not trusted, and says so in the dial record', async () => {
    const target = pollTarget()
    await assert.rejects(donor.components.dialler.dialTransport(target, { purpose: 'bootstrap', signal: AbortSignal.timeout(10_000) }))
    const record = donor.components.telemetry.recent().filter(a => a.target === target.toString()).at(-1)
    assert.equal(record?.outcome, 'failure')
    assert.equal(record?.phase, 'tls')
    assert.equal(record?.code, 'TLS_UNTRUSTED')
    assert.equal(record?.transport, 'https-poll')
  })

  it('connects once the issuer is in the trust store, as a re-signing proxy\'s CA would be', async () => {
    tls.setDefaultCACertificates([...defaultCAs, caPem])
    const conn = await donor.components.dialler.dialTransport(pollTarget(), { purpose: 'bootstrap', signal: AbortSignal.timeout(10_000) })
    assert.equal(conn.remotePeer.toString(), relay.peerId)
    await donor.components.pinger.rtt(relay.peerId, { signal: AbortSignal.timeout(10_000) })
  })
})
