import { commonOptions, parse } from '../args.ts'
import { CONFIG_FILE_KEYS, unknownKeyMessage } from '../../config/config-keys.ts'
import { describeDaemonConfig, loadDaemonConfig } from '../../config/config.ts'
import { DATA_DIR_ENV } from '../../config/data-dir.ts'
import { printJson, type Output } from '../output.ts'

export const help = `worldcompute config [--data-dir DIR] [--json]

Shows the configuration a donor daemon started with this data directory and
environment would run with: each setting, its value and where it came from
(flag > env > file > default; the file is DATA_DIR/config.json). It reads the
configuration as the daemon does, so it needs no running daemon, and names
the keys in config.json that no role reads. Every key: docs/config.md.`

export async function run (argv: string[], o: Output): Promise<number> {
  const { values } = parse(argv, commonOptions, 'config')
  if (values.help) { o.out(help); return 0 }
  const config = loadDaemonConfig({ dataDir: values['data-dir'] })
  const entries = describeDaemonConfig(config)
  if (values.json) {
    printJson(o, { configFile: config.configFile, settings: entries, unknownKeys: config.unknownKeys })
    return 0
  }
  o.out(`config file: ${config.configFile}`)
  const width = Math.max(...entries.map(e => e.key.length))
  for (const e of entries) {
    const env = e.key === 'dataDir' ? DATA_DIR_ENV : CONFIG_FILE_KEYS.find(k => k.key === e.key)?.env
    o.out(`  ${e.key.padEnd(width)}  ${renderValue(e.value)}  (${e.source}${e.source === 'env' && env != null ? ` ${env}` : ''})`)
  }
  for (const unknown of config.unknownKeys) o.err(`warning: ${unknownKeyMessage(config.configFile, unknown)}`)
  return 0
}

function renderValue (value: unknown): string {
  if (Array.isArray(value)) return value.length === 0 ? '(none)' : value.join(', ')
  return String(value)
}
