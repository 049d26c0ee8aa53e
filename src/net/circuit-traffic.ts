import { RELAY_V2_STOP_CODEC } from '@libp2p/circuit-relay-v2'
import type { Connection, Startable, Stream, StreamMiddleware } from '@libp2p/interface'
import { RelayLibraryChangedError } from './hop-gate.ts'

/** The registrar's middleware lookup, which libp2p asks for every stream once its protocol is negotiated. */
export interface CircuitTrafficComponents {
  registrar: { getMiddleware: (protocol: string) => StreamMiddleware[] }
}

/**
 * What a relay's circuits carry, counted on the relay's side: circuit relay
 * v2's server keeps no byte counts of its own (it only decrements a per-circuit
 * data limit inside a closure).
 *
 * Every circuit has exactly one STOP stream, which the relay opens to the
 * destination and then pipes to the source's HOP stream: one STOP stream the
 * relay opened is one circuit, and every byte relayed in either direction
 * passes through it once, written to the destination (`send`) or read from it
 * (its `message` events). So the byte total also holds the STOP handshake of
 * each circuit (a CONNECT and a STATUS message, tens of bytes).
 *
 * Counting wraps the stream's `send` and `dispatchEvent` rather than adding a
 * `message` listener: a listener added before the relay's own reader would
 * take data out of the stream's buffer that the relay has not read yet.
 */
export class CircuitTraffic {
  private circuitCount = 0
  private byteCount = 0

  /** STOP streams the relay opened since start: circuits set up towards a reservation holder (one the destination refused included) */
  circuits (): number {
    return this.circuitCount
  }

  /** bytes through those streams since start, both directions */
  bytes (): number {
    return this.byteCount
  }

  /** The libp2p service that counts; register it on a relay's node. */
  service (): (components: CircuitTrafficComponents) => Startable {
    return (components) => new CircuitTrafficService(components, (stream) => { this.track(stream) })
  }

  private track (stream: Stream): void {
    this.circuitCount++
    const send = stream.send.bind(stream)
    stream.send = (data) => {
      this.byteCount += data.byteLength
      return send(data)
    }
    const dispatch = stream.dispatchEvent.bind(stream)
    stream.dispatchEvent = (evt) => {
      if (evt.type === 'message') this.byteCount += (evt as Event & { data: { byteLength: number } }).data.byteLength
      return dispatch(evt)
    }
  }
}

/**
 * Adds the counting middleware to the STOP protocol's middleware, handing
 * libp2p a fresh array for every stream: libp2p (3.3) appends the protocol
 * handler to the array it gets for an inbound stream, so an array kept in the
 * registrar (`registrar.use`) would grow by one handler per inbound stream.
 */
class CircuitTrafficService implements Startable {
  private readonly registrar: CircuitTrafficComponents['registrar']
  private readonly track: (stream: Stream) => void
  private original?: (protocol: string) => StreamMiddleware[]

  constructor (components: CircuitTrafficComponents, track: (stream: Stream) => void) {
    this.registrar = components.registrar
    this.track = track
  }

  start (): void {
    const original = this.registrar.getMiddleware
    if (typeof original !== 'function') throw new RelayLibraryChangedError('libp2p: the registrar has no getMiddleware any more; the relay cannot count its circuits (see src/net/circuit-traffic.ts)')
    const bound = original.bind(this.registrar)
    const count: StreamMiddleware = (stream: Stream, connection: Connection, next) => {
      if (stream.direction === 'outbound') this.track(stream)
      next(stream, connection)
    }
    this.original = original
    this.registrar.getMiddleware = (protocol) => protocol === RELAY_V2_STOP_CODEC ? [count, ...bound(protocol)] : bound(protocol)
  }

  stop (): void {
    if (this.original != null) this.registrar.getMiddleware = this.original
    this.original = undefined
  }
}
