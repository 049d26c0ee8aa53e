import { mkdirSync, chmodSync } from 'node:fs'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'

/** Files kept in a data directory. One place names them all. */
export interface DataDirPaths {
  root: string
  /** Ed25519 private key, protobuf-encoded, mode 0600 */
  identityKey: string
  /** optional JSON config file: `{ "bootstrap": [...], "listen": [...], "apiPort": N }` */
  configFile: string
  /** bearer token for the local API, mode 0600 */
  apiToken: string
  /** JSON `{ "port", "pid", "startedAt" }` written by the running daemon */
  apiEndpoint: string
  /** remembered facts about the network (used by later issues: the winning dial rung, …) */
  stateDir: string
}

export const DATA_DIR_ENV = 'WORLDCOMPUTE_DATA_DIR'

/** `--data-dir` > `WORLDCOMPUTE_DATA_DIR` > `~/.worldcompute`. */
export function resolveDataDir (flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (flag != null && flag !== '') return resolve(flag)
  const fromEnv = env[DATA_DIR_ENV]
  if (fromEnv != null && fromEnv !== '') return resolve(fromEnv)
  return join(homedir(), '.worldcompute')
}

export function dataDirPaths (root: string): DataDirPaths {
  return {
    root,
    identityKey: join(root, 'identity.key'),
    configFile: join(root, 'config.json'),
    apiToken: join(root, 'api-token'),
    apiEndpoint: join(root, 'api-endpoint.json'),
    stateDir: join(root, 'state')
  }
}

/** Creates the directory (mode 0700: it holds a private key and a token). */
export function ensureDataDir (root: string): DataDirPaths {
  mkdirSync(root, { recursive: true, mode: 0o700 })
  try {
    chmodSync(root, 0o700)
  } catch (err) {
    // a directory we do not own (e.g. a shared mount) keeps its mode; the key file itself is still 0600
    process.emitWarning(`could not set mode 0700 on ${root}: ${(err as Error).message}`)
  }
  return dataDirPaths(root)
}
