/**
 * A UPnP IGD client (WANIPConnection / WANPPPConnection, versions 1 and 2):
 * SSDP M-SEARCH from our LAN address only, the description of the device
 * at the default gateway, then SOAP AddPortMapping, GetExternalIPAddress and
 * DeletePortMapping. Written here rather than through nat-port-mapper
 * (4.0.x): it searches for IGD version 2 only (most home routers announce
 * version 1), deletes a mapping by its internal port with an empty protocol
 * and swallows the error, enforces leases of at least an hour, and sends SSDP
 * from every interface of the host; a mapping we cannot delete at stop or a
 * search on interfaces that are not the LAN's is what we must not do.
 */
import { createSocket, type Socket } from 'node:dgram'
import type { PortMappingPhase } from '../core/types.ts'
import type { AbortOptions } from '@libp2p/interface'
import {
  PortMappingFailedError, PortMappingNoAnswerError, PortMappingRefusedError,
  type GatewayMapping, type LanRoute, type MappingClient, type MappingRequest, type PortMappingWhere
} from './port-mapping-gateway.ts'

const SSDP_ADDRESS = '239.255.255.250'
const SSDP_PORT = 1900
const SEARCH_TARGETS = [
  'urn:schemas-upnp-org:device:InternetGatewayDevice:1',
  'urn:schemas-upnp-org:device:InternetGatewayDevice:2'
]
const WAN_SERVICES = [
  'urn:schemas-upnp-org:service:WANIPConnection:2',
  'urn:schemas-upnp-org:service:WANIPConnection:1',
  'urn:schemas-upnp-org:service:WANPPPConnection:1'
]
/** UPnP error 718: the external port is taken; 725: only permanent leases */
const CONFLICT_IN_MAPPING_ENTRY = 718
const ONLY_PERMANENT_LEASES = 725

export interface UpnpInit {
  /** how long to wait for the gateway's SSDP answer @default 3000 */
  searchTimeoutMs?: number
  /** one SOAP or description request @default 5000 */
  requestTimeoutMs?: number
  /** the mapping's description at the router @default 'worldcompute' */
  description?: string
}

interface ControlPoint { url: string, serviceType: string }

export class UpnpClient implements MappingClient {
  readonly protocol = 'upnp'
  readonly gateway: string
  readonly #route: LanRoute
  readonly #init: Required<UpnpInit>
  #control?: ControlPoint
  #externalHost?: string

  constructor (route: LanRoute, init: UpnpInit = {}) {
    this.#route = route
    this.gateway = route.gateway
    this.#init = { searchTimeoutMs: init.searchTimeoutMs ?? 3000, requestTimeoutMs: init.requestTimeoutMs ?? 5000, description: init.description ?? 'worldcompute' }
  }

  async map (req: MappingRequest, options?: AbortOptions): Promise<GatewayMapping> {
    const control = await this.#controlPoint(options)
    let externalPort = req.suggestedExternalPort
    let lifetimeSeconds = req.lifetimeSeconds
    for (let attempt = 0; ; attempt++) {
      try {
        await this.#soap(control, 'AddPortMapping', [
          ['NewRemoteHost', ''], ['NewExternalPort', String(externalPort)], ['NewProtocol', req.transport.toUpperCase()],
          ['NewInternalPort', String(req.port)], ['NewInternalClient', req.host], ['NewEnabled', '1'],
          ['NewPortMappingDescription', this.#init.description], ['NewLeaseDuration', String(lifetimeSeconds)]
        ], 'map', options)
        break
      } catch (err) {
        const upnpCode = err instanceof PortMappingRefusedError ? Number(err.result.split(' ')[0]) : NaN
        if (upnpCode === ONLY_PERMANENT_LEASES && lifetimeSeconds !== 0) { lifetimeSeconds = 0; continue }
        // the port is another host's at the router: another one, a few times
        if (upnpCode === CONFLICT_IN_MAPPING_ENTRY && attempt < 3) { externalPort = 20_000 + Math.floor(Math.random() * 40_000); continue }
        throw err
      }
    }
    this.#externalHost ??= await this.#externalAddress(control, options)
    return { transport: req.transport, host: req.host, port: req.port, externalHost: this.#externalHost, externalPort, lifetimeSeconds }
  }

  async unmap (mapping: GatewayMapping, options?: AbortOptions): Promise<void> {
    const control = await this.#controlPoint(options)
    await this.#soap(control, 'DeletePortMapping', [
      ['NewRemoteHost', ''], ['NewExternalPort', String(mapping.externalPort)], ['NewProtocol', mapping.transport.toUpperCase()]
    ], 'unmap', options)
  }

  close (): void {
    this.#control = undefined
  }

  async #externalAddress (control: ControlPoint, options?: AbortOptions): Promise<string> {
    const body = await this.#soap(control, 'GetExternalIPAddress', [], 'external-address', options)
    const ip = tagText(body, 'NewExternalIPAddress')
    if (ip == null || ip === '') throw new PortMappingFailedError('GetExternalIPAddress answered without an address', this.#where('external-address'))
    return ip
  }

  async #controlPoint (options?: AbortOptions): Promise<ControlPoint> {
    if (this.#control != null) return this.#control
    const location = await this.#search(options)
    const res = await this.#fetch(location, { method: 'GET' }, 'discover', options)
    const control = controlPointOf(await res.text(), location)
    if (control == null) throw new PortMappingFailedError(`the device description at ${location} has no WANIPConnection or WANPPPConnection service`, this.#where('discover'))
    this.#control = control
    return control
  }

  /** M-SEARCH from our LAN address; the first answer whose LOCATION is on the default gateway. */
  async #search (options?: AbortOptions): Promise<string> {
    const socket = createSocket('udp4')
    try {
      return await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => { reject(new PortMappingNoAnswerError(`no SSDP answer from ${this.gateway} within ${this.#init.searchTimeoutMs} ms (searched from ${this.#route.localAddress})`, this.#where('discover'))) }, this.#init.searchTimeoutMs)
        const onAbort = (): void => { clearTimeout(timer); reject(options?.signal?.reason) }
        options?.signal?.addEventListener('abort', onAbort, { once: true })
        socket.on('error', (err) => { clearTimeout(timer); reject(new PortMappingFailedError(`SSDP socket: ${err.message}`, this.#where('discover'), { cause: err })) })
        socket.on('message', (msg, rinfo) => {
          const location = /^location:\s*(\S+)/im.exec(msg.toString('latin1'))?.[1]
          if (rinfo.address !== this.gateway || location == null || hostOf(location) !== this.gateway) return
          clearTimeout(timer)
          options?.signal?.removeEventListener('abort', onAbort)
          resolve(location)
        })
        socket.bind({ address: this.#route.localAddress, port: 0 }, () => { this.#sendSearch(socket) })
      })
    } finally {
      socket.close()
    }
  }

  #sendSearch (socket: Socket): void {
    socket.setMulticastInterface(this.#route.localAddress)
    socket.setMulticastTTL(2)
    for (const st of SEARCH_TARGETS) {
      const text = `M-SEARCH * HTTP/1.1\r\nHOST: ${SSDP_ADDRESS}:${SSDP_PORT}\r\nMAN: "ssdp:discover"\r\nMX: 2\r\nST: ${st}\r\n\r\n`
      socket.send(text, SSDP_PORT, SSDP_ADDRESS)
    }
  }

  async #soap (control: ControlPoint, action: string, args: Array<[string, string]>, phase: PortMappingPhase, options?: AbortOptions): Promise<string> {
    const body = '<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>' +
      `<u:${action} xmlns:u="${control.serviceType}">${args.map(([k, v]) => `<${k}>${escapeXml(v)}</${k}>`).join('')}</u:${action}></s:Body></s:Envelope>`
    const res = await this.#fetch(control.url, {
      method: 'POST',
      headers: { 'Content-Type': 'text/xml; charset="utf-8"', SOAPAction: `"${control.serviceType}#${action}"` },
      body
    }, phase, options, true)
    const text = await res.text()
    if (res.ok) return text
    const code = tagText(text, 'errorCode')
    if (code != null) throw new PortMappingRefusedError(`${code} ${tagText(text, 'errorDescription') ?? ''}`.trim(), this.#where(phase))
    throw new PortMappingFailedError(`${action}: HTTP ${res.status}`, this.#where(phase))
  }

  async #fetch (url: string, init: RequestInit, phase: PortMappingPhase, options?: AbortOptions, allowError = false): Promise<Response> {
    // only the gateway itself: a description pointing elsewhere is not followed
    if (hostOf(url) !== this.gateway) throw new PortMappingFailedError(`${url} is not on the gateway ${this.gateway}`, this.#where(phase))
    const signal = AbortSignal.any([AbortSignal.timeout(this.#init.requestTimeoutMs), ...(options?.signal != null ? [options.signal] : [])])
    let res: Response
    try {
      res = await fetch(url, { ...init, signal, redirect: 'error' })
    } catch (err) {
      options?.signal?.throwIfAborted()
      throw new PortMappingFailedError(`${init.method ?? 'GET'} ${url}: ${(err as Error).message}`, this.#where(phase), { cause: err })
    }
    if (!res.ok && !allowError) throw new PortMappingFailedError(`${init.method ?? 'GET'} ${url}: HTTP ${res.status}`, this.#where(phase))
    return res
  }

  #where (phase: PortMappingPhase): PortMappingWhere {
    return { protocol: 'upnp', gateway: this.gateway, phase }
  }
}

function hostOf (url: string): string | undefined {
  try {
    return new URL(url).hostname
  } catch {
    // not a URL: no host, so never the gateway's
    return undefined
  }
}

function tagText (xml: string, tag: string): string | undefined {
  return new RegExp(`<(?:[\\w-]+:)?${tag}>([^<]*)</(?:[\\w-]+:)?${tag}>`).exec(xml)?.[1]?.trim()
}

function escapeXml (s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

/** The WAN connection service of a device description, its control URL made absolute. */
export function controlPointOf (description: string, location: string): ControlPoint | undefined {
  const base = tagText(description, 'URLBase') ?? location
  const services = [...description.matchAll(/<service>([\s\S]*?)<\/service>/g)].map(m => ({ type: tagText(m[1], 'serviceType'), control: tagText(m[1], 'controlURL') }))
  for (const wanted of WAN_SERVICES) {
    const s = services.find(x => x.type === wanted && x.control != null)
    if (s?.control != null) return { url: new URL(s.control, base).toString(), serviceType: wanted }
  }
  return undefined
}
