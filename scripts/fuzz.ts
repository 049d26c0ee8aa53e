/**
 * `npm run fuzz`: the long fuzz run over every decoder and boundary (the
 * targets of test/fuzz/targets/), where `npm test` runs a few thousand inputs
 * under a fixed seed.
 *
 *   npm run fuzz                                   1,000,000 inputs in all, a random seed
 *   npm run fuzz -- --runs 200000 --seed 7         fewer inputs, a chosen seed
 *   npm run fuzz -- --time 600                     stop each target at its share of 600 s
 *   npm run fuzz -- --only codec.offer-request,api.http
 *   npm run fuzz -- --only handler.offer --seed 7 --replay '34:2:0'   replays one failing input
 *
 * Inputs are shared among the targets by weight, with a floor so slow targets
 * (streams, HTTP) still get a fair number. Prints inputs, time and inputs/s
 * per target, and for each failure the seed and path that replay it. Exits 1
 * on any failure.
 */
import { parseArgs } from 'node:util'
import { configureLogging } from '../src/log/logger.ts'
import { replayCommand, runTarget } from '../test/fuzz/harness.ts'
import { apiTargets } from '../test/fuzz/targets/api.ts'
import { codecTargets } from '../test/fuzz/targets/codec.ts'
import { prepareTarget } from '../test/fuzz/targets/prepare.ts'
import { protocolTargets } from '../test/fuzz/targets/protocols.ts'
import { serviceTargets } from '../test/fuzz/targets/services.ts'
import type { FuzzTarget, TargetReport } from '../test/fuzz/harness.ts'

const ALL: FuzzTarget[] = [...codecTargets, ...protocolTargets, ...serviceTargets, ...apiTargets, prepareTarget]

const { values } = parseArgs({
  options: {
    seed: { type: 'string' },
    runs: { type: 'string', default: '1000000' },
    time: { type: 'string' },
    only: { type: 'string' },
    replay: { type: 'string' },
    'min-runs': { type: 'string', default: '1000' }
  },
  allowPositionals: false
})

function positive (name: string, text: string | undefined): number | undefined {
  if (text == null) return undefined
  const n = Number(text)
  if (!Number.isSafeInteger(n) || n <= 0) {
    console.error(`--${name} must be a positive whole number, got "${text}"`)
    process.exit(2)
  }
  return n
}

const seed = values.seed != null ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31)
if (!Number.isSafeInteger(seed)) {
  console.error(`--seed must be a whole number, got "${values.seed}"`)
  process.exit(2)
}
const total = positive('runs', values.runs) ?? 1_000_000
const timeMs = (positive('time', values.time) ?? 0) * 1000
const minRuns = positive('min-runs', values['min-runs']) ?? 1000

const names = values.only?.split(',').map(s => s.trim()).filter(s => s !== '')
const targets = names == null ? ALL : ALL.filter(t => names.includes(t.name))
const unknown = names?.filter(n => !ALL.some(t => t.name === n)) ?? []
if (unknown.length > 0 || targets.length === 0) {
  console.error(`unknown target(s): ${unknown.join(', ')}; known: ${ALL.map(t => t.name).join(', ')}`)
  process.exit(2)
}
if (values.replay != null && targets.length !== 1) {
  console.error('--replay needs exactly one target in --only')
  process.exit(2)
}

// the refusals are what is under test: their WARN lines would bury the report
configureLogging({ spec: 'error' })

const weights = targets.reduce((s, t) => s + t.weight, 0)
const rate = (r: TargetReport): string => (r.runs / (r.ms / 1000)).toFixed(0)
console.log(`fuzz: seed ${seed}, ${total.toLocaleString('en-US')} inputs over ${targets.length} target(s)${timeMs > 0 ? `, at most ${timeMs / 1000} s` : ''}`)
const nameWidth = Math.max('target'.length, ...targets.map(t => t.name.length))
console.log(`${'target'.padEnd(nameWidth)} ${'inputs'.padStart(10)} ${'seconds'.padStart(8)} ${'inputs/s'.padStart(9)}  result`)

const reports: TargetReport[] = []
const started = performance.now()
for (const target of targets) {
  const share = target.weight / weights
  const numRuns = values.replay != null ? 1 : Math.max(minRuns, Math.round(total * share))
  const report = await runTarget(target, {
    seed,
    numRuns,
    ...(values.replay != null ? { path: values.replay } : {}),
    ...(timeMs > 0 ? { timeLimitMs: Math.max(1000, Math.round(timeMs * share)) } : {})
  })
  reports.push(report)
  const result = report.failure != null ? 'FAILED' : report.escaped.length > 0 ? 'ESCAPED' : 'ok'
  console.log(`${target.name.padEnd(nameWidth)} ${report.runs.toLocaleString('en-US').padStart(10)} ${(report.ms / 1000).toFixed(1).padStart(8)} ${rate(report).padStart(9)}  ${result}`)
  if (report.failure != null) {
    console.log(`  ${report.failure.message}\n  input: ${report.failure.counterexample}\n  reproduce: ${replayCommand(report)}`)
  }
  for (const e of report.escaped.slice(0, 5)) console.log(`  escaped to the process: ${e}`)
}

const inputs = reports.reduce((s, r) => s + r.runs, 0)
const failed = reports.filter(r => r.failure != null || r.escaped.length > 0)
const seconds = (performance.now() - started) / 1000
console.log(`total: ${inputs.toLocaleString('en-US')} inputs in ${seconds.toFixed(0)} s, ${failed.length} target(s) failed${failed.length > 0 ? `: ${failed.map(r => r.name).join(', ')}` : ''}`)
process.exit(failed.length > 0 ? 1 : 0)
