import { readFileSync } from 'node:fs'

/**
 * The software version, shown by `--version`, the API, `status` and evidence
 * bundles: package.json's, read once at start-up so that a release bumps one
 * file. package.json sits two folders up from both src/core/ (a clone) and
 * dist/core/ (an installed package).
 */
export const VERSION: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version
