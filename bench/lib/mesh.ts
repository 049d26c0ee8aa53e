/**
 * In-process meshes for the network benchmarks: the real relay and daemon
 * (through the same config loader and composition root the CLI uses, as the
 * tests do), a bare echo protocol registered on the same libp2p nodes, and a
 * watcher that timestamps job events inside the submitting daemon.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { ApiClient } from '../../src/api/client.ts'
import { loadDaemonConfig } from '../../src/config/config.ts'
import { startDaemon, type DaemonHandle, type RelayHandle } from '../../src/daemon/daemon.ts'
import { delay } from '../../src/core/async.ts'
import { MeshNode } from '../../src/net/mesh-node.ts'
import { transportOf } from '../../src/net/transport-of.ts'
import { reservedStatus, startTestRelay } from '../../test/helpers/mesh.ts'
import { waitFor } from '../../test/helpers/wait.ts'
import { executorsSeen } from '../../test/helpers/jobs.ts'
import { within, type Cleanup } from './report.ts'
import type { JobView } from '../../src/core/job.ts'
import type { SubmitJobRequest } from '../../src/api/routes.ts'
import type { Connection, Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { JobChange } from '../../src/broker/broker.ts'
import type { CapacityService } from '../../src/protocols/capacity/index.ts'

export type BenchDaemon = DaemonHandle & { client: ApiClient, dataDir: string }

export interface DaemonOptions {
  /** e.g. ['/p2p-circuit'] (relay only) or ['/ip4/127.0.0.1/tcp/0', '/p2p-circuit'] (direct too) */
  listen: string[]
  /** false: a --no-execute submitter */
  execute: boolean
  maxJobs?: number
  /** false: --no-direct (no WebRTC or public-address upgrade of relayed peers: a relay-only pair stays relayed) @default true */
  direct?: boolean
}

export const RELAY_ONLY = ['/p2p-circuit']
export const DIRECT_AND_RELAY = ['/ip4/127.0.0.1/tcp/0', '/p2p-circuit']

export async function startBenchRelay (dataDir: string, cleanup: Cleanup): Promise<RelayHandle> {
  const relay = await startTestRelay(dataDir)
  cleanup.add(`stop relay ${relay.info.peerId}`, async () => { await relay.stop() })
  return relay
}

export function relayBootstrap (relay: RelayHandle): string[] {
  return relay.info.announceAddrs.filter(a => a.includes('/tcp/') && !a.includes('/ws'))
}

/** A daemon on 127.0.0.1 that has its reservation on `relay`; stopped by `cleanup`. */
export async function startBenchDaemon (dataDir: string, relay: RelayHandle, opts: DaemonOptions, cleanup: Cleanup): Promise<BenchDaemon> {
  const config = loadDaemonConfig({
    dataDir,
    bootstrap: relayBootstrap(relay),
    listen: opts.listen,
    apiPort: '0',
    noExecute: !opts.execute,
    ...(opts.direct === false ? { noDirect: true } : {}),
    ...(opts.maxJobs != null ? { maxJobs: String(opts.maxJobs) } : {})
  }, {})
  // production timings (no test seam): the watchdog's pings are part of the load being measured
  const handle = await startDaemon(config)
  cleanup.add(`stop daemon ${handle.peerId}`, async () => { await handle.stop() })
  const d: BenchDaemon = { ...handle, client: new ApiClient({ dataDir }), dataDir }
  await waitFor(`daemon ${d.peerId} reservation on the relay`, async () => await reservedStatus(d.client, relay.info.peerId), 20_000)
  return d
}

export async function waitForExecutors (submitter: BenchDaemon, count: number): Promise<void> {
  await executorsSeen(submitter, count)
}

/** The daemon's capacity service (the daemon builds its node with it). */
export function capacityServiceOf (d: DaemonHandle): CapacityService {
  const capacity = (MeshNode.libp2pOf(d.donor.mesh).services as { capacity?: CapacityService }).capacity
  if (capacity == null) throw new Error(`daemon ${d.peerId} has no capacity service`)
  return capacity
}

// ---- jobs -------------------------------------------------------------------

export const HELLO = readFileSync(fileURLToPath(new URL('../../test/fixtures/wasm/hello.wasm', import.meta.url)))

/** The submitJob request for a trivial job, without its module: `submitHello` names that by CID. */
export function helloRequest (): Omit<SubmitJobRequest, 'module' | 'moduleCid'> {
  return { input: '', moduleName: 'hello.wasm', args: ['x'], env: ['GREETING=bench'], replicas: 1, limits: {} }
}

/**
 * Submits the trivial job as the product's client does (`job submit`, `job
 * submit --batch`: `ApiClient.submitJobByCid`): the module named by CID,
 * uploaded by the first submit only, so later bodies carry no module bytes.
 */
export async function submitHello (client: ApiClient, request: Omit<SubmitJobRequest, 'module' | 'moduleCid'> = helloRequest()): Promise<JobView> {
  return await client.submitJobByCid(request, HELLO)
}

export interface JobTimes {
  /** performance.now() when the job's first task row appeared (the offer was accepted) */
  offered?: number
  /** when a task was first seen done (the dispatch returned) */
  done?: number
  /** when the job was final */
  final?: number
}

/**
 * Timestamps every job event of the submitting daemon's broker in-process
 * (broker.onJobEvent), so "final" is known the moment the broker records it,
 * without polling the API. With `stages` (the default) it also stamps when
 * a job's first task was placed and first done, reading the job's rows on
 * its task events; without, it reads nothing at all (a throughput burst:
 * the watcher is the bench's, not the product's, and must not cost the
 * process it measures what a client in its own process would not).
 */
export class JobWatcher {
  private readonly broker: DaemonHandle['broker']
  private readonly times = new Map<string, JobTimes>()
  private readonly waiters = new Map<string, () => void>()
  private readonly off: () => void
  /** events of jobs not yet tracked (the final one may come before submit's answer) */
  private readonly early = new Map<string, JobTimes>()
  private readonly stages: boolean

  constructor (daemon: DaemonHandle, options: { stages?: boolean } = {}) {
    this.broker = daemon.broker
    this.stages = options.stages ?? true
    this.off = this.broker.onJobEvent((jobId, change) => { this.onEvent(jobId, change) })
  }

  /** `change` undefined: a broker that does not say what changed (an older build measured against this one): its rows say. */
  private onEvent (jobId: string, change: JobChange | undefined): void {
    const now = performance.now()
    const t = this.times.get(jobId) ?? this.early.get(jobId) ?? {}
    if (!this.times.has(jobId)) this.early.set(jobId, t)
    if (t.final != null) return
    if ((change === 'task' || change === undefined) && this.stages) this.stampStages(jobId, t, now)
    if (change === 'final' || (change === undefined && this.broker.getJob(jobId).job.final != null)) {
      t.final = now
      this.waiters.get(jobId)?.()
    }
  }

  /** The first task row seen is the offer accepted; the first one done, the dispatch returned. */
  private stampStages (jobId: string, t: JobTimes, now: number): void {
    if (t.offered != null && t.done != null) return
    const { tasks } = this.broker.getJob(jobId)
    if (t.offered == null && tasks.length > 0) t.offered = now
    if (t.done == null && tasks.some(x => x.state === 'done')) t.done = now
  }

  /** Starts tracking a job just submitted (events that came before the submit returned are kept). */
  track (jobId: string): JobTimes {
    const t = this.early.get(jobId) ?? {}
    this.early.delete(jobId)
    this.times.set(jobId, t)
    return t
  }

  async finished (jobId: string, timeoutMs: number): Promise<JobTimes> {
    const t = this.times.get(jobId) ?? this.track(jobId)
    if (t.final != null) return t
    await within(`job ${jobId} to finish`, timeoutMs, new Promise<void>(resolve => { this.waiters.set(jobId, resolve) }))
    this.waiters.delete(jobId)
    return t
  }

  stop (): void {
    this.off()
  }
}

export async function jobView (client: ApiClient, jobId: string): Promise<JobView> {
  return await client.call('job', { id: jobId, full: true })
}

// ---- bare echo --------------------------------------------------------------

export const ECHO_PROTOCOL = '/wc-bench/echo/1.0.0'

/** Registers a plain echo handler (whatever arrives goes back, then close) on a daemon's libp2p node. */
export async function handleEcho (d: DaemonHandle, cleanup: Cleanup): Promise<void> {
  const libp2p = MeshNode.libp2pOf(d.donor.mesh)
  await libp2p.handle(ECHO_PROTOCOL, async (stream: Stream) => {
    try {
      for await (const chunk of stream) {
        if (!stream.send(chunk)) await stream.onDrain({ signal: AbortSignal.timeout(10_000) })
      }
      await stream.close({ signal: AbortSignal.timeout(10_000) })
    } catch (err) {
      stream.abort(err as Error)
    }
  }, { runOnLimitedConnection: true, maxInboundStreams: 256, maxOutboundStreams: 256 })
  cleanup.add(`unhandle echo on ${d.peerId}`, async () => { await libp2p.unhandle(ECHO_PROTOCOL).catch((err: unknown) => { process.stderr.write(`bench cleanup: unhandle ${ECHO_PROTOCOL} on ${d.peerId}: ${String(err)}\n`) }) })
}

/**
 * One echo round trip on a new stream over `conn`: open (protocol
 * negotiation included), send `payload`, close our side, read it all back.
 * Returns the wall time in ms.
 */
export async function echoOnce (conn: Connection, payload: Uint8Array, timeoutMs = 10_000): Promise<number> {
  const signal = AbortSignal.timeout(timeoutMs)
  const t0 = performance.now()
  const stream = await conn.newStream(ECHO_PROTOCOL, { runOnLimitedConnection: true, signal })
  try {
    stream.send(payload)
    await stream.close({ signal })
    let got = 0
    for await (const chunk of stream) {
      got += chunk.byteLength
      signal.throwIfAborted()
    }
    const ms = performance.now() - t0
    if (got !== payload.byteLength) throw new Error(`echo returned ${got} bytes, expected ${payload.byteLength}`)
    return ms
  } catch (err) {
    stream.abort(err as Error)
    throw err
  }
}

/**
 * Gives `from` a TCP connection to `to` (its 127.0.0.1 listen address), so
 * that `connections.bestDirect` — the connection the broker's tasks take,
 * TCP before WebRTC — is a TCP one. Without it the transport is a race: a
 * pair that met through the relay first may hold only a WebRTC connection
 * (the direct upgrade does not dial a loopback address as a public one),
 * and a bare stream opened per request costs several times more on WebRTC
 * (a data channel each) than on TCP, so a baseline's cost changed from run
 * to run with the mix.
 */
export async function directTcp (from: DaemonHandle, to: DaemonHandle): Promise<Connection> {
  const addr = MeshNode.libp2pOf(to.donor.mesh).getMultiaddrs().find(a => transportOf(a) === 'tcp')
  if (addr == null) throw new Error(`daemon ${to.peerId} has no TCP listen address`)
  const open = from.donor.mesh.components.connections.open(to.peerId).find(c => transportOf(c.remoteAddr) === 'tcp')
  const conn = open ?? await dialTcp(from, to, addr)
  const { connections } = from.donor.mesh.components
  const tcpBest = (): Connection | undefined => {
    const best = connections.bestDirect(to.peerId)
    return best != null && transportOf(best.remoteAddr) === 'tcp' ? best : undefined
  }
  try {
    // the dial resolves before the new connection's open event has reached the mesh's list of connections
    await waitFor(`a TCP connection to ${to.peerId} to be the best direct one`, tcpBest, 5_000, 5)
  } catch (err) {
    const best = connections.bestDirect(to.peerId)
    const seen = connections.open(to.peerId).map(c => c.remoteAddr.toString())
    throw new Error(`the best direct connection to ${to.peerId} is ${best == null ? 'none' : best.remoteAddr.toString()}, not TCP (the TCP one is ${conn.status}${conn.timeline.close != null ? ', closed' : ''}; open: ${seen.join(', ')})`, { cause: err })
  }
  return conn
}

/**
 * Dials `addr` (a TCP address of `to`) until the connection js-libp2p hands
 * back is a TCP one (at most 5 tries, 10 s each): a dial to a peer that
 * another dial is already reaching (the direct upgrade's WebRTC dial) joins
 * that dial and gets its connection, whatever address was asked for.
 */
async function dialTcp (from: DaemonHandle, to: DaemonHandle, addr: Multiaddr): Promise<Connection> {
  const got: string[] = []
  for (let i = 0; i < 5; i++) {
    // force: js-libp2p would hand back the open relayed (unlimited) connection instead of dialling
    const conn = await MeshNode.libp2pOf(from.donor.mesh).dial(addr, { force: true, signal: AbortSignal.timeout(10_000) })
    if (transportOf(conn.remoteAddr) === 'tcp') return conn
    got.push(conn.remoteAddr.toString())
    await delay(200)
  }
  throw new Error(`dialling ${addr.toString()} gave connections to ${to.peerId} that are not TCP, 5 times: ${got.join(', ')}`)
}

/** The open connection from `from` to `to` of the wanted kind. */
export function connectionTo (from: DaemonHandle, to: string, kind: 'direct' | 'relayed'): Connection | undefined {
  return from.donor.mesh.components.connections.open(to)
    .find((c: Connection) => (transportOf(c.remoteAddr) === 'circuit') === (kind === 'relayed'))
}

export function dataDirOf (root: string, name: string): string {
  return join(root, name)
}
