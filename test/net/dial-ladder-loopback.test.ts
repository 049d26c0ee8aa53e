/**
 * The dial ladder against a real relay on 127.0.0.1 (tcp, quic and ws
 * listeners) with real libp2p nodes in this process. Assertions are about
 * order and outcomes (which rung won, what the losers became, one record per
 * attempt), never about how long anything took.
 */
import assert from 'node:assert/strict'
import { createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { after, afterEach, before, describe, it } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { DialLadder, DialLadderError, RungMemory } from '../../src/net/dial-ladder.ts'
import { MeshNode } from '../../src/net/mesh-node.ts'
import { DialTelemetry } from '../../src/net/telemetry.ts'
import { muxerOf } from '../../src/net/pinger.ts'
import { configureLogging, resetLogging } from '../../src/log/logger.ts'
import { freePort, startTestRelay, tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'
import type { DialAttempt } from '../../src/core/types.ts'
import type { RelayHandle } from '../../src/daemon/daemon.ts'

const dir = tempDir('wc-ladder-')
let relay: RelayHandle
let relayId: string
let quicAddr: Multiaddr
let tcpAddr: Multiaddr
let wsAddr: Multiaddr
const cleanups: Array<() => Promise<void>> = []

before(async () => {
  // warn and above only: the stalled attempts log failures on purpose
  configureLogging({ spec: 'error', sink: () => {} })
  relay = await startTestRelay(join(dir.path, 'relay'), ['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/udp/0/quic-v1', '/ip4/127.0.0.1/tcp/0/ws'])
  relayId = relay.info.peerId
  const pick = (test: (a: string) => boolean): Multiaddr => {
    const found = relay.info.announceAddrs.find(a => a.startsWith('/ip4/127.0.0.1/') && test(a))
    assert.ok(found != null, `relay advertises it: ${relay.info.announceAddrs.join(' ')}`)
    return multiaddr(found)
  }
  quicAddr = pick(a => a.includes('/quic-v1'))
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

/** A donor-side node that listens on nothing and dials out only. */
async function startDialer (name: string): Promise<{ mesh: MeshNode, telemetry: DialTelemetry, ladder: DialLadder, memory: RungMemory }> {
  const telemetry = new DialTelemetry()
  const mesh = await MeshNode.create({ privateKey: await generateKeyPair('Ed25519'), listen: [], telemetry })
  await mesh.start()
  cleanups.push(async () => { await mesh.stop() })
  const memory = RungMemory.inStateDir(join(dir.path, name, 'state'))
  const ladder = new DialLadder({
    dial: async (ma, options) => await mesh.components.dialler.dialTransport(ma, { ...options, purpose: 'bootstrap' }),
    memory
  })
  return { mesh, telemetry, ladder, memory }
}

/**
 * A TCP server on 127.0.0.1 that accepts connections and never says a word:
 * the TCP handshake completes, multistream-select and Noise wait for ever —
 * what a protocol-inspecting firewall that drops libp2p's negotiation does.
 */
async function stallingServer (): Promise<{ addr: Multiaddr, sockets: Set<Socket> }> {
  const sockets = new Set<Socket>()
  const server: Server = createServer(socket => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    // read and drop everything; answer nothing
    socket.resume()
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => { resolve() })
  })
  const address = server.address()
  const port = typeof address === 'object' && address != null ? address.port : 0
  cleanups.push(async () => {
    for (const s of sockets) s.destroy()
    await new Promise<void>(resolve => server.close(() => { resolve() }))
  })
  return { addr: multiaddr(`/ip4/127.0.0.1/tcp/${port}/p2p/${relayId}`), sockets }
}

function recordsFor (telemetry: DialTelemetry, target: string): DialAttempt[] {
  return telemetry.recent().filter(a => a.target === target)
}

/**
 * Every attempt the ladder started is recorded exactly once, with the outcome
 * the ladder saw; an attempt it never started is not recorded at all.
 */
async function assertRecordedOnce (telemetry: DialTelemetry, attempts: Array<{ addr: string, outcome: string }>): Promise<void> {
  const started = attempts.filter(a => a.outcome !== 'not-tried')
  await waitFor('one record per started attempt', () => started.every(a => recordsFor(telemetry, a.addr).length >= 1) ? true : undefined)
  // give a late verdict (QUIC ignores abort signals and ends by itself) the chance to show up as a second record
  await new Promise(resolve => setTimeout(resolve, 300))
  for (const a of attempts) {
    const records = recordsFor(telemetry, a.addr)
    if (a.outcome === 'not-tried') {
      assert.equal(records.length, 0, `${a.addr} was not tried, so not recorded: ${JSON.stringify(records)}`)
      continue
    }
    assert.equal(records.length, 1, `${a.addr} recorded once: ${JSON.stringify(records)}`)
    assert.equal(records[0].purpose, 'bootstrap')
    assert.equal(records[0].outcome, a.outcome === 'closed-late' ? 'success' : a.outcome, JSON.stringify(records[0]))
  }
}

describe('dial ladder against a real relay on loopback', () => {
  it('QUIC wins when every transport works, and the connection is the one libp2p tracks', async () => {
    const { mesh, telemetry, ladder } = await startDialer('all-work')
    const result = await ladder.dial(relayId, [tcpAddr, wsAddr, quicAddr])
    assert.equal(result.transport, 'quic')
    assert.equal(result.addr, quicAddr.toString())
    assert.equal(result.remembered, false)
    assert.match(result.reason, /^first to connect/)
    assert.equal(result.attempts[0].transport, 'quic', 'QUIC went first')
    assert.equal(result.connection.remotePeer.toString(), relayId)
    // the connection manager tracks it as if libp2p's dial queue had made it
    assert.equal(mesh.components.connections.bestDirect(relayId)?.id, result.connection.id)
    await assertRecordedOnce(telemetry, result.attempts)
    assert.equal(recordsFor(telemetry, quicAddr.toString())[0].outcome, 'success')
  })

  it('a stalled TCP remembered from an earlier run does not hold up the ladder: QUIC wins and TCP is cancelled at noise', async () => {
    const { telemetry, ladder, memory } = await startDialer('stalled-remembered')
    const stalled = await stallingServer()
    // the network changed since TCP won here: now TCP connects but its handshake is swallowed
    memory.remember(relayId, { transport: 'tcp', addr: stalled.addr.toString() })
    const result = await ladder.dial(relayId, [quicAddr, stalled.addr])
    assert.equal(result.attempts[0].addr, stalled.addr.toString(), 'the remembered rung started first')
    assert.equal(result.transport, 'quic')
    assert.equal(result.remembered, false)
    const tcp = result.attempts[0]
    assert.equal(tcp.outcome, 'cancelled')
    assert.equal(tcp.phase, 'noise', 'TCP connected and stalled in the Noise handshake')
    assert.match(result.reason, /^first to connect \(tcp \(remembered\): cancelled at noise after/)
    await assertRecordedOnce(telemetry, result.attempts)
    const record = recordsFor(telemetry, stalled.addr.toString())[0]
    assert.equal(record.outcome, 'cancelled')
    assert.equal(record.phase, 'noise')
    assert.equal(record.code, 'CANCELLED')
    // the cancelled attempt let go of its socket
    await waitFor('the stalled socket closed', () => stalled.sockets.size === 0 ? true : undefined)
    // and the winner is remembered for next time
    assert.equal(memory.recall(relayId)?.transport, 'quic')
  })

  it('a stalled TCP ranked before WS does not hold up the ladder: WS wins, TCP is cancelled at noise', async () => {
    const { telemetry, ladder } = await startDialer('stalled-ws')
    const stalled = await stallingServer()
    const result = await ladder.dial(relayId, [wsAddr, stalled.addr])
    assert.deepEqual(result.attempts.map(a => a.transport), ['tcp', 'ws'], 'TCP ranks before WS')
    assert.equal(result.transport, 'ws')
    assert.equal(result.attempts[0].outcome, 'cancelled')
    assert.equal(result.attempts[0].phase, 'noise')
    await assertRecordedOnce(telemetry, result.attempts)
  })

  it('a TCP handshake that never finishes is abandoned at its own timeout, at phase noise, and the ladder reports every address', async () => {
    const { telemetry, ladder } = await startDialer('stalled-only')
    const stalled = await stallingServer()
    const refused = multiaddr(`/ip4/127.0.0.1/tcp/${await freePort()}/p2p/${relayId}`)
    const err: unknown = await ladder.dial(relayId, [stalled.addr, refused]).then(() => undefined, (e: unknown) => e)
    assert.ok(err instanceof DialLadderError, String(err))
    assert.match(err.message, /all 2 address\(es\)/)
    const [first, second] = err.attempts
    assert.equal(first.addr, stalled.addr.toString())
    assert.equal(first.outcome, 'failure')
    assert.equal(first.phase, 'noise')
    assert.equal(first.timedOut, true)
    assert.equal(second.outcome, 'failure')
    assert.equal(second.code, 'ECONNREFUSED')
    await assertRecordedOnce(telemetry, err.attempts)
    const record = recordsFor(telemetry, stalled.addr.toString())[0]
    assert.equal(record.phase, 'noise')
    assert.equal(record.code, 'TIMEOUT')
    assert.match(record.cause, /TCP connected but the libp2p handshake got no answer within/)
  })

  it('a refused TCP and a working WS: WS wins', async () => {
    const { telemetry, ladder } = await startDialer('refused-ws')
    const refused = multiaddr(`/ip4/127.0.0.1/tcp/${await freePort()}/p2p/${relayId}`)
    const result = await ladder.dial(relayId, [wsAddr, refused])
    assert.equal(result.transport, 'ws')
    const tcp = result.attempts.find(a => a.transport === 'tcp')
    assert.equal(tcp?.outcome, 'failure')
    assert.equal(tcp?.code, 'ECONNREFUSED')
    assert.equal(tcp?.phase, 'tcp-connect')
    assert.match(result.reason, /^first to connect \(tcp: failed at tcp-connect \(ECONNREFUSED\)/)
    await assertRecordedOnce(telemetry, result.attempts)
  })

  it('the remembered rung goes first on the next start, from the state file', async () => {
    const first = await startDialer('remember')
    const refused = multiaddr(`/ip4/127.0.0.1/tcp/${await freePort()}/p2p/${relayId}`)
    const addrs = [refused, wsAddr]
    const r1 = await first.ladder.dial(relayId, addrs)
    assert.equal(r1.transport, 'ws')
    assert.equal(r1.attempts[0].transport, 'tcp')
    await first.mesh.stop()

    // a new process: new node, new memory object, same state directory
    const second = await startDialer('remember')
    assert.equal(second.ladder.plan(relayId, addrs)[0].transport, 'ws')
    const r2 = await second.ladder.dial(relayId, addrs)
    assert.equal(r2.transport, 'ws')
    assert.equal(r2.remembered, true)
    assert.equal(r2.attempts[0].addr, wsAddr.toString(), 'the remembered address started first')
    assert.match(r2.reason, /^remembered from the last run on this network/)
    await assertRecordedOnce(second.telemetry, r2.attempts)
  })

  it('the winning TCP connection outlives its attempt timeout and the ladder budget', async () => {
    const { mesh } = await startDialer('outlives')
    // net.connect() destroys a socket when the signal it was given fires, even long after connecting
    const ladder = new DialLadder({
      dial: async (ma, options) => await mesh.components.dialler.dialTransport(ma, { ...options, purpose: 'bootstrap' }),
      timeoutsMs: { tcp: 300 },
      budgetMs: 600
    })
    const result = await ladder.dial(relayId, [tcpAddr])
    assert.equal(result.transport, 'tcp')
    await new Promise(resolve => setTimeout(resolve, 1000))
    assert.equal(result.connection.status, 'open')
    assert.equal(typeof await mesh.components.pinger.rtt(relayId), 'number')
    assert.deepEqual(mesh.components.connections.open().map(c => c.id), [result.connection.id], 'the ping used the same connection')
  })

  it('a link ping on a TCP connection is a ping frame of its muxer: it measures a round trip without opening a stream', async () => {
    const { mesh } = await startDialer('link-ping')
    const conn = await mesh.components.dialler.dialTransport(tcpAddr, { purpose: 'bootstrap' })
    assert.notEqual(muxerOf(conn), undefined, 'a TCP connection has a yamux muxer that pings')
    // identify and gossipsub open streams of their own on a new connection: only ping streams count
    let opened = 0
    const newStream = conn.newStream.bind(conn)
    conn.newStream = async (...args: Parameters<typeof conn.newStream>) => {
      if ([args[0]].flat().some(p => p.includes('/ping/'))) opened++
      return await newStream(...args)
    }
    for (let i = 0; i < 3; i++) {
      const rtt = await mesh.components.pinger.linkRtt(conn, { signal: AbortSignal.timeout(5_000) })
      assert.ok(rtt >= 0, `round trip ${rtt}`)
    }
    assert.equal(opened, 0, 'no ping stream was opened')
    // the same counter sees the ping protocol's stream
    await mesh.components.pinger.rtt(relayId)
    assert.equal(opened, 1, 'the ping protocol opens a stream')
    assert.equal(conn.status, 'open')
  })

  it('losers still handshaking when QUIC connects are cancelled, each recorded once, and nothing else is dialled', async () => {
    const { mesh, telemetry, ladder, memory } = await startDialer('losers')
    const stalledA = await stallingServer()
    const stalledB = await stallingServer()
    memory.remember(relayId, { transport: 'tcp', addr: stalledA.addr.toString() })
    // order: the two remembered-rung TCP addresses, then QUIC, then WS
    const result = await ladder.dial(relayId, [wsAddr, quicAddr, stalledB.addr, stalledA.addr])
    assert.deepEqual(result.attempts.map(a => a.transport), ['tcp', 'tcp', 'quic', 'ws'])
    assert.equal(result.transport, 'quic')
    assert.deepEqual(result.attempts.slice(0, 2).map(a => a.outcome), ['cancelled', 'cancelled'])
    assert.ok(['not-tried', 'cancelled'].includes(result.attempts[3].outcome), JSON.stringify(result.attempts[3]))
    await assertRecordedOnce(telemetry, result.attempts)
    // only the winner's connection is left
    await waitFor('the losers let go of their sockets', () => stalledA.sockets.size + stalledB.sockets.size === 0 ? true : undefined)
    const open = mesh.components.connections.open(relayId)
    assert.deepEqual(open.map(c => c.id), [result.connection.id])
  })
})
