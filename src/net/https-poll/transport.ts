import net, { type Socket } from 'node:net'
import tls from 'node:tls'
import type { IncomingMessage } from 'node:http'
import { serviceCapabilities, transportSymbol, type ComponentLogger, type Connection, type CreateListenerOptions, type DialTransportOptions, type Listener, type Transport, type Upgrader } from '@libp2p/interface'
import { ipPortToMultiaddr } from '@libp2p/utils'
import type { Multiaddr } from '@multiformats/multiaddr'
import { createLogger, type Logger } from '../../log/logger.ts'
import type { ProxyRouter } from '../proxy-transports.ts'
import type { HttpRouteTable } from '../ws-http-routes.ts'
import { isPollAddr, pollTargetOf, type PollTarget } from './address.ts'
import { ClientSession, openSession, type ClientSessionInit } from './client-session.ts'
import { PollConnection } from './connection.ts'
import { HttpsPollError } from './errors.ts'
import { pollHttp } from './http-client.ts'
import { PollListener } from './listener.ts'
import { PollServer, type PollServerInit } from './server.ts'
import type { ServerSession } from './session.ts'

/** Progress events of a poll dial, mapped to phases by dial-error.ts. */
export const POLL_TLS_EVENT = 'https-poll:tls'
export const POLL_OPEN_SESSION_EVENT = 'https-poll:open-session'

export interface HttpsPollInit {
  /** the relay's side: limits of its sessions */
  server?: PollServerInit
  /** the donor's side: request sizes, timeouts, retries */
  client?: Omit<ClientSessionInit, 'http' | 'path' | 'id' | 'log'>
  logger?: Logger
}

export interface HttpsPollComponents {
  logger: ComponentLogger
  transportManager?: { getListeners: () => Listener[] }
}

type Progress = (evt: { type: string }) => void

/**
 * libp2p over plain HTTPS request/response exchanges (long polling), the
 * last rung for networks whose proxy passes no WebSocket upgrade. A dial
 * opens a session with POSTs to the relay's 443 (through the proxy's CONNECT
 * tunnel when one applies, TLS inside it) and hands the session, as a
 * MultiaddrConnection, to the upgrader: Noise authenticates the relay end to
 * end whatever re-signs the TLS in between. The listener binds nothing: it
 * serves a route on the WebSocket listeners' table (ws-http-routes.ts) and
 * upgrades each new session as an inbound connection.
 */
export class HttpsPollTransport implements Transport {
  readonly [transportSymbol] = true
  readonly [Symbol.toStringTag] = '@worldcompute/https-poll'
  readonly [serviceCapabilities] = ['@libp2p/transport']
  readonly #components: HttpsPollComponents
  readonly #init: HttpsPollInit
  readonly #proxies?: ProxyRouter
  readonly #routes?: HttpRouteTable
  readonly #log: Logger
  /** one route for every listener; the upgraders of the listeners using it */
  #server?: { server: PollServer, remove: () => void, upgraders: Set<Upgrader>, shutdown: AbortController }

  constructor (components: HttpsPollComponents, init: HttpsPollInit, proxies?: ProxyRouter, routes?: HttpRouteTable) {
    this.#components = components
    this.#init = init
    this.#proxies = proxies
    this.#routes = routes
    this.#log = init.logger ?? createLogger('net.https-poll')
  }

  async dial (ma: Multiaddr, options: DialTransportOptions): Promise<Connection> {
    const target = pollTargetOf(ma)
    if (target == null) throw new HttpsPollError(`not an HTTPS poll address: ${ma.toString()}`, 'POLL_BAD_ADDRESS', 'tcp-connect')
    options.signal.throwIfAborted()
    let dialling = true
    let progress: Progress | undefined = options.onProgress as Progress | undefined
    const http = pollHttp({
      authority: `${target.host.includes(':') ? `[${target.host}]` : target.host}:${target.port}`,
      connect: async (signal) => {
        const socket = await this.#connect(ma, target, dialling ? AbortSignal.any([signal, options.signal]) : signal, progress)
        // only the first connection of a session is part of the dial's progress
        progress = undefined
        return socket
      }
    })
    let maConn: PollConnection | undefined
    try {
      const id = await openSession(http, target.path, options.signal)
      const session = new ClientSession({ ...this.#init.client, http, path: target.path, id, log: this.#log })
      maConn = new PollConnection({ end: session, remoteAddr: ma, direction: 'outbound', log: this.#components.logger.forComponent('libp2p:https-poll:connection') })
      const conn = await options.upgrader.upgradeOutbound(maConn, options)
      dialling = false
      return conn
    } catch (err) {
      if (maConn != null) maConn.abort(err as Error)
      else http.close()
      throw err
    }
  }

  createListener (options: CreateListenerOptions): Listener {
    return new PollListener({
      register: () => { this.#register(options.upgrader) },
      unregister: () => { this.#unregister(options.upgrader) },
      wsAddrs: () => this.#wsListenerAddrs()
    })
  }

  listenFilter (multiaddrs: Multiaddr[]): Multiaddr[] {
    return this.#routes == null ? [] : multiaddrs.filter(isPollAddr)
  }

  dialFilter (multiaddrs: Multiaddr[]): Multiaddr[] {
    return multiaddrs.filter(isPollAddr)
  }

  /** Direct, or through the proxy's CONNECT tunnel when one applies; TLS on top for `/tls` addresses. */
  async #connect (ma: Multiaddr, target: PollTarget, signal: AbortSignal, progress?: Progress): Promise<Socket> {
    const proxy = this.#proxies?.proxyFor(target.tls ? 'wss' : 'ws', target.host, target.port)
    const raw = proxy != null && this.#proxies != null
      ? await this.#proxies.tunnel(proxy, target.tls ? 'wss' : 'ws', ma.toString(), target.host, target.port, { signal, onProgress: progress })
      : await tcpConnect(target, signal)
    if (!target.tls) {
      progress?.({ type: POLL_OPEN_SESSION_EVENT })
      return raw
    }
    progress?.({ type: POLL_TLS_EVENT })
    const secure = await tlsOver(raw, target, signal, proxy?.url)
    progress?.({ type: POLL_OPEN_SESSION_EVENT })
    return secure
  }

  #register (upgrader: Upgrader): void {
    if (this.#routes == null) throw new HttpsPollError('the HTTPS poll transport listens only on a node with WebSocket HTTP routes', 'POLL_NO_ROUTES', 'http')
    if (this.#server == null) {
      const server = new PollServer({ ...this.#init.server, logger: this.#log }, (session, req) => { this.#inbound(session, req) })
      this.#server = { server, remove: this.#routes.add(server.route), upgraders: new Set(), shutdown: new AbortController() }
    }
    this.#server.upgraders.add(upgrader)
  }

  #unregister (upgrader: Upgrader): void {
    const s = this.#server
    if (s == null) return
    s.upgraders.delete(upgrader)
    if (s.upgraders.size > 0) return
    s.remove()
    s.shutdown.abort(new Error('the poll listener closed'))
    s.server.closeAll()
    this.#server = undefined
  }

  #inbound (session: ServerSession, req: IncomingMessage): void {
    const upgrader = this.#server?.upgraders.values().next().value
    const shutdown = this.#server?.shutdown.signal
    if (upgrader == null || shutdown == null) { session.reset(new Error('no listener')); return }
    const tlsOn = 'encrypted' in req.socket
    const remoteAddr = ipPortToMultiaddr(req.socket.remoteAddress ?? '0.0.0.0', req.socket.remotePort ?? 0).encapsulate(tlsOn ? '/tls/http' : '/http')
    const maConn = new PollConnection({ end: session, remoteAddr, direction: 'inbound', log: this.#components.logger.forComponent('libp2p:https-poll:connection') })
    // the listener's lifetime, as @libp2p/websockets' listener does: the upgrader bounds the handshake itself
    upgrader.upgradeInbound(maConn, { signal: shutdown }).catch((err: Error) => {
      this.#log.debug(`inbound poll session from ${session.ip} failed to upgrade: ${err.message}`, { transport: 'https-poll', phase: 'noise' })
      maConn.abort(err)
    })
  }

  /** The addresses of the node's WebSocket listeners (the poll route answers on each). */
  #wsListenerAddrs (): Multiaddr[] {
    const listeners = this.#components.transportManager?.getListeners() ?? []
    return listeners.filter(l => !(l instanceof PollListener)).flatMap(l => l.getAddrs()).filter(a => /\/ws$/.test(a.toString()))
  }
}

async function tcpConnect (target: PollTarget, signal: AbortSignal): Promise<Socket> {
  return await new Promise<Socket>((resolve, reject) => {
    const socket = net.connect({ host: target.host, port: target.port, noDelay: true })
    const onAbort = (): void => { socket.destroy(); reject(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
    socket.once('connect', () => { signal.removeEventListener('abort', onAbort); resolve(socket) })
    socket.once('error', (err) => { signal.removeEventListener('abort', onAbort); reject(err) })
  })
}

/** TLS over `raw`, verified against the OS / Node trust store (a re-signing proxy's CA belongs there). */
async function tlsOver (raw: Socket, target: PollTarget, signal: AbortSignal, proxyUrl?: string): Promise<Socket> {
  return await new Promise<Socket>((resolve, reject) => {
    const secure = tls.connect({ socket: raw, ...(target.servername != null ? { servername: target.servername } : {}), host: target.host, ALPNProtocols: ['http/1.1'] })
    const fail = (err: unknown): void => {
      signal.removeEventListener('abort', onAbort)
      secure.destroy()
      const via = proxyUrl != null ? ` inside the tunnel through ${proxyUrl}` : ''
      reject(new HttpsPollError(`TLS to ${target.host}:${target.port}${via} failed: ${(err as Error).message}`, 'TLS_FAILED', 'tls', { cause: err }))
    }
    const onAbort = (): void => { secure.destroy(); raw.destroy(); reject(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
    secure.once('secureConnect', () => { signal.removeEventListener('abort', onAbort); secure.off('error', fail); resolve(secure) })
    secure.once('error', fail)
  })
}

/** The transport's factory, for libp2p's `transports` list. */
export function httpsPoll (init: HttpsPollInit, proxies?: ProxyRouter, routes?: HttpRouteTable): (components: HttpsPollComponents) => HttpsPollTransport {
  return (components) => new HttpsPollTransport(components, init, proxies, routes)
}
