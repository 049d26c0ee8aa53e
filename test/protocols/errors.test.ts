import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { messageOf, ProtocolRequestError } from '../../src/protocols/errors.ts'

describe('messageOf', () => {
  it('names libp2p errors by their class and keeps our own sentences', () => {
    const e = new Error('The stream has been reset')
    e.name = 'StreamResetError'
    assert.equal(messageOf(e), 'StreamResetError: The stream has been reset')
    assert.match(messageOf(new ProtocolRequestError('/x/1.0.0', 'peer', e)), /^\/x\/1\.0\.0 to peer failed: StreamResetError/)
  })

  it('a DOM Event thrown as is says what it was, never "[object Event]"', () => {
    assert.equal(messageOf(new Event('abort')), 'a "abort" event with no error attached (aborted: the connection or stream under it went away?)')
    assert.equal(messageOf(new CustomEvent('close', { detail: 'remote closed' })), 'a "close" event with no error attached: remote closed')
    assert.equal(messageOf(42), '42')
  })
})
