import { request as httpRequest, type IncomingMessage } from 'node:http'
import { lookup } from 'node:dns/promises'
import { connect as netConnect, isIP, type Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { SocksClient } from 'socks'
import { WorldComputeError } from '../core/errors.ts'
import type { ProxySpec } from './proxy-env.ts'
import type { AbortOptions } from '@libp2p/interface'

/**
 * Opens a byte stream to `host:port` through a proxy: an HTTP CONNECT tunnel
 * (RFC 9110 §9.3.6) or a SOCKS5 CONNECT (RFC 1928, user/password RFC 1929).
 *
 * Why our own CONNECT rather than undici's ProxyAgent (which the WebSocket
 * could use directly): a refused, unauthorised or timed-out CONNECT reaches a
 * WHATWG WebSocket only as an `ErrorEvent` with an empty message
 * (measured in the namespace lab), so the proxy's answer — 407, 403, refused — would
 * be lost, and "every proxy failure recorded with its cause" is the point.
 * The HTTP part is Node's own client (`http.request` with method CONNECT,
 * whose 'connect' event hands over the socket); SOCKS5 is the `socks` package.
 * We only open the TCP (or TLS, for an `https://` proxy) connection to the
 * proxy ourselves, so that "cannot reach the proxy" and "the proxy said no"
 * are told apart, and so the dial's signal can abort every step.
 */

/** Stable codes of proxy failures; each is recorded with phase `proxy`. */
export type ProxyFailureCode =
  | 'PROXY_UNREACHABLE' // no TCP connection to the proxy (refused, no route, reset)
  | 'PROXY_TIMEOUT' // the proxy did not answer in time
  | 'PROXY_AUTH_REQUIRED' // 407 without credentials
  | 'PROXY_AUTH_FAILED' // 407 with credentials, or SOCKS5 auth refused
  | 'PROXY_DENIED' // 403 or another refusal: the proxy's rules forbid this target or port
  | 'PROXY_TARGET_FAILED' // the proxy could not reach the target (502/503/504, SOCKS host/connection errors)
  | 'PROXY_PROTOCOL_ERROR' // an answer that is not HTTP / SOCKS5
  | 'PROXY_TLS_FAILED' // TLS to an https:// proxy failed

/** A proxy would not, or could not, open the tunnel. Always phase `proxy`. */
export class ProxyTunnelError extends WorldComputeError {
  readonly phase = 'proxy' as const
  /** the proxy's URL, credentials redacted */
  readonly proxy: string
  readonly target: string
  /** the HTTP status of a refused CONNECT */
  readonly status?: number
  constructor (proxy: ProxySpec, target: string, code: ProxyFailureCode, detail: string, options?: { cause?: unknown, status?: number }) {
    super(`proxy ${proxy.url} (${proxy.source}) ${detail} [CONNECT ${target}]`, code, options)
    this.proxy = proxy.url
    this.target = target
    if (options?.status != null) this.status = options.status
  }
}

export interface TunnelOptions extends AbortOptions {
  /** upper bound for the whole tunnel set-up when no signal ends it first @default 10000 */
  timeoutMs?: number
}

/** `host:port` as it goes on a CONNECT line (IPv6 in brackets). */
export function authority (host: string, port: number): string {
  return `${isIP(host) === 6 ? `[${host}]` : host}:${port}`
}

export async function openTunnel (proxy: ProxySpec, host: string, port: number, options: TunnelOptions = {}): Promise<Socket> {
  const target = authority(host, port)
  const timeout = AbortSignal.timeout(options.timeoutMs ?? 10_000)
  const signal = options.signal != null ? AbortSignal.any([options.signal, timeout]) : timeout
  signal.throwIfAborted()
  const socket = await connectToProxy(proxy, target, signal)
  try {
    if (proxy.kind === 'socks5' || proxy.kind === 'socks5h') {
      return await socksConnect(proxy, socket, host, port, target, signal)
    }
    return await httpConnect(proxy, socket, target, signal)
  } catch (err) {
    socket.destroy()
    if (signal.aborted && !(err instanceof ProxyTunnelError)) {
      throw timeout.aborted && options.signal?.aborted !== true
        ? new ProxyTunnelError(proxy, target, 'PROXY_TIMEOUT', `did not open the tunnel within ${((options.timeoutMs ?? 10_000) / 1000).toFixed(1)} s`, { cause: err })
        : signal.reason
    }
    throw err
  }
}

/** The TCP (or TLS) connection to the proxy itself. */
async function connectToProxy (proxy: ProxySpec, target: string, signal: AbortSignal): Promise<Socket> {
  return await new Promise<Socket>((resolve, reject) => {
    const socket: Socket = proxy.kind === 'https'
      ? tlsConnect({ host: proxy.host, port: proxy.port, servername: isIP(proxy.host) === 0 ? proxy.host : undefined, ALPNProtocols: ['http/1.1'] })
      : netConnect({ host: proxy.host, port: proxy.port })
    const ready = proxy.kind === 'https' ? 'secureConnect' : 'connect'
    const done = (err?: Error): void => {
      socket.removeListener(ready, onReady)
      socket.removeListener('error', onError)
      signal.removeEventListener('abort', onAbort)
      if (err == null) {
        resolve(socket)
        return
      }
      socket.destroy()
      reject(err)
    }
    const onReady = (): void => { done() }
    const onError = (err: NodeJS.ErrnoException): void => {
      const tlsProblem = proxy.kind === 'https' && err.code != null && !/^E[A-Z]+$/.test(err.code)
      done(new ProxyTunnelError(proxy, target, tlsProblem ? 'PROXY_TLS_FAILED' : 'PROXY_UNREACHABLE', tlsProblem
        ? `TLS to the proxy failed: ${err.message}`
        : `cannot be reached: ${proxySocketCause(err)}`, { cause: err }))
    }
    const onAbort = (): void => {
      const reason = signal.reason as { name?: string } | undefined
      done(reason?.name === 'TimeoutError'
        ? new ProxyTunnelError(proxy, target, 'PROXY_TIMEOUT', 'did not accept a TCP connection in time (packets to the proxy dropped?)', { cause: signal.reason })
        : signal.reason as Error)
    }
    socket.once(ready, onReady)
    socket.once('error', onError)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

function proxySocketCause (err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ECONNREFUSED': return 'connection refused (nothing listens on the proxy port, or a firewall rejects it)'
    case 'EHOSTUNREACH': return 'host unreachable'
    case 'ENETUNREACH': return 'network unreachable (no route to the proxy)'
    case 'ECONNRESET': return 'connection reset'
    case 'ENOTFOUND': return 'its name does not resolve'
    case 'EAI_AGAIN': return 'its name could not be resolved (DNS unreachable)'
    default: return err.message
  }
}

/** HTTP CONNECT on an open connection to the proxy, with Node's HTTP client. */
async function httpConnect (proxy: ProxySpec, socket: Socket, target: string, signal: AbortSignal): Promise<Socket> {
  const headers: Record<string, string> = { host: target }
  if (proxy.username != null || proxy.password != null) {
    // RFC 7617 Basic: base64 of "user:password" (already percent-decoded)
    headers['proxy-authorization'] = `Basic ${Buffer.from(`${proxy.username ?? ''}:${proxy.password ?? ''}`).toString('base64')}`
  }
  return await new Promise<Socket>((resolve, reject) => {
    const req = httpRequest({
      method: 'CONNECT',
      path: target,
      headers,
      setHost: false,
      // no `agent`: with createConnection and no agent, the request runs on the connection we
      // opened (whose failures we can tell apart from the CONNECT's); `agent: false` would open another
      createConnection: () => socket
    })
    let settled = false
    const finish = (err: Error | undefined, tunnel?: Socket): void => {
      if (settled) return
      settled = true
      signal.removeEventListener('abort', onAbort)
      if (err != null) {
        req.destroy()
        reject(err)
      } else {
        resolve(tunnel as Socket)
      }
    }
    const onAbort = (): void => {
      const reason = signal.reason as { name?: string } | undefined
      finish(reason?.name === 'TimeoutError'
        ? new ProxyTunnelError(proxy, target, 'PROXY_TIMEOUT', 'accepted the connection but did not answer the CONNECT in time', { cause: signal.reason })
        : signal.reason as Error)
    }
    signal.addEventListener('abort', onAbort, { once: true })
    // Node emits 'connect' for every answer to a CONNECT, whatever its status
    req.once('connect', (res: IncomingMessage, tunnel: Socket, head: Buffer) => {
      const status = res.statusCode ?? 0
      if (status >= 200 && status < 300) {
        // bytes the proxy already relayed from the target belong to the tunnel
        if (head.length > 0) tunnel.unshift(head)
        finish(undefined, tunnel)
        return
      }
      tunnel.destroy()
      finish(refusal(proxy, target, status, res.statusMessage ?? '', res.headers))
    })
    // a proxy that answers a CONNECT with a plain response (no 'connect' event on some paths)
    req.once('response', (res: IncomingMessage) => {
      res.resume()
      finish(refusal(proxy, target, res.statusCode ?? 0, res.statusMessage ?? '', res.headers))
    })
    req.once('error', (err: NodeJS.ErrnoException) => {
      const closed = err.code === 'ECONNRESET' || /socket hang up/i.test(err.message)
      finish(new ProxyTunnelError(proxy, target, closed ? 'PROXY_UNREACHABLE' : 'PROXY_PROTOCOL_ERROR', closed
        ? 'closed the connection without answering the CONNECT'
        : `answered the CONNECT with something that is not HTTP: ${err.message}`, { cause: err }))
    })
    req.end()
  })
}

function refusal (proxy: ProxySpec, target: string, status: number, statusText: string, headers: IncomingMessage['headers']): ProxyTunnelError {
  const said = `${status}${statusText !== '' ? ` ${statusText}` : ''}`
  const hasCredentials = proxy.username != null || proxy.password != null
  if (status === 407) {
    const scheme = String(headers['proxy-authenticate'] ?? '').split(/\s/)[0]
    const wants = scheme !== '' ? ` (it asks for ${scheme})` : ''
    return hasCredentials
      ? new ProxyTunnelError(proxy, target, 'PROXY_AUTH_FAILED', `rejected the credentials: ${said}${wants}; check the user and password in ${proxy.source}`, { status })
      : new ProxyTunnelError(proxy, target, 'PROXY_AUTH_REQUIRED', `requires authentication: ${said}${wants}; put them in ${proxy.source} as http://user:password@host:port`, { status })
  }
  if (status === 403) {
    return new ProxyTunnelError(proxy, target, 'PROXY_DENIED', `refused the CONNECT: ${said} (its rules forbid this host or port; ask for CONNECT to ${target} to be allowed)`, { status })
  }
  if (status === 502 || status === 503 || status === 504) {
    return new ProxyTunnelError(proxy, target, 'PROXY_TARGET_FAILED', `could not reach the target: ${said}`, { status })
  }
  return new ProxyTunnelError(proxy, target, 'PROXY_DENIED', `refused the CONNECT: ${said}`, { status })
}

/** SOCKS5 CONNECT on an open connection to the proxy, with the `socks` package. */
async function socksConnect (proxy: ProxySpec, socket: Socket, host: string, port: number, target: string, signal: AbortSignal): Promise<Socket> {
  let destination = host
  if (proxy.kind === 'socks5' && isIP(host) === 0) {
    // socks5:// means "resolve here" (curl); socks5h:// hands the name to the proxy
    try {
      destination = (await lookup(host)).address
    } catch (err) {
      throw new ProxyTunnelError(proxy, target, 'PROXY_TARGET_FAILED', `was not asked: the target's name ${host} does not resolve here (use socks5h:// to let the proxy resolve it)`, { cause: err })
    }
  }
  const onAbort = (): void => { socket.destroy() }
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    const { socket: tunnel } = await SocksClient.createConnection({
      command: 'connect',
      proxy: {
        host: proxy.host,
        port: proxy.port,
        type: 5,
        ...(proxy.username != null ? { userId: proxy.username } : {}),
        ...(proxy.password != null ? { password: proxy.password } : {})
      },
      destination: { host: destination, port },
      existing_socket: socket
    })
    return tunnel
  } catch (err) {
    if (signal.aborted) throw signal.reason
    const message = (err as Error).message ?? String(err)
    if (/Authentication failed/i.test(message)) {
      throw new ProxyTunnelError(proxy, target, 'PROXY_AUTH_FAILED', `rejected the credentials: ${message}; check the user and password in ${proxy.source}`, { cause: err })
    }
    if (/no accepted authentication type/i.test(message)) {
      throw new ProxyTunnelError(proxy, target, proxy.username != null ? 'PROXY_AUTH_FAILED' : 'PROXY_AUTH_REQUIRED',
        `accepts none of our authentication methods (${proxy.username != null ? 'user/password offered' : 'no credentials given'})`, { cause: err })
    }
    const rejected = /rejected connection - (\w+)/i.exec(message)
    if (rejected != null) {
      const reason = rejected[1]
      const denied = reason === 'NotAllowed' || reason === 'Failure'
      throw new ProxyTunnelError(proxy, target, denied ? 'PROXY_DENIED' : 'PROXY_TARGET_FAILED', denied
        ? `refused the CONNECT: ${reason} (its rules forbid this host or port)`
        : `could not reach the target: ${reason}`, { cause: err })
    }
    if (/Socket closed/i.test(message)) {
      throw new ProxyTunnelError(proxy, target, 'PROXY_UNREACHABLE', 'closed the connection during the SOCKS5 handshake', { cause: err })
    }
    throw new ProxyTunnelError(proxy, target, 'PROXY_PROTOCOL_ERROR', `SOCKS5 handshake failed: ${message}`, { cause: err })
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}
