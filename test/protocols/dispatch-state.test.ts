import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ModuleCache } from '../../src/protocols/dispatch/module-cache.ts'
import { TaskMemo } from '../../src/protocols/dispatch/task-memo.ts'

describe('module cache', () => {
  it('evicts the least recently used modules to stay within its byte bound', () => {
    const cache = new ModuleCache(100)
    cache.put('a', new Uint8Array(40))
    cache.put('b', new Uint8Array(40))
    assert.ok(cache.get('a') != null, 'reading a makes b the oldest')
    cache.put('c', new Uint8Array(40))
    assert.deepEqual([cache.has('a'), cache.has('b'), cache.has('c')], [true, false, true])
    assert.equal(cache.bytes, 80)
  })

  it('does not keep a module larger than the whole cache', () => {
    const cache = new ModuleCache(100)
    cache.put('a', new Uint8Array(10))
    cache.put('huge', new Uint8Array(101))
    assert.equal(cache.has('huge'), false)
    assert.equal(cache.has('a'), true)
  })
})

describe('task memo', () => {
  it('keeps finished results within its count bound, oldest dropped first', async () => {
    const memo = new TaskMemo<Uint8Array>({ maxEntries: 2, maxBytes: 1000, sizeOf: (v) => v.byteLength })
    for (const id of ['t1', 't2', 't3']) {
      await memo.add(id, id, Promise.resolve(new Uint8Array(1))).promise
    }
    await Promise.resolve()
    assert.equal(memo.get('t1'), undefined)
    assert.ok(memo.get('t2') != null && memo.get('t3') != null)
  })

  it('drops results to stay within its byte bound but keeps runs in flight', async () => {
    const memo = new TaskMemo<Uint8Array>({ maxEntries: 10, maxBytes: 100, sizeOf: (v) => v.byteLength })
    let finish = (_v: Uint8Array): void => {}
    memo.add('running', 'f', new Promise<Uint8Array>(resolve => { finish = resolve }))
    await memo.add('big1', 'f', Promise.resolve(new Uint8Array(60))).promise
    await memo.add('big2', 'f', Promise.resolve(new Uint8Array(60))).promise
    await Promise.resolve()
    assert.equal(memo.get('big1'), undefined)
    assert.ok(memo.get('big2')?.settled)
    assert.equal(memo.get('running')?.settled, false)
    finish(new Uint8Array(1))
  })

  it('forgets a run that failed, so a retry can run it again', async () => {
    const memo = new TaskMemo<Uint8Array>({ maxEntries: 10, maxBytes: 100, sizeOf: (v) => v.byteLength })
    const entry = memo.add('t', 'f', Promise.reject(new Error('donor stopping')))
    await assert.rejects(entry.promise, /donor stopping/)
    assert.equal(memo.get('t'), undefined)
  })
})
