import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { GraceQueue } from '../../src/relay/grace-queue.ts'

const settle = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

describe('GraceQueue', () => {
  it('hands over each peer once its grace is over, oldest first', async () => {
    const expired: string[] = []
    const q = new GraceQueue({ graceMs: 20, onExpired: (p) => { expired.push(p) } })
    q.add('a')
    q.add('b')
    await settle(5)
    q.add('c')
    assert.deepEqual(expired, [])
    await settle(60)
    assert.deepEqual(expired, ['a', 'b', 'c'])
    assert.equal(q.size, 0)
  })

  it('restarts the grace of a peer added again', async () => {
    let now = 0
    const expired: string[] = []
    const q = new GraceQueue({ graceMs: 20, onExpired: (p) => { expired.push(p) }, now: () => now })
    q.add('a')
    q.add('b')
    now = 15
    q.add('a')
    now = 25
    await settle(30)
    assert.deepEqual(expired, ['b'], 'a was re-added at 15: due at 35')
    now = 40
    await settle(30)
    assert.deepEqual(expired, ['b', 'a'])
  })

  it('forgets every peer when cleared', async () => {
    const expired: string[] = []
    const q = new GraceQueue({ graceMs: 10, onExpired: (p) => { expired.push(p) } })
    q.add('a')
    q.clear()
    await settle(30)
    assert.deepEqual(expired, [])
  })
})
