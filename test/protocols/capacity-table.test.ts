/**
 * The capacity table: a peer that hears announcements (a relay) answers
 * `/worldcompute/capacity-table/1.0.0` with the executors it heard of, and a
 * broker that starts listening pulls it, so donors that announce only on
 * change and on a slow refresh are still found within a round trip.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { DEFAULT_JOB_LIMITS } from '../../src/core/job.ts'
import { capacity } from '../../src/protocols/capacity/index.ts'
import { createTestNode, perTestNodesAndLogs } from './helpers.ts'
import { waitFor } from '../helpers/wait.ts'
import type { CapacityInfo, CapacityInit, CapacityService } from '../../src/protocols/capacity/index.ts'
import type { Libp2p } from 'libp2p'

type Node = Libp2p<Record<string, any>>

function info (over: Partial<CapacityInfo> = {}): CapacityInfo {
  return { acceptsJobs: true, slots: 4, freeSlots: 4, maxLimits: { ...DEFAULT_JOB_LIMITS }, addrs: ['/ip4/127.0.0.1/tcp/4001'], ...over }
}

/** Long enough that no periodic announcement falls within a test: only changes, joins and pulls count. */
const SLOW = 600_000

describe('capacity table', () => {
  const { nodes } = perTestNodesAndLogs<Node>()

  async function node (init: CapacityInit): Promise<{ node: Node, service: CapacityService }> {
    const n = await createTestNode({ pubsub: true, services: { capacity: capacity(init) } })
    nodes.push(n)
    return { node: n, service: n.services.capacity as CapacityService }
  }

  it('a broker that starts listening learns at once what its relay heard, though no donor announces again', async () => {
    const hub = await node({ listen: 'always', queryOnConnect: false, serveTable: true, announceIntervalMs: SLOW })
    const donors = [
      await node({ getCapacity: () => info({ freeSlots: 3 }), announceIntervalMs: SLOW, queryOnConnect: false, listen: 'on-demand' }),
      await node({ getCapacity: () => info({ freeSlots: 1 }), announceIntervalMs: SLOW, queryOnConnect: false, listen: 'on-demand' })
    ]
    // a donor announces when a subscriber of the topic (the hub) appears: the hub hears both
    for (const d of donors) await d.node.dial(hub.node.getMultiaddrs()[0])
    await waitFor('the hub to hear both donors', () => hub.service.known().length === 2 ? true : undefined, 10_000)

    const broker = await node({ queryOnConnect: false, announceIntervalMs: SLOW, listen: 'on-demand' })
    await broker.node.dial(hub.node.getMultiaddrs()[0])
    // identify tells the broker the hub serves the table; not listening yet, it pulls nothing
    await new Promise(resolve => setTimeout(resolve, 500))
    assert.deepEqual(broker.service.known(), [])

    const t0 = Date.now()
    assert.deepEqual(broker.service.executors(), [], 'the first ask starts listening')
    const found = await waitFor('the executors from the hub\'s table', () => broker.service.executors().length === 2 ? broker.service.executors() : undefined, 5_000)
    assert.ok(Date.now() - t0 < 5_000)
    assert.deepEqual(found.map(c => [c.peerId, c.freeSlots]), [[donors[0].node.peerId.toString(), 3], [donors[1].node.peerId.toString(), 1]])
  })

  it('answers with live executors only, each with its age, and a reader never records an entry older than its own', async () => {
    const hub = await node({ listen: 'always', queryOnConnect: false, serveTable: true, announceIntervalMs: SLOW })
    const donor = await node({ getCapacity: () => info({ freeSlots: 2 }), announceIntervalMs: SLOW, queryOnConnect: false, listen: 'on-demand' })
    const idle = await node({ getCapacity: () => info({ acceptsJobs: false }), announceIntervalMs: SLOW, queryOnConnect: false, listen: 'on-demand' })
    await donor.node.dial(hub.node.getMultiaddrs()[0])
    await idle.node.dial(hub.node.getMultiaddrs()[0])
    await waitFor('the hub to hear both', () => hub.service.capacityOf(idle.node.peerId.toString()) != null && hub.service.known().length === 1 ? true : undefined, 10_000)

    // a reader that is not listening: fetchTable is the pull itself
    const reader = await node({ queryOnConnect: false, announceIntervalMs: SLOW, listen: 'on-demand', pullTables: false })
    await reader.node.dial(hub.node.getMultiaddrs()[0])
    assert.equal(await reader.service.fetchTable(hub.node.peerId), 1, 'the donor that runs no jobs is not in the table')
    const heard = reader.service.heardAt(donor.node.peerId.toString())
    assert.ok(heard != null && heard <= Date.now() && heard >= (hub.service.heardAt(donor.node.peerId.toString()) ?? 0) - 1_000, 'recorded as heard when the hub heard it')
    assert.equal(reader.service.capacityOf(idle.node.peerId.toString()), undefined)

    // what the reader heard itself since is newer than the table: a second pull changes nothing
    await reader.node.dial(donor.node.getMultiaddrs()[0])
    await reader.service.query(donor.node.peerId)
    const own = reader.service.heardAt(donor.node.peerId.toString())
    await reader.service.fetchTable(hub.node.peerId)
    assert.equal(reader.service.heardAt(donor.node.peerId.toString()), own)
  })

  it('asking a node that serves no table fails with a coded error', async () => {
    const plain = await node({ listen: 'always', queryOnConnect: false, announceIntervalMs: SLOW })
    const broker = await node({ queryOnConnect: false, announceIntervalMs: SLOW, listen: 'on-demand' })
    await broker.node.dial(plain.node.getMultiaddrs()[0])
    await assert.rejects(broker.service.fetchTable(plain.node.peerId), (err: Error & { code?: string }) => typeof err.code === 'string')
  })
})
