import { tcp, type TCPOptions } from '@libp2p/tcp'
import { webSockets, type WebSocketsInit } from '@libp2p/websockets'
import type { WebSocket as UndiciWebSocket } from 'undici'
import { WorldComputeError } from '../core/errors.ts'
import { createLogger, type Logger } from '../log/logger.ts'
import { describeProxyEnvironment, hasProxy, isLoopbackHost, proxyFor, type ProxiedUse, type ProxyEnvironment, type ProxySpec } from './proxy-env.ts'
import { pacRouteUrl, type ProxyDiscovery } from './proxy-discovery.ts'
import { authority, openTunnel } from './proxy-tunnel.ts'
import { ProxyAuthMemory } from './proxy-auth.ts'
import { wsTargetOf } from './ws-diagnose.ts'
import { sendWholeMessages } from './whole-sends.ts'
import { routeListenerRequests, type HttpRouteTable } from './ws-http-routes.ts'
import { chainOf, type TlsChain } from './tls-intercept.ts'
import type { ProxyDiscoveryStatus, ProxyStatus } from '../core/types.ts'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { AbortOptions } from '@libp2p/interface'
import type { Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'

/**
 * Proxies on the libp2p transports. js-libp2p has no proxy support anywhere:
 * @libp2p/websockets v10 dials with `new WebSocket(uri)`
 * (the global WHATWG WebSocket, no agent or dispatcher option), @libp2p/tcp
 * with `net.connect()`. Both do it in one instance method, `_connect(ma,
 * options)`, which returns the open socket that `dial` then wraps and
 * upgrades. We replace that one method on the instance: when a proxy applies
 * to the target, the socket comes through the proxy; otherwise the original
 * runs untouched. Everything after it (the multiaddr connection, Noise,
 * yamux, metrics) stays the library's own. The wrappers check that the method
 * exists, so a libp2p upgrade that renames it fails at start-up, loudly.
 *
 * Alternatives measured in the namespace lab and rejected: a global undici
 * dispatcher or NODE_USE_ENV_PROXY works but is process-wide and reports a
 * refused CONNECT as an empty ErrorEvent; an https-proxy-agent is silently
 * ignored by @libp2p/websockets.
 */

/** Progress events of a proxied dial, mapped to the `proxy` phase by dial-error.ts. */
export const PROXY_TUNNEL_EVENT = 'proxy:open-tunnel'
export const PROXY_TUNNEL_OPEN_EVENT = 'proxy:tunnel-open'
export const WEBSOCKET_UPGRADE_EVENT = 'websockets:upgrade'

interface ProgressOptions {
  signal?: AbortSignal
  onProgress?: (evt: { type: string, detail?: unknown }) => void
}

/** The tunnel opened, but what ran inside it failed (TLS to the relay, the WebSocket upgrade). */
export class ProxiedDialError extends WorldComputeError {
  readonly phase: 'tls' | 'ws-upgrade'
  readonly proxy: string
  constructor (message: string, code: string, phase: 'tls' | 'ws-upgrade', proxy: string, options?: { cause?: unknown }) {
    super(message, code, options)
    this.phase = phase
    this.proxy = proxy
  }
}

interface OpenTunnel {
  proxy: ProxySpec
  use: ProxiedUse
  /** the multiaddr dialled through it */
  addr: string
  since: number
}

/** How a PAC answer spells each kind of proxy. */
const PAC_KEYWORD: Record<ProxySpec['kind'], string> = { http: 'PROXY', https: 'HTTPS', socks5: 'SOCKS5', socks5h: 'SOCKS5' }

/** One way to reach a target: through a proxy, or direct (undefined). */
export type ProxyCandidate = ProxySpec | undefined

/**
 * Decides per dial whether a proxy applies and keeps the tunnels that are
 * open, for `status` ("does the relay path use the proxy?").
 *
 * The environment's proxies come first. With none there, a PAC (named by the
 * operator, or found by WPAD after a direct dial failed: proxy-discovery.ts)
 * names the candidates of each dial in order, each one tried until one opens.
 */
export class ProxyRouter {
  readonly env: ProxyEnvironment
  readonly log: Logger
  /** PAC / WPAD; absent: the environment alone decides */
  readonly discovery?: ProxyDiscovery
  private readonly open = new Set<OpenTunnel>()
  /** what each proxy asked for and how we answered (proxy-auth.ts) */
  readonly auth = new ProxyAuthMemory()
  /** the TLS chain each proxied `wss` dial actually got, by address without /p2p (tls-intercept.ts compares it with the relay's) */
  private readonly chains = new Map<string, TlsChain>()

  constructor (env: ProxyEnvironment, logger: Logger = createLogger('net.proxy'), discovery?: ProxyDiscovery) {
    this.env = env
    this.log = logger
    // a proxy in the environment is the operator's choice: no PAC second-guesses it
    if (discovery != null && !hasProxy(env)) this.discovery = discovery
  }

  get enabled (): boolean {
    return hasProxy(this.env)
  }

  /** Whether a dial may go through a proxy, now or once discovery finds one: the transports' wrappers are installed. */
  get mayProxy (): boolean {
    return this.enabled || this.discovery != null
  }

  /** The PAC discovery's state; undefined when this node does none. */
  discoveryStatus (): ProxyDiscoveryStatus | undefined {
    return this.discovery?.status()
  }

  /**
   * The candidates of one dial, in order: the environment's proxy, else what
   * the PAC names (a {@link PacError} when it fails: no direct fallback, the
   * network's PAC said nothing usable), else direct.
   */
  async candidates (use: ProxiedUse, host: string, port: number, options: AbortOptions = {}): Promise<ProxyCandidate[]> {
    if (this.discovery == null || (this.env.directLoopback !== false && isLoopbackHost(host))) return [this.proxyFor(use, host, port)]
    const pac = this.discovery.explicit ? await this.discovery.ready(options) : this.discovery.current()
    if (pac == null) return [undefined]
    const url = pacRouteUrl(use, host, port)
    try {
      const routes = await pac.findProxy(url, host, options)
      this.discovery.recordAnswer(url, routes.map(r => r.type === 'direct' ? 'DIRECT' : `${PAC_KEYWORD[r.spec.kind]} ${r.spec.url.replace(/^[a-z0-9]+:\/\//, '')}`).join('; '))
      return routes.map(r => r.type === 'direct' ? undefined : r.spec)
    } catch (err) {
      this.discovery.recordAnswer(url, `error ${(err as { code?: string }).code ?? ''}: ${(err as Error).message}`)
      throw err
    }
  }

  /**
   * Tries each candidate until one opens; a failed direct dial starts WPAD
   * discovery (once) when nothing is configured, so later dials can use what
   * it finds. The last candidate's error is the dial's.
   */
  async firstOpen <T>(candidates: readonly ProxyCandidate[], host: string, open: (proxy: ProxyCandidate) => Promise<T>, options: AbortOptions = {}): Promise<T> {
    let lastError: unknown
    for (const proxy of candidates) {
      try {
        return await open(proxy)
      } catch (err) {
        lastError = err
        // a failure after a move to another network: what WPAD found (or not) was for the old one
        this.discovery?.checkNetwork()
        if (proxy == null) this.directFailed(host)
        if (options.signal?.aborted === true) break
        if (candidates.length > 1) this.log.debug(`${proxy?.url ?? 'DIRECT'} failed for ${host}: ${(err as Error)?.message}; trying the next PAC candidate`)
      }
    }
    throw lastError
  }

  private directFailed (host: string): void {
    const d = this.discovery
    if (d == null || d.explicit || d.status().state !== 'not-needed' || (this.env.directLoopback !== false && isLoopbackHost(host))) return
    this.log.info(`a direct dial to ${host} failed and no proxy is configured: looking for the network's proxy (WPAD)`, { code: 'PROXY_DISCOVERY_START' })
    d.start().catch((err: Error) => { this.log.warn(`proxy discovery failed: ${err.message}`, { code: 'PROXY_DISCOVERY_FAILED' }) })
  }

  describe (): string {
    return describeProxyEnvironment(this.env)
  }

  proxyFor (use: ProxiedUse, host: string, port: number): ProxySpec | undefined {
    return proxyFor(this.env, use, host, port)
  }

  /** Opens a tunnel and tracks it until its socket closes. */
  async tunnel (proxy: ProxySpec, use: ProxiedUse, addr: string, host: string, port: number, options: ProgressOptions): Promise<Socket> {
    options.onProgress?.({ type: PROXY_TUNNEL_EVENT, detail: { proxy: proxy.url } })
    const started = Date.now()
    const socket = await openTunnel(proxy, host, port, { signal: options.signal, auth: this.auth })
    this.log.debug(`tunnel to ${authority(host, port)} through ${proxy.url} open in ${Date.now() - started} ms (${use} ${addr})`)
    const entry: OpenTunnel = { proxy, use, addr, since: Date.now() }
    this.open.add(entry)
    socket.once('close', () => { this.open.delete(entry) })
    options.onProgress?.({ type: PROXY_TUNNEL_OPEN_EVENT })
    return socket
  }

  /** Records the chain a proxied `wss` dial to `addr` was served; the last 32 addresses are kept. */
  recordChain (addr: string, chain: TlsChain): void {
    const key = bareAddr(addr)
    this.chains.delete(key)
    this.chains.set(key, chain)
    if (this.chains.size > 32) this.chains.delete(this.chains.keys().next().value as string)
  }

  /** The chain the last proxied `wss` dial to `addr` was served, if it went through a proxy. */
  seenChain (addr: string): TlsChain | undefined {
    return this.chains.get(bareAddr(addr))
  }

  /** The multiaddrs with an open tunnel through a proxy right now. */
  tunnelledAddrs (): Map<string, ProxySpec> {
    return new Map([...this.open].map(t => [t.addr, t.proxy]))
  }

  /**
   * One entry per configured proxy; `inUse` when a connection to one of
   * `relayAddrs` (the donor's relay connections) goes through it.
   */
  status (relayConnections: ReadonlyArray<{ peerId: string, remoteAddr: string }>): ProxyStatus[] {
    const byUrl = new Map<string, { spec: ProxySpec, usedFor: ProxiedUse[] }>()
    // by value: each PAC answer is parsed into new ProxySpec objects for the same proxy
    const keyOf = (spec: ProxySpec): string => `${spec.source}|${spec.url}`
    const add = (spec: ProxySpec | undefined, use: ProxiedUse): void => {
      if (spec == null) return
      const key = keyOf(spec)
      const e = byUrl.get(key) ?? { spec, usedFor: [] }
      if (!e.usedFor.includes(use)) e.usedFor.push(use)
      byUrl.set(key, e)
    }
    add(this.env.https ?? this.env.all, 'wss')
    add(this.env.http ?? this.env.https ?? this.env.all, 'ws')
    add(this.env.all, 'tcp')
    const tunnels = [...this.open]
    // proxies a PAC named, while a tunnel through them is open
    for (const t of tunnels) if (!hasProxy(this.env)) add(t.proxy, t.use)
    // the dialled address may or may not carry the trailing /p2p/<peer>; the connection's may differ
    const bare = (addr: string): string => addr.replace(/\/p2p\/[^/]+$/, '')
    return [...byUrl.values()].map(({ spec, usedFor }) => {
      const mine = tunnels.filter(t => keyOf(t.proxy) === keyOf(spec))
      const relays = relayConnections.filter(c => mine.some(t => bare(t.addr) === bare(c.remoteAddr))).map(c => c.peerId)
      return {
        url: spec.url,
        kind: spec.kind,
        source: spec.source,
        usedFor,
        noProxyRules: this.env.noProxy.length,
        inUse: relays.length > 0,
        relays: [...new Set(relays)],
        tunnels: mine.length,
        ...(this.auth.view(spec) != null ? { auth: this.auth.view(spec) } : {})
      }
    })
  }
}

function bareAddr (addr: string): string {
  return addr.replace(/\/p2p\/[^/]+$/, '')
}

function checkConnect (transport: Record<string, unknown>, name: string): (ma: Multiaddr, options: any) => Promise<any> {
  const original = transport._connect
  if (typeof original !== 'function') {
    throw new WorldComputeError(`${name} has no _connect method: this libp2p version is not the one the proxy support was written for (src/net/proxy-transports.ts)`, 'PROXY_UNSUPPORTED')
  }
  return (original as (ma: Multiaddr, options: any) => Promise<any>).bind(transport)
}

/** @libp2p/tcp, whose dials go through ALL_PROXY (SOCKS5, or HTTP CONNECT) when it applies. */
export function proxiedTcp (init: TCPOptions, router: ProxyRouter): (components: any) => any {
  const factory = tcp(init)
  return (components: any) => {
    const transport = factory(components) as any
    sendWholeMessages(transport)
    if (router.env.all == null && router.discovery == null) return transport
    const original = checkConnect(transport, '@libp2p/tcp')
    transport._connect = async (ma: Multiaddr, options: ProgressOptions & Record<string, unknown>): Promise<Socket> => {
      const target = tcpTargetOf(ma)
      if (target == null) return await original(ma, options)
      const candidates = await router.candidates('tcp', target.host, target.port, options)
      return await router.firstOpen(candidates, target.host, async (proxy) => {
        if (proxy == null) return await original(ma, options)
        options.signal?.throwIfAborted()
        const socket = await router.tunnel(proxy, 'tcp', ma.toString(), target.host, target.port, options)
        // what @libp2p/tcp sets on the sockets it opens itself
        socket.setNoDelay(options.noDelay !== false)
        socket.setKeepAlive(options.keepAlive !== false)
        return socket
      }, options)
    }
    return transport
  }
}

/** host and port of an `/ip4|ip6|dns*​/…/tcp/N` address. */
export function tcpTargetOf (ma: Multiaddr): { host: string, port: number } | undefined {
  const parts = ma.toString().split('/')
  if (!['ip4', 'ip6', 'dns', 'dns4', 'dns6'].includes(parts[1]) || parts[3] !== 'tcp') return undefined
  const port = Number(parts[4])
  return Number.isInteger(port) ? { host: parts[2], port } : undefined
}

/** @libp2p/websockets, whose dials go through HTTPS_PROXY / HTTP_PROXY / ALL_PROXY when one applies. */
export function proxiedWebSockets (init: WebSocketsInit, router: ProxyRouter, routes?: HttpRouteTable): (components: any) => any {
  const factory = webSockets(init)
  return (components: any) => {
    const transport = factory(components) as any
    if (routes != null) routeRequestsOf(transport, routes)
    sendWholeMessages(transport)
    if (!router.mayProxy) return transport
    const original = checkConnect(transport, '@libp2p/websockets')
    transport._connect = async (ma: Multiaddr, options: ProgressOptions): Promise<unknown> => {
      const target = wsTargetOf(ma.toString())
      if (target == null) return await original(ma, options)
      const use: ProxiedUse = target.tls ? 'wss' : 'ws'
      const candidates = await router.candidates(use, target.host, target.port, options)
      return await router.firstOpen(candidates, target.host, async (proxy) => proxy == null
        ? await original(ma, options)
        : await webSocketThroughProxy(router, proxy, use, ma, target, options), options)
    }
    return transport
  }
}

/** Every listener the transport creates answers plain HTTP requests through `routes` first. */
function routeRequestsOf (transport: Record<string, unknown>, routes: HttpRouteTable): void {
  const createListener = transport.createListener
  if (typeof createListener !== 'function') throw new WorldComputeError('@libp2p/websockets has no createListener method (src/net/proxy-transports.ts)', 'HTTP_ROUTES_UNSUPPORTED')
  transport.createListener = (options: unknown): unknown => {
    const listener = createListener.call(transport, options) as Record<string, unknown>
    routeListenerRequests(listener, routes)
    return listener
  }
}

/**
 * A WHATWG WebSocket (undici's, the same implementation as Node's global one
 * that @libp2p/websockets uses) whose one connection is our tunnel: a
 * per-dial undici Agent with a custom `connect` hands the tunnel over, and
 * for `wss` runs undici's own TLS connector on top of it (`httpSocket`, the
 * way undici's ProxyAgent layers TLS over a CONNECT tunnel).
 */
async function webSocketThroughProxy (router: ProxyRouter, proxy: ProxySpec, use: ProxiedUse, ma: Multiaddr, target: NonNullable<ReturnType<typeof wsTargetOf>>, options: ProgressOptions): Promise<unknown> {
  const signal = options.signal ?? AbortSignal.timeout(10_000)
  signal.throwIfAborted()
  const host = target.host.includes(':') ? `[${target.host}]` : target.host
  const uri = `${target.tls ? 'wss' : 'ws'}://${host}:${target.port}/`
  let tunnelError: unknown
  let tlsError: unknown
  let tunnelled = false
  // undici (~110 modules) loads only for a WebSocket through a proxy, not at every start
  const { Agent, WebSocket, buildConnector } = await import('undici')
  const tls = target.tls ? buildConnector({ servername: target.servername, ALPNProtocols: ['http/1.1'] } as any) : undefined
  const agent = new Agent({
    // one WebSocket per agent: no pooling, no reuse of a tunnel for another target
    connections: 1,
    pipelining: 0,
    connect: (connectOpts, callback) => {
      router.tunnel(proxy, use, ma.toString(), target.host, target.port, { signal, onProgress: options.onProgress }).then((socket) => {
        tunnelled = true
        if (tls == null) {
          options.onProgress?.({ type: WEBSOCKET_UPGRADE_EVENT })
          callback(null, socket)
          return
        }
        tls({ ...connectOpts, httpSocket: socket }, (err, secure) => {
          if (err != null) {
            tlsError = err
            socket.destroy()
            callback(err, null)
            return
          }
          try {
            router.recordChain(ma.toString(), chainOf(secure as TLSSocket, target.host, target.port, proxy.url, target.servername))
          } catch (chainErr) {
            // the WebSocket still works; the interception check then probes instead
            router.log.debug(`no certificate chain readable from the TLS socket to ${uri}: ${(chainErr as Error).message}`)
          }
          options.onProgress?.({ type: WEBSOCKET_UPGRADE_EVENT })
          callback(null, secure as TLSSocket)
        })
      }, (err: unknown) => {
        tunnelError = err
        callback(err as Error, null)
      })
    }
  })
  const ws = new WebSocket(uri, { dispatcher: agent })
  ws.binaryType = 'arraybuffer'
  try {
    await opened(ws, signal)
  } catch (err) {
    try {
      ws.close()
    } catch (closeErr) {
      router.log.trace(`closing a WebSocket that never opened: ${(closeErr as Error).message}`)
    }
    agent.destroy().catch((destroyErr: Error) => { router.log.trace(`closing the per-dial agent: ${destroyErr.message}`) })
    if (signal.aborted) throw signal.reason
    if (tunnelError != null) throw tunnelError
    if (tlsError != null) {
      throw new ProxiedDialError(`TLS to ${authority(target.host, target.port)} inside the tunnel through ${proxy.url} failed: ${(tlsError as Error).message}`, 'TLS_FAILED', 'tls', proxy.url, { cause: tlsError })
    }
    throw new ProxiedDialError(tunnelled
      ? `the tunnel through ${proxy.url} to ${authority(target.host, target.port)} opened, but the WebSocket upgrade failed (not a WebSocket endpoint, or the connection was reset)`
      : `the WebSocket through ${proxy.url} failed before the tunnel opened`, 'WS_UPGRADE_FAILED', 'ws-upgrade', proxy.url, { cause: err })
  }
  // the upgraded socket now belongs to the WebSocket; the agent has nothing left to pool
  agent.close().catch((err: Error) => { router.log.debug(`closing the per-dial agent of ${uri}: ${err.message}`) })
  return ws
}

/** Resolves when the WebSocket opens; rejects on its error or close, or when the signal fires. */
async function opened (ws: UndiciWebSocket, signal: AbortSignal): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const cleanup = (): void => {
      ws.removeEventListener('open', onOpen)
      ws.removeEventListener('error', onError)
      ws.removeEventListener('close', onClose)
      signal.removeEventListener('abort', onAbort)
    }
    const onOpen = (): void => { cleanup(); resolve() }
    const onError = (evt: unknown): void => { cleanup(); reject(evt) }
    const onClose = (evt: unknown): void => { cleanup(); reject(evt) }
    const onAbort = (): void => { cleanup(); reject(signal.reason) }
    ws.addEventListener('open', onOpen)
    ws.addEventListener('error', onError)
    ws.addEventListener('close', onClose)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
