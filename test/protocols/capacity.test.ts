import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { DEFAULT_JOB_LIMITS } from '../../src/core/job.ts'
import { CAPACITY_TOPIC, capacity, encodeCapacityAnnouncement } from '../../src/protocols/capacity/index.ts'
import { bytesOf, createTestNode, perTestNodesAndLogs } from './helpers.ts'
import { waitFor } from '../helpers/wait.ts'
import type { Capacity, CapacityInfo, CapacityInit, CapacityService } from '../../src/protocols/capacity/index.ts'
import type { Libp2p } from 'libp2p'

type Node = Libp2p<Record<string, any>>

function info (over: Partial<CapacityInfo> = {}): CapacityInfo {
  return { acceptsJobs: true, slots: 4, freeSlots: 4, maxLimits: { ...DEFAULT_JOB_LIMITS }, addrs: ['/ip4/127.0.0.1/tcp/4001'], ...over }
}

describe('capacity protocol', () => {
  const { nodes, logs } = perTestNodesAndLogs<Node>()

  async function node (init: CapacityInit, pubsub = false): Promise<{ node: Node, service: CapacityService }> {
    const n = await createTestNode({ pubsub, services: { capacity: capacity(init) } })
    nodes.push(n)
    return { node: n, service: n.services.capacity as CapacityService }
  }

  it('answers a query with the donor\'s current capacity, stamped with its PeerId', async () => {
    let current = info({ freeSlots: 3 })
    const donor = await node({ getCapacity: () => current })
    const broker = await node({ queryOnConnect: false })
    await broker.node.dial(donor.node.getMultiaddrs()[0])

    const answer = await broker.service.query(donor.node.peerId)
    assert.ok(answer != null)
    const { ts, ...rest } = answer
    assert.deepEqual(rest, { ...current, peerId: donor.node.peerId.toString() })
    assert.equal(typeof ts, 'number')
    assert.deepEqual(broker.service.executors().map(c => c.peerId), [donor.node.peerId.toString()])

    current = info({ freeSlots: 0 })
    assert.equal((await broker.service.query(donor.node.peerId))?.freeSlots, 0, 'each query reads the capacity afresh')
  })

  it('answers nothing from a node that runs no jobs', async () => {
    const broker = await node({})
    const donor = await node({ getCapacity: () => info() })
    await donor.node.dial(broker.node.getMultiaddrs()[0])
    assert.equal(await donor.service.query(broker.node.peerId), undefined)
    assert.deepEqual(donor.service.executors(), [])
  })

  it('lists a donor that is not accepting jobs as known but not as an executor', async () => {
    const donor = await node({ getCapacity: () => info({ acceptsJobs: false }) })
    const broker = await node({ queryOnConnect: false })
    await broker.node.dial(donor.node.getMultiaddrs()[0])
    assert.equal((await broker.service.query(donor.node.peerId))?.acceptsJobs, false)
    assert.equal(broker.service.capacityOf(donor.node.peerId.toString())?.acceptsJobs, false)
    assert.deepEqual(broker.service.executors(), [])
  })

  it('asks a peer for its capacity as soon as it connects, without gossip', async () => {
    const donor = await node({ getCapacity: () => info({ freeSlots: 2 }) })
    const broker = await node({})
    const added: Capacity[] = []
    broker.service.addEventListener('executor:added', (evt) => { added.push(evt.detail) })

    await broker.node.dial(donor.node.getMultiaddrs()[0])

    const found = await waitFor('the broker to learn the donor\'s capacity', () => added[0], 5_000)
    assert.equal(found.peerId, donor.node.peerId.toString())
    assert.equal(found.freeSlots, 2)
    assert.deepEqual(broker.service.executors().map(c => c.peerId), [donor.node.peerId.toString()])
  })

  it('discovers a donor from its gossip announcements and follows its changes', async () => {
    let current = info({ freeSlots: 4 })
    const donor = await node({ getCapacity: () => current, announceIntervalMs: 200 }, true)
    // no query on connect: what the broker learns, it learns from gossip
    const broker = await node({ queryOnConnect: false, announceIntervalMs: 200 }, true)
    await broker.node.dial(donor.node.getMultiaddrs()[0])

    const seen = await waitFor('the donor\'s announcement', () => broker.service.executors()[0], 10_000)
    assert.equal(seen.peerId, donor.node.peerId.toString())
    assert.equal(seen.freeSlots, 4)

    current = info({ freeSlots: 1 })
    donor.service.notifyChanged()
    await waitFor('the changed capacity', () => broker.service.executors()[0]?.freeSlots === 1, 10_000)
  })

  it('with on-demand listening, a donor hears no announcements and a broker starts hearing them at its first ask, and stops after the idle time', async () => {
    const donor = await node({ getCapacity: () => info(), announceIntervalMs: 200, queryOnConnect: false, listen: 'on-demand' }, true)
    const other = await node({ getCapacity: () => info({ freeSlots: 2 }), announceIntervalMs: 200, queryOnConnect: false, listen: 'on-demand' }, true)
    const broker = await node({ queryOnConnect: false, announceIntervalMs: 200, listen: 'on-demand', listenIdleMs: 1_500 }, true)
    await broker.node.dial(donor.node.getMultiaddrs()[0])
    await other.node.dial(donor.node.getMultiaddrs()[0])
    await broker.node.dial(other.node.getMultiaddrs()[0])
    // several announce intervals: donors that nobody asks for executors stay off the topic
    await new Promise(resolve => setTimeout(resolve, 1_000))
    assert.equal(donor.service.listening(), false)
    assert.deepEqual(donor.service.known(), [], 'an idle donor received no announcement')
    assert.equal(broker.service.listening(), false)
    assert.deepEqual(broker.service.known(), [])

    // the first ask (a broker placing a job) joins the topic; announcements follow
    assert.deepEqual(broker.service.executors(), [])
    assert.equal(broker.service.listening(), true)
    await waitFor('both donors\' announcements', () => broker.service.executors().length === 2 ? true : undefined, 10_000)
    assert.equal(donor.service.listening(), false, 'the donors still do not listen')
    assert.deepEqual(donor.service.known(), [])

    // no ask for listenIdleMs: the broker leaves the topic (its table then expires by itself)
    await waitFor('the broker to stop listening', () => broker.service.listening() ? undefined : true, 10_000)
  })

  it('coalesces a burst of changes into one announcement carrying the latest capacity', async () => {
    let current = info({ freeSlots: 4 })
    // a long interval: only notifyChanged() can cause the announcements counted here
    const donor = await node({ getCapacity: () => current, announceIntervalMs: 60_000 }, true)
    const broker = await node({ queryOnConnect: false, announceIntervalMs: 60_000 }, true)
    await broker.node.dial(donor.node.getMultiaddrs()[0])
    // gossipsub needs a heartbeat or two before the topic has a mesh: keep
    // changing the capacity (an unchanged one is not re-announced for 60 s)
    let n = 0
    await waitFor('the donor\'s first announcement', () => {
      current = info({ freeSlots: 4 - (n++ % 2) })
      donor.service.notifyChanged()
      return broker.service.executors()[0]
    }, 10_000)
    await new Promise(resolve => setTimeout(resolve, 700))
    const heard: number[] = []
    broker.service.addEventListener('executor:updated', (evt) => { heard.push(evt.detail.freeSlots) })
    // a busy donor: slots taken and freed many times within a few milliseconds
    for (let free = 3; free >= 0; free--) {
      current = info({ freeSlots: free })
      donor.service.notifyChanged()
    }
    current = info({ freeSlots: 2 })
    donor.service.notifyChanged()
    await waitFor('the coalesced announcement', () => heard.includes(2) ? true : undefined, 10_000)
    await new Promise(resolve => setTimeout(resolve, 700))
    assert.ok(heard.length <= 2, `announcements heard for 5 changes: ${heard.length} (${heard.join(', ')})`)
    assert.equal(heard.at(-1), 2, 'the last one carries the capacity as it is after the burst')
  })

  it('forgets a donor that stops announcing after three intervals', async () => {
    let current: CapacityInfo | undefined = info()
    const donor = await node({ getCapacity: () => current, announceIntervalMs: 200, queryOnConnect: false }, true)
    const broker = await node({ queryOnConnect: false, announceIntervalMs: 200 }, true)
    const removed: string[] = []
    broker.service.addEventListener('executor:removed', (evt) => { removed.push(evt.detail) })
    await broker.node.dial(donor.node.getMultiaddrs()[0])
    await waitFor('the donor\'s announcement', () => broker.service.executors().length === 1, 10_000)

    current = undefined
    await waitFor('the donor to expire', () => removed.length === 1, 10_000)
    assert.deepEqual(removed, [donor.node.peerId.toString()])
    assert.deepEqual(broker.service.executors(), [])
  })

  it('ignores gossip that is malformed or describes another peer, and says so in the log', async () => {
    const donor = await node({ getCapacity: () => info(), queryOnConnect: false })
    const broker = await node({ queryOnConnect: false, announceIntervalMs: 200 }, true)
    // a peer that speaks gossipsub but lies
    const mallory = await createTestNode({ pubsub: true })
    nodes.push(mallory)
    await mallory.dial(broker.node.getMultiaddrs()[0])
    const pubsub = mallory.services.pubsub as { publish: (t: string, d: Uint8Array) => Promise<unknown> }
    const spoofed = encodeCapacityAnnouncement({ ...info(), peerId: donor.node.peerId.toString(), ts: Date.now() })

    await waitFor('the broker to log the spoofed announcement', async () => {
      await pubsub.publish(CAPACITY_TOPIC, spoofed)
      return logs.lines.find(l => l.includes('describes another peer'))
    })
    await waitFor('the broker to log the garbage announcement', async () => {
      await pubsub.publish(CAPACITY_TOPIC, bytesOf('garbage'))
      return logs.lines.find(l => l.includes('ignored capacity announcement') && l.includes('malformed capacity'))
    })
    const line = logs.lines.find(l => l.includes('describes another peer')) ?? ''
    assert.match(line, new RegExp(`ignored capacity announcement from ${mallory.peerId.toString()}`))
    assert.deepEqual(broker.service.executors(), [], 'nothing from mallory was recorded')
  })
})
