import { PeerUnreachableError } from '../core/errors.ts'
import { METER_VERSION } from '../executor/index.ts'
import { codeOf, DispatchFailedError, DispatchRefusedError, DispatchTimeoutError, messageOf, ModuleNotCachedError, StreamEndedEarlyError, StreamStalledError } from '../protocols/errors.ts'
import { directIpOf, fetchObservedAddr } from '../protocols/observed-addr/index.ts'
import { createLogger, type Logger } from '../log/logger.ts'
import { delay, Waker } from '../core/async.ts'
import { ReachFailedError } from '../net/peer-dialler.ts'
import { relayPeerOf, transportOf, uplinkTransport } from '../net/transport-of.ts'
import type { CancelAnswer, ExecutorInfo, OfferAnswer, TaskNetwork, TaskRunResult, TaskToRun } from './broker.ts'
import type { MeshComponents } from '../net/components.ts'
import type { CapacityService } from '../protocols/capacity/index.ts'
import { dataLimitOf, dispatchBytes, FilesNotCachedError, RelayDataLimitError, type DispatchResult, type DispatchService } from '../protocols/dispatch/index.ts'
import { manifestBlobCids, type AddressedTree } from '../codec/manifest.ts'
import { MAX_OFFER_FILE_CIDS, type DeclineCode } from '../codec/messages.ts'
import type { OfferService } from '../protocols/offer/index.ts'
import { BUSY_DECLINES, OfferDeclinedError } from './attempts.ts'
import type { CancelService } from '../protocols/cancel/index.ts'
import type { Connection } from '@libp2p/interface'

export interface MeshTaskNetworkInit {
  /** the node's peer dialler, and its open connections (where an executor is observed) */
  mesh: Pick<MeshComponents, 'dialler' | 'connections'>
  capacity: CapacityService
  offer: OfferService
  dispatch: DispatchService
  /** `job cancel` reaches executors through it; absent: cancelled tasks lapse on their executors */
  cancel?: CancelService
  /** relays this node holds a connection to: an executor with no known address is tried through them */
  relays?: () => string[]
  /**
   * a task whose input, and module unless the executor is known to hold it,
   * fit in this many bytes is not offered first: its dispatch carries the
   * offer, saving a round trip (and a stream) per task; a decline costs the
   * bytes sent for nothing, so only small tasks go unasked. 0: always offer
   * first @default 65536
   */
  offerInDispatchBytes?: number
  /**
   * how many times a task whose path broke (a relay died, the connection
   * dropped) is sent again to the same executor over another path; the
   * executor joins the run already under way, so nothing runs twice @default 4
   */
  maxPathRetries?: number
  logger?: Logger
}

/** Below this size a task's dispatch carries its offer (MeshTaskNetworkInit.offerInDispatchBytes). */
export const OFFER_IN_DISPATCH_BYTES = 64 * 1024

/** (executor, module CID) pairs remembered as delivered, oldest forgotten first: 64 bytes or so each. */
const DELIVERED_MODULES = 4096

/** One direct dial of an executor's address: a failure costs this much before the task goes relayed. */
const DIRECT_DIAL_TIMEOUT_MS = 3_000
/** A task too big for the relay circuit has no other way: its direct dials get more patience. */
const BULK_DIRECT_DIAL_TIMEOUT_MS = 10_000
/**
 * An offer that takes a round trip (reaching the executor included) is
 * answered within this or counts as failed. Armed only then: an offer that
 * rides its task's dispatch costs no timer (a burst of small jobs would keep
 * one per job alive for this long).
 */
const OFFER_TIMEOUT_MS = 10_000

/**
 * Errors that say the path to the executor broke, not that the task or its
 * answer is wrong: decided by class, never by message text.
 */
function isPathFailure (err: unknown): boolean {
  // the answer stopped mid-way: the connection under it went away
  if (err instanceof StreamEndedEarlyError) return true
  if (err instanceof DispatchTimeoutError) return err.phase === 'open-stream' || err.phase === 'send' || err.phase === 'receive'
  return err instanceof DispatchFailedError || err instanceof StreamStalledError || err instanceof PeerUnreachableError
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
  /** directory blobs the executor's last offer answer said it holds, by task ID */
  private readonly hasFiles = new Map<string, string[]>()
  /** tasks whose executor's offer answer said it fetches big payloads by CID */
  private readonly fetches = new Set<string>()
  /** tasks whose offer rides their dispatch (offer answered `deferred`), until dispatched */
  private readonly deferred = new Set<string>()
  /** `${executor} ${moduleCid}` of modules an executor ran for us: a deferred offer sends no module there */
  private readonly delivered = new Set<string>()
  /** executors that refused a dispatch carrying its offer as un-offered (an older version): offered first from then on */
  private readonly offerFirst = new Set<string>()

  constructor (init: MeshTaskNetworkInit) {
    this.log = init.logger ?? createLogger('broker.net')
    this.init = init
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
    const waker = new Waker()
    const wake = (): void => { waker.wake() }
    this.init.capacity.addEventListener('executor:added', wake)
    try {
      await waker.wait(ms, { signal })
    } catch (err) {
      // a stop ends the wait like a new executor does: the caller looks at its signal next
      if (!signal.aborted) throw err
    } finally {
      this.init.capacity.removeEventListener('executor:added', wake)
    }
  }

  /**
   * An open connection to the executor: an existing direct one first, then a
   * direct dial of its non-circuit addresses, then an existing relayed one,
   * then its circuit addresses (net/peer-dialler.ts). Each dial is recorded
   * by the dial telemetry.
   */
  private async connect (peerId: string, signal: AbortSignal, avoid: ReadonlySet<string> = new Set()): Promise<Connection> {
    try {
      return await this.init.mesh.dialler.reach(peerId, {
        purpose: 'dispatch',
        signal,
        addrs: this.init.capacity.capacityOf(peerId)?.addrs ?? [],
        // what identify told us of its circuits, which may be newer than the announcement
        stored: 'circuit',
        // through every relay we are connected to: the executor may hold a
        // reservation there that its last announcement does not show yet
        // (gathered only when a dial is planned: a task on an open direct
        // connection needs no relay list)
        relays: () => this.init.relays?.() ?? [],
        // a direct connection carries the task better than the relayed one already open
        preferDirect: true,
        avoidRelays: avoid,
        directTimeoutMs: DIRECT_DIAL_TIMEOUT_MS
      })
    } catch (err) {
      if (!(err instanceof ReachFailedError)) throw err
      throw new PeerUnreachableError(`cannot reach executor ${peerId}: ${err.candidates === 0 ? 'it announced no address' : err.attempts.map(a => `${a.addr}: ${a.message}`).join('; ')}`, { cause: err })
    }
  }

  /**
   * The IP address an executor is observed at, never the one it claims: the
   * remote address of our direct connection to it, else what a relay it is
   * reached through saw its reservation come from (observed-addr). Reaches
   * the executor first when no connection is open (the offer that follows
   * uses the same connection); undefined when nobody observed it.
   */
  async locate (executor: string, options: { signal: AbortSignal }): Promise<string | undefined> {
    const { connections } = this.init.mesh
    if (connections.open(executor).length === 0) await this.connect(executor, options.signal)
    const open = connections.open(executor)
    for (const conn of open) {
      const ip = directIpOf(conn.remoteAddr.toString())
      if (ip != null) return ip
    }
    // relayed, or WebRTC signalled through a relay: the relay saw where the executor connected from
    const relays = new Set(open.map(c => relayPeerOf(c.remoteAddr)).filter(r => r != null))
    for (const relay of relays) {
      const toRelay = connections.bestDirect(relay)
      if (toRelay == null) continue
      try {
        const ip = await fetchObservedAddr(toRelay, executor, { signal: options.signal })
        if (ip != null) return ip
      } catch (err) {
        if (options.signal.aborted) throw err
        this.log.warn(`relay ${relay} did not say where it sees executor ${executor}: ${messageOf(err)}`, { peer: executor, relay, addr: toRelay.remoteAddr.toString(), transport: transportOf(toRelay.remoteAddr), phase: 'locate', code: codeOf(err) })
      }
    }
    return undefined
  }

  async offer (executor: string, task: TaskToRun, options: { signal: AbortSignal }): Promise<OfferAnswer> {
    if (this.mayDefer(executor, task)) {
      this.deferred.add(task.taskId)
      return { accept: true, deferred: true }
    }
    const signal = AbortSignal.any([options.signal, AbortSignal.timeout(OFFER_TIMEOUT_MS)])
    const conn = await this.connect(executor, signal)
    const res = await this.init.offer.offer(conn, {
      jobId: task.jobId,
      taskId: task.taskId,
      moduleCid: task.moduleCid,
      moduleSize: task.module.byteLength,
      inputSize: task.input.byteLength,
      limits: task.limits,
      ...offeredFiles(task.tree),
      meter: METER_VERSION
    }, { signal })
    if (res.accept) this.hasModule.set(task.taskId, res.hasModule)
    if (res.accept && res.hasFiles != null) this.hasFiles.set(task.taskId, res.hasFiles)
    if (res.accept && res.fetches === true) this.fetches.add(task.taskId)
    return { accept: res.accept, reason: res.reason, code: res.code, freeSlots: res.freeSlots }
  }

  /** Whether the task is small enough, and the executor recent enough, for its dispatch to carry the offer. */
  private mayDefer (executor: string, task: TaskToRun): boolean {
    if (task.tree != null || this.offerFirst.has(executor)) return false
    const module = this.delivered.has(`${executor} ${task.moduleCid}`) ? 0 : task.module.byteLength
    return module + task.input.byteLength <= (this.init.offerInDispatchBytes ?? OFFER_IN_DISPATCH_BYTES)
  }

  /** The executor ran the module for us, so it holds it (until its cache evicts it: then it asks for the bytes). */
  private remember (executor: string, moduleCid: string): void {
    const key = `${executor} ${moduleCid}`
    this.delivered.delete(key)
    this.delivered.add(key)
    if (this.delivered.size > DELIVERED_MODULES) this.delivered.delete(this.delivered.values().next().value as string)
  }

  /**
   * Asks the executor to stop tasks of ours, on a stream of its own over the
   * connection a dispatch would use (direct, else through a relay): the
   * dispatch stream may be busy sending the payload, or gone with its relay.
   */
  async cancel (executor: string, taskIds: string[], options: { signal: AbortSignal }): Promise<CancelAnswer> {
    const service = this.init.cancel
    if (service == null) throw new Error('this node has no cancel protocol')
    const conn = await this.connect(executor, options.signal)
    return await service.cancel(conn, { taskIds }, { signal: options.signal })
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
    const offered = this.deferred.delete(task.taskId)
    // every path a task is sent again over carries the same answer: the executor fetches big payloads itself
    const fetches = this.fetches.delete(task.taskId)
    for (let attempt = 0; ; attempt++) {
      let conn: Connection | undefined
      try {
        conn = await this.bulkPath(executor, task, await this.connect(executor, options.signal, avoid), options.signal)
        const result = await this.dispatchOnce(executor, task, conn, offered, options, fetches)
        this.remember(executor, task.moduleCid)
        return result
      } catch (err) {
        if (offered && err instanceof DispatchRefusedError) throw this.declined(executor, err)
        if (options.signal.aborted || !isPathFailure(err) || attempt >= maxRetries) throw err
        const addr = conn?.remoteAddr.toString()
        const relay = addr != null ? relayPeerOf(addr) : undefined
        if (relay != null) avoid.add(relay)
        const wait = 250 * 2 ** attempt
        this.log.warn(`task ${task.taskId} to executor ${executor}${addr != null ? ` over ${addr} (${transportOf(addr) === 'circuit' ? `relay ${relay ?? '?'}, ${uplinkTransport(addr)} to the relay` : transportOf(addr)})` : ''}: path broke: ${(err as Error).message}; sending it again over another path in ${wait} ms (attempt ${attempt + 2} of ${maxRetries + 1}; the executor joins the run under way)`, {
          job: task.jobId, task: task.taskId, peer: executor, addr, relay, transport: addr != null ? uplinkTransport(addr) : undefined, phase: (err as { phase?: string }).phase, code: (err as { code?: string }).code
        })
        await delay(wait, { signal: options.signal })
      }
    }
  }

  /**
   * The connection to send the task on: `conn`, unless it is a relay circuit
   * whose data limit the task's bytes exceed; then a direct connection,
   * dialled with every address known (a longer patience than a plain
   * dispatch's), else RelayDataLimitError naming the limit.
   */
  private async bulkPath (executor: string, task: TaskToRun, conn: Connection, signal: AbortSignal): Promise<Connection> {
    const limit = dataLimitOf(conn)
    const bytes = dispatchBytes({ ...task, module: this.hasModule.get(task.taskId) === true ? undefined : task.module })
    if (limit == null || bytes <= limit) return conn
    this.log.info(`task ${task.taskId}: ${bytes} bytes, over the ${limit} bytes the relay circuit to executor ${executor} may carry: dialling it directly`, { job: task.jobId, task: task.taskId, peer: executor, addr: conn.remoteAddr.toString(), transport: 'circuit', phase: 'bulk-path' })
    try {
      return await this.init.mesh.dialler.reach(executor, { purpose: 'dispatch', signal, addrs: this.init.capacity.capacityOf(executor)?.addrs ?? [], directOnly: true, skipRecentFailures: false, directTimeoutMs: BULK_DIRECT_DIAL_TIMEOUT_MS })
    } catch (err) {
      if (!(err instanceof ReachFailedError)) throw err
      const why = err.candidates === 0 ? 'it announced no direct address' : err.attempts.map(a => `${a.addr}: ${a.message}`).join('; ')
      throw new RelayDataLimitError(executor, task.taskId, bytes, limit, why, { cause: err })
    }
  }


  /**
   * A dispatch that carried its offer was refused: the decline an offer would
   * have had, or (`no-offer`) an executor too old to read the offer in a
   * dispatch, which is offered first from then on; that refusal stays one.
   */
  private declined (executor: string, err: DispatchRefusedError): Error {
    if (err.refusal === 'no-offer') {
      this.offerFirst.add(executor)
      return err
    }
    const busy = BUSY_DECLINES.has(err.refusal as DeclineCode)
    return new OfferDeclinedError(executor, { code: err.refusal, reason: err.detail, freeSlots: busy ? 0 : undefined }, { cause: err })
  }

  private async dispatchOnce (executor: string, task: TaskToRun, conn: Connection, offered: boolean, options: { signal: AbortSignal }, donorFetches = false): Promise<TaskRunResult> {
    const path = transportOf(conn.remoteAddr) === 'circuit' ? 'relayed' as const : 'direct' as const
    const skipModule = this.hasModule.get(task.taskId) === true || (offered && this.delivered.has(`${executor} ${task.moduleCid}`))
    this.hasModule.delete(task.taskId)
    let donorHasFiles = this.hasFiles.get(task.taskId)
    this.hasFiles.delete(task.taskId)
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
      moduleName: task.moduleName,
      ...(offered ? { offered, meter: METER_VERSION } : {}),
      ...(donorFetches ? { donorFetches } : {}),
      ...(task.tree != null ? { tree: task.tree, donorHasFiles } : {})
    }, { signal: options.signal })
    let result
    try {
      result = await send(!skipModule)
    } catch (err) {
      if (err instanceof FilesNotCachedError) {
        // the donor evicted directory files between offer and dispatch: send them all
        this.log.debug(`executor ${executor} no longer holds some directory files of task ${task.taskId}; resending them all`)
        donorHasFiles = undefined
        return toRunResult(path, await send(!skipModule))
      }
      if (!(err instanceof ModuleNotCachedError)) throw err
      // the donor evicted the module between offer and dispatch: send it after all
      this.log.debug(`executor ${executor} no longer has ${task.moduleCid}; resending with the module`)
      result = await send(true)
    }
    return toRunResult(path, result)
  }
}

/** The offer's directory fields: the blob CIDs (largest first, as many as an offer holds) and their total size. */
function offeredFiles (tree: AddressedTree | undefined): { fileCids?: string[], filesSize?: number } {
  if (tree == null) return {}
  let filesSize = 0
  for (const bytes of tree.blobs.values()) filesSize += bytes.byteLength
  return { fileCids: manifestBlobCids(tree.manifest).slice(0, MAX_OFFER_FILE_CIDS), filesSize }
}

function toRunResult (path: 'direct' | 'relayed', result: DispatchResult): TaskRunResult {
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
    stderr: result.stderr,
    ...(result.files != null ? { files: { files: result.files, removed: result.removedFiles ?? [] } } : {})
  }
}
