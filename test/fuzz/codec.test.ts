import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import * as dagCbor from '@ipld/dag-cbor'
import { ProtocolViolationError } from '../../src/protocols/errors.ts'
import { decodeNatInfo } from '../../src/protocols/nat-info/nat-info.ts'
import { decodeRelayInfo } from '../../src/protocols/relay-info/relay-info.ts'
import { assertClean, runTarget } from './harness.ts'
import { FUZZ_SEED } from './seed.ts'
import { codecTargets } from './targets/codec.ts'

/** Decoders are cheap: 300 inputs each keeps the nineteen of them around two seconds. */
const RUNS = 300

describe('fuzz: wire decoders', () => {
  for (const target of codecTargets) {
    it(`${target.name} returns a message or throws its named error, bounded in time, on ${RUNS} inputs`, async () => {
      assertClean(await runTarget(target, { seed: FUZZ_SEED, numRuns: RUNS }))
    })
  }
})

/** Inputs the long run found, kept as plain cases so they stay fixed whatever the generators become. */
describe('fuzz findings: decoders', () => {
  it('refuses a nat-info answer whose version is a map with a "toString" key as a protocol violation', () => {
    const bytes = dagCbor.encode({ v: [{ toString: 0 }], mapping: 'none', filtering: 'unknown', udp: 'yes', webrtc: false })
    assert.throws(() => decodeNatInfo(bytes), (err: unknown) => err instanceof ProtocolViolationError && err.code === 'PROTOCOL_VIOLATION')
  })

  it('refuses a relay-info answer whose version is such a map as a protocol violation', () => {
    const bytes = dagCbor.encode({ v: [{ toString: 0 }], tls: [] })
    assert.throws(() => decodeRelayInfo(bytes), (err: unknown) => err instanceof ProtocolViolationError && err.code === 'PROTOCOL_VIOLATION')
  })

  it('reads a relay certificate whose subject and issuer are maps as one without names', () => {
    const fingerprint256 = Array(32).fill('AB').join(':')
    const info = decodeRelayInfo(dagCbor.encode({ v: 1, tls: [{ fingerprint256, subject: { toString: 1 }, issuer: 7 }] }))
    assert.deepEqual(info.tls, [{ fingerprint256, subject: '', issuer: '' }])
  })
})
