import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { DialRecorder } from '../../src/net/dial-recorder.ts'
import { DialTelemetry } from '../../src/net/telemetry.ts'
import { createLogger } from '../../src/log/logger.ts'
import type { Connection } from '@libp2p/interface'

/** A transport manager whose every dial is refused, as a closed port refuses it. */
function refusingTransports (): { dial: (ma: Multiaddr) => Promise<Connection> } {
  return {
    dial: async (ma) => {
      throw Object.assign(new Error(`connect ECONNREFUSED ${ma.toString()}`), { code: 'ECONNREFUSED' })
    }
  }
}

async function recordOneDial (target: string): Promise<ReturnType<DialTelemetry['recent']>[number]> {
  const telemetry = new DialTelemetry()
  const recorder = new DialRecorder(telemetry, createLogger('test.dial'))
  const transports = refusingTransports()
  recorder.install(transports)
  await assert.rejects(transports.dial(multiaddr(target)))
  const [record] = telemetry.recent()
  assert.ok(record != null, 'the dial was recorded')
  return record
}

describe('dial records name the IP family', () => {
  it('an IPv6 address is recorded as ip6', async () => {
    const r = await recordOneDial('/ip6/::1/tcp/9/p2p/12D3KooWGvdtpGj2EWhKEukHYaHEdK7BTGXyivp27nDq4ChkZwHk')
    assert.equal(r.family, 'ip6')
    assert.equal(r.outcome, 'failure')
  })

  it('an IPv4 address is recorded as ip4', async () => {
    const r = await recordOneDial('/ip4/127.0.0.1/tcp/9')
    assert.equal(r.family, 'ip4')
  })

  it('an address by name has no family key at all', async () => {
    const r = await recordOneDial('/dns4/relay.example/tcp/443/tls/ws')
    assert.equal('family' in r, false)
  })

  it('a circuit takes the family of its relay hop', async () => {
    const r = await recordOneDial('/ip6/2001:db8::1/tcp/4001/p2p/12D3KooWGvdtpGj2EWhKEukHYaHEdK7BTGXyivp27nDq4ChkZwHk/p2p-circuit/p2p/12D3KooWDKR691PijxkoxuksHxMaCdJVJKC6e9BSQSSSgjvxTL7e')
    assert.equal(r.family, 'ip6')
    assert.equal(r.transport, 'circuit')
  })
})
