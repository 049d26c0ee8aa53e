import { lookup } from 'node:dns/promises'
import { connect as netConnect, isIP, type Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { WorldComputeError } from '../core/errors.ts'
import { connectRound, ConnectAnswerError, type ConnectAnswer } from './proxy-auth-exchange.ts'
import { answerAuthorization, basicAuthorization, chooseScheme, credentialsLabel, firstAuthorization, parseChallenges, proxyCredentials, type AuthChallenge, type ProxyAuthMemory, type ProxyAuthScheme, type ProxyCredentials } from './proxy-auth.ts'
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
 * The HTTP part reads the proxy's answers itself (proxy-auth-exchange.ts):
 * NTLM needs several CONNECTs on one connection, which Node's client cannot
 * send; SOCKS5 is the `socks` package.
 * We only open the TCP (or TLS, for an `https://` proxy) connection to the
 * proxy ourselves, so that "cannot reach the proxy" and "the proxy said no"
 * are told apart, and so the dial's signal can abort every step.
 */

/** Stable codes of proxy failures; each is recorded with phase `proxy`. */
export type ProxyFailureCode =
  | 'PROXY_UNREACHABLE' // no TCP connection to the proxy (refused, no route, reset)
  | 'PROXY_TIMEOUT' // the proxy did not answer in time
  | ProxyAuthFailureCode
  | 'PROXY_DENIED' // 403 or another refusal: the proxy's rules forbid this target or port
  | 'PROXY_TARGET_FAILED' // the proxy could not reach the target (502/503/504, SOCKS host/connection errors)
  | 'PROXY_PROTOCOL_ERROR' // an answer that is not HTTP / SOCKS5
  | 'PROXY_TLS_FAILED' // TLS to an https:// proxy failed
  | 'PROXY_CLIENT_UNAVAILABLE' // our SOCKS5 client (the `socks` package) could not be loaded

/** Stable codes of authentication failures (a {@link ProxyAuthError}, or SOCKS5's). */
export type ProxyAuthFailureCode =
  | 'PROXY_AUTH_REQUIRED' // 407 and we have no credentials
  | 'PROXY_AUTH_UNSUPPORTED' // 407 offering only schemes we cannot do (Kerberos-only Negotiate, Digest)
  | 'PROXY_AUTH_FAILED' // 407 after our credentials, or SOCKS5 auth refused

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

/**
 * A 407 we could not get past: no credentials, no scheme we can do, or
 * credentials refused. Phase `proxy`, like every tunnel failure; the message
 * names the proxy (redacted), the schemes it offered and ours.
 */
export class ProxyAuthError extends ProxyTunnelError {
  /** the schemes the proxy offered, as it named them */
  readonly offered: string[]
  /** the scheme we answered with, when we could answer */
  readonly scheme?: ProxyAuthScheme
  constructor (proxy: ProxySpec, target: string, code: ProxyAuthFailureCode, detail: string, options: { offered: string[], scheme?: ProxyAuthScheme, status?: number, cause?: unknown }) {
    super(proxy, target, code, detail, options)
    this.offered = options.offered
    if (options.scheme != null) this.scheme = options.scheme
  }
}

export interface TunnelOptions extends AbortOptions {
  /** upper bound for the whole tunnel set-up when no signal ends it first @default 10000 */
  timeoutMs?: number
  /** what proxies asked for and how it went (and which offered Basic); absent: nothing remembered */
  auth?: ProxyAuthMemory
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
    return await httpConnect(proxy, socket, target, signal, options.auth)
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

/**
 * HTTP CONNECT on an open connection to the proxy, answering a 407 with a
 * scheme the proxy offers (proxy-auth.ts). The first CONNECT goes without
 * credentials, unless this proxy offered Basic before: a password never
 * goes in Basic to a proxy that did not offer Basic.
 */
async function httpConnect (proxy: ProxySpec, socket: Socket, target: string, signal: AbortSignal, memory?: ProxyAuthMemory): Promise<Socket> {
  const handshake = new ConnectHandshake(proxy, target, signal, socket, memory)
  try {
    return await authenticate(handshake, proxyCredentials(proxy))
  } catch (err) {
    handshake.socket.destroy()
    throw err
  }
}

async function authenticate (hs: ConnectHandshake, creds: ProxyCredentials | undefined): Promise<Socket> {
  const preemptive = creds != null && hs.memory?.offersBasic(hs.proxy) === true
  let answer = await hs.round(preemptive ? basicAuthorization(creds) : undefined)
  if (answer.status !== 407) return hs.opened(answer, preemptive ? 'basic' : undefined, [])
  const offered = challengesOf(answer)
  if (creds == null) throw hs.authError('PROXY_AUTH_REQUIRED', answer, offered)
  if (preemptive) throw hs.authError('PROXY_AUTH_FAILED', answer, offered, 'basic')
  const scheme = chooseScheme(offered)
  if (scheme == null) throw hs.authError('PROXY_AUTH_UNSUPPORTED', answer, offered)
  answer = scheme === 'basic'
    ? await hs.round(basicAuthorization(creds))
    : await connectionAuth(hs, scheme, creds, offered)
  if (answer.status === 407) throw hs.authError('PROXY_AUTH_FAILED', answer, offered, scheme)
  return hs.opened(answer, scheme, offered)
}

/**
 * NTLM, or NTLM inside Negotiate: the type 1 message, the proxy's challenge
 * in a 407, the type 3 answer. NTLM authenticates the connection, so the
 * three go on one connection; a proxy that closes it after the challenge
 * cannot be answered.
 */
async function connectionAuth (hs: ConnectHandshake, scheme: 'ntlm' | 'negotiate', creds: ProxyCredentials, offered: AuthChallenge[]): Promise<ConnectAnswer> {
  const challenge = await hs.round(firstAuthorization(scheme, creds))
  if (challenge.status !== 407) return challenge
  if (!challenge.reusable) {
    throw hs.authError('PROXY_AUTH_FAILED', challenge, offered, scheme, 'closed the connection after its challenge (the answer must go on the same connection)')
  }
  let answer: string
  try {
    answer = answerAuthorization(scheme, challengesOf(challenge), creds)
  } catch (err) {
    // a Negotiate proxy that answers our NTLM with no challenge, or a reject, wants Kerberos
    if (scheme === 'negotiate') throw hs.authError('PROXY_AUTH_UNSUPPORTED', challenge, offered, scheme, `refused NTLM inside Negotiate: ${(err as Error).message}`, err)
    throw hs.authError('PROXY_AUTH_FAILED', challenge, offered, scheme, `sent a challenge we cannot answer: ${(err as Error).message}`, err)
  }
  try {
    return await hs.round(answer, true)
  } catch (err) {
    if (!(err instanceof ProxyTunnelError) || err.code !== 'PROXY_UNREACHABLE') throw err
    throw hs.authError('PROXY_AUTH_FAILED', challenge, offered, scheme, `closed the connection instead of answering our ${scheme === 'ntlm' ? 'NTLM' : 'Negotiate'} response (${err.message})`, err)
  }
}

function challengesOf (answer: ConnectAnswer): AuthChallenge[] {
  return parseChallenges(answer.headers.get('proxy-authenticate') ?? [])
}

/** The connection through the rounds of one CONNECT: a new one when the proxy closed the last. */
class ConnectHandshake {
  readonly proxy: ProxySpec
  readonly target: string
  readonly memory?: ProxyAuthMemory
  socket: Socket
  private readonly signal: AbortSignal
  private last?: ConnectAnswer

  constructor (proxy: ProxySpec, target: string, signal: AbortSignal, socket: Socket, memory?: ProxyAuthMemory) {
    this.proxy = proxy
    this.target = target
    this.signal = signal
    this.socket = socket
    if (memory != null) this.memory = memory
  }

  /**
   * One CONNECT, on a new connection when the last answer left none to
   * reuse. A proxy may close a kept-alive connection after a 407 without
   * saying so (no `Connection: close`): a CONNECT that then gets no answer at
   * all goes once more on a new connection, unless `sameConnection` (the NTLM
   * answer to a challenge is only valid on the connection that carried it).
   */
  async round (authorization?: string, sameConnection = false): Promise<ConnectAnswer> {
    const reused = this.last != null
    if (this.last != null && !this.last.reusable) await this.reconnect()
    try {
      this.last = await connectRound(this.socket, this.target, authorization, this.signal)
      return this.last
    } catch (err) {
      if (!(reused && !sameConnection && err instanceof ConnectAnswerError && err.silent)) throw this.roundError(err)
    }
    await this.reconnect()
    try {
      this.last = await connectRound(this.socket, this.target, authorization, this.signal)
      return this.last
    } catch (err) {
      throw this.roundError(err)
    }
  }

  private async reconnect (): Promise<void> {
    this.socket.destroy()
    this.socket = await connectToProxy(this.proxy, this.target, this.signal)
  }

  private roundError (err: unknown): unknown {
    if (this.signal.aborted) {
      const reason = this.signal.reason as { name?: string } | undefined
      return reason?.name === 'TimeoutError'
        ? new ProxyTunnelError(this.proxy, this.target, 'PROXY_TIMEOUT', 'accepted the connection but did not answer the CONNECT in time', { cause: reason })
        : reason
    }
    if (!(err instanceof ConnectAnswerError)) return err
    return err.closed
      ? new ProxyTunnelError(this.proxy, this.target, 'PROXY_UNREACHABLE', err.message, { cause: err })
      : new ProxyTunnelError(this.proxy, this.target, 'PROXY_PROTOCOL_ERROR', `answered the CONNECT with something that is not HTTP: ${err.message}`, { cause: err })
  }

  /** A 2xx: the tunnel, with any bytes the proxy already relayed; anything else: its refusal. */
  opened (answer: ConnectAnswer, scheme: ProxyAuthScheme | undefined, offered: AuthChallenge[]): Socket {
    if (answer.status < 200 || answer.status >= 300) {
      throw refusal(this.proxy, this.target, answer.status, answer.statusText)
    }
    if (scheme != null) this.memory?.record(this.proxy, 'passed', { offered, scheme })
    if (answer.head.length > 0) this.socket.unshift(answer.head)
    return this.socket
  }

  authError (code: ProxyAuthFailureCode, answer: ConnectAnswer, offered: AuthChallenge[], scheme?: ProxyAuthScheme, why?: string, cause?: unknown): ProxyAuthError {
    const err = authFailure(this.proxy, this.target, code, answer, offered, scheme, why, cause)
    this.memory?.record(this.proxy, code === 'PROXY_AUTH_REQUIRED' ? 'required' : code === 'PROXY_AUTH_UNSUPPORTED' ? 'unsupported' : 'failed', {
      offered, code, detail: err.message, ...(scheme != null ? { scheme } : {})
    })
    return err
  }
}

const SCHEME_NAMES: Record<ProxyAuthScheme, string> = { basic: 'Basic', ntlm: 'NTLM', negotiate: 'Negotiate (NTLM inside SPNEGO)' }

function authFailure (proxy: ProxySpec, target: string, code: ProxyAuthFailureCode, answer: ConnectAnswer, offered: AuthChallenge[], scheme?: ProxyAuthScheme, why?: string, cause?: unknown): ProxyAuthError {
  const said = `${answer.status}${answer.statusText !== '' ? ` ${answer.statusText}` : ''}`
  const names = [...new Set(offered.map(c => c.name))]
  const wants = names.length > 0 ? `it asks for ${names.join(', ')}` : 'it names no scheme'
  const creds = proxyCredentials(proxy)
  const facts = { offered: names, status: answer.status, ...(scheme != null ? { scheme } : {}), ...(cause != null ? { cause } : {}) }
  switch (code) {
    case 'PROXY_AUTH_REQUIRED': {
      const ntlm = offered.some(c => c.scheme === 'ntlm' || c.scheme === 'negotiate') ? ', or http://DOMAIN%5Cuser:password@host:port for a Windows domain' : ''
      return new ProxyAuthError(proxy, target, code, `requires authentication: ${said} (${wants}); put them in ${proxy.source} as http://user:password@host:port${ntlm}`, facts)
    }
    case 'PROXY_AUTH_UNSUPPORTED':
      return new ProxyAuthError(proxy, target, code, `requires authentication we cannot do: ${why ?? said} (${wants}; we do Basic, NTLM and NTLM inside Negotiate, not Kerberos, which needs the system's GSS-API)`, facts)
    case 'PROXY_AUTH_FAILED': {
      const user = creds != null ? ` of ${credentialsLabel(creds)}` : ''
      const with_ = scheme != null ? ` with ${SCHEME_NAMES[scheme]}` : ''
      return new ProxyAuthError(proxy, target, code, `rejected the credentials${user}${with_}: ${why ?? said} (${wants}); check the user and password in ${proxy.source}`, facts)
    }
  }
}

function refusal (proxy: ProxySpec, target: string, status: number, statusText: string): ProxyTunnelError {
  const said = `${status}${statusText !== '' ? ` ${statusText}` : ''}`
  if (status === 403) {
    return new ProxyTunnelError(proxy, target, 'PROXY_DENIED', `refused the CONNECT: ${said} (its rules forbid this host or port; ask for CONNECT to ${target} to be allowed)`, { status })
  }
  if (status === 502 || status === 503 || status === 504) {
    return new ProxyTunnelError(proxy, target, 'PROXY_TARGET_FAILED', `could not reach the target: ${said}`, { status })
  }
  return new ProxyTunnelError(proxy, target, 'PROXY_DENIED', `refused the CONNECT: ${said}`, { status })
}

/**
 * The `socks` package, loaded at the first SOCKS5 proxy: with what it pulls in
 * (ip-address, smart-buffer: about 200 KB of source) it would sit in the heap
 * of every daemon, most of which never meet a SOCKS proxy.
 */
async function socksClient (proxy: ProxySpec, target: string): Promise<typeof import('socks').SocksClient> {
  try {
    return (await import('socks')).SocksClient
  } catch (err) {
    throw new ProxyTunnelError(proxy, target, 'PROXY_CLIENT_UNAVAILABLE', `was not asked: our SOCKS5 client (the socks package) did not load: ${(err as Error).message}`, { cause: err })
  }
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
  const SocksClient = await socksClient(proxy, target)
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
