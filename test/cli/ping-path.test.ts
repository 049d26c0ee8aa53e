import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { connectionPingUses } from '../../src/net/pinger.ts'

interface FakeConnection { name: string, status: 'open' | 'closing' | 'closed', direct: boolean, limits?: { bytes?: bigint } }

const relayed: FakeConnection = { name: 'relayed', status: 'open', direct: false, limits: { bytes: 1n } }
const webrtc: FakeConnection = { name: 'webrtc', status: 'open', direct: true }
const closing: FakeConnection = { name: 'closing', status: 'closing', direct: true }

describe('the path ping reports', () => {
  it('is the direct connection js-libp2p sends the ping on, even when the relayed one was opened first', () => {
    assert.equal(connectionPingUses([relayed, webrtc])?.name, 'webrtc')
  })

  it('is the relayed circuit when it is the only open connection', () => {
    assert.equal(connectionPingUses([closing, relayed])?.name, 'relayed')
  })

  it('is nothing when no connection is open', () => {
    assert.equal(connectionPingUses([closing]), undefined)
  })
})
