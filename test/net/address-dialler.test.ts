import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { multiaddr } from '@multiformats/multiaddr'
import { AddressDialler } from '../../src/net/address-dialler.ts'
import { DialRecorder } from '../../src/net/dial-recorder.ts'
import { DialTelemetry } from '../../src/net/telemetry.ts'
import { createLogger } from '../../src/log/logger.ts'
import type { NodeCore } from '../../src/net/node-core.ts'
import type { Connection } from '@libp2p/interface'

/** A connection that only records whether it was closed. */
function fakeConnection (): Connection & { closed: boolean } {
  const conn = {
    closed: false,
    remoteAddr: multiaddr('/ip4/127.0.0.1/tcp/4001'),
    close: async () => { conn.closed = true }
  }
  return conn as unknown as Connection & { closed: boolean }
}

/** A node whose transport dials wait for `settle` and never look at their signal, as a stuck negotiation does. */
function nodeWithDeafTransport (): { core: NodeCore, settle: (conn: Connection) => void, dials: () => number } {
  let settle: (conn: Connection) => void = () => {}
  let dials = 0
  const transportManager = {
    dialTransportForMultiaddr: () => ({}),
    dial: async () => {
      dials++
      return await new Promise<Connection>((resolve) => { settle = resolve })
    }
  }
  const core: NodeCore = {
    libp2p: { peerStore: { merge: async () => {} } } as unknown as NodeCore['libp2p'],
    internals: { transportManager },
    log: createLogger('test.address-dialler')
  }
  return { core, settle: (conn) => { settle(conn) }, dials: () => dials }
}

describe('address dialler', () => {
  it('a transport dial that ignores its signal still fails when the signal fires, and its late connection is closed', { timeout: 10_000 }, async () => {
    const { core, settle, dials } = nodeWithDeafTransport()
    const dialler = new AddressDialler(core, new DialRecorder(new DialTelemetry(), createLogger('test.dial')), { dialAttemptTimeoutMs: 10_000 })
    const started = Date.now()
    await assert.rejects(
      dialler.dialTransport(multiaddr('/ip4/127.0.0.1/tcp/4001/p2p-circuit/webrtc'), { purpose: 'upgrade', signal: AbortSignal.timeout(100) }),
      (err: Error) => err.name === 'TimeoutError'
    )
    assert.equal(dials(), 1)
    assert.ok(Date.now() - started < 5_000, 'the attempt ended with its signal, not with the transport')
    const late = fakeConnection()
    settle(late)
    for (let i = 0; i < 20 && !late.closed; i++) await new Promise(resolve => setTimeout(resolve, 5))
    assert.equal(late.closed, true, 'the connection that came after the attempt was given up is closed')
  })

  it('a transport dial that connects in time gives its connection, open', { timeout: 10_000 }, async () => {
    const { core, settle } = nodeWithDeafTransport()
    const dialler = new AddressDialler(core, new DialRecorder(new DialTelemetry(), createLogger('test.dial')), { dialAttemptTimeoutMs: 10_000 })
    const conn = fakeConnection()
    const dialing = dialler.dialTransport(multiaddr('/ip4/127.0.0.1/tcp/4001/p2p-circuit/webrtc'), { purpose: 'upgrade', signal: AbortSignal.timeout(5_000) })
    setTimeout(() => { settle(conn) }, 10)
    assert.equal(await dialing, conn)
    assert.equal(conn.closed, false)
  })
})
