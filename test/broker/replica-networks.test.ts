import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { networkOf, UNOBSERVED } from '../../src/broker/replica-networks.ts'
import { ExecutorRecords, MAX_RECORDS, NETWORK_TTL_MS } from '../../src/broker/executor-records.ts'
import { charged, failureCode, misbehaved } from '../../src/broker/attempts.ts'

describe('replica networks', () => {
  it('addresses in one IPv4 /24 or one IPv6 /48 are one network; the next ones are not', () => {
    assert.equal(networkOf('203.0.113.10', 'a'), networkOf('203.0.113.250', 'b'))
    assert.notEqual(networkOf('203.0.113.10', 'a'), networkOf('203.0.114.10', 'b'))
    assert.equal(networkOf('2001:db8:1:2::5', 'a'), networkOf('2001:db8:1:ffff::9', 'b'))
    assert.notEqual(networkOf('2001:db8:1::5', 'a'), networkOf('2001:db8:2::5', 'b'))
    // an IPv4-mapped IPv6 address is the IPv4 address
    assert.equal(networkOf('::ffff:203.0.113.7', 'a'), networkOf('203.0.113.10', 'b'))
  })

  it('prefixes are configurable, e.g. /32 and /128 for a lab or a private deployment', () => {
    const exact = { ipv4: 32, ipv6: 128 }
    assert.notEqual(networkOf('203.0.113.10', 'a', exact), networkOf('203.0.113.11', 'b', exact))
    assert.equal(networkOf('203.0.113.10', 'a', exact), networkOf('203.0.113.10', 'b', exact))
    assert.equal(networkOf('10.1.2.3', 'a', { ipv4: 16, ipv6: 48 }), 'ip4:10.1.0.0/16')
  })

  it('loopback peers are each their own network; an unobserved address is the one shared unobserved network', () => {
    assert.notEqual(networkOf('127.0.0.1', 'a'), networkOf('127.0.0.1', 'b'))
    assert.notEqual(networkOf('::1', 'a'), networkOf('::1', 'b'))
    assert.equal(networkOf(undefined, 'a'), UNOBSERVED)
    assert.equal(networkOf('not an address', 'a'), UNOBSERVED)
  })
})

describe('executor records', () => {
  it('an executor never seen ranks between one with agreeing results and one that lost a vote', () => {
    const r = new ExecutorRecords()
    r.resulted('good')
    r.voted('good', true)
    r.resulted('liar')
    r.voted('liar', false)
    assert.ok(r.compare('good', 'new') < 0)
    assert.ok(r.compare('new', 'liar') < 0)
    assert.ok(r.standing('liar').reliability < 0.2)
  })

  it('an invalid receipt weighs far more than an honest failure', () => {
    const r = new ExecutorRecords()
    r.failed('crashed', false)
    r.failed('forger', true)
    assert.ok(r.compare('crashed', 'forger') < 0)
    assert.equal(r.standing('forger').invalid, 1)
  })

  it('between equally reliable executors a clearly faster answer ranks first; a small difference does not count', () => {
    const r = new ExecutorRecords()
    r.answered('fast', 20)
    r.answered('slow', 400)
    r.answered('alike', 25)
    assert.ok(r.compare('fast', 'slow') < 0)
    assert.equal(r.compare('fast', 'alike'), 0)
  })

  it('an observed network is reused for a minute, then looked up again', () => {
    let now = 0
    const r = new ExecutorRecords(() => now)
    r.located('a', 'ip4:203.0.113.0/24')
    assert.equal(r.network('a'), 'ip4:203.0.113.0/24')
    now += NETWORK_TTL_MS
    assert.equal(r.network('a'), undefined)
  })

  it('keeps at most MAX_RECORDS executors, forgetting the least recently seen', () => {
    const r = new ExecutorRecords()
    r.failed('first', true)
    for (let i = 0; i < MAX_RECORDS; i++) r.answered(`p${i}`, 1)
    assert.equal(r.standing('first').invalid, 0, 'the oldest record went first')
    assert.equal(r.standing(`p${MAX_RECORDS - 1}`).reliability > 0.5, true)
  })
})

describe('attempt accounting', () => {
  it('misbehaviour is told by the failure code and never charged to the replica\'s budget', () => {
    const tasks = [
      { state: 'failed' as const, failure: 'RECEIPT_INVALID: donor X answered with a receipt signed by another key' },
      { state: 'failed' as const, failure: 'MALFORMED_MESSAGE: malformed dispatch result: field "status" …' },
      { state: 'failed' as const, failure: 'DISPATCH_FAILED: stream reset' },
      { state: 'failed' as const, failure: 'EXECUTOR_CRASHED: sandbox process exited' },
      { state: 'done' as const, failure: null }
    ]
    assert.equal(failureCode(tasks[0]), 'RECEIPT_INVALID')
    assert.deepEqual(tasks.map(misbehaved), [true, true, false, false, false])
    assert.equal(charged(tasks), 2)
  })
})
