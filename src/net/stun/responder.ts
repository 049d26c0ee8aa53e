import { createSocket, type RemoteInfo, type Socket } from 'node:dgram'
import { isIPv4, isIPv6 } from 'node:net'
import { WorldComputeError } from '../../core/errors.ts'
import { createLogger, type Logger } from '../../log/logger.ts'
import { decodeStun, encodeBindingError, encodeBindingSuccess, endpointText, type StunEndpoint } from './codec.ts'

/**
 * A small STUN server (RFC 5389 Binding over UDP) with the part of RFC 5780
 * that NAT behaviour discovery needs, run by every relay so donors can
 * classify their NAT with no other infrastructure.
 *
 * Supported:
 * - Binding requests → XOR-MAPPED-ADDRESS (+ MAPPED-ADDRESS for RFC 3489
 *   clients), RESPONSE-ORIGIN, FINGERPRINT;
 * - two ports (default 3478 and 3479): OTHER-ADDRESS names the other port, and
 *   CHANGE-REQUEST "change port" answers from the other port;
 * - two IPs, when the relay is given two: OTHER-ADDRESS names the other IP
 *   and port, and "change IP" answers from the other IP.
 *
 * Not supported, on purpose:
 * - with one IP, a "change IP" request gets a 420 error (RFC 5780 §7.2 says
 *   a server without an alternate address answers CHANGE-REQUEST with 420);
 *   OTHER-ADDRESS then names the same IP and the other port, which is a
 *   deviation from RFC 5780 §7.3 (it expects a different IP): our own probe
 *   knows and uses it only for the port tests;
 * - TCP/TLS STUN, authentication (MESSAGE-INTEGRITY), RESPONSE-PORT, PADDING,
 *   TURN: a donor needs none of them to classify its NAT.
 *
 * A STUN responder reflects to the source address of any datagram, so each
 * source IP gets at most `maxPerSecondPerSource` answers a second: enough for
 * a probe (a handful of requests), useless for reflection floods.
 */

export interface StunResponderInit {
  /**
   * IPs to bind: one, or two for change-IP support. A wildcard (`0.0.0.0`,
   * `::`) binds every interface and means one IP.
   */
  addresses: readonly string[]
  /** primary and alternate port; one port means no change-port support. 0 picks a free port (tests) */
  ports: readonly number[]
  /**
   * the IP to name in RESPONSE-ORIGIN / OTHER-ADDRESS when bound to a
   * wildcard (the relay's public IP); without it, the wildcard itself is named
   */
  advertisedAddress?: string
  /** @default 50 */
  maxPerSecondPerSource?: number
  logger?: Logger
}

/** The UDP sockets of the STUN responder could not be opened. */
export class StunResponderError extends WorldComputeError {
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, 'STUN_RESPONDER', options)
  }
}

interface Bound {
  socket: Socket
  ipIndex: number
  portIndex: number
  /** the endpoint we tell clients this socket is */
  endpoint: StunEndpoint
}

const SOFTWARE = 'worldcompute relay STUN'

export class StunResponder {
  private readonly init: StunResponderInit
  private readonly log: Logger
  private readonly maxPerSecond: number
  private bound: Bound[] = []
  private readonly counts = new Map<string, number>()
  private countsReset?: ReturnType<typeof setInterval>
  /** requests answered since start */
  answered = 0

  constructor (init: StunResponderInit) {
    if (init.addresses.length < 1 || init.addresses.length > 2) throw new StunResponderError(`a STUN responder binds one or two IPs, not ${init.addresses.length}`)
    if (init.ports.length < 1 || init.ports.length > 2) throw new StunResponderError(`a STUN responder listens on one or two ports, not ${init.ports.length}`)
    if (init.ports.length === 2 && init.ports[0] === init.ports[1] && init.ports[0] !== 0) throw new StunResponderError(`the two STUN ports must differ (both are ${init.ports[0]})`)
    this.init = init
    this.log = init.logger ?? createLogger('net.stun')
    this.maxPerSecond = init.maxPerSecondPerSource ?? 50
  }

  /** Whether "change IP" can be honoured (two IPs bound). */
  get changeIpSupported (): boolean {
    return this.init.addresses.length === 2
  }

  async start (): Promise<void> {
    if (this.bound.length > 0) return
    try {
      for (const [ipIndex, address] of this.init.addresses.entries()) {
        for (const [portIndex, port] of this.init.ports.entries()) {
          const socket = createSocket({ type: isIPv6(address) ? 'udp6' : 'udp4', reuseAddr: false })
          await new Promise<void>((resolve, reject) => {
            socket.once('error', reject)
            socket.bind(port, address, () => { socket.off('error', reject); resolve() })
          })
          const local = socket.address()
          const shown = isWildcard(address) && this.init.advertisedAddress != null ? this.init.advertisedAddress : local.address
          const b: Bound = { socket, ipIndex, portIndex, endpoint: { address: shown, port: local.port } }
          socket.on('message', (msg, rinfo) => { this.onMessage(b, msg, rinfo) })
          socket.on('error', (err) => {
            this.log.warn(`STUN socket ${endpointText(b.endpoint)} failed: ${err.message}`, { phase: 'stun', transport: 'udp' })
          })
          this.bound.push(b)
        }
      }
    } catch (err) {
      const failed = `${this.init.addresses.join(', ')} ports ${this.init.ports.join(', ')}`
      await this.stop()
      const code = (err as NodeJS.ErrnoException).code
      throw new StunResponderError(`cannot open the STUN responder on ${failed}: ${(err as Error).message}${code === 'EADDRINUSE' ? ' (another STUN server, e.g. coturn, uses the port: choose others with --stun-port, or --no-stun)' : ''}`, { cause: err })
    }
    this.countsReset = setInterval(() => { this.counts.clear() }, 1000)
    this.countsReset.unref()
    this.log.info(`STUN responder on ${this.endpoints().map(endpointText).join(', ')} (change port: ${this.init.ports.length === 2 ? 'yes' : 'no'}, change IP: ${this.changeIpSupported ? 'yes' : 'no, one IP'})`)
  }

  async stop (): Promise<void> {
    const sockets = this.bound.map(b => b.socket)
    this.bound = []
    if (this.countsReset != null) clearInterval(this.countsReset)
    await Promise.all(sockets.map(async s => { await new Promise<void>(resolve => { s.close(() => { resolve() }) }) }))
  }

  /** The endpoints clients may send to, primary first. */
  endpoints (): StunEndpoint[] {
    return this.bound.map(b => b.endpoint)
  }

  private find (ipIndex: number, portIndex: number): Bound | undefined {
    return this.bound.find(b => b.ipIndex === ipIndex && b.portIndex === portIndex)
  }

  private onMessage (at: Bound, msg: Buffer, rinfo: RemoteInfo): void {
    let req
    try {
      req = decodeStun(msg)
    } catch (err) {
      // anything may arrive on a public UDP port: not worth more than a debug line
      this.log.debug(`ignored a datagram from ${rinfo.address}:${rinfo.port} on ${endpointText(at.endpoint)}: ${(err as Error).message}`)
      return
    }
    if (req.kind !== 'binding-request') return
    const n = (this.counts.get(rinfo.address) ?? 0) + 1
    this.counts.set(rinfo.address, n)
    if (n > this.maxPerSecond) {
      if (n === this.maxPerSecond + 1) this.log.info(`STUN: more than ${this.maxPerSecond} requests a second from ${rinfo.address}; ignoring the rest of this second`)
      return
    }
    const reply = (from: Bound, bytes: Buffer): void => {
      from.socket.send(bytes, rinfo.port, rinfo.address, (err) => {
        if (err != null) this.log.warn(`STUN answer to ${rinfo.address}:${rinfo.port} from ${endpointText(from.endpoint)} failed: ${err.message}`, { phase: 'stun', transport: 'udp' })
      })
    }
    if (req.unknownRequired.length > 0) {
      reply(at, encodeBindingError({ transactionId: req.transactionId, code: 420, reason: 'Unknown Attribute', unknownAttributes: req.unknownRequired }))
      return
    }
    const change = req.changeRequest ?? { changeIp: false, changePort: false }
    const twoPorts = this.init.ports.length === 2
    if ((change.changeIp && !this.changeIpSupported) || (change.changePort && !twoPorts)) {
      // RFC 5780 §7.2: a server that cannot honour CHANGE-REQUEST answers 420
      reply(at, encodeBindingError({ transactionId: req.transactionId, code: 420, reason: 'Unknown Attribute', unknownAttributes: [0x0003] }))
      return
    }
    const from = this.find(change.changeIp ? 1 - at.ipIndex : at.ipIndex, change.changePort ? 1 - at.portIndex : at.portIndex) ?? at
    const other = this.find(this.changeIpSupported ? 1 - at.ipIndex : at.ipIndex, twoPorts ? 1 - at.portIndex : at.portIndex)
    const mappedAddress = rinfo.address.startsWith('::ffff:') && isIPv4(rinfo.address.slice(7)) ? rinfo.address.slice(7) : rinfo.address
    reply(from, encodeBindingSuccess({
      transactionId: req.transactionId,
      mapped: { address: mappedAddress, port: rinfo.port },
      responseOrigin: from.endpoint,
      ...(other != null && other !== at ? { otherAddress: other.endpoint } : {}),
      software: SOFTWARE
    }))
    this.answered++
    this.log.trace(`STUN binding from ${rinfo.address}:${rinfo.port} on ${endpointText(at.endpoint)} answered from ${endpointText(from.endpoint)}`)
  }
}

function isWildcard (address: string): boolean {
  return address === '0.0.0.0' || address === '::'
}
