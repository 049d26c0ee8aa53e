/**
 * Direct upgrades that MUST happen between NAT kinds (issue 16 part 6): the
 * pairs the theory allows and the upgrader attempts, each in its own
 * topology with two relays (test/lab/nat-matrix-run.ts). The full matrix,
 * failures included, is bench/nat-matrix.ts (docs/nat-matrix.md).
 *
 *   WC_LAB_ONLY=nat-matrix node_modules/.bin/node --test --test-concurrency=1 test/lab/nat-matrix.test.ts
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { it } from 'node:test'
import { labSuite, markFailed, rows, RUN_ROOT, scenarioKeys, secs, TEST_TIMEOUT_MS } from './scenario.ts'
import { runNatPair, type PairOutcome } from './nat-matrix-run.ts'
import type { NatKind } from './topology.ts'

const only = scenarioKeys(['nat-matrix'] as const)

interface MustPair {
  submitter: NatKind
  executor: NatKind
  /** why the NATs allow it */
  because: string
  /** what the upgrader's view must say it relied on */
  reason?: RegExp
}

const MUST: MustPair[] = [
  { submitter: 'cone', executor: 'cone', because: 'both mappings are endpoint-independent: ICE opens both port-restricted filters at once' },
  { submitter: 'symmetric', executor: 'full-cone', because: 'the full cone lets the symmetric side\'s new mapping in', reason: /filters not on the port|new mapping/ },
  { submitter: 'cone', executor: 'symmetric-seq', because: 'the sequential symmetric side offers its next ports (port prediction); the cone\'s checks open its filter for them', reason: /port prediction/ }
]

async function cell (pair: MustPair, log: (line: string) => void): Promise<PairOutcome> {
  const key = `nat-matrix ${pair.submitter}→${pair.executor}`
  const row = { scenario: key, dispatchable: '-', time: '-', path: '-', job: '-', lab: '-' }
  rows.push(row)
  const o = await runNatPair(pair.submitter, pair.executor, { runDir: join(RUN_ROOT, `nat-matrix-${pair.submitter}-${pair.executor}`), waitMs: 40_000, log })
  row.dispatchable = o.error == null ? 'yes' : 'no'
  row.path = o.direct ? `direct over ${o.transport ?? '?'} ${secs(o.msToDirect ?? 0)} after the warm-up job` : `relayed: ${o.error ?? o.reason}`.slice(0, 160)
  if (!o.direct) markFailed()
  return o
}

labSuite('Network-namespace lab: direct upgrades between NAT kinds that allow one', () => {
  for (const pair of MUST) {
    it(`A donor behind a ${pair.submitter} NAT gets a direct connection to one behind a ${pair.executor} NAT: ${pair.because}`, { skip: only('nat-matrix'), timeout: TEST_TIMEOUT_MS }, async (t) => {
      const o = await cell(pair, line => { t.diagnostic(line) })
      t.diagnostic(`NATs measured: submitter ${o.measured.submitter}, executor ${o.measured.executor}; ${o.direct ? `direct over ${o.transport ?? '?'} after ${o.msToDirect ?? '?'} ms` : 'relayed'}; WebRTC dials ${o.webrtcDials} (${o.webrtcFailures} failed); ${o.reason}`)
      assert.equal(o.error, undefined, 'the cell was measured')
      assert.equal(o.direct, true, `a direct connection: ${o.reason}`)
      if (pair.reason != null) assert.match(o.reason, pair.reason)
    })
  }
})
