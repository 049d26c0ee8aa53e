import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { parseAddr } from '../../src/net/parse-addr.ts'

describe('parseAddr', () => {
  it('parses an address this version knows', () => {
    assert.equal(parseAddr('/ip4/10.1.0.3/tcp/4001')?.toString(), '/ip4/10.1.0.3/tcp/4001')
  })

  it('gives undefined, not a throw, for what does not parse', () => {
    for (const text of ['not an address', '/ip4/300.1.2.3/tcp/1', '/no-such-protocol/1']) {
      assert.equal(parseAddr(text), undefined, text)
    }
  })
})
