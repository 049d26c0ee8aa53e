/**
 * The cancel protocol between two real libp2p nodes on 127.0.0.1: what the
 * broker's side keeps of a donor's answer.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { cancel, type CancelService } from '../../src/protocols/cancel/index.ts'
import type { CancelRequest } from '../../src/protocols/cancel/index.ts'
import { createTestNode, perTestNodesAndLogs } from './helpers.ts'
import type { Libp2p } from 'libp2p'

type Node = Libp2p<Record<string, any>>

describe('cancel protocol', () => {
  const { nodes, logs } = perTestNodesAndLogs<Node>()

  /** A broker and a donor whose runner answers `answer` whatever it is asked; the runner's requests are kept. */
  async function pair (answer: (req: CancelRequest) => { stopped: string[], dropped: string[], unknown: string[] }): Promise<{ broker: Node, donor: Node, asked: CancelRequest[] }> {
    const asked: CancelRequest[] = []
    const donor = await createTestNode({ services: { cancel: cancel({ cancelTasks: (req) => { asked.push(req); return answer(req) } }) } })
    const broker = await createTestNode({ services: { cancel: cancel() } })
    nodes.push(donor, broker)
    return { broker, donor, asked }
  }

  it('hands the donor the task IDs and returns its answer about them', async () => {
    const { broker, donor, asked } = await pair((req) => ({ stopped: [req.taskIds[0]], dropped: [req.taskIds[1]], unknown: req.taskIds.slice(2) }))
    const conn = await broker.dial(donor.getMultiaddrs()[0])
    const got = await (broker.services.cancel as CancelService).cancel(conn, { taskIds: ['j/0', 'j/1', 'j/2'] })
    assert.deepEqual(got, { stopped: ['j/0'], dropped: ['j/1'], unknown: ['j/2'] })
    assert.deepEqual(asked, [{ taskIds: ['j/0', 'j/1', 'j/2'] }])
    assert.equal(logs.lines.filter(l => l.includes('not asked about')).length, 0)
  })

  it('keeps of an answer only the tasks it asked about, each once, and logs the rest', async () => {
    // a donor claiming to have stopped tasks nobody asked about, and one task twice: the broker counts what it keeps
    const { broker, donor } = await pair(() => ({ stopped: ['j/0', 'other/7', 'j/0'], dropped: ['j/0', 'j/1'], unknown: ['ghost'] }))
    const conn = await broker.dial(donor.getMultiaddrs()[0])
    const got = await (broker.services.cancel as CancelService).cancel(conn, { taskIds: ['j/0', 'j/1', 'j/2'] })
    assert.deepEqual(got, { stopped: ['j/0'], dropped: ['j/1'], unknown: [] })
    const warned = logs.lines.filter(l => l.includes('not asked about'))
    assert.equal(warned.length, 1, logs.lines.join('\n'))
    assert.match(warned[0], new RegExp(`${donor.peerId.toString()} names 4 task ID`))
  })
})
