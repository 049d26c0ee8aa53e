import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { rawCidString } from '../../src/codec/cid.ts'
import { ProtocolRequestError, ProtocolTimeoutError } from '../../src/protocols/errors.ts'
import { FramedStream } from '../../src/protocols/framing.ts'
import { OFFER_PROTOCOL, offer } from '../../src/protocols/offer/index.ts'
import { bytesOf, createTestNode, perTestNodesAndLogs } from './helpers.ts'
import { waitFor } from '../helpers/wait.ts'
import type { DecideOffer, OfferRequest, OfferResponse, OfferService } from '../../src/protocols/offer/index.ts'
import type { Libp2p } from 'libp2p'
import { shortPeerId } from '../../src/core/format.ts'

type Node = Libp2p<Record<string, any>>

const request: OfferRequest = {
  jobId: 'job-o',
  taskId: 'job-o/0',
  moduleCid: rawCidString(bytesOf('module')),
  moduleSize: 6,
  inputSize: 100,
  limits: { deadlineMs: 5_000, memoryBytes: 64 * 1024 * 1024 }
}

describe('offer protocol', () => {
  const { nodes, logs } = perTestNodesAndLogs<Node>()

  async function pair (decideOffer?: DecideOffer, brokerTimeoutMs?: number): Promise<{ donor: Node, broker: Node, offers: OfferService }> {
    const donor = await createTestNode({ services: { offer: offer({ decideOffer }) } })
    const broker = await createTestNode({ services: { offer: offer({ timeoutMs: brokerTimeoutMs }) } })
    nodes.push(donor, broker)
    await broker.dial(donor.getMultiaddrs()[0])
    return { donor, broker, offers: broker.services.offer as OfferService }
  }

  it('brings back an acceptance with hasModule and free slots', async () => {
    const seen: Array<{ req: OfferRequest, peer: string }> = []
    const { donor, broker, offers } = await pair((req, ctx) => {
      seen.push({ req, peer: ctx.peer })
      return { accept: true, hasModule: true, freeSlots: 3 }
    })
    const answer = await offers.offer(donor.peerId, request)
    assert.deepEqual(answer, { accept: true, hasModule: true, freeSlots: 3 })
    assert.deepEqual(seen, [{ req: request, peer: broker.peerId.toString() }])
  })

  it('brings back a refusal with its decline code and its reason', async () => {
    const { donor, offers } = await pair((req) => ({
      accept: false,
      reason: `deadline ${req.limits.deadlineMs ?? 0} ms is above this donor's 1000 ms`,
      code: 'limits',
      hasModule: false,
      freeSlots: 2
    }))
    const conn = nodes[1].getConnections(donor.peerId)[0]
    const answer = await offers.offer(conn, request)
    assert.deepEqual(answer, { accept: false, reason: "deadline 5000 ms is above this donor's 1000 ms", code: 'limits', hasModule: false, freeSlots: 2 })
  })

  it('brings back a refusal without a code from a donor that sends none (an older version)', async () => {
    const { donor, offers } = await pair(() => ({ accept: false, reason: 'busy: all 1 slot(s) in use', hasModule: false, freeSlots: 0 }))
    const answer = await offers.offer(donor.peerId, request)
    assert.equal(answer.accept, false)
    assert.equal(answer.code, undefined)
  })

  it('refuses with the internal-error code when the donor\'s decision throws, and logs the cause', async () => {
    const { donor, offers } = await pair(() => { throw new Error('slot table corrupted') })
    const answer = await offers.offer(donor.peerId, request)
    assert.equal(answer.accept, false)
    assert.equal(answer.code, 'internal-error')
    assert.ok(logs.lines.some(l => l.includes('slot table corrupted')))
  })

  it('fails clearly against a node that does not take offers', async () => {
    const { broker } = await pair(() => ({ accept: true, hasModule: false, freeSlots: 1 }))
    const other = await createTestNode({ services: { offer: offer() } })
    nodes.push(other)
    await broker.dial(other.getMultiaddrs()[0])
    await assert.rejects((broker.services.offer as OfferService).offer(other.peerId, request), (err: unknown) => {
      assert.ok(err instanceof ProtocolRequestError, String(err))
      assert.equal(err.code, 'PROTOCOL_REQUEST_FAILED')
      assert.match(err.message, new RegExp(`/worldcompute/offer/1.0.0 to ${other.peerId.toString()} failed`))
      return true
    })
  })

  it('times out when the donor does not answer', async () => {
    let release = (): void => {}
    const never = new Promise<OfferResponse>(resolve => { release = () => { resolve({ accept: false, hasModule: false, freeSlots: 0 }) } })
    const { donor, offers } = await pair(async () => await never, 200)
    await assert.rejects(offers.offer(donor.peerId, request), (err: unknown) => {
      assert.ok(err instanceof ProtocolTimeoutError, String(err))
      assert.equal(err.code, 'PROTOCOL_TIMEOUT')
      return true
    })
    release()
  })

  it('drops a malformed offer with one log line and keeps answering', async () => {
    const { donor, broker, offers } = await pair(() => ({ accept: true, hasModule: false, freeSlots: 1 }))
    const stream = await broker.dialProtocol(donor.peerId, OFFER_PROTOCOL)
    const framed = new FramedStream(stream, { maxFrameBytes: 8192, maxBufferBytes: 65536 })
    await framed.writeFrame(bytesOf('this is not cbor at all'), {})
    await stream.close()
    const line = await waitFor('the donor to log the bad offer', () => logs.lines.find(l => l.includes('code=MALFORMED_MESSAGE')))
    assert.match(line, new RegExp(`peer=${shortPeerId(broker.peerId.toString())}`))
    assert.match(line, /protocol=\/worldcompute\/offer\/1\.0\.0/)
    assert.equal((await offers.offer(donor.peerId, request)).accept, true)
  })
})
