/**
 * The test runner behind `npm test` and `npm run test:lab`: Node's built-in
 * test runner, with the fast tests first and the network-namespace lab
 * (test/lab/, root only, minutes) last, so a broken unit shows up in seconds.
 *
 *   node scripts/run-tests.ts                   fast tests, then the lab
 *   node scripts/run-tests.ts --no-lab          fast tests only
 *   node scripts/run-tests.ts --lab-only [--only cone,443-only]
 *
 * A glob alone cannot order files, hence this script.
 */
import { spawnSync } from 'node:child_process'
import { globSync } from 'node:fs'
import { parseArgs } from 'node:util'

const { values } = parseArgs({
  options: {
    'no-lab': { type: 'boolean', default: false },
    'lab-only': { type: 'boolean', default: false },
    only: { type: 'string' }
  },
  allowPositionals: false
})

const all = globSync('test/**/*.test.ts').sort()
const lab = all.filter(f => f.startsWith('test/lab/'))
const fast = all.filter(f => !f.startsWith('test/lab/'))

function run (label: string, files: string[], env: NodeJS.ProcessEnv = process.env): number {
  if (files.length === 0) return 0
  console.log(`== ${label}: ${files.length} file(s)`)
  // one file at a time: several tests start daemons and bind ports; the lab owns the host's netns table
  const res = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=spec', ...files], { stdio: 'inherit', env })
  if (res.error != null) {
    console.error(`${label}: could not run the test runner: ${res.error.message}`)
    return 1
  }
  return res.status ?? 1
}

let code = 0
if (!values['lab-only']) code = run('fast tests', fast) || code
if (!values['no-lab']) {
  const env = values.only != null ? { ...process.env, WC_LAB_ONLY: values.only } : process.env
  code = run('network-namespace lab', lab, env) || code
}
process.exit(code)
