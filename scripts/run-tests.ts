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
import { globSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
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

/**
 * How long one test file's process may live: the slowest fast file takes
 * well under a minute, the slowest lab file a few minutes. Past this,
 * test/helpers/file-watchdog.ts names what holds the process open and ends
 * it, so one stuck file fails in minutes instead of holding the whole run.
 */
const FILE_LIMIT_S = { fast: 600, lab: 1500 }

interface Failure { name?: string, file?: string, nesting?: number, reason: string }

const recapDir = mkdtempSync(join(tmpdir(), 'wc-test-recap-'))
const failures = new Map<string, Failure[]>()

function run (label: string, files: string[], limitS: number, env: NodeJS.ProcessEnv = process.env): number {
  if (files.length === 0) return 0
  console.log(`== ${label}: ${files.length} file(s)`)
  const recapFile = join(recapDir, `${failures.size}.jsonl`)
  // one file at a time: several tests start daemons and bind ports; the lab owns the host's netns table
  const args = [
    '--test', '--test-concurrency=1',
    '--test-reporter=spec', '--test-reporter-destination=stdout',
    '--test-reporter=./scripts/failure-recap-reporter.ts', `--test-reporter-destination=${recapFile}`,
    '--import', './test/helpers/file-watchdog.ts', ...files
  ]
  const res = spawnSync(process.execPath, args, { stdio: 'inherit', env: { ...env, WC_TEST_FILE_LIMIT_S: String(limitS) } })
  failures.set(label, readRecap(recapFile))
  if (res.error != null) {
    console.error(`${label}: could not run the test runner: ${res.error.message}`)
    return 1
  }
  return res.status ?? 1
}

function readRecap (file: string): Failure[] {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    // the runner writes the file only once it reports; a runner that never started has none
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
  return text.split('\n').filter(l => l !== '').map(l => JSON.parse(l) as Failure)
}

/** Every failure once more, last, where a log cut to its tail still shows it. */
function printRecap (code: number): void {
  console.log(`== summary: ${code === 0 ? 'passed' : `failed (exit ${code})`}`)
  for (const [label, list] of failures) {
    console.log(`${label}: ${list.length === 0 ? 'no failed test' : `${list.length} failed test(s) and suite(s)`}`)
    for (const f of list) {
      const where = f.file != null ? relative(process.cwd(), f.file) : 'unknown file'
      console.log(`  ✖ ${where}: ${'  '.repeat(f.nesting ?? 0)}${f.name ?? '?'}: ${f.reason}`)
    }
  }
}

let code = 0
if (!values['lab-only']) code = run('fast tests', fast, FILE_LIMIT_S.fast) || code
if (!values['no-lab']) {
  const env = values.only != null ? { ...process.env, WC_LAB_ONLY: values.only } : process.env
  code = run('network-namespace lab', lab, FILE_LIMIT_S.lab, env) || code
}
printRecap(code)
rmSync(recapDir, { recursive: true, force: true })
process.exit(code)
