import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client'
import { errorWithCode } from '../core/errors.ts'
import { EXEC_STATUSES, type ExecStatus } from '../core/job.ts'
import type { ConnectionStatus, DialAttempt } from '../core/types.ts'
import type { MetricsEndpoint } from '../config/metrics-endpoint.ts'
import { createLogger, type Logger } from '../log/logger.ts'

/** The metrics port is held by another process. */
export class MetricsPortInUseError extends errorWithCode('METRICS_PORT_IN_USE') {}
/** The metrics endpoint could not listen for another reason (an address not on this host, a port below 1024). */
export class MetricsListenError extends errorWithCode('METRICS_LISTEN_FAILED') {}

/** Where every dial attempt is announced once (net's DialTelemetry). */
export interface DialAttemptSource {
  onAttempt: (listener: (attempt: Pick<DialAttempt, 'transport' | 'outcome' | 'phase'>) => void) => () => void
}

/** The node's open connections, read at scrape time. */
export interface ConnectionSource {
  list: () => ReadonlyArray<Pick<ConnectionStatus, 'transport'>>
}

/** A donor's state, read at scrape time. */
export interface DonorGauges {
  /** the reservations held now, each with when it was granted (ISO 8601) */
  reservations: () => ReadonlyArray<{ since: string }>
}

/** A relay's state and totals, read at scrape time. */
export interface RelayGauges {
  /** peers holding a reservation now */
  reservationCount: () => number
  /** circuits opened since start */
  circuits: () => number
  /** bytes relayed through circuits since start, both directions */
  bytes: () => number
  /** connections, reservations and circuits refused since start, by reason */
  refusals: () => Readonly<Record<string, number>>
}

export interface NodeMetricsInit {
  endpoint: MetricsEndpoint
  /** when the node started (ms since the epoch), for time to dispatchable @default the time of construction */
  startedAt?: number
  logger?: Logger
}

/** What the metrics read; each part is optional, so a relay and a donor share the component. */
export interface NodeMetricsComponents {
  dials?: DialAttemptSource
  connections?: ConnectionSource
  donor?: DonorGauges
  relay?: RelayGauges
}

/** The final statuses of a job: the agreed execution status, or none agreed, or nobody ran it. */
const JOB_STATUSES = [...EXEC_STATUSES, 'no_agreement', 'unavailable', 'cancelled'] as const
export type JobFinalStatus = typeof JOB_STATUSES[number]

/**
 * A node's Prometheus metrics, served as text at `/metrics` on the
 * configured HOST:PORT. One registry per node, not prom-client's global one,
 * so several nodes in one process (tests, the demo) keep their own numbers.
 * State is read at scrape time (collect callbacks) rather than kept up to
 * date by timers; events (dials, tasks, jobs) are counted as they happen.
 */
export class NodeMetrics {
  readonly registry = new Registry()
  private readonly init: NodeMetricsInit
  private readonly log: Logger
  private readonly startedAt: number
  private readonly unsubscribe: Array<() => void> = []
  private readonly tasks: Counter<'status'>
  private readonly jobs: Counter<'status'>
  private server?: Server
  private boundPort?: number
  private dispatchableAfterS?: number

  constructor (init: NodeMetricsInit, components: NodeMetricsComponents) {
    this.init = init
    this.log = init.logger ?? createLogger('metrics')
    this.startedAt = init.startedAt ?? Date.now()
    collectDefaultMetrics({ register: this.registry, prefix: 'worldcompute_' })
    if (components.dials != null) this.dialMetrics(components.dials)
    if (components.connections != null) connectionMetrics(this.registry, components.connections)
    if (components.donor != null) this.donorMetrics(components.donor)
    if (components.relay != null) this.relayMetrics(components.relay)
    // a donor's (and its broker's) counts: a relay runs neither, and shows neither
    const registers = components.donor != null ? [this.registry] : []
    this.tasks = new Counter({ name: 'worldcompute_tasks_executed_total', help: 'Tasks this donor ran for brokers, by final execution status', labelNames: ['status'], registers })
    this.jobs = new Counter({ name: 'worldcompute_jobs_total', help: 'Jobs this broker brought to a final status, by status', labelNames: ['status'], registers })
    // every status present from the start at 0: a rate() over a series that appears late misses its first increase
    for (const status of EXEC_STATUSES) this.tasks.inc({ status }, 0)
    for (const status of JOB_STATUSES) this.jobs.inc({ status }, 0)
  }

  /** A task this donor ran ended with `status` (an ExecStatus). */
  taskExecuted (status: ExecStatus): void {
    this.tasks.inc({ status })
  }

  /** A job this broker runs reached its final `status`. */
  jobFinished (status: JobFinalStatus): void {
    this.jobs.inc({ status })
  }

  /** The port bound; known once started. */
  get port (): number | undefined {
    return this.boundPort
  }

  /** Listens on the endpoint; a port in use is a `MetricsPortInUseError`, any other listen error a `MetricsListenError`. */
  async start (): Promise<void> {
    const { host, port } = this.init.endpoint
    const server = createServer((req, res) => { this.answer(req, res) })
    try {
      this.boundPort = await listen(server, host, port)
    } catch (err) {
      const where = `${host.includes(':') ? `[${host}]` : host}:${port}`
      if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') throw new MetricsPortInUseError(`metrics port ${where} is in use by another process: stop it, or choose another with --metrics HOST:PORT`, { cause: err })
      throw new MetricsListenError(`cannot serve metrics on ${where}: ${(err as Error).message}`, { cause: err })
    }
    this.server = server
    this.log.info(`Prometheus metrics on http://${host.includes(':') ? `[${host}]` : host}:${this.boundPort}/metrics`, { host, port: this.boundPort })
  }

  async stop (): Promise<void> {
    for (const off of this.unsubscribe.splice(0)) off()
    const server = this.server
    this.server = undefined
    if (server == null) return
    server.closeAllConnections()
    await new Promise<void>((resolve, reject) => { server.close(err => { if (err != null) reject(err); else resolve() }) })
  }

  private answer (req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0]
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: metrics are at /metrics\n')
      return
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n')
      return
    }
    this.registry.metrics().then(text => {
      res.writeHead(200, { 'content-type': this.registry.contentType }).end(req.method === 'HEAD' ? undefined : text)
    }, (err: unknown) => {
      this.log.error(`collecting metrics failed: ${(err as Error).message}`, { code: 'METRICS_COLLECT_FAILED', err })
      res.writeHead(500, { 'content-type': 'text/plain' }).end('collecting metrics failed; see the node\'s log\n')
    })
  }

  private dialMetrics (dials: DialAttemptSource): void {
    const attempts = new Counter({ name: 'worldcompute_dial_attempts_total', help: 'Outbound dial attempts, by transport, outcome and the last phase reached', labelNames: ['transport', 'outcome', 'phase'], registers: [this.registry] })
    this.unsubscribe.push(dials.onAttempt(a => { attempts.inc({ transport: a.transport, outcome: a.outcome, phase: a.phase }) }))
  }

  private donorMetrics (donor: DonorGauges): void {
    const self = this
    new Gauge({
      name: 'worldcompute_reservations',
      help: 'Relay reservations this donor holds now',
      registers: [this.registry],
      collect () { this.set(donor.reservations().length) }
    })
    new Gauge({
      name: 'worldcompute_time_to_dispatchable_seconds',
      help: 'Seconds from the node\'s start to its first relay reservation (dispatchable); NaN until then',
      registers: [this.registry],
      collect () { this.set(self.timeToDispatchable(donor)) }
    })
  }

  /** Latched at the first scrape that sees a reservation, from the earliest grant time among those held. */
  private timeToDispatchable (donor: DonorGauges): number {
    if (this.dispatchableAfterS == null) {
      const granted = donor.reservations().map(r => Date.parse(r.since)).filter(t => Number.isFinite(t))
      if (granted.length > 0) this.dispatchableAfterS = Math.max(0, Math.min(...granted) - this.startedAt) / 1000
    }
    return this.dispatchableAfterS ?? NaN
  }

  private relayMetrics (relay: RelayGauges): void {
    new Gauge({
      name: 'worldcompute_relay_reservations',
      help: 'Peers holding a reservation on this relay now',
      registers: [this.registry],
      collect () { this.set(relay.reservationCount()) }
    })
    totalOf(this.registry, 'worldcompute_relay_circuits_total', 'Circuits this relay opened between two peers since start', () => relay.circuits())
    totalOf(this.registry, 'worldcompute_relay_bytes_total', 'Bytes relayed through circuits since start, both directions', () => relay.bytes())
    new Counter({
      name: 'worldcompute_relay_refusals_total',
      help: 'Connections, reservations and circuits the relay refused since start, by reason (the limit that refused it)',
      labelNames: ['reason'],
      registers: [this.registry],
      collect () {
        this.reset()
        for (const [reason, n] of Object.entries(relay.refusals())) this.inc({ reason }, n)
      }
    })
  }
}

/** Open connections by transport (`circuit`: relayed through a relay), counted at scrape time. */
function connectionMetrics (registry: Registry, connections: ConnectionSource): void {
  new Gauge({
    name: 'worldcompute_connections',
    help: 'Open connections by transport (circuit: relayed)',
    labelNames: ['transport'],
    registers: [registry],
    collect () {
      this.reset()
      for (const c of connections.list()) this.inc({ transport: c.transport })
    }
  })
}

/** A counter whose value is a total kept elsewhere, read at scrape time. */
function totalOf (registry: Registry, name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers: [registry],
    collect () {
      this.reset()
      this.inc(read())
    }
  })
}

async function listen (server: Server, host: string, port: number): Promise<number> {
  return await new Promise<number>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      const address = server.address()
      resolve(typeof address === 'object' && address != null ? address.port : port)
    })
  })
}
