import { commonOptions, type Options } from '../../cli/args.ts'
import { unknownKeyMessage, type UnknownConfigKey } from '../../config/config-keys.ts'
import { createLogger, type Logger } from '../../log/logger.ts'

/**
 * The flags of every command that runs a node here (daemon, relay, doctor):
 * the data directory, the relays it starts from, where it listens and which
 * address ranges count as public. One spelling, so the three cannot drift.
 */
export const nodeOptions = {
  ...commonOptions,
  bootstrap: { type: 'string', multiple: true },
  listen: { type: 'string', multiple: true },
  'public-range': { type: 'string', multiple: true }
} as const satisfies Options

/** The Prometheus endpoint's flags, for the commands that run a node for long (daemon, relay). */
export const metricsOptions = {
  metrics: { type: 'string' },
  'metrics-allow-remote': { type: 'boolean', default: false }
} as const satisfies Options

/** The parsed metrics flags, named as the config loaders take them. */
export function metricsFlags (values: { metrics?: string, 'metrics-allow-remote'?: boolean }): { metrics?: string, metricsAllowRemote?: boolean } {
  return { metrics: values.metrics, metricsAllowRemote: values['metrics-allow-remote'] }
}

/** The same flags with DNS-over-HTTPS endpoints: for the commands that resolve bootstrap names (daemon, doctor). */
export const resolvingNodeOptions = {
  ...nodeOptions,
  doh: { type: 'string', multiple: true },
  'proxy-pac': { type: 'string' }
} as const satisfies Options

export interface NodeFlagValues {
  'data-dir'?: string
  bootstrap?: string[]
  listen?: string[]
  'public-range'?: string[]
}

/** The parsed node flags, named as the config loaders take them. */
export function nodeFlags (values: NodeFlagValues): { dataDir?: string, bootstrap?: string[], listen?: string[], publicRanges?: string[] } {
  return { dataDir: values['data-dir'], bootstrap: values.bootstrap, listen: values.listen, publicRanges: values['public-range'] }
}

/** Names each top-level config.json key no role reads, once at start, with the key it most resembles. */
export function warnUnknownConfigKeys (config: { configFile: string, unknownKeys: readonly UnknownConfigKey[] }, log: Logger = createLogger('config')): void {
  for (const unknown of config.unknownKeys) {
    log.warn(unknownKeyMessage(config.configFile, unknown), { code: 'CONFIG_UNKNOWN_KEY', key: unknown.key, ...(unknown.closest != null ? { closest: unknown.closest } : {}) })
  }
}
