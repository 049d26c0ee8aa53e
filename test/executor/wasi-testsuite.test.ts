/**
 * The WASI preview1 cases of WebAssembly/wasi-testsuite (vendored under
 * test/fixtures/wasi-testsuite, see PROVENANCE.md), each run through the real
 * executor and, in the same run, through Node's node:wasi as the baseline.
 * Every case must pass through the executor except the known exceptions
 * below, each with its reason; a known exception that starts passing fails
 * the test, so the list stays true.
 */

import assert from 'node:assert/strict'
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, existsSync, openSync, closeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { WASI } from 'node:wasi'
import type { ExecuteResult, JobDir, JobFile } from '../../src/core/job.ts'
import { cidForBytes } from '../../src/executor/cid.ts'
import { Executor } from '../../src/executor/executor.ts'

const SUITE = new URL('../fixtures/wasi-testsuite/', import.meta.url).pathname
const LANGUAGES = ['assemblyscript', 'c', 'rust']

/** Cases the executor does not pass, and why. */
const KNOWN_EXCEPTIONS: ReadonlyMap<string, string> = new Map([
])

interface Spec {
  args: string[]
  env: Record<string, string>
  root: string | null
  exitCode: number
  stdout: string | undefined
}

interface Case {
  id: string
  dir: string
  file: string
  spec: Spec
}

interface Outcome {
  exitCode: number | undefined
  stdout: string
  stderr: string
  error?: string
}

function loadCases (): Case[] {
  const cases: Case[] = []
  for (const lang of LANGUAGES) {
    const dir = join(SUITE, lang)
    for (const file of readdirSync(dir).filter(f => f.endsWith('.wasm')).sort()) {
      const jsonPath = join(dir, file.replace(/\.wasm$/, '.json'))
      const json = existsSync(jsonPath) ? JSON.parse(readFileSync(jsonPath, 'utf8')) : {}
      cases.push({
        id: `${lang}/${file.replace(/\.wasm$/, '')}`,
        dir,
        file,
        spec: { args: json.args ?? [], env: json.env ?? {}, root: json.root ?? null, exitCode: json.exit_code ?? 0, stdout: json.stdout }
      })
    }
  }
  return cases
}

/** A real directory as a preopen at `guest`: its files and its empty subdirectories. */
function readTree (root: string, guest: string): JobDir {
  const files: JobFile[] = []
  const emptyDirs: string[] = []
  const walk = (host: string, path: string): void => {
    const names = readdirSync(host)
    if (names.length === 0 && path !== '') emptyDirs.push(`${guest === '/' ? '' : guest}${path}`)
    for (const name of names) {
      const h = join(host, name)
      if (statSync(h).isDirectory()) walk(h, `${path}/${name}`)
      else files.push({ path: `${guest === '/' ? '' : guest}${path}/${name}`, data: new Uint8Array(readFileSync(h)) })
    }
  }
  walk(root, '')
  return { guest, files, emptyDirs }
}

function passes (c: Case, o: Outcome): boolean {
  return o.exitCode === c.spec.exitCode && (c.spec.stdout === undefined || o.stdout === c.spec.stdout)
}

function describeOutcome (o: Outcome): string {
  return `exit ${String(o.exitCode)}${o.error !== undefined ? `, error ${o.error}` : ''}, stdout ${JSON.stringify(o.stdout.slice(0, 200))}, stderr ${JSON.stringify(o.stderr.slice(0, 600))}`
}

async function runOurs (executor: Executor, c: Case): Promise<{ outcome: Outcome, result: ExecuteResult }> {
  const module = new Uint8Array(readFileSync(join(c.dir, c.file)))
  const result = await executor.execute({
    jobId: `wasi-testsuite-${c.id}`,
    taskId: `wasi-testsuite-${c.id}-1`,
    module,
    moduleCid: cidForBytes(module),
    input: new Uint8Array(0),
    args: c.spec.args,
    env: Object.entries(c.spec.env).map(([k, v]) => `${k}=${v}`),
    limits: {},
    moduleName: c.file,
    preopens: c.spec.root === null ? undefined : [readTree(join(c.dir, c.spec.root), '/')]
  })
  const decoder = new TextDecoder()
  return { outcome: { exitCode: result.exitCode, stdout: decoder.decode(result.stdout), stderr: decoder.decode(result.stderr), error: result.error }, result }
}

/** The same case under node:wasi, its root a scratch copy (the cases write into it). */
function runNode (c: Case, scratch: string): Outcome {
  const work = mkdtempSync(join(scratch, 'case-'))
  const preopens: Record<string, string> = {}
  if (c.spec.root !== null) {
    cpSync(join(c.dir, c.spec.root), join(work, 'root'), { recursive: true })
    preopens['/'] = join(work, 'root')
  }
  const outPath = join(work, 'stdout')
  const errPath = join(work, 'stderr')
  const stdout = openSync(outPath, 'w')
  const stderr = openSync(errPath, 'w')
  const stdin = openSync('/dev/null', 'r')
  let exitCode: number | undefined
  let error: string | undefined
  try {
    const wasi = new WASI({ version: 'preview1', args: [c.file, ...c.spec.args], env: c.spec.env, preopens, returnOnExit: true, stdin, stdout, stderr })
    const module = new WebAssembly.Module(readFileSync(join(c.dir, c.file)))
    const instance = new WebAssembly.Instance(module, wasi.getImportObject() as WebAssembly.Imports)
    exitCode = wasi.start(instance)
  } catch (err) {
    error = err instanceof Error ? `${err.name}: ${err.message}` : String(err)
  } finally {
    closeSync(stdout)
    closeSync(stderr)
    closeSync(stdin)
  }
  return { exitCode, stdout: readFileSync(outPath, 'utf8'), stderr: readFileSync(errPath, 'utf8'), error }
}

describe('the WASI preview1 test suite through the executor, with node:wasi as the baseline', () => {
  const executor = new Executor({ maxConcurrent: 2 })
  const scratch = mkdtempSync(join(tmpdir(), 'wasi-testsuite-'))
  const tally = { cases: 0, ours: 0, node: 0, nodeFails: [] as string[] }
  before(async () => { await executor.start() })
  after(async () => {
    await executor.stop()
    rmSync(scratch, { recursive: true, force: true })
    process.stdout.write(`# wasi-testsuite: ${tally.ours}/${tally.cases} pass through the executor, ${tally.node}/${tally.cases} under node:wasi (it fails ${tally.nodeFails.join(', ')})\n`)
  })

  for (const c of loadCases()) {
    it(`${c.id} ${KNOWN_EXCEPTIONS.has(c.id) ? 'fails for a known reason' : 'passes'}`, async () => {
      const [{ outcome: ours }, node] = await Promise.all([runOurs(executor, c), Promise.resolve(runNode(c, scratch))])
      tally.cases++
      if (passes(c, ours)) tally.ours++
      if (passes(c, node)) tally.node++
      else tally.nodeFails.push(c.id)
      const reason = KNOWN_EXCEPTIONS.get(c.id)
      if (reason === undefined) {
        assert.ok(passes(c, ours), `${c.id} through the executor: ${describeOutcome(ours)}; node:wasi: ${describeOutcome(node)}`)
      } else {
        assert.ok(!passes(c, ours), `${c.id} passes now: take it off the known exceptions (${reason})`)
      }
    })
  }
})
