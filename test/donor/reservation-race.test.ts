/**
 * A relay's answer to RESERVE can reach the donor just as the connection it
 * came on closes: circuit-relay-v2's store reads the answer, waits for the
 * stream to close, and in that wait the connection's close event passes
 * (the store finds no reservation on it yet), after which the store records
 * the reservation on the closed connection. Nothing removes that record, so
 * it says "reserved" on every later connection to the relay while the relay
 * holds nothing for us. The donor must not take that record for a
 * reservation: it reserves again, and ends dispatchable. Real relay and
 * donor on 127.0.0.1; the test only times the close (lab: a relay closing
 * its dial-back connection as the donor reserved on it).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { ReservationManager } from '../../src/donor/reservation-manager.ts'
import { MeshResolver } from '../../src/net/dns-resolver.ts'
import { MeshNode } from '../../src/net/mesh-node.ts'
import { DialTelemetry } from '../../src/net/telemetry.ts'
import { stopAfterEach } from '../helpers/cleanup.ts'
import { recordingLogger } from '../helpers/recording-logger.ts'
import { everyTurn, waitFor } from '../helpers/wait.ts'
import { startGuardedRelay } from '../relay/helpers.ts'
import type { Connection, PeerId } from '@libp2p/interface'

const track = stopAfterEach()

interface StoreEntry { connection?: string }
interface StoreMap { set: (peer: PeerId, entry: StoreEntry) => unknown }

/** circuit-relay-v2's reservation store, reached as CircuitReservations reaches it. */
function storeOf (mesh: MeshNode): { reservations: StoreMap } {
  const reach = (mesh.components.reservations as unknown as { reservationStore: () => { reservations?: StoreMap } | undefined }).reservationStore()
  if (reach?.reservations == null) throw new Error('circuit-relay-v2 reservation store not found')
  return reach as { reservations: StoreMap }
}

/**
 * The store's `nth` record of a reservation happens only after the
 * connection it names has closed and that close has been announced, as in
 * the race above; the other records are left alone.
 */
function closeBeforeRecord (mesh: MeshNode, nth: number): { raced: () => boolean } {
  const map = storeOf(mesh).reservations
  const set = map.set.bind(map)
  let records = 0
  let raced = false
  map.set = (peer, entry) => {
    if (++records !== nth) return set(peer, entry)
    raced = true
    const conn = mesh.components.connections.open().find(c => c.id === entry.connection)
    if (conn == null) throw new Error(`the reservation names connection ${String(entry.connection)}, which is not open`)
    const onClose = (evt: CustomEvent<Connection>): void => {
      if (evt.detail.id !== conn.id) return
      mesh.components.events.off('connection:close', onClose)
      set(peer, entry)
    }
    mesh.components.events.on('connection:close', onClose)
    conn.abort(new Error('closed by the test as the relay\'s answer came'))
    return map
  }
  return { raced: () => raced }
}

/**
 * At every turn of the event loop until `stop()`: does the relay's phase say
 * "reserved" while `status` lists no reservation on it (no granted, advertised
 * reservation on an open connection)?
 */
function sampleClaims (manager: ReservationManager, relayId: string): { stop: () => { samples: number, unlisted: number } } {
  let unlisted = 0
  const turns = everyTurn(() => {
    const claims = manager.bootstrapStatus()[0]?.state === 'reserved'
    if (claims && !manager.reservations().some(r => r.peerId === relayId)) unlisted++
  })
  return { stop: () => ({ samples: turns.stop(), unlisted }) }
}

describe('a reservation answered as its connection closes', () => {
  it('is not taken for a reservation: the donor reserves again and ends dispatchable', async () => {
    const relay = track(await startGuardedRelay())
    const relayId = relay.addr.split('/p2p/')[1]
    const mesh = await MeshNode.create({ privateKey: await generateKeyPair('Ed25519'), listen: [], telemetry: new DialTelemetry({ logger: recordingLogger() }) })
    await mesh.start()
    track({ stop: async () => { await mesh.stop() } })
    // the second: by then the circuit listener exists and re-applies its address when the store announces the record
    const race = closeBeforeRecord(mesh, 2)
    const logger = recordingLogger()
    const manager = new ReservationManager(mesh.components, {
      bootstrap: [multiaddr(relay.addr)],
      resolver: new MeshResolver({ doh: [], logger: recordingLogger() }),
      initialBackoffMs: 100,
      logger
    })
    manager.start()
    track({ stop: async () => { await manager.stop() } })

    await waitFor('a first reservation', () => manager.reservations().find(r => r.peerId === relayId), 10_000)
    const sampler = sampleClaims(manager, relayId)
    track({ stop: async () => { sampler.stop() } })
    // the relay's connection closes; the donor redials and reserves again, and that answer races the close
    for (const conn of mesh.components.connections.open().filter(c => c.remotePeer.toString() === relayId)) conn.abort(new Error('closed by the test'))
    await waitFor('the second reservation recorded on its closed connection', () => race.raced() ? true : undefined, 10_000)
    const listed = await waitFor('a reservation listed in status', () => manager.reservations().find(r => r.peerId === relayId), 10_000)
      .catch((err: Error) => { throw new Error(`${err.message}; bootstrap status ${JSON.stringify(manager.bootstrapStatus())}`) })
    assert.equal(manager.bootstrapStatus()[0].state, 'reserved')
    const open = mesh.components.connections.open().filter(c => c.remotePeer.toString() === relayId && c.status === 'open')
    assert.ok(open.some(c => c.remoteAddr.toString() === listed.addr), `the listed reservation is on an open connection (${listed.addr})`)
    assert.equal(relay.service.reservationCount(), 1, 'the relay holds our reservation')
    const { samples, unlisted } = sampler.stop()
    assert.equal(unlisted, 0, `for ${unlisted} of ${samples} turns of the event loop the donor said "reserved" but listed no reservation`)
  })
})
