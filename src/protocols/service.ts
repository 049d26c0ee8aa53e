import { serviceCapabilities } from '@libp2p/interface'
import { handlerOptions, serveAnswer } from './exchange.ts'
import type { Logger } from '../log/logger.ts'
import type { ProtocolRegistrar } from './components.ts'
import type { StreamLimits } from './exchange.ts'
import type { Connection, Startable, Stream, StreamHandlerOptions } from '@libp2p/interface'

export interface ProtocolServiceInit {
  /** the versioned protocol ID */
  protocol: string
  /** the service's name in `@worldcompute/<name>` (its capability and tag) */
  name: string
  /** how the handler is registered; undefined on a node that only asks */
  inbound?: StreamHandlerOptions
}

/**
 * The lifecycle every protocol service of this folder shares (libp2p's
 * Startable): on a node that answers the protocol, the handler is
 * registered while the service runs, and `stopping` aborts answers in flight
 * when it stops. A node that only asks registers nothing, so identify does
 * not list the protocol for it.
 */
export abstract class ProtocolService implements Startable {
  readonly protocol: string
  readonly [serviceCapabilities]: string[]
  private readonly name: string
  private readonly registrar: ProtocolRegistrar
  private readonly inbound: StreamHandlerOptions | undefined
  private started = false
  private shutdown = new AbortController()

  protected constructor (registrar: ProtocolRegistrar, init: ProtocolServiceInit) {
    this.registrar = registrar
    this.protocol = init.protocol
    this.name = `@worldcompute/${init.name}`
    this[serviceCapabilities] = [this.name]
    this.inbound = init.inbound
  }

  get [Symbol.toStringTag] (): string {
    return this.name
  }

  isStarted (): boolean {
    return this.started
  }

  async start (): Promise<void> {
    if (this.started) return
    this.shutdown = new AbortController()
    if (this.inbound != null) {
      await this.registrar.handle(this.protocol, async (stream, connection) => { await this.answer(stream, connection) }, this.inbound)
    }
    this.started = true
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.shutdown.abort(new Error(`${this.name} stopped`))
    if (this.inbound != null) await this.registrar.unhandle(this.protocol)
  }

  /** Fires when the service stops: answers in flight end. */
  protected get stopping (): AbortSignal {
    return this.shutdown.signal
  }

  /** Answers one inbound stream (only on a node that answers); must not throw. */
  protected abstract answer (stream: Stream, connection: Connection): Promise<void>
}

export interface SingleAnswerServiceInit<M> {
  protocol: string
  name: string
  limits: StreamLimits
  /** answer on relayed (limited) connections too */
  runOnLimitedConnection: boolean
  /** writing one answer */
  answerTimeoutMs: number
  /** what to answer now; without it the node does not answer the protocol */
  getInfo?: () => M
  encode: (message: M) => Uint8Array
  /** the answer's name in the log line when it cannot be sent, e.g. "NAT info" */
  what: string
  log: Logger
}

/**
 * The answering side of a "one answer" protocol (nat-info, relay-info): the
 * asking peer opens a stream, this one writes one frame and closes.
 */
export class SingleAnswerService<M> extends ProtocolService {
  private readonly init: SingleAnswerServiceInit<M>

  protected constructor (registrar: ProtocolRegistrar, init: SingleAnswerServiceInit<M>) {
    super(registrar, { protocol: init.protocol, name: init.name, inbound: init.getInfo != null ? handlerOptions(init.limits, init.runOnLimitedConnection) : undefined })
    this.init = init
  }

  protected async answer (stream: Stream, connection: Connection): Promise<void> {
    const { init } = this
    const serve = { protocol: this.protocol, limits: init.limits, timeoutMs: init.answerTimeoutMs, signal: this.stopping, log: init.log, failed: (peer: string) => `${init.what} to ${peer} not sent` }
    await serveAnswer(stream, connection, serve, async (framed, signal) => {
      const info = init.getInfo?.()
      if (info === undefined) throw new Error(`${init.what}: nothing to answer`)
      await framed.writeFrame(init.encode(info), { signal })
    })
  }
}
