import { connect as tcpConnect } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import type { DialErrorDescription } from './dial-error.ts'
import type { AbortOptions } from '@libp2p/interface'

/**
 * A failed WebSocket dial rejects with an `ErrorEvent` whose message is empty
 * (undici gives no cause, not even for a refused port or an untrusted
 * certificate), so the reason is lost. To say what really happened we repeat
 * the first steps ourselves against the same host and port: a TCP connect,
 * then for `wss` a TLS handshake with the same trust settings. The probe goes
 * only to the address that was just dialled.
 */

export interface WsTarget {
  host: string
  port: number
  tls: boolean
  /** SNI / certificate name: the DNS name when the address has one */
  servername?: string
}

/** Extracts host, port and TLS from an ip4, ip6 or dns WebSocket address (`…/tcp/N/ws`, `…/tcp/N/tls/ws`, `…/wss`). */
export function wsTargetOf (ma: string): WsTarget | undefined {
  const parts = ma.split('/')
  const family = parts[1]
  if (!['ip4', 'ip6', 'dns', 'dns4', 'dns6'].includes(family) || parts[3] !== 'tcp') return undefined
  const port = Number(parts[4])
  if (!Number.isInteger(port)) return undefined
  const tls = parts.includes('wss') || parts.includes('tls')
  const sni = parts.indexOf('sni')
  const host = parts[2]
  return {
    host,
    port,
    tls,
    servername: sni !== -1 ? parts[sni + 1] : (family.startsWith('dns') ? host : undefined)
  }
}

const PROBE_TIMEOUT_MS = 2_000

export async function diagnoseWebSocketFailure (target: WsTarget, options: AbortOptions = {}): Promise<DialErrorDescription | undefined> {
  const tcp = await probe<void>((done) => {
    const socket = tcpConnect({ host: target.host, port: target.port })
    socket.once('connect', () => { socket.destroy(); done(undefined) })
    socket.once('error', (err) => { socket.destroy(); done(err) })
    return () => socket.destroy()
  }, options)
  if (tcp === 'timeout') {
    return { cause: `no answer to TCP connect to ${target.host}:${target.port} (SYN dropped by a firewall?)`, code: 'TIMEOUT', phase: 'tcp-connect' }
  }
  if (tcp instanceof Error) {
    const code = (tcp as NodeJS.ErrnoException).code ?? 'ERROR'
    const words: Record<string, string> = {
      ECONNREFUSED: 'connection refused (nothing listens on that port, or a firewall rejects it)',
      ECONNRESET: 'connection reset by the remote side or a middlebox',
      EHOSTUNREACH: 'host unreachable',
      ENETUNREACH: 'network unreachable (no route to that address from here)'
    }
    return { cause: words[code] ?? `TCP connect failed: ${tcp.message}`, code, phase: 'tcp-connect' }
  }
  if (!target.tls) {
    return { cause: 'TCP connects but the WebSocket upgrade was refused or reset (not a WebSocket endpoint, or an HTTP proxy/filter in the way)', code: 'WS_UPGRADE_FAILED', phase: 'ws-upgrade' }
  }
  const tls = await probe<void>((done) => {
    const socket = tlsConnect({ host: target.host, port: target.port, servername: target.servername, rejectUnauthorized: true, ALPNProtocols: ['http/1.1'] })
    socket.once('secureConnect', () => { socket.destroy(); done(undefined) })
    socket.once('error', (err) => { socket.destroy(); done(err) })
    return () => socket.destroy()
  }, options)
  if (tls === 'timeout') {
    return { cause: 'TCP connects but the TLS handshake gets no answer (a filter dropping TLS?)', code: 'TIMEOUT', phase: 'tls' }
  }
  if (tls instanceof Error) {
    const code = (tls as NodeJS.ErrnoException).code ?? 'TLS_ERROR'
    const untrusted = /UNABLE_TO|SELF_SIGNED|CERT_|ALTNAME/.test(code)
    return {
      cause: untrusted
        ? `TLS certificate rejected: ${code} (${tls.message}); for a private CA set NODE_EXTRA_CA_CERTS; behind a TLS-inspecting proxy, its CA must be in the system store (or SSL_CERT_FILE), which the daemon trusts`
        : `TLS handshake failed: ${tls.message}`,
      code: untrusted ? 'TLS_UNTRUSTED' : code,
      phase: 'tls'
    }
  }
  return { cause: 'TCP and TLS succeed but the WebSocket upgrade was refused or reset (not a WebSocket endpoint, or a filtering proxy)', code: 'WS_UPGRADE_FAILED', phase: 'ws-upgrade' }
}

async function probe<T> (start: (done: (result: T | Error) => void) => () => void, options: AbortOptions): Promise<T | Error | 'timeout'> {
  return await new Promise((resolve) => {
    let settled = false
    const finish = (result: T | Error | 'timeout'): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      options.signal?.removeEventListener('abort', onAbort)
      cancel()
      resolve(result)
    }
    const onAbort = (): void => { finish('timeout') }
    const cancel = start(finish)
    const timer = setTimeout(() => { finish('timeout') }, PROBE_TIMEOUT_MS)
    options.signal?.addEventListener('abort', onAbort, { once: true })
  })
}
