/**
 * PCP (RFC 6887) and NAT-PMP (RFC 6886) clients: one UDP socket bound to our
 * LAN address, requests to the default gateway's port 5351, retransmitted
 * with a doubling timeout (RFC 6886 §3.1 starts at 250 ms) a few times only:
 * a gateway that speaks neither is common and must not hold up the next
 * protocol for long. PCP is written here because no maintained JavaScript
 * library speaks it; NAT-PMP beside it because the two share port, shape and
 * fallback (nat-port-mapper's NAT-PMP gateway binds the fixed client port
 * 5350, never retransmits, and turns a socket error into an unhandled
 * 'error' event).
 */
import { createSocket, type Socket } from 'node:dgram'
import type { PortMappingPhase, PortMappingProtocol } from '../core/types.ts'
import type { AbortOptions } from '@libp2p/interface'
import {
  decodeNatPmpExternalAddress, decodeNatPmpMap, decodePcpMap, encodeNatPmpExternalAddress, encodeNatPmpMap, encodePcpMap,
  newNonce, PCP_SERVER_PORT, PortMappingWireError, sameNonce, type MapResponse
} from './port-mapping-wire.ts'
import {
  PortMappingFailedError, PortMappingNoAnswerError, PortMappingRefusedError, PortMappingUnsupportedError,
  type GatewayMapping, type LanRoute, type MappingClient, type MappingRequest, type PortMappingWhere
} from './port-mapping-gateway.ts'

export interface UdpMappingInit {
  /** the gateway's port @default 5351 */
  serverPort?: number
  /** the first wait for an answer; doubled at each retransmission @default 250 */
  initialTimeoutMs?: number
  /** requests sent before giving up @default 4 (250 + 500 + 1000 + 2000 ms) */
  attempts?: number
}

/** A socket that never bound has nothing to close; #open turned the failure into the request's error. */
function bindFailureAlreadyReported (_err: unknown): void {}

/** Sends one request and waits for the first datagram from the gateway that `accept` takes. */
class Exchange {
  readonly #route: LanRoute
  readonly #protocol: PortMappingProtocol
  readonly #init: Required<UdpMappingInit>
  #socket?: Promise<Socket>
  #listeners = new Set<(msg: Buffer) => void>()
  #socketError?: Error

  constructor (route: LanRoute, protocol: PortMappingProtocol, init: UdpMappingInit) {
    this.#route = route
    this.#protocol = protocol
    this.#init = { serverPort: init.serverPort ?? PCP_SERVER_PORT, initialTimeoutMs: init.initialTimeoutMs ?? 250, attempts: init.attempts ?? 4 }
  }

  async request<T>(payload: Uint8Array, accept: (msg: Uint8Array) => T | undefined, phase: PortMappingPhase, options: AbortOptions = {}): Promise<T> {
    const where: PortMappingWhere = { protocol: this.#protocol, gateway: this.#route.gateway, phase }
    const socket = await this.#open(where)
    let timeoutMs = this.#init.initialTimeoutMs
    for (let attempt = 0; attempt < this.#init.attempts; attempt++) {
      options.signal?.throwIfAborted()
      socket.send(payload, this.#init.serverPort, this.#route.gateway)
      const answer = await this.#awaitAnswer(accept, timeoutMs, options.signal)
      if (answer !== undefined) return answer
      if (this.#socketError != null) throw new PortMappingFailedError(`socket error: ${this.#socketError.message}`, where, { cause: this.#socketError })
      timeoutMs *= 2
    }
    throw new PortMappingNoAnswerError(`no answer from ${this.#route.gateway}:${this.#init.serverPort} to ${this.#init.attempts} requests from ${this.#route.localAddress}`, where)
  }

  close (): void {
    void this.#socket?.then(s => { s.close() }, bindFailureAlreadyReported)
    this.#socket = undefined
  }

  async #open (where: PortMappingWhere): Promise<Socket> {
    this.#socket ??= new Promise<Socket>((resolve, reject) => {
      const socket = createSocket('udp4')
      socket.once('error', reject)
      socket.on('message', (msg, rinfo) => {
        if (rinfo.address !== this.#route.gateway) return
        for (const l of this.#listeners) l(msg)
      })
      // bound to our LAN address: PCP checks that the packet's source is the client address it carries
      socket.bind({ address: this.#route.localAddress, port: 0 }, () => {
        socket.off('error', reject)
        socket.on('error', (err) => { this.#socketError = err })
        resolve(socket)
      })
    })
    try {
      return await this.#socket
    } catch (err) {
      this.#socket = undefined
      throw new PortMappingFailedError(`cannot bind a UDP socket on ${this.#route.localAddress}: ${(err as Error).message}`, where, { cause: err })
    }
  }

  async #awaitAnswer<T>(accept: (msg: Uint8Array) => T | undefined, timeoutMs: number, signal?: AbortSignal): Promise<T | undefined> {
    return await new Promise<T | undefined>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer)
        this.#listeners.delete(onMessage)
        signal?.removeEventListener('abort', onAbort)
      }
      const onMessage = (msg: Buffer): void => {
        let value: T | undefined
        try {
          value = accept(new Uint8Array(msg))
        } catch (err) {
          // a stray or malformed datagram is not our answer: keep waiting
          if (err instanceof PortMappingWireError) return
          done()
          reject(err)
          return
        }
        if (value === undefined) return
        done()
        resolve(value)
      }
      const onAbort = (): void => { done(); reject(signal?.reason) }
      const timer = setTimeout(() => { done(); resolve(undefined) }, timeoutMs)
      this.#listeners.add(onMessage)
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }
}

/** A PCP MAP client (RFC 6887 §11): one nonce per listener, repeated on renewal and deletion. */
export class PcpClient implements MappingClient {
  readonly protocol = 'pcp'
  readonly gateway: string
  readonly #route: LanRoute
  readonly #exchange: Exchange
  readonly #nonces = new Map<string, Uint8Array>()

  constructor (route: LanRoute, init: UdpMappingInit = {}) {
    this.#route = route
    this.gateway = route.gateway
    this.#exchange = new Exchange(route, 'pcp', init)
  }

  async map (req: MappingRequest, options?: AbortOptions): Promise<GatewayMapping> {
    const key = `${req.transport}/${req.port}`
    const nonce = this.#nonces.get(key) ?? newNonce()
    this.#nonces.set(key, nonce)
    const res = await this.#send(req, nonce, req.lifetimeSeconds, 'map', options)
    return { transport: req.transport, host: req.host, port: req.port, externalHost: res.externalIp ?? '0.0.0.0', externalPort: res.externalPort, lifetimeSeconds: res.lifetimeSeconds }
  }

  async unmap (mapping: GatewayMapping, options?: AbortOptions): Promise<void> {
    const key = `${mapping.transport}/${mapping.port}`
    const nonce = this.#nonces.get(key)
    // a deletion with another nonce is refused (NOT_AUTHORIZED): only what we mapped can be deleted
    if (nonce == null) return
    await this.#send({ ...mapping, suggestedExternalPort: mapping.externalPort }, nonce, 0, 'unmap', options)
    this.#nonces.delete(key)
  }

  close (): void {
    this.#exchange.close()
  }

  async #send (req: MappingRequest, nonce: Uint8Array, lifetimeSeconds: number, phase: PortMappingPhase, options?: AbortOptions): Promise<MapResponse> {
    const where: PortMappingWhere = { protocol: 'pcp', gateway: this.gateway, phase }
    const payload = encodePcpMap({ protocol: req.transport, internalPort: req.port, suggestedExternalPort: req.suggestedExternalPort, lifetimeSeconds, clientIp: this.#route.localAddress, nonce })
    const res = await this.#exchange.request(payload, (msg) => {
      const r = decodePcpMap(msg)
      // an error answer may come without the MAP payload; a success must carry our nonce
      return r.result !== 0 || (sameNonce(r.nonce, nonce) && r.internalPort === req.port) ? r : undefined
    }, phase, options)
    if (res.result === 1) throw new PortMappingUnsupportedError('the gateway does not speak PCP (UNSUPP_VERSION)', where)
    if (res.result !== 0) throw new PortMappingRefusedError(res.resultName, where)
    return res
  }
}

/** A NAT-PMP client (RFC 6886): the external address asked once per mapping, since the MAP answer lacks it. */
export class NatPmpClient implements MappingClient {
  readonly protocol = 'natpmp'
  readonly gateway: string
  readonly #exchange: Exchange

  constructor (route: LanRoute, init: UdpMappingInit = {}) {
    this.gateway = route.gateway
    this.#exchange = new Exchange(route, 'natpmp', init)
  }

  async map (req: MappingRequest, options?: AbortOptions): Promise<GatewayMapping> {
    const res = await this.#send(req, req.lifetimeSeconds, 'map', options)
    const externalHost = await this.externalAddress(options)
    return { transport: req.transport, host: req.host, port: req.port, externalHost, externalPort: res.externalPort, lifetimeSeconds: res.lifetimeSeconds }
  }

  async unmap (mapping: GatewayMapping, options?: AbortOptions): Promise<void> {
    // RFC 6886 §3.4: lifetime 0 and suggested external port 0 delete the mapping
    await this.#send({ ...mapping, suggestedExternalPort: 0 }, 0, 'unmap', options)
  }

  async externalAddress (options?: AbortOptions): Promise<string> {
    const where: PortMappingWhere = { protocol: 'natpmp', gateway: this.gateway, phase: 'external-address' }
    const res = await this.#exchange.request(encodeNatPmpExternalAddress(), decodeNatPmpExternalAddress, 'external-address', options)
    if (res.result !== 0 || res.externalIp == null) throw new PortMappingRefusedError(res.resultName, where)
    return res.externalIp
  }

  close (): void {
    this.#exchange.close()
  }

  async #send (req: MappingRequest, lifetimeSeconds: number, phase: PortMappingPhase, options?: AbortOptions): Promise<MapResponse> {
    const where: PortMappingWhere = { protocol: 'natpmp', gateway: this.gateway, phase }
    const payload = encodeNatPmpMap({ protocol: req.transport, internalPort: req.port, suggestedExternalPort: req.suggestedExternalPort, lifetimeSeconds })
    const res = await this.#exchange.request(payload, (msg) => {
      const r = decodeNatPmpMap(msg, req.transport)
      return r.result !== 0 || r.internalPort === req.port ? r : undefined
    }, phase, options)
    if (res.result === 1) throw new PortMappingUnsupportedError('the gateway does not speak NAT-PMP (UNSUPPORTED_VERSION)', where)
    if (res.result !== 0) throw new PortMappingRefusedError(res.resultName, where)
    return res
  }
}
