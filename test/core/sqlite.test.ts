import assert from 'node:assert/strict'
import { DatabaseSync } from 'node:sqlite'
import { describe, it } from 'node:test'
import { inTransaction } from '../../src/core/sqlite.ts'

function table (): DatabaseSync {
  const db = new DatabaseSync(':memory:')
  db.exec('CREATE TABLE t (v INTEGER NOT NULL)')
  return db
}

const values = (db: DatabaseSync): number[] => (db.prepare('SELECT v FROM t ORDER BY v').all() as Array<{ v: number }>).map(r => r.v)

describe('inTransaction', () => {
  it('commits every write and returns what the writes returned', () => {
    const db = table()
    const n = inTransaction(db, () => {
      db.prepare('INSERT INTO t VALUES (1)').run()
      db.prepare('INSERT INTO t VALUES (2)').run()
      return 2
    })
    assert.equal(n, 2)
    assert.equal(db.isTransaction, false)
    assert.deepEqual(values(db), [1, 2])
  })

  it('keeps none of the writes when one fails, and throws that error itself', () => {
    const db = table()
    const boom = new Error('boom')
    assert.throws(() => inTransaction(db, () => {
      db.prepare('INSERT INTO t VALUES (1)').run()
      throw boom
    }), (err: unknown) => err === boom)
    assert.throws(() => inTransaction(db, () => {
      db.prepare('INSERT INTO t VALUES (3)').run()
      db.prepare('INSERT INTO t VALUES (NULL)').run()
    }), /NOT NULL/)
    assert.equal(db.isTransaction, false)
    assert.deepEqual(values(db), [])
    // the connection is usable afterwards
    inTransaction(db, () => { db.prepare('INSERT INTO t VALUES (4)').run() })
    assert.deepEqual(values(db), [4])
  })
})
