import { isIP } from 'node:net'
import { ConfigError } from '../core/errors.ts'

/**
 * Where a node serves its Prometheus metrics (`--metrics HOST:PORT`, or
 * `"metrics"` in config.json). Off unless given. The host must be loopback
 * unless remote scraping is allowed explicitly: the metrics name the relays a
 * donor uses and the traffic it carries, which is nobody else's business by
 * default, and the endpoint has no authentication.
 */
export interface MetricsEndpoint {
  readonly host: string
  /** 0 picks a free port (tests) */
  readonly port: number
  /** a non-loopback host was allowed (`--metrics-allow-remote`) */
  readonly allowRemote: boolean
}

/** What the flags and config.json say about metrics, before they are checked. */
export interface MetricsSettings {
  /** `--metrics HOST:PORT` */
  flag?: string
  /** `--metrics-allow-remote` */
  allowRemoteFlag?: boolean
  /** config.json "metrics" */
  file?: string
  /** config.json "metricsAllowRemote" */
  fileAllowRemote?: boolean
}

/** The metrics endpoint: flag > config.json > off; a non-loopback host without the allowance is a `ConfigError`. */
export function loadMetricsEndpoint (settings: MetricsSettings): MetricsEndpoint | undefined {
  const value = settings.flag ?? settings.file
  if (value == null) return undefined
  const source = settings.flag != null ? '--metrics' : 'config.json "metrics"'
  const allowRemote = settings.allowRemoteFlag === true || settings.fileAllowRemote === true
  const { host, port } = parseHostPort(value, source)
  if (!allowRemote && !isLoopbackHost(host)) {
    throw new ConfigError(`${source} ${value}: the metrics endpoint has no authentication, so it listens only on a loopback host (127.0.0.1, ::1 or localhost); add --metrics-allow-remote (or "metricsAllowRemote": true in config.json) to serve it on ${host}`)
  }
  return Object.freeze({ host, port, allowRemote })
}

/** `127.0.0.1:9464`, `localhost:9464`, `[::1]:9464`. */
export function parseHostPort (value: string, source: string): { host: string, port: number } {
  const m = /^\s*(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+)):(\d{1,5})\s*$/.exec(value)
  const host = m?.[1] ?? m?.[2]
  const port = Number(m?.[3])
  if (m == null || host == null || port > 65535) {
    throw new ConfigError(`invalid value for ${source}: "${value}" (expected HOST:PORT, e.g. 127.0.0.1:9464 or [::1]:9464)`)
  }
  if (m[1] != null && isIP(host) !== 6) throw new ConfigError(`invalid value for ${source}: "${value}" ("${host}" in brackets is not an IPv6 address)`)
  return { host, port }
}

/** 127.0.0.0/8, ::1 (also IPv4-mapped) and the name localhost. */
export function isLoopbackHost (host: string): boolean {
  const h = host.toLowerCase()
  if (h === 'localhost') return true
  if (h === '::1' || h === '0:0:0:0:0:0:0:1') return true
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h
  return isIP(v4) === 4 && v4.startsWith('127.')
}

/** config.json's "metrics" and "metricsAllowRemote", type-checked. */
export function readMetricsKeys (obj: Readonly<Record<string, unknown>>, path: string): { metrics?: string, metricsAllowRemote?: boolean } {
  const out: { metrics?: string, metricsAllowRemote?: boolean } = {}
  if (obj.metrics !== undefined) {
    if (typeof obj.metrics !== 'string') throw new ConfigError(`config file ${path}: "metrics" must be a "HOST:PORT" string such as "127.0.0.1:9464"`)
    out.metrics = obj.metrics
  }
  if (obj.metricsAllowRemote !== undefined) {
    if (typeof obj.metricsAllowRemote !== 'boolean') throw new ConfigError(`config file ${path}: "metricsAllowRemote" must be true or false`)
    out.metricsAllowRemote = obj.metricsAllowRemote
  }
  return out
}
