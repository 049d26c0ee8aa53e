/**
 * Where executors are, as observed, in a real mesh on 127.0.0.1: a relay,
 * a submitter and two executors reached only through the relay. The relay
 * tells the broker the address a reservation holder reserved from (the
 * observed-addr protocol), and a replicated job runs on both loopback
 * executors (each its own network).
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { fetchObservedAddr } from '../../src/protocols/observed-addr/index.ts'
import { executorsSeen, finished, submit } from '../helpers/jobs.ts'
import { stopAfterEach } from '../helpers/cleanup.ts'
import { startTestDonor, startTestRelay, tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'

const dir = tempDir('wc-replica-mesh-')
const track = stopAfterEach()
after(() => { dir.cleanup() })

describe('replica placement in a real mesh', () => {
  it('the relay tells a broker where a reservation holder connected from, and nothing about other peers', async () => {
    const relay = track(await startTestRelay(join(dir.path, 'relay')))
    const bootstrap = relay.info.announceAddrs.filter(a => a.includes('/tcp/'))
    // --no-direct: the executors stay relayed, so only the relay has seen their sockets
    const submitter = track(await startTestDonor(join(dir.path, 'submitter'), bootstrap, ['/p2p-circuit'], { noExecute: true, noDirect: true }))
    const executors = [
      track(await startTestDonor(join(dir.path, 'e1'), bootstrap, ['/p2p-circuit'], { noDirect: true })),
      track(await startTestDonor(join(dir.path, 'e2'), bootstrap, ['/p2p-circuit'], { noDirect: true }))
    ]
    for (const d of [submitter, ...executors]) {
      await waitFor(`${d.peerId} reserved`, async () => (await d.client.call('status', {})).relays.length > 0 ? true : undefined, 15_000)
    }
    const toRelay = submitter.donor.mesh.components.connections.bestDirect(relay.info.peerId)
    assert.ok(toRelay != null, 'the submitter has a direct connection to its relay')
    assert.equal(await fetchObservedAddr(toRelay, executors[0].peerId), '127.0.0.1')
    // the relay itself holds no reservation on itself: it says nothing
    assert.equal(await fetchObservedAddr(toRelay, relay.info.peerId), undefined)

    await executorsSeen(submitter, 2)
    const accepted = await submit(submitter.client, 'hello.wasm', { replicas: 2 })
    const view = await finished(submitter.client, accepted.jobId, 60_000)
    assert.equal(view.status, 'succeeded', view.message)
    assert.match(view.message, /^2\/2 agree, receipts verified/)
    assert.deepEqual(view.replicas.map(r => r.executor).sort(), executors.map(e => e.peerId).sort())
    assert.ok(view.replicas.every(r => r.path === 'relayed'))
  })
})
