import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { PeerUnreachableError } from '../core/errors.ts'
import { createLogger, type Logger } from '../log/logger.ts'
import { relayPeerOf, transportOf, uplinkTransport, viaRelay } from '../net/transport-of.ts'
import type { ExecutorInfo, TaskNetwork, TaskRunResult, TaskToRun } from './broker.ts'
import { sleep, type MeshNode } from '../net/mesh-node.ts'
import type { CapacityService } from '../protocols/capacity/index.ts'
import type { DispatchService } from '../protocols/dispatch/index.ts'
import type { OfferService } from '../protocols/offer/index.ts'
import type { Connection } from '@libp2p/interface'

export interface MeshTaskNetworkInit {
  mesh: MeshNode
  capacity: CapacityService
  offer: OfferService
  dispatch: DispatchService
  /** relays this node holds a connection to: an executor with no known address is tried through them */
  relays?: () => string[]
  /**
   * how many times a task whose path broke (a relay died, the connection
   * dropped) is sent again to the same executor over another path; the
   * executor joins the run already under way, so nothing runs twice @default 4
   */
  maxPathRetries?: number
  logger?: Logger
}

/** Errors that say the path to the executor broke, not that the task or its answer is wrong. */
const PATH_FAILURES = new Set(['DISPATCH_FAILED', 'PEER_UNREACHABLE', 'STREAM_STALLED'])
function isPathFailure (err: unknown): boolean {
  const e = err as { code?: string, phase?: string, name?: string, cause?: { name?: string } }
  // the answer stopped mid-way: the connection under it went away
  if (e?.code === 'PROTOCOL_VIOLATION' && e.cause?.name === 'UnexpectedEOFError') return true
  if (e?.code === 'DISPATCH_TIMEOUT') return e.phase === 'open-stream' || e.phase === 'send' || e.phase === 'receive'
  return PATH_FAILURES.has(e?.code ?? '') || e?.name === 'PeerUnreachableError'
}

/**
 * The broker's view of the mesh: executors from the capacity protocol, and a
 * connection to each that is direct when one exists or can be made, else
 * through a relay circuit (dispatch and offer both run on limited relayed
 * connections).
 */
export class MeshTaskNetwork implements TaskNetwork {
  private readonly init: MeshTaskNetworkInit
  private readonly log: Logger
  /** executors whose last offer answer said they hold the module, by task ID */
  private readonly hasModule = new Map<string, boolean>()
  /** direct addresses whose dial failed, until when they are not tried again (each failure costs a dial timeout) */
  private readonly directFailedUntil = new Map<string, number>()

  constructor (init: MeshTaskNetworkInit) {
    this.init = init
    this.log = init.logger ?? createLogger('broker.net')
  }

  executors (): ExecutorInfo[] {
    return this.init.capacity.executors().map(c => ({
      peerId: c.peerId,
      acceptsJobs: c.acceptsJobs,
      freeSlots: c.freeSlots,
      slots: c.slots,
      updatedAt: this.init.capacity.heardAt(c.peerId),
      maxLimits: c.maxLimits
    }))
  }

  onExecutorsChanged (listener: () => void): () => void {
    const capacity = this.init.capacity
    capacity.addEventListener('executor:added', listener)
    capacity.addEventListener('executor:updated', listener)
    return () => {
      capacity.removeEventListener('executor:added', listener)
      capacity.removeEventListener('executor:updated', listener)
    }
  }

  async waitForExecutors (ms: number, signal: AbortSignal): Promise<void> {
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        this.init.capacity.removeEventListener('executor:added', done)
        signal.removeEventListener('abort', done)
        resolve()
      }
      const timer = setTimeout(done, ms)
      this.init.capacity.addEventListener('executor:added', done)
      signal.addEventListener('abort', done, { once: true })
    })
  }

  /**
   * An open connection to the executor: an existing direct one first, then a
   * direct dial of its non-circuit addresses, then an existing relayed one,
   * then its circuit addresses. Each dial is recorded by the dial telemetry.
   */
  private async connect (peerId: string, signal: AbortSignal, avoid: ReadonlySet<string> = new Set()): Promise<Connection> {
    const peer = peerIdFromString(peerId)
    const open = this.init.mesh.libp2p.getConnections(peer).filter(c => c.status === 'open')
    // TCP/QUIC before WebRTC when both are open (a public address dialled after a WebRTC upgrade)
    const directs = open.filter(c => transportOf(c.remoteAddr) !== 'circuit')
    const direct = directs.find(c => transportOf(c.remoteAddr) !== 'webrtc') ?? directs[0]
    if (direct != null) return direct
    const announced = this.init.capacity.capacityOf(peerId)?.addrs ?? []
    // through every relay we are connected to: the executor may hold a
    // reservation there that its last announcement does not show yet
    const viaOurRelays = (this.init.relays?.() ?? []).flatMap(relay => {
      const conn = this.init.mesh.directConnection(relay)
      if (conn == null) return []
      const base = conn.remoteAddr.toString().includes('/p2p/') ? conn.remoteAddr.toString() : `${conn.remoteAddr.toString()}/p2p/${relay}`
      return [`${base}/p2p-circuit/p2p/${peerId}`]
    })
    // what identify told us, which may be newer than the announcement
    const stored: string[] = []
    try {
      const known = await this.init.mesh.libp2p.peerStore.get(peer)
      stored.push(...known.addresses.map(a => a.multiaddr.toString()).filter(a => transportOf(a) === 'circuit'))
    } catch (err) {
      if ((err as Error).name !== 'NotFoundError') this.log.debug(`peer store lookup for ${peerId} failed: ${(err as Error).message}`)
    }
    const withPeer = (a: string): string => a.endsWith(`/p2p/${peerId}`) ? a : `${a}/p2p/${peerId}`
    const addrs = [...new Set([...announced, ...stored, ...(announced.length > 0 ? [] : viaOurRelays)].map(withPeer))]
    // WebRTC (`…/p2p-circuit/webrtc`) is not dialled here: it needs both NAT
    // types checked first and may take seconds, so the donor's direct
    // upgrader does it in the background (donor/direct-paths.ts)
    const now = Date.now()
    const directAddrs = addrs.filter(a => !viaRelay(a) && (this.directFailedUntil.get(a) ?? 0) <= now)
    const relayRank = (a: string): number => {
      const relay = relayPeerOf(a)
      if (relay != null && avoid.has(relay)) return 2 // its circuit just broke: last resort
      return relay != null && this.init.mesh.directConnection(relay) != null ? 0 : 1 // a relay we are connected to dials in one hop
    }
    const circuitAddrs = [...new Set([...addrs.filter(a => transportOf(a) === 'circuit'), ...viaOurRelays])]
      .sort((a, b) => relayRank(a) - relayRank(b))
    const errors: string[] = []
    for (const addr of directAddrs) {
      try {
        return await this.init.mesh.dial(multiaddr(addr), { purpose: 'dispatch', signal, timeoutMs: 3_000 })
      } catch (err) {
        // recorded and logged by the dial telemetry; the task goes relayed, and later ones skip this address for a while
        if (signal.aborted) throw err
        this.directFailedUntil.set(addr, Date.now() + 60_000)
        errors.push(`${addr}: ${(err as Error).message}`)
      }
    }
    if (this.directFailedUntil.size > 256) {
      for (const [a, until] of this.directFailedUntil) if (until <= now) this.directFailedUntil.delete(a)
    }
    const relayed = open.find(c => transportOf(c.remoteAddr) === 'circuit' && !avoid.has(relayPeerOf(c.remoteAddr) ?? ''))
    if (relayed != null) {
      if (errors.length > 0) this.log.info(`executor ${peerId}: direct dial failed (${errors.join('; ')}); using the relayed connection`, { peer: peerId })
      return relayed
    }
    for (const addr of circuitAddrs) {
      try {
        return await this.init.mesh.dial(multiaddr(addr), { purpose: 'dispatch', signal })
      } catch (err) {
        errors.push(`${addr}: ${(err as Error).message}`)
      }
    }
    throw new PeerUnreachableError(`cannot reach executor ${peerId}: ${addrs.length === 0 && circuitAddrs.length === 0 ? 'it announced no address' : errors.join('; ')}`)
  }

  async offer (executor: string, task: TaskToRun, options: { signal: AbortSignal }): Promise<{ accept: boolean, reason?: string, freeSlots?: number }> {
    const conn = await this.connect(executor, options.signal)
    const res = await this.init.offer.offer(conn, {
      jobId: task.jobId,
      taskId: task.taskId,
      moduleCid: task.moduleCid,
      moduleSize: task.module.length,
      inputSize: task.input.length,
      limits: task.limits
    }, { signal: options.signal })
    if (res.accept) this.hasModule.set(task.taskId, res.hasModule)
    return { accept: res.accept, reason: res.reason, freeSlots: res.freeSlots }
  }

  /**
   * Sends the task and waits for its result. When the path breaks mid-task (a
   * relay on it dies, the connection drops), sends the same task ID again to
   * the same executor over another path — its circuit through another relay
   * first — and the executor answers from the run already under way (dispatch
   * is idempotent per task ID). Bounded by `maxPathRetries` and the task's signal.
   */
  async dispatch (executor: string, task: TaskToRun, options: { signal: AbortSignal }): Promise<TaskRunResult> {
    const avoid = new Set<string>()
    const maxRetries = this.init.maxPathRetries ?? 4
    for (let attempt = 0; ; attempt++) {
      let conn: Connection | undefined
      try {
        conn = await this.connect(executor, options.signal, avoid)
        return await this.dispatchOnce(executor, task, conn, options)
      } catch (err) {
        if (options.signal.aborted || !isPathFailure(err) || attempt >= maxRetries) throw err
        const addr = conn?.remoteAddr.toString()
        const relay = addr != null ? relayPeerOf(addr) : undefined
        if (relay != null) avoid.add(relay)
        const wait = 250 * 2 ** attempt
        this.log.warn(`task ${task.taskId} to executor ${executor}${addr != null ? ` over ${addr} (${transportOf(addr) === 'circuit' ? `relay ${relay ?? '?'}, ${uplinkTransport(addr)} to the relay` : transportOf(addr)})` : ''}: path broke: ${(err as Error).message}; sending it again over another path in ${wait} ms (attempt ${attempt + 2} of ${maxRetries + 1}; the executor joins the run under way)`, {
          job: task.jobId, task: task.taskId, peer: executor, addr, relay, transport: addr != null ? uplinkTransport(addr) : undefined, phase: (err as { phase?: string }).phase, code: (err as { code?: string }).code
        })
        await sleep(wait, options.signal)
      }
    }
  }

  private async dispatchOnce (executor: string, task: TaskToRun, conn: Connection, options: { signal: AbortSignal }): Promise<TaskRunResult> {
    const path = transportOf(conn.remoteAddr) === 'circuit' ? 'relayed' as const : 'direct' as const
    const skipModule = this.hasModule.get(task.taskId) === true
    this.hasModule.delete(task.taskId)
    const send = async (withModule: boolean): Promise<Awaited<ReturnType<DispatchService['dispatch']>>> => await this.init.dispatch.dispatch(conn, {
      jobId: task.jobId,
      taskId: task.taskId,
      ...(withModule ? { module: task.module } : {}),
      moduleCid: task.moduleCid,
      input: task.input,
      inputCid: task.inputCid,
      args: task.args,
      env: task.env,
      limits: task.limits,
      moduleName: task.moduleName
    }, { signal: options.signal })
    let result
    try {
      result = await send(!skipModule)
    } catch (err) {
      if ((err as Error).name !== 'ModuleNotCachedError') throw err
      // the donor evicted the module between offer and dispatch: send it after all
      this.log.debug(`executor ${executor} no longer has ${task.moduleCid}; resending with the module`)
      result = await send(true)
    }
    return {
      path,
      outcome: {
        status: result.status,
        exitCode: result.exitCode,
        error: result.error,
        outputCid: result.outputCid,
        fuelUsed: result.fuelUsed,
        durationMs: result.durationMs,
        receiptVerified: result.receiptVerified,
        stdoutSize: result.stdout.length,
        stderrSize: result.stderr.length
      },
      receipt: result.receipt.body,
      receiptSignature: result.receipt.signature,
      stdout: result.stdout,
      stderr: result.stderr
    }
  }
}
