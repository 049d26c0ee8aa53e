import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import * as dagCbor from '@ipld/dag-cbor'
import { ProtocolViolationError } from '../../src/protocols/errors.ts'
import { decodeNatInfo } from '../../src/protocols/nat-info/nat-info.ts'
import { decodeRelayInfo } from '../../src/protocols/relay-info/relay-info.ts'
import { decodeManifest } from '../../src/codec/manifest.ts'
import { rawCidString } from '../../src/codec/cid.ts'
import { MalformedMessageError } from '../../src/codec/errors.ts'
import { checkPreopens } from '../../src/executor/wasi-fs.ts'
import { assertClean, expectWithin, runTarget } from './harness.ts'
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

  it('checks a tree of 2,000 files 2,000 directories deep for paths under files without going quadratic in the depth', () => {
    // each path's ancestors looked up one by one took 11 s for this tree in checkPreopens (a hostile broker's dispatch)
    const deep = '/g' + '/a'.repeat(2000)
    const cid = rawCidString(new Uint8Array(0))
    const files = Array.from({ length: 2000 }, (_, i) => ({ path: `${deep}/${i}`, cid, size: 0 }))
    const bytes = dagCbor.encode({ dirs: [{ guest: '/g', files, emptyDirs: [] }] })
    let started = performance.now()
    assert.equal(decodeManifest(bytes).dirs[0].files.length, 2000)
    expectWithin(started, 3_000, 'decoding a deep manifest')
    started = performance.now()
    assert.equal(checkPreopens([{ guest: '/g', files: files.map(f => ({ path: f.path, data: new Uint8Array(0) })) }]), undefined)
    expectWithin(started, 3_000, 'checking deep preopens')
    // and the same depth with a file where a directory is: found
    const clash = dagCbor.encode({ dirs: [{ guest: '/g', files: [...files, { path: deep, cid, size: 0 }], emptyDirs: [] }] })
    assert.throws(() => decodeManifest(clash), (err: unknown) => err instanceof MalformedMessageError && err.field === 'dirs[0].files')
  })

  it('reads a relay certificate whose subject and issuer are maps as one without names', () => {
    const fingerprint256 = Array(32).fill('AB').join(':')
    const info = decodeRelayInfo(dagCbor.encode({ v: 1, tls: [{ fingerprint256, subject: { toString: 1 }, issuer: 7 }] }))
    assert.deepEqual(info.tls, [{ fingerprint256, subject: '', issuer: '' }])
  })
})
