/**
 * The keys of DATA_DIR/config.json, with the flag and environment variable
 * that override each: the one list the unknown-key warning and
 * `worldcompute config` read, and that docs/config.md describes.
 */
export interface ConfigKeyInfo {
  readonly key: string
  readonly roles: ReadonlyArray<'daemon' | 'relay'>
  readonly flag?: string
  readonly env?: string
}

export const CONFIG_FILE_KEYS: readonly ConfigKeyInfo[] = Object.freeze([
  { key: 'bootstrap', roles: ['daemon', 'relay'], flag: '--bootstrap', env: 'WORLDCOMPUTE_BOOTSTRAP' },
  { key: 'doh', roles: ['daemon'], flag: '--doh', env: 'WORLDCOMPUTE_DOH' },
  { key: 'listen', roles: ['daemon', 'relay'], flag: '--listen' },
  { key: 'announce', roles: ['relay'], flag: '--announce' },
  { key: 'apiPort', roles: ['daemon'], flag: '--api-port', env: 'WORLDCOMPUTE_API_PORT' },
  { key: 'publicRanges', roles: ['daemon', 'relay'], flag: '--public-range' },
  { key: 'refuseIntercepted', roles: ['daemon'], flag: '--refuse-intercepted' },
  { key: 'proxyPac', roles: ['daemon'], flag: '--proxy-pac' },
  { key: 'relayLimits', roles: ['relay'] },
  { key: 'metrics', roles: ['daemon', 'relay'], flag: '--metrics' },
  { key: 'metricsAllowRemote', roles: ['daemon', 'relay'], flag: '--metrics-allow-remote' },
  { key: 'cpuLimit', roles: ['daemon'], flag: '--cpu-limit' },
  { key: 'suspendWhenBusy', roles: ['daemon'], flag: '--suspend-when-busy' },
  { key: 'runHours', roles: ['daemon'], flag: '--run-hours' },
  { key: 'portMapping', roles: ['daemon'], flag: '--no-port-mapping' }
])

/** A top-level key of config.json that no role reads: a typo, most likely. */
export interface UnknownConfigKey {
  readonly key: string
  /** the known key it most resembles, when one is close enough to be the intended one */
  readonly closest?: string
}

/** The top-level keys of `obj` that are not config keys, each with the closest known key. */
export function unknownConfigKeys (obj: Readonly<Record<string, unknown>>): UnknownConfigKey[] {
  const known = CONFIG_FILE_KEYS.map(k => k.key)
  return Object.keys(obj).filter(k => !known.includes(k)).map(key => {
    const closest = closestKey(key, known)
    return closest != null ? { key, closest } : { key }
  })
}

/** The one-line warning for an unknown key, as the daemon and relay log it at start. */
export function unknownKeyMessage (path: string, unknown: UnknownConfigKey): string {
  return `config file ${path}: unknown key "${unknown.key}" is ignored` +
    (unknown.closest != null ? ` (did you mean "${unknown.closest}"?)` : ` (known keys: ${CONFIG_FILE_KEYS.map(k => k.key).join(', ')})`)
}

/** The known key within a third of its length in edits (case ignored), so "bootstap" finds "bootstrap" and "foo" finds nothing. */
function closestKey (key: string, known: readonly string[]): string | undefined {
  let best: { key: string, distance: number } | undefined
  for (const candidate of known) {
    const distance = editDistance(key.toLowerCase(), candidate.toLowerCase())
    if (best == null || distance < best.distance) best = { key: candidate, distance }
  }
  return best != null && best.distance <= Math.max(1, Math.floor(best.key.length / 3)) ? best.key : undefined
}

/** Levenshtein distance, one row at a time. */
function editDistance (a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    previous = row
  }
  return previous[b.length]
}
