/**
 * The instrumented bytes are part of what replicas agree on (the fuel they
 * count depends on them), so a change to the injector that is meant to be a
 * refactoring must leave them identical. The hashes below were recorded from
 * the injector before its functions were split; a deliberate change to the
 * output must bump METER_VERSION and record them again. meter/2 changed no
 * byte of ordinary code: it charges table instructions per element (no
 * fixture has one) and host calls per byte (outside the module), and it
 * bounds a table's maximum (control-flow.wasm declares none).
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
  'bad-wasi-signature.wasm': ['8e1577d95a04e812032242876ba2d5440053d365c61c01640dfd13bcee035477', '886629a5d5ae91f6766defdb17dd825920c115f292fea0c5d8c7bf39e1b65729'],
  'clock-random.wasm': ['25ba8cfd208fa1a35fa554aa893e178d01b196902e51ade08630d5021b3873c4', '1dbc8242fce6170ccf2980e8a8f5d29738514e573d89a33e4a3c275540d91303'],
  // its table declares no maximum, so the rewrite gives it one (moduleLimits.maxTableEntries); its code is metered as before
  'control-flow.wasm': ['adb77aabeae715a7b516316c55755ea014ac6c5030f73e22555b901cbc98b0bd', 'a7a473ebf1328f03ee695cc0f6e002a7e6543704e799aeddd74933a36d72f1c6'],
  'deep-recursion.wasm': ['6d47f9b043202535a2b7d243358848ea21c5c0abfdcdd2474b1db6c48318021e', '6bf547d2e049ec067742a047ef762b29944a086dcee811229a325f0d9e221802'],
  'exit-code.wasm': ['bd02b202065227632a555923b40275842b928f2651d06c681e599b1b05a01f80', '2fba7d7c98a33320df567e37eba5fe023e50e90a2e18aded6a26b70af0d1d25f'],
  'forbidden-import.wasm': ['11f00aaa8a6cd7be153c027156f8ce165883445751313d3286417f7be385d814', '5ad59ea943586b28db6884f1cadd1f1a3dc12d599243b574095948036f4dbb05'],
  'fuel-bulk.wasm': ['835d8dda805f02eb012f381e0b61afdb85777cad0d9000256bf206cc7de50911', '2374f8c23e760fa0d30e46c68b128c1e72919a198016cc8ff63377a211d006c7'],
  'fuel-exact.wasm': ['57ae8f077d9a117a38a484fa3142ce57bb8242febfdfaadeaba6151f821531b7', '3ef4f7bfbd26b7b6b785a392a910c530c37ea267355e05fe4a0216978b098934'],
  'hello.wasm': ['48e31dd2fe8a9b33975999d2e57c559d466cc0831ea93f9c53fbd6e23746084a', '987076e233de8b63733769875489a3974878d88db348f4722037dfc6b15dbd1c'],
  'huge-output.wasm': ['88939bd4a3bd416afbc52b6a96e2f279b06b750e26f61d71f78804d32295dae5', 'f1d73d538a33b4c956a79f28296394f6cd6794bfed2a829792dc3b66ce275282'],
  'imported-global.wasm': ['6f4b1d801728ccf5add1da4089c4662831e8fc3c28403534bed52f578cce007a', '02bade3809f71671d6df03e1cdfef40e14cd410397d34672a75018d747eb28d4'],
  'infinite-loop.wasm': ['0f53b9ec80a77bdbf8c974ffbffaba889134ee8945fdd2e7a9fa2df614be5a17', 'fec36c0e4f7fee6b7fa5806251816adad36e901439940944eeba297489abba78'],
  'malloc-until-fail.wasm': ['93aeeb6ed58da3f89b79baae25d87a97fc9ffa19e9995af35814bc28d5ddb85b', '41e4d8445cdede87a1d48f05b85b8065697aa399348579d8edd36712e81e215a'],
  'memory-grow.wasm': ['20d320383942f3bc7225cea42e9d2b9bcff9fab7c910d521067f7a8d33fcc43f', 'df110e55c8be9b1ebffd8f3a22686772929d0b79812811fd9fdc7a01ea497881'],
  'memory-max.wasm': ['6850de7f407c2b25c516a9c17cdb4ec2d28fdc49b00613c6d8ecbebc73e20e27', '170400b65e6953ad651df286bc3fa938ffbf6c902a35a9c8d85f4bc9df1457ba'],
  'no-start.wasm': ['8ad1c35aabad54550b905bee98b41eb45defbf4abe41fc5e624b81456299c517', '7f9151391275ea33d24faa23b7bf271b0e2c9bf86aaa0ed29674c7c93ab61d25'],
  'primes.wasm': ['95ef74bc8f23bf8ecc7269b7a31f25ad83ddecf34eccd2c6873e2c0603e216a4', '4a7ed4938273e8860eef7849ec6fd5bcdaeac2f4801d3b16ec3d6139d3d601d4'],
  'recursion.wasm': ['b92129d383d604f03e84d51149b32ab40716479ce37f2b71a15b87ef08c31115', '51145f314383de936b28853e2d0bec42896fd82301c0651a107694b9750c757b'],
  'start-section.wasm': ['0372b5fe8c25f915938b11d888e7ee447688fc525b5a3f29c13e4bbb3165a45c', '12cb4ea0b00267a22ecdf8633a57917cb944acb2794b0195bbef515be10bbebc'],
  'trap-divide-by-zero.wasm': ['ad016065ca23bd6017e487b1b4ce16cdb3d5f22fd8545b5221b8c35e6b319382', '74ae3f6cbfd7197a09a43f8333e8153791aece20fcbf9f0c76d079e57486608c'],
  'trap-unreachable.wasm': ['d2c540873bbea2485484230be102918c299818c7ec83466a922172df0a88abbf', '3ec3d5be9284f55ded06a7becce33424f6cd0db82715d84f05cdd33b1de663f5'],
  'unknown-wasi-import.wasm': ['45dcfeba1aa2c56d19b3a09be4168a8126cb11e55c955ec124462b5fa26e0144', '1b10bbb4d6abb7e39b62106fc3bc9bddf8bff7e8e4576de0fee54f4bc4fbd111'],
  'upper.wasm': ['fc9a7df54d71bf8e17691b4e8c2c209ce404d3d255b4f92d5f08e3409d80b0d7', '4c4adc96ffafae3d4b52e093e70fc9b8e7d5ddb3f1d8b9b81c76674a67477b28']
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
  0x0a, 0x11, 0x02,
  0x06, 0x00, 0x20, 0x00, 0x20, 0x00, 0x0b, // local.get 0; local.get 0
  0x08, 0x00, 0x41, 0x00, 0x10, 0x00, 0x1a, 0x1a, 0x0b, // i32.const 0; call 0; drop; drop
  0x00, 0x04, 0x03, 0x61, 0x62, 0x63 // custom section "abc", empty
])
const MULTI_VALUE_RECORDED: [string, string] = ['d73fb5958538ee619c619e58b5c4fff405031025c77344b2dbf5da2db4b67f6b', '6f2d9402a2d94c8eb70b810c50be7d4af38ff489b9368b88e779d01c968653ef']

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
