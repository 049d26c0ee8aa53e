/**
 * The instrumented bytes are part of what replicas agree on (the fuel they
 * count depends on them), so a change to the injector that is meant to be a
 * refactoring must leave them identical. The hashes below were recorded from
 * the injector before its functions were split; a deliberate change to the
 * output must bump METER_VERSION and record them again. meter/2 changed no
 * byte of ordinary code: it charges table instructions per element (no
 * fixture has one) and host calls per byte (outside the module), and it
 * bounds a table's maximum (control-flow.wasm declares none). meter/4 keeps
 * the fuel counter in a local of each function between calls (every body
 * changes), with the same count for runs that end well or out of fuel.
 * meter/5 copies straight leaves as written, charged by their callers
 * (straight-leaves.ts), and counts no call depth for them.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { METER_VERSION, instrumentModule, type InstrumentOptions } from '../../src/executor/instrument.ts'

const FIXTURES = new URL('../fixtures/wasm/', import.meta.url)

const TIGHT: InstrumentOptions = { maxMemoryPages: 256, maxCallDepth: 10_000 }
const LOOSE: InstrumentOptions = { maxMemoryPages: 65_536, maxCallDepth: 1 }

/** fixture → [sha256 with TIGHT, sha256 with LOOSE] of the instrumented bytes */
const RECORDED: Record<string, [string, string]> = {
  'bad-wasi-signature.wasm': ['9af96e606f6d315042192ec723732302d75414872956357666a0c13367e374d6', 'd61a4afd1e3c8dfec5025f18527351fcc4fc06a7f55f286efcb2199a91913758'],
  'clock-random.wasm': ['2264f7e5c74ec45ff25b2c79625bb4446ea3b9e88c8e8c9e54d1773eec8c600b', '5b2540d272aa24f558937ff754b73f3d3b286ae875baaea19dd4f38827a5f4d0'],
  // its table declares no maximum, so the rewrite gives it one (moduleLimits.maxTableEntries); its code is metered as before
  'control-flow.wasm': ['60c9424deba417db8564435a15247ee55e97cc27f974189e894cfdfd0c984acd', '7d09a7d176acfbda2c351098badedf645a0f3c7e0009639e15eb26f5d471269e'],
  'deep-recursion.wasm': ['2d6a2862179685492712c9b584a427524addbd8e13ce5b7e2d08ab098016b8d9', '4ed1371e940ba0d89348ed7ce460189d52f69a10e6d3c988e49eca918f7040c9'],
  'exit-code.wasm': ['6479448703d89e51134991dc1d7e43e7e8ff98a6d7744fa81e3c461be8b2c0a8', 'eebcd1ec37fb69113e1a949a7bb4ce3721beffd692fe7ae38dab675fcc4b0732'],
  'forbidden-import.wasm': ['e61531d468c1b4571bc71975c43bac8a606f64ef5826cc9e22821ebaf1837faa', '94ac09c99289d511e7248143f39eee614b6a473a894c0c681e208ef66b6a4cf4'],
  'fuel-bulk.wasm': ['201cb99dda3d47606f943216698e3be0d3310469e72820eeb9a6d90bbbf5e3e8', '77ee281e78f94b01d4c051fac293bf144078b0d548384be202f2a3c10cc590b6'],
  'fuel-exact.wasm': ['255562cbd121151b64fc23159f638ce318578cd3fe5e1de9d7201020a74ceb58', '5020d2fa8ad921d75314eb1bdffbff49a8109ec4725604e153770016d3438055'],
  'hello.wasm': ['c22094f292b445d65633851556133c2dccfd63818089a8e954efbeae90b8cab2', '608719a4950f8a75c556dc9eee21e4c0d7aa71dc56c440d6a027d644db29522c'],
  'huge-output.wasm': ['62d89367df10a7c43dad0beb53dd6b25b36ab9c539fb65e4a5c46cafd7c3758e', 'e6dc9ec059ac23dff1cf89b67b30eca3c0827e34029b55e7f9c6fd750028525c'],
  'imported-global.wasm': ['d858f570a1e9919fe68068216f3f92a486c11c2c58e8b2e09e7333de6da58106', '0658997f92a5e58eed55ebf61a1ead621a1d55909c08037e93b0c933873c8c01'],
  'infinite-loop.wasm': ['6670bc08e72c059bdba81139c84c9595f7a65adb9b9144323203d43afba0a29d', 'c9d05195186449a4c9235554a90919ad07bf9890694124e61400670e4f533c53'],
  'malloc-until-fail.wasm': ['c854869e7c2220834b952ffef8df7a009bf0c0db049d7cda195a4912b16ed124', '22fb5d7ac340566a6d00d68c72b556449855a08e3d742c47ca2127aadc4fc013'],
  'memory-grow.wasm': ['b8b1855b5b6b5453e544b50d54d6f21b29cccef4197c92b818710af019fe2f08', '3cd77627973be114c1b92af7fbb56b24db0956b507885a4d4ce8ff9134e2986f'],
  'memory-max.wasm': ['97adbff90c9eed5e6340fcb507be76bac5c963c983c32e5e57d1a3ae9bb534b2', 'd3c6fc73281b0ad6de780c559f91f0c054cf3c54a8f7076fa285f7160a7517b9'],
  'no-start.wasm': ['693bb3495c6d9f5d1b7998cf21ed5c043f9c156ef2b5d96d1c1bacf06f3cde50', '2fc501a24d254c2fa2e7bfd7725a708b6a4d7aca1eca250a1b81b86f1e0f7e8c'],
  'primes.wasm': ['46f9050f9f9c9c3821c48bfb0e2654bdf159892e1ffaaab04578fec3db1e151e', '2cafe859083b8cf10d19aacb63416178bd845fd83990ee647ad22a626f234891'],
  'recursion.wasm': ['6be73b92bfc25ddf4c94fbc0ce8e074c53bc54c6cfac9032df95999645c0d485', '298a7be6e2889cfb69c3d52f7a9c9ab93244f72202d125dc04656ae125899db9'],
  'start-section.wasm': ['0bf8b378d213dea43ed691b3f3342cd86fac2302ca06ec70fd464f04d937371c', '820b9f9088f1d23f37fb57b8ea1f7d6d8eb2c1be69d677230f568ed8708b7fed'],
  'trap-divide-by-zero.wasm': ['4356b2062f08fcfed6fdc6f98a60da6fbf5345c52f29d88b618bbb0c7759fe8c', 'dbedbbdf5dfc3c6d16a0621bb2df871b472f6a83fc66f674529ae9800ee7965a'],
  'trap-unreachable.wasm': ['77718d0c1d5996bfa09d5010b9314cb69427b1439366535d1250535df4d10ccd', 'ff4f5fb4a53fd3ab2822663bfdcf7ddedeb89c023d018720a9c68e374f3577cb'],
  'unknown-wasi-import.wasm': ['38212eef006582ef9e7e3694e5fd3c8eaceb4cd9e6b4a41e84e401f8ce049c2a', '2dc1e95e849c710f09dd23be1eeef13e0966a8f2e309e207a07a5aa919744def'],
  'upper.wasm': ['f20ae04bf2a631b7f2f168edb66bf9d6685a6be0d380ebe6ec3b405616063dce', '2b9e0e547100c1f5e41b9e631a627c041d115af716ea386641c3d0d25e582741']
}

/**
 * A module no fixture covers: a function of type (i32) -> (i32, i32), whose
 * body wrapper needs a block type [] -> [i32, i32] added to the type section;
 * no global or export section (the injector must add both); a custom section
 * at the end.
 */
const MULTI_VALUE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  0x01, 0x0a, 0x02, 0x60, 0x01, 0x7f, 0x02, 0x7f, 0x7f, 0x60, 0x00, 0x00, // types: (i32)->(i32,i32), ()->()
  0x03, 0x03, 0x02, 0x00, 0x01, // functions: type 0, type 1
  0x0a, 0x12, 0x02,
  0x07, 0x00, 0x20, 0x00, 0x20, 0x00, 0x0f, 0x0b, // local.get 0; local.get 0; return (so not a straight leaf: it gets the wrapper)
  0x08, 0x00, 0x41, 0x00, 0x10, 0x00, 0x1a, 0x1a, 0x0b, // i32.const 0; call 0; drop; drop
  0x00, 0x04, 0x03, 0x61, 0x62, 0x63 // custom section "abc", empty
])
const MULTI_VALUE_RECORDED: [string, string] = ['bfbb195071ca21fa87255a4e9d3bdd4864da9971784f2c5966b25afd039531c7', '936b52e1272123c59cbb948fb5555cb994a9137c46f4c0dea6b15d751d661e33']

function sha256 (bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

describe(`the instrumented bytes (${METER_VERSION})`, () => {
  for (const [name, [tight, loose]] of Object.entries(RECORDED)) {
    it(`of ${name} are the ones recorded for both memory caps and depth limits`, () => {
      const bytes = readFileSync(new URL(name, FIXTURES))
      assert.equal(sha256(instrumentModule(bytes, TIGHT).bytes), tight)
      assert.equal(sha256(instrumentModule(bytes, LOOSE).bytes), loose)
    })
  }

  it('of a multi-value module without globals or exports are the ones recorded, and compile', () => {
    assert.ok(WebAssembly.validate(MULTI_VALUE), 'the hand-written module is valid')
    const tight = instrumentModule(MULTI_VALUE, TIGHT).bytes
    assert.ok(WebAssembly.validate(tight), 'the instrumented module is valid')
    assert.equal(sha256(tight), MULTI_VALUE_RECORDED[0])
    assert.equal(sha256(instrumentModule(MULTI_VALUE, LOOSE).bytes), MULTI_VALUE_RECORDED[1])
  })
})
