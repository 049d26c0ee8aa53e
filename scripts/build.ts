// Builds the JavaScript an installed package runs (dist/, see bin/worldcompute):
// TypeScript's compiler with tsconfig.build.json, which rewrites `./x.ts`
// imports to `./x.js`. Run by `prepack` (so by `npm pack`, `npm publish` and
// installs from git); a clone runs src/ directly and never needs it.
// Fails when a module still names a `.ts` file by a string the compiler
// does not rewrite (a child process or worker entry): the installed package
// ships no .ts files.
import { spawnSync } from 'node:child_process'
import { cpSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const dist = join(root, 'dist')

rmSync(dist, { recursive: true, force: true })
const tsc = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' })
if (tsc.status !== 0) {
  process.stderr.write(`build: tsc failed (exit ${tsc.status ?? tsc.signal})\n`)
  process.exit(1)
}

// the dashboard's page (HTML, CSS, browser JavaScript) is served as it is, beside the module that serves it
cpSync(join(root, 'src', 'api', 'dashboard'), join(dist, 'api', 'dashboard'), { recursive: true })

const TS_PATH_IN_URL = /new URL\(\s*['"`][^'"`]*\.ts['"`]/
const offenders = readdirSync(dist, { recursive: true, encoding: 'utf8' })
  .filter(file => file.endsWith('.js') && TS_PATH_IN_URL.test(readFileSync(join(dist, file), 'utf8')))
if (offenders.length > 0) {
  process.stderr.write(`build: these modules start a .ts file by URL, which dist/ does not have (use siblingModuleUrl from src/core/module-url.ts): ${offenders.join(', ')}\n`)
  process.exit(1)
}
process.stdout.write(`build: dist/ written from src/\n`)
