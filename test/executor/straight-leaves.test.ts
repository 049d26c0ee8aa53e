import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { cidForBytes } from '../../src/executor/cid.ts'
import { instrumentModule } from '../../src/executor/instrument.ts'
import { PreparedModuleCache, prepareModule } from '../../src/executor/prepare.ts'
import { runModule, type RunOutcome } from '../../src/executor/run-module.ts'
import { STRAIGHT_LEAF_MAX_BODY_BYTES } from '../../src/executor/straight-leaves.ts'
import { command, s32, vec, type CommandInit } from './helpers/wasm-builder.ts'

const MiB = 1024 * 1024
const I32 = 0x7f
const FUNCREF = 0x70
const CALLS = 1000

/** _start calls function 1 CALLS times in a loop (its local 0 counts down). */
function caller (call: number[] = [0x10, 0x01]): Pick<CommandInit, 'start' | 'locals'> {
  return {
    locals: [[1, I32]],
    start: [
      0x41, ...s32(CALLS), 0x21, 0x00, // local 0 = CALLS
      0x03, 0x40, // loop
      ...call,
      0x20, 0x00, 0x41, 0x01, 0x6b, 0x22, 0x00, 0x0d, 0x00, // br_if 0 (local 0 -= 1)
      0x0b
    ]
  }
}

/** three nops: one straight segment of 4 instructions with its end */
const LEAF = [0x01, 0x01, 0x01]
/** puts function 1 in table 0 at slot 0: it can be reached by call_indirect */
const IN_TABLE: Partial<CommandInit> = { tables: [[FUNCREF, 1, 1]], extra: { 9: vec([[0x00, 0x41, 0x00, 0x0b, ...vec([[0x01]])]]) } }
/** a global that holds a reference to function 1 */
const REF_IN_GLOBAL: Partial<CommandInit> = { extra: { 6: vec([[FUNCREF, 0x00, 0xd2, 0x01, 0x0b]]) } }

function runBytes (bytes: Uint8Array, opts: { maxCallDepth?: number, fuel?: number } = {}): RunOutcome {
  const maxCallDepth = opts.maxCallDepth ?? 100
  const prepared = prepareModule(bytes, cidForBytes(bytes), { memoryBytes: 16 * MiB, maxCallDepth }, new PreparedModuleCache())
  return runModule(prepared.module, { jobId: 'job-1', input: new Uint8Array(0), args: [], env: [], fuel: opts.fuel ?? 2 ** 50, outputBytes: MiB, maxCallDepth })
}

describe('straight leaves (small straight functions reached only by direct calls)', () => {
  it('count the same fuel when their callers charge them as when they charge themselves', () => {
    const leaf = runBytes(command({ ...caller(), functions: [LEAF] }))
    const inTable = runBytes(command({ ...caller(), functions: [LEAF], ...IN_TABLE }))
    assert.equal(leaf.status, 'succeeded')
    assert.equal(inTable.status, 'succeeded')
    // per round the loop's segment (the call and 5 instructions to br_if) and the leaf's 4; 5 before and after the loop
    assert.equal(leaf.fuelUsed, inTable.fuelUsed)
    assert.equal(leaf.fuelUsed, 5 + CALLS * (6 + 4))
  })

  it('add no call depth, while a function reachable by call_indirect is counted', () => {
    assert.equal(runBytes(command({ ...caller(), functions: [LEAF] }), { maxCallDepth: 1 }).status, 'succeeded')
    const counted = runBytes(command({ ...caller(), functions: [LEAF], ...IN_TABLE }), { maxCallDepth: 1 })
    assert.equal(counted.status, 'failed')
    assert.equal(counted.error, 'call depth limit 1 exceeded')
  })

  it('are charged before they run: a budget that ends inside the loop stops it out of fuel at exactly the budget', () => {
    const out = runBytes(command({ ...caller(), functions: [LEAF] }), { fuel: 5000 })
    assert.equal(out.status, 'out_of_fuel')
    assert.equal(out.fuelUsed, 5000)
  })

  it('leave out a function a global names with ref.func, one that branches, and one larger than the size bound', () => {
    const depthOne = (init: CommandInit): RunOutcome => runBytes(command(init), { maxCallDepth: 1 })
    assert.equal(depthOne({ ...caller(), functions: [LEAF], ...REF_IN_GLOBAL }).error, 'call depth limit 1 exceeded')
    assert.equal(depthOne({ ...caller(), functions: [[0x02, 0x40, 0x0b]] }).error, 'call depth limit 1 exceeded')
    const nops = (n: number): number[] => new Array<number>(n).fill(0x01)
    // the body's size counts its local declarations (1 byte) and its end (1 byte)
    assert.equal(depthOne({ ...caller(), functions: [nops(STRAIGHT_LEAF_MAX_BODY_BYTES - 2)] }).status, 'succeeded')
    assert.equal(depthOne({ ...caller(), functions: [nops(STRAIGHT_LEAF_MAX_BODY_BYTES - 1)] }).error, 'call depth limit 1 exceeded')
  })

  it('are charged by a call_indirect caller when the function is in a table (it meters itself)', () => {
    // call_indirect (type 0, table 0) of slot 0: one more instruction per round (the slot index) than a direct call
    const indirect = runBytes(command({ ...caller([0x41, 0x00, 0x11, 0x00, 0x00]), functions: [LEAF], ...IN_TABLE }))
    const direct = runBytes(command({ ...caller(), functions: [LEAF] }))
    assert.equal(indirect.status, 'succeeded')
    assert.equal(indirect.fuelUsed, direct.fuelUsed + CALLS)
  })

  it('are copied as written into the instrumented module', () => {
    const bytes = command({ ...caller(), functions: [[0x41, 0x07, 0x1a]] }) // i32.const 7; drop
    const out = instrumentModule(bytes, { maxMemoryPages: 16, maxCallDepth: 10 }).bytes
    const body = Uint8Array.from([0x05, 0x00, 0x41, 0x07, 0x1a, 0x0b]) // size, no locals, code, end
    assert.ok(Buffer.from(out).includes(Buffer.from(body)), 'the leaf body appears unchanged')
  })
})
