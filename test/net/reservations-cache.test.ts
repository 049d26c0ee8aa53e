/**
 * CircuitReservations keeps our circuit addresses cached between the events
 * that change them. A cache that served a stale answer would tell the
 * watchdog a lost reservation is still held, or a granted one is not: at
 * every turn of the event loop across grant, loss and re-grant on a real
 * relay (127.0.0.1), the cached answer must equal the one read afresh from
 * libp2p, and the address manager must be read only after a change.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { MeshNode } from '../../src/net/mesh-node.ts'
import { DialTelemetry } from '../../src/net/telemetry.ts'
import { relayPeerOf, transportOf } from '../../src/net/transport-of.ts'
import { stopAfterEach } from '../helpers/cleanup.ts'
import { everyTurn } from '../helpers/wait.ts'
import { startGuardedRelay } from '../relay/helpers.ts'
import type { NodeAddresses, Reservations } from '../../src/net/components.ts'
import type { Connection } from '@libp2p/interface'

const track = stopAfterEach()

/** Counts the reads of the advertised addresses on the mesh's own address book (the one its reservations read); returns the uncounted read. */
function countReads (book: NodeAddresses): { reads: () => number, uncounted: () => string[] } {
  const read = book.advertisedAddrs.bind(book)
  let reads = 0
  book.advertisedAddrs = () => {
    reads++
    return read()
  }
  return { reads: () => reads, uncounted: read }
}

/**
 * Compares the cached answer with a fresh one at every macrotask until
 * `stop()`: microtasks (where libp2p announces a listener's new addresses)
 * never interleave with a sample. Returns the samples taken and the first
 * mismatch, if any.
 */
function sampleAgreement (reservations: Reservations, fresh: () => string[], relayId: string): { stop: () => { samples: number, mismatch?: string } } {
  let mismatch: string | undefined
  let seen = 0
  const turns = everyTurn(() => {
    seen++
    const cached = reservations.circuitAddrsVia(relayId)
    const now = fresh()
    if (mismatch == null && JSON.stringify(cached) !== JSON.stringify(now)) mismatch = `cached ${JSON.stringify(cached)} vs fresh ${JSON.stringify(now)} at sample ${seen}`
  })
  return { stop: () => { const samples = turns.stop(); return { samples, ...(mismatch != null ? { mismatch } : {}) } } }
}

describe('cached circuit addresses', () => {
  it('never serve a stale answer across grant, loss and re-grant, and read libp2p only after a change', async () => {
    const relay = track(await startGuardedRelay())
    const relayId = relay.addr.split('/p2p/')[1]
    const mesh = await MeshNode.create({ privateKey: await generateKeyPair('Ed25519'), listen: [], telemetry: new DialTelemetry() })
    await mesh.start()
    track({ stop: async () => { await mesh.stop() } })
    const book = countReads(mesh.components.addresses)
    const reservations = mesh.components.reservations
    let changes = 0
    reservations.onChange(() => { changes++ })
    const fresh = (): string[] => book.uncounted().filter(a => transportOf(a) === 'circuit' && relayPeerOf(a) === relayId)
    const sampler = sampleAgreement(reservations, fresh, relayId)
    // stopped even when an assertion fails first: a running sampler keeps the process alive
    track({ stop: async () => { sampler.stop() } })

    // grant
    const dial = async (): Promise<Connection> => await mesh.components.dialler.dialTransport(multiaddr(relay.addr), { purpose: 'bootstrap' })
    const first = await reservations.reserve(await dial())
    assert.ok(first.circuitAddrs.length > 0)
    assert.equal(reservations.hasReservation(relayId), true)
    assert.deepEqual(reservations.circuitAddrsVia(relayId), fresh())
    assert.ok(changes > 0, 'the grant was announced to onChange listeners')

    // between changes, repeated reads do not go back to libp2p's address manager
    const readsBefore = book.reads()
    for (let i = 0; i < 100; i++) assert.equal(reservations.hasReservation(relayId), true)
    assert.equal(book.reads(), readsBefore, 'no read of the advertised addresses without a change')

    // loss: the relay connection closes; the store withdraws the reservation and its address
    const changesBeforeLoss = changes
    for (const conn of mesh.components.connections.open().filter(c => c.remotePeer.toString() === relayId)) await conn.close()
    const deadline = Date.now() + 5_000
    while (reservations.hasReservation(relayId) && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 5))
    assert.equal(reservations.hasReservation(relayId), false, 'the loss is seen')
    assert.deepEqual(reservations.circuitAddrsVia(relayId), [])
    assert.deepEqual(fresh(), [])
    assert.ok(changes > changesBeforeLoss, 'the loss was announced to onChange listeners')

    // re-grant on a new connection
    const second = await reservations.reserve(await dial())
    assert.ok(second.circuitAddrs.length > 0)
    assert.equal(reservations.hasReservation(relayId), true)
    assert.deepEqual(reservations.circuitAddrsVia(relayId), fresh())

    const { samples, mismatch } = sampler.stop()
    assert.equal(mismatch, undefined)
    assert.ok(samples > 10, `sampled ${samples} times`)
  })
})
