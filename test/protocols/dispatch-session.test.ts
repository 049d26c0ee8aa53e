import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { dispatch, DISPATCH_PROTOCOL } from '../../src/protocols/dispatch/index.ts'
import { DISPATCH_SESSION_PROTOCOL } from '../../src/protocols/dispatch/constants.ts'
import { encodeDispatchHeader } from '../../src/codec/messages.ts'
import { FramedStream } from '../../src/protocols/framing.ts'
import { admitAll, bytesOf, createTestNode, fakeExecutor, MODULE, MODULE_CID, task, text, perTestNodesAndLogs } from './helpers.ts'
import { waitFor } from '../helpers/wait.ts'
import type { DispatchInit, DispatchService } from '../../src/protocols/dispatch/index.ts'
import type { Libp2p } from 'libp2p'
import type { Connection } from '@libp2p/interface'

type Node = Libp2p<Record<string, any>>

/** The streams of `protocol` open on `conn` (both directions), the ones that are still open. */
function openStreams (conn: Connection, protocol: string): number {
  return conn.streams.filter(s => s.protocol === protocol && s.status === 'open').length
}

describe('dispatch sessions (one stream, many tasks)', () => {
  const { nodes, logs } = perTestNodesAndLogs<Node>()

  async function pair (donorInit: DispatchInit = {}, brokerInit: DispatchInit = {}): Promise<{ donor: Node, conn: Connection, donorConn: () => Connection, broker: DispatchService, exec: ReturnType<typeof fakeExecutor> }> {
    const exec = fakeExecutor()
    const donor = await createTestNode({ services: { dispatch: dispatch({ runTask: exec.runTask, admit: admitAll, ...donorInit }) } })
    const brokerNode = await createTestNode({ services: { dispatch: dispatch(brokerInit) } })
    nodes.push(donor, brokerNode)
    const conn = await brokerNode.dial(donor.getMultiaddrs()[0])
    const donorConn = (): Connection => donor.getConnections(brokerNode.peerId)[0]
    return { donor, conn, donorConn, broker: brokerNode.services.dispatch as DispatchService, exec }
  }

  it('sends tasks to one donor one after another on a single stream', async () => {
    const { conn, donorConn, broker, exec } = await pair()
    for (let i = 0; i < 3; i++) {
      const result = await broker.dispatch(conn, task(`job-s/${i}`, bytesOf(`task ${i}`)))
      assert.equal(text(result.stdout), `TASK ${i}\nargs=--shout`)
      assert.equal(result.receiptVerified, true)
    }
    assert.equal(exec.calls.length, 3)
    assert.equal(openStreams(conn, DISPATCH_SESSION_PROTOCOL), 1, 'the broker kept one session stream')
    assert.equal(openStreams(donorConn(), DISPATCH_SESSION_PROTOCOL), 1, 'the donor answered all three on one stream')
    assert.equal(openStreams(conn, DISPATCH_PROTOCOL), 0)
  })

  it('opens a stream per task in flight at once, and keeps each for the next tasks', async () => {
    const { conn, broker, exec } = await pair()
    await Promise.all([0, 1].map(async i => await broker.dispatch(conn, task(`job-c/${i}`, bytesOf(`parallel ${i}`)))))
    assert.equal(openStreams(conn, DISPATCH_SESSION_PROTOCOL), 2)
    await Promise.all([2, 3].map(async i => await broker.dispatch(conn, task(`job-c/${i}`, bytesOf(`parallel ${i}`)))))
    assert.equal(openStreams(conn, DISPATCH_SESSION_PROTOCOL), 2, 'no stream opened for the second pair')
    assert.equal(exec.calls.length, 4)
  })

  it('closes a stream left idle for idleStreamMs on both sides', async () => {
    const { conn, donorConn, broker } = await pair({}, { idleStreamMs: 100 })
    await broker.dispatch(conn, task('job-i/0', bytesOf('idle after')))
    await waitFor('the idle stream closed on the broker', () => openStreams(conn, DISPATCH_SESSION_PROTOCOL) === 0 ? true : undefined, 5_000)
    await waitFor('the session ended on the donor', () => openStreams(donorConn(), DISPATCH_SESSION_PROTOCOL) === 0 ? true : undefined, 5_000)
    assert.equal(logs.lines.filter(l => l.includes('WARN')).length, 0, `no warning for a session that ended between tasks: ${logs.lines.join('\n')}`)
  })

  it('sends a task again on a new stream when the donor has closed the kept one', async () => {
    // the donor gives up on idle sessions before the broker does: the kept stream is dead when the next task comes
    const { conn, broker, exec } = await pair({ sessionIdleMs: 100 }, { idleStreamMs: 60_000 })
    await broker.dispatch(conn, task('job-k/0', bytesOf('first')))
    await new Promise(resolve => setTimeout(resolve, 400))
    const result = await broker.dispatch(conn, task('job-k/1', bytesOf('second')))
    assert.equal(text(result.stdout), 'SECOND\nargs=--shout')
    assert.equal(exec.calls.length, 2, 'each task ran once')
  })

  it('sends a task again on a new stream when the kept one breaks under it', async () => {
    const { conn, donorConn, broker, exec } = await pair()
    await broker.dispatch(conn, task('job-r/0', bytesOf('first')))
    // the donor's side goes away; the broker still sees its kept stream open when it takes it
    donorConn().streams.find(s => s.protocol === DISPATCH_SESSION_PROTOCOL)?.abort(new Error('test: session reset'))
    const result = await broker.dispatch(conn, task('job-r/1', bytesOf('second')))
    assert.equal(text(result.stdout), 'SECOND\nargs=--shout')
    assert.equal(exec.calls.length, 2, 'each task ran once')
  })

  it('warns about a malformed header that follows a task on a session stream, and resets the stream', async () => {
    const exec = fakeExecutor()
    const donor = await createTestNode({ services: { dispatch: dispatch({ runTask: exec.runTask, admit: admitAll }) } })
    const brokerNode = await createTestNode({})
    nodes.push(donor, brokerNode)
    const stream = await brokerNode.dialProtocol(donor.getMultiaddrs()[0], DISPATCH_SESSION_PROTOCOL)
    const io = new FramedStream(stream, { maxFrameBytes: 256 * 1024, maxBufferBytes: 1024 * 1024 })
    const input = bytesOf('one task')
    const t = task('job-m/0', input)
    const header = encodeDispatchHeader({ jobId: t.jobId, taskId: t.taskId, moduleCid: MODULE_CID, inputCid: t.inputCid, args: t.args, env: t.env, limits: t.limits, moduleSize: MODULE.byteLength, inputSize: input.byteLength, sendsModule: true })
    await io.writeFrames([header, ...io.payloadFrames(MODULE), ...io.payloadFrames(input)], {})
    const answer = await io.readFrame('dispatch result', { signal: AbortSignal.timeout(10_000) })
    assert.ok(answer.byteLength > 0)
    const stdout = 'ONE TASK\nargs=--shout'
    assert.equal(text(await io.readPayload(stdout.length, 'stdout', { signal: AbortSignal.timeout(10_000) })), stdout)
    await io.readPayload(`module ${text(MODULE)}`.length, 'stderr', { signal: AbortSignal.timeout(10_000) })
    // the second "header" is not dag-cbor
    await io.writeFrame(new Uint8Array([0xff, 0xfe, 0x00]), {})
    const line = await waitFor('the donor to log the bad header', () => logs.lines.find(l => l.includes('code=MALFORMED_MESSAGE')))
    assert.match(line, /WARN/)
    assert.match(line, /protocol=\/worldcompute\/dispatch\/1\.1\.0/)
    await waitFor('the stream to be reset', () => stream.status !== 'open' ? true : undefined, 5_000)
    assert.equal(exec.calls.length, 1)
  })

  it('still dispatches, a stream per task, to a donor that answers only the one-task protocol', async () => {
    const { donor, conn, broker, exec } = await pair()
    await donor.unhandle(DISPATCH_SESSION_PROTOCOL)
    for (let i = 0; i < 2; i++) {
      const result = await broker.dispatch(conn, task(`job-o/${i}`, bytesOf(`old ${i}`)))
      assert.equal(text(result.stdout), `OLD ${i}\nargs=--shout`)
    }
    assert.equal(exec.calls.length, 2)
    await waitFor('the one-task streams closed', () => openStreams(conn, DISPATCH_PROTOCOL) === 0 ? true : undefined, 5_000)
    assert.equal(openStreams(conn, DISPATCH_SESSION_PROTOCOL), 0)
  })
})
