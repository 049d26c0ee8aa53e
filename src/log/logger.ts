/**
 * The project's logger: component-scoped, levelled, one line per event on
 * stderr, human text by default or JSON lines with `--log-format json`.
 *
 * Under systemd (stderr is the journal: `JOURNAL_STREAM` names its device
 * and inode) each line starts with its syslog priority, `<3>` error to `<7>`
 * debug, which journald takes off and stores as the entry's priority
 * (`journalctl -p warning` works), our own timestamp is left out (journald
 * stamps every entry) and a message's line breaks are written as `\n`, so
 * one event stays one entry. No colour codes are ever written.
 *
 * Written by hand rather than taking pino/winston: we need exactly a
 * RUST_LOG-style filter (`WORLDCOMPUTE_LOG=info,net=debug`) and synchronous
 * stderr lines so nothing is lost when the process is killed, and both fit in
 * this one file.
 */
import { fstatSync } from 'node:fs'

import { shortPeerId } from '../core/format.ts'

export const LEVELS = ['error', 'warn', 'info', 'debug', 'trace'] as const
export type Level = typeof LEVELS[number]
export type LogFormat = 'text' | 'json'

export type Fields = Record<string, unknown>

export interface Logger {
  readonly component: string
  error: (msg: string, fields?: Fields) => void
  warn: (msg: string, fields?: Fields) => void
  info: (msg: string, fields?: Fields) => void
  debug: (msg: string, fields?: Fields) => void
  trace: (msg: string, fields?: Fields) => void
  enabled: (level: Level) => boolean
  child: (name: string) => Logger
}

export interface LogFilter {
  /** level for components without a rule */
  defaultLevel: Level
  /** component prefix → level; the longest matching prefix wins */
  rules: Array<{ prefix: string, level: Level }>
}

export type LogSink = (line: string) => void

interface LogState {
  filter: LogFilter
  format: LogFormat
  sink: LogSink
  /** lines go to the journal: priority prefixes; undefined until first asked (detected from the environment) */
  journal?: boolean
}

const defaultSink: LogSink = (line) => { process.stderr.write(line + '\n') }

const state: LogState = {
  filter: { defaultLevel: 'info', rules: [] },
  format: 'text',
  sink: defaultSink
}

function isLevel (value: string): value is Level {
  return (LEVELS as readonly string[]).includes(value)
}

/**
 * Parses a filter such as `info,net=debug,donor.reservation=trace`. A bare
 * level sets the default; `component=level` sets a rule for that component and
 * its children (`net` covers `net.dialer`).
 */
export function parseLogFilter (spec: string | undefined): LogFilter {
  const filter: LogFilter = { defaultLevel: 'info', rules: [] }
  if (spec == null || spec.trim() === '') {
    return filter
  }
  for (const raw of spec.split(',')) {
    const part = raw.trim()
    if (part === '') continue
    const eq = part.indexOf('=')
    if (eq === -1) {
      const level = part.toLowerCase()
      if (!isLevel(level)) {
        throw new Error(`WORLDCOMPUTE_LOG: unknown level "${part}" (use one of ${LEVELS.join(', ')})`)
      }
      filter.defaultLevel = level
      continue
    }
    const prefix = part.slice(0, eq).trim()
    const level = part.slice(eq + 1).trim().toLowerCase()
    if (prefix === '' || !isLevel(level)) {
      throw new Error(`WORLDCOMPUTE_LOG: cannot read "${part}" (expected component=level, level one of ${LEVELS.join(', ')})`)
    }
    filter.rules.push({ prefix, level })
  }
  filter.rules.sort((a, b) => b.prefix.length - a.prefix.length)
  return filter
}

export function levelFor (filter: LogFilter, component: string): Level {
  for (const rule of filter.rules) {
    if (component === rule.prefix || component.startsWith(rule.prefix + '.')) {
      return rule.level
    }
  }
  return filter.defaultLevel
}

export interface ConfigureLoggingOptions {
  spec?: string
  format?: LogFormat
  sink?: LogSink
  /** write journald priority prefixes @default whether stderr is the journal (`stderrIsJournal`) */
  journal?: boolean
}

/** Set once at the edge (cli) from `WORLDCOMPUTE_LOG` and `--log-format`. */
export function configureLogging (opts: ConfigureLoggingOptions): void {
  if (opts.spec !== undefined) state.filter = parseLogFilter(opts.spec)
  if (opts.format !== undefined) state.format = opts.format
  if (opts.sink !== undefined) state.sink = opts.sink
  if (opts.journal !== undefined) state.journal = opts.journal
}

export function resetLogging (): void {
  state.filter = { defaultLevel: 'info', rules: [] }
  state.format = 'text'
  state.sink = defaultSink
  state.journal = undefined
}

/**
 * Whether this process's stderr is connected to the journal: systemd sets
 * `JOURNAL_STREAM=<device>:<inode>` for a service whose output goes there,
 * and a child that redirected its stderr inherits the variable, so the
 * descriptor itself is compared, as sd-daemon(3) advises.
 */
export function stderrIsJournal (env: NodeJS.ProcessEnv = process.env, fd = 2): boolean {
  const match = /^(\d+):(\d+)$/.exec(env.JOURNAL_STREAM ?? '')
  if (match == null) return false
  try {
    const st = fstatSync(fd, { bigint: true })
    return st.dev === BigInt(match[1]) && st.ino === BigInt(match[2])
  } catch {
    // no stderr to compare (EBADF: closed): then it is not the journal either
    return false
  }
}

/** syslog priorities (sd-daemon(3) `SD_ERR` … `SD_DEBUG`) by level. */
const JOURNAL_PRIORITY: Record<Level, number> = { error: 3, warn: 4, info: 6, debug: 7, trace: 7 }

function toJournal (): boolean {
  state.journal ??= stderrIsJournal()
  return state.journal
}

function serialise (value: unknown): unknown {
  if (value instanceof Error) {
    return { name: value.name, message: value.message }
  }
  if (typeof value === 'bigint') return value.toString()
  if (value != null && typeof value === 'object' && typeof (value as { toString?: unknown }).toString === 'function' &&
    (value as object).constructor?.name !== 'Object' && !Array.isArray(value)) {
    // multiaddrs, peer ids: their string form is what a reader wants
    return String(value)
  }
  return value
}

function formatText (level: Level, component: string, msg: string, fields?: Fields, journal = false): string {
  // Ed25519, RSA and secp256k1 PeerIds (base58btc) in a field repeat what the message says in full: short forms keep
  // the line readable, and the JSON format keeps them whole
  const shortenPeerIds = (value: unknown): unknown => typeof value === 'string'
    ? value.replace(/\b(?:12D3KooW[1-9A-HJ-NP-Za-km-z]{44}|Qm[1-9A-HJ-NP-Za-km-z]{44}|16Uiu2HA[1-9A-HJ-NP-Za-km-z]{45})\b/g, shortPeerId)
    : value
  const time = journal ? '' : new Date().toISOString().slice(11, 23) + ' '
  let line = `${time}${level.toUpperCase().padEnd(5)} ${component}: ${journal ? msg.replace(/\r?\n/g, '\\n') : msg}`
  if (fields != null) {
    const extras = Object.entries(fields)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => {
        const s = shortenPeerIds(serialise(v))
        return `${k}=${typeof s === 'string' ? (/\s/.test(s) ? JSON.stringify(s) : s) : JSON.stringify(s)}`
      })
    if (extras.length > 0) line += `  ${extras.join(' ')}`
  }
  return line
}

function formatJson (level: Level, component: string, msg: string, fields?: Fields): string {
  const out: Record<string, unknown> = { ts: new Date().toISOString(), level, component, msg }
  if (fields != null) {
    for (const [k, v] of Object.entries(fields)) {
      if (v !== undefined && !(k in out)) out[k] = serialise(v)
    }
  }
  return JSON.stringify(out)
}

function writeLine (level: Level, component: string, msg: string, fields?: Fields): void {
  const journal = toJournal()
  const line = state.format === 'json'
    ? formatJson(level, component, msg, fields)
    : formatText(level, component, msg, fields, journal)
  state.sink(journal ? `<${JOURNAL_PRIORITY[level]}>${line}` : line)
}

/**
 * A line for whoever runs the process rather than for the log (the daemon's
 * "running" line, a signal received): as it is, through `plain`, in the text
 * format, where a person reads it; in the JSON format a record of
 * `component` at `level`, whatever the filter says (the text line is never
 * filtered either), so that every line on stderr is JSON for whatever
 * collects it.
 */
export function operatorLine (plain: (line: string) => void, component: string, level: Level, msg: string, fields?: Fields): void {
  if (state.format === 'json') writeLine(level, component, msg, fields)
  else plain(msg)
}

export function createLogger (component: string): Logger {
  const enabled = (level: Level): boolean =>
    LEVELS.indexOf(level) <= LEVELS.indexOf(levelFor(state.filter, component))
  const emit = (level: Level) => (msg: string, fields?: Fields): void => {
    if (!enabled(level)) return
    writeLine(level, component, msg, fields)
  }
  return {
    component,
    error: emit('error'),
    warn: emit('warn'),
    info: emit('info'),
    debug: emit('debug'),
    trace: emit('trace'),
    enabled,
    child: (name: string) => createLogger(`${component}.${name}`)
  }
}
