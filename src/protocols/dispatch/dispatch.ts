import { setMaxListeners } from 'node:events'
import { parseCid, rawCid } from '../../codec/cid.ts'
import { MalformedMessageError, ReceiptInvalidError } from '../../codec/errors.ts'
import { decodeDispatchHeader, decodeDispatchResult, encodeDispatchHeader, encodeDispatchResult, MAX_ERROR_LENGTH } from '../../codec/messages.ts'
import { decodeOutputFiles, encodeOutputFiles, treeFromManifest } from '../../codec/manifest.ts'
import { encodeOutput, outputCid, signReceipt, verifyReceipt } from '../../codec/receipt.ts'
import { follow, raceSignal } from '../../core/async.ts'
import { WorldComputeError } from '../../core/errors.ts'
import { DEFAULT_JOB_LIMITS } from '../../core/job.ts'
import { createLogger, type Logger } from '../../log/logger.ts'
import { warnRepeated } from '../../log/repeats.ts'
import { isConnection, openProtocolStream, peerOf } from '../components.ts'
import {
  codeOf, DispatchFailedError, DispatchRefusedError, DispatchTimeoutError, ExecutorCrashedError, messageOf, ModuleNotCachedError, PayloadTooLargeError,
  ProtocolViolationError, StreamEndedEarlyError, StreamStalledError, TaskAbandonedError
} from '../errors.ts'
import { PEER_TEXT_LENGTH, sanitiseForPeer } from '../sanitise.ts'
import { framed, handlerOptions } from '../exchange.ts'
import { ProtocolService } from '../service.ts'
import { PhaseTimer } from '../timer.ts'
import {
  CONTENT_CACHE_BYTES, DISPATCH_LIMITS, DISPATCH_PROTOCOL, DISPATCH_SESSION_PROTOCOL, DONOR_EXECUTE_MARGIN_MS, EXECUTE_MARGIN_MS, IDLE_STREAM_MS, MAX_IDLE_STREAMS, MAX_OUTPUT_BYTES,
  MAX_PAYLOAD_BYTES, MODULE_CACHE_BYTES, OPEN_STREAM_TIMEOUT_MS, PAYLOAD_CEILING_BYTES, REMEMBER_BYTES, REMEMBER_TASKS, SESSION_IDLE_MS, STALL_TIMEOUT_MS
} from './constants.ts'
import { DispatchStreamPool, StaleStreamError } from './stream-pool.ts'
import { ModuleCache } from './module-cache.ts'
import { TaskMemo } from './task-memo.ts'
import { blobsToSend, FilesNotCachedError, readTree, skipTree, splitPulledFiles, writeTree, type ReceivedTree } from './tree-transfer.ts'
import { pullsOf, pulledFiles, pulledPayloads, type PayloadFetcher, type Pulls, type Refused } from './pull.ts'
import { PULL_THRESHOLD_BYTES } from '../fetch/index.ts'
import type { AddressedTree, OutputFiles } from '../../codec/manifest.ts'
import type { DispatchHeader, DispatchResultHeader, RefusalCode } from '../../codec/messages.ts'
import type { ExecStatus, ExecuteRequest, ExecuteResult, JobDir, JobFile, JobLimits, SignedReceipt } from '../../core/job.ts'
import type { DispatchPhase } from '../errors.ts'
import type { FramedStream, Payload, PayloadOptions } from '../framing.ts'
import type { ProtocolRegistrar, ProtocolTarget, StreamOpener } from '../components.ts'
import type { AbortOptions, Connection, PeerId, PrivateKey, Stream } from '@libp2p/interface'

/** Who sent a dispatch: the broker's PeerId (the authenticated end of the connection). */
export interface DispatchContext {
  peer: string
}

/**
 * Runs one admitted task on the donor (the executor, injected). Must honour
 * `signal`. Throwing TaskAbandonedError means "no result" (nothing is
 * signed, and the run is forgotten); any other error is the task's `failed`.
 */
export type RunTask = (req: ExecuteRequest, options: { signal: AbortSignal } & DispatchContext) => Promise<ExecuteResult>

/** What the donor knows of a dispatch when it decides whether to take it: its header, before any payload. */
export interface AdmissionRequest {
  jobId: string
  taskId: string
  moduleCid: string
  /** the module bytes that follow the header (0: the donor holds the module), for a dispatch that carries its own offer @default 0 */
  moduleSize?: number
  /** the input bytes that follow @default 0 */
  inputSize?: number
  /** the dispatch carries its own offer (no offer stream came first): decide the header as one @default false */
  offered?: boolean
  /** the cost rule the broker counts fuel by, with `offered` (OfferRequest's `meter`) */
  meter?: string
  limits: Partial<JobLimits>
}

/**
 * Whether a dispatch may go on. Admitted: `release` is called once when the
 * dispatch stream ends, whether its run started or not (a hold the run did
 * not take is kept for a re-send). Refused: nothing is read beyond the
 * header but discarded, and the broker is told the code.
 */
export type Admission =
  | { admitted: true, release: () => void }
  | { admitted: false, code: RefusalCode, reason: string }

export type AdmitTask = (req: AdmissionRequest, context: DispatchContext) => Admission

export interface DispatchInit {
  /**
   * Donor side: runs a verified task. Without it this node does not handle
   * the protocol (a broker only dispatches), so identify does not list it.
   */
  runTask?: RunTask
  /**
   * Donor side: whether a dispatch may run, decided on its header before its
   * payload is read (the job runner: an accepted offer from the same broker
   * for the task, or the header decided as an offer when it says `offered`). A
   * re-send of a task this broker already runs here needs none: it joins the
   * run. Without it every other dispatch is refused (`no-offer`): a donor
   * runs only what it agreed to.
   */
  admit?: AdmitTask
  /**
   * Donor side: how long this donor's jobs have been suspended in all (the
   * donor controls), a running total in ms: the guard on a task's run counts
   * only the time it was allowed to run, so a paused donor never signs a
   * deadline_exceeded the job did not earn @default none suspended
   */
  suspendedMs?: () => number
  /**
   * Donor: module bytes kept by CID for `hasModule`, least recently used evicted.
   *
   * @default 268435456 (256 MiB)
   */
  moduleCacheBytes?: number
  /**
   * Donor: directory files received on the dispatch stream, kept by CID in
   * memory so an offer can say which it holds and the broker skips them;
   * least recently used evicted. Files fetched by CID (`pullFiles`) stay in
   * the fetch service's content store instead.
   *
   * @default 268435456 (256 MiB)
   */
  contentCacheBytes?: number
  /**
   * Largest module and largest input, each, accepted (donor) or sent (broker).
   *
   * @default 67108864 (64 MiB)
   */
  maxPayloadBytes?: number
  /**
   * Broker: largest stdout and largest stderr accepted, each.
   *
   * @default 67108864 (64 MiB)
   */
  maxOutputBytes?: number
  /**
   * Donor: recent tasks remembered for idempotent retries.
   *
   * @default 1024
   */
  rememberTasks?: number
  /**
   * Broker: opening the stream (protocol negotiation included).
   *
   * @default 10000
   */
  openStreamTimeoutMs?: number
  /**
   * Both sides: a send or receive that makes no progress for this long fails.
   *
   * @default 30000
   */
  stallTimeoutMs?: number
  /**
   * Broker: the execute phase may last the task's deadline plus this.
   *
   * @default 30000
   */
  executeMarginMs?: number
  /**
   * Broker: a session stream (`/worldcompute/dispatch/1.1.0`) left without a
   * task this long is closed; a task to the same donor before then reuses it.
   *
   * @default 10000
   */
  idleStreamMs?: number
  /**
   * Donor: a session stream waits this long for its broker's next task
   * before it is closed (longer than any broker's `idleStreamMs`).
   *
   * @default 60000
   */
  sessionIdleMs?: number
  /**
   * Donor: concurrent dispatch streams per connection.
   *
   * @default 16
   */
  maxInboundStreams?: number
  /**
   * Broker: grants the donor a fetch of the big module, input and directory
   * files it pulls by CID; donor: fetches them into its content store. Without it
   * everything goes on the dispatch stream (broker) and a dispatch asking
   * for a fetch is refused (donor) @default none
   */
  fetch?: () => PayloadFetcher | undefined
  /**
   * Broker: a module, input or directory file over this many bytes is
   * pulled by a donor whose offer said it fetches (`pullModule` /
   * `pullInput` / `pullFiles`)
   *
   * @default 8388608 (8 MiB)
   */
  pullThresholdBytes?: number
  /**
   * @default createLogger('protocols.dispatch')
   */
  logger?: Logger
}

export interface DispatchComponents {
  peerId: PeerId
  /** signs receipts (donor side) */
  privateKey: PrivateKey
  registrar: ProtocolRegistrar
  connectionManager: StreamOpener
}

/** One task as the broker dispatches it. */
export interface DispatchTask {
  jobId: string
  taskId: string
  /** the module's bytes, or its blob file read in chunks as it is sent; omit when the donor's offer answer said `hasModule` */
  module?: Payload
  /** CIDv1 raw sha2-256 of the module */
  moduleCid: string
  /** the input's bytes, or its blob file read in chunks: a big input is never held whole by the broker */
  input: Payload
  /** CIDv1 raw sha2-256 of the input */
  inputCid: string
  args: string[]
  env: string[]
  limits: Partial<JobLimits>
  /** argv[0] of the program @default 'main.wasm' on the donor */
  moduleName?: string
  /** the job's directories, addressed (codec/manifest.ts `addressTree`); absent: no filesystem */
  tree?: AddressedTree
  /** blob CIDs the donor's offer answer said it holds (`hasFiles`): not sent */
  donorHasFiles?: string[]
  /** the donor's offer answer said it fetches by CID (`fetches`): a module, input or directory file over the pull threshold is not sent but fetched @default false */
  donorFetches?: boolean
  /**
   * No offer was made: the dispatch carries it, the donor decides its header
   * as an offer and a decline comes back as DispatchRefusedError with the
   * decline code. For small tasks, where sending the payload unasked costs
   * less than the offer's round trip @default false
   */
  offered?: boolean
  /** with `offered`: the cost rule fuel must be counted by (OfferRequest's `meter`) */
  meter?: string
}

/** What a dispatch returned, its receipt checked. */
export interface DispatchResult {
  status: ExecStatus
  exitCode?: number
  error?: string
  stdout: Uint8Array
  stderr: Uint8Array
  /** CIDv1 dag-cbor of `encodeOutput(stdout, stderr)`, checked against the bytes */
  outputCid: string
  fuelUsed: number
  durationMs: number
  receipt: SignedReceipt
  /** PeerId of the donor that ran it (the authenticated end of the connection) */
  executor: string
  /** always true on a returned result: a receipt that does not verify throws ReceiptInvalidError */
  receiptVerified: boolean
  /** for a task with a tree: files the job created or changed, sorted by path (covered by outputCid) */
  files?: JobFile[]
  /** for a task with a tree: guest paths of the files it removed */
  removedFiles?: string[]
}

/** A dispatch stream and how it may be used: `session` streams outlive their task, `reused` ones served another before. */
interface Lease {
  io: FramedStream
  session: boolean
  reused: boolean
}

/** A task as it goes out: encoded once, sent once more on a new stream when a kept one turned out closed. */
interface Outgoing {
  task: DispatchTask
  /** the directory files on the stream (those pulled are in `pulls.files`) */
  blobs: Array<[string, Payload]>
  header: Uint8Array
  peer: string
  /** what the donor fetches by CID instead of receiving it on this stream */
  pulls: Pulls
}

/** Progress of a dispatch, for `onProgress` (libp2p's ProgressEvent shape). */
export type DispatchProgressEvent =
  | { type: 'dispatch:stream-opened', detail: { remoteAddr: string, limited: boolean } }
  | { type: 'dispatch:sent', detail: { bytes: number, total: number } }
  | { type: 'dispatch:executing', detail: { deadlineMs: number } }
  | { type: 'dispatch:received', detail: { bytes: number, total: number } }

export interface DispatchOptions extends AbortOptions {
  onProgress?: (evt: DispatchProgressEvent) => void
}

/** A donor's answer, as sent and as remembered for retries. */
interface Answer {
  header: DispatchResultHeader
  stdout: Uint8Array
  stderr: Uint8Array
  /** for a task with a tree: the output files, and their encoded document sent after stderr */
  files?: OutputFiles
  filesBytes?: Uint8Array
}

const EMPTY = new Uint8Array(0)

/**
 * A dispatch or an answer whose payloads add up to no more than this is sent
 * in one write; a bigger one frame by frame, with progress and the stall
 * timer after each.
 */
const SMALL_MESSAGE_BYTES = 64 * 1024

/**
 * `/worldcompute/dispatch/1.0.0`.
 *
 * Broker → donor: a dag-cbor header, then the module bytes (unless
 * `sendsModule` is false) and the input bytes, each as frames of at most
 * 256 KiB closed by an empty frame; then the broker closes its side.
 * Donor → broker: a dag-cbor result header with the signed receipt, then
 * stdout and stderr framed the same way.
 *
 * The donor checks both CIDs against the bytes before running anything,
 * runs each taskId at most once, keeps verified modules by CID, and signs a
 * receipt for every answer. The broker checks the receipt's signature,
 * fields and output CID against the bytes it received.
 */
export class DispatchService extends ProtocolService {
  private readonly components: DispatchComponents
  private readonly runTask: RunTask | undefined
  private readonly admit: AdmitTask | undefined
  private readonly suspendedMs: (() => number) | undefined
  private readonly maxPayloadBytes: number
  private readonly maxOutputBytes: number
  private readonly openStreamTimeoutMs: number
  private readonly stallTimeoutMs: number
  private readonly executeMarginMs: number
  private readonly log: Logger
  private readonly modules: ModuleCache
  private readonly contents: ModuleCache
  /**
   * Directory files sent on the stream and named for a fetch (broker side),
   * received on the stream and taken by CID from the content store or
   * fetched (donor side) since the service started: what shows that a file
   * is sent once, and big ones fetched rather than pushed.
   */
  readonly treeStats = { blobsSent: 0, blobBytesSent: 0, blobsPulled: 0, blobBytesPulled: 0, blobsReceived: 0, blobBytesReceived: 0, blobsFetched: 0, blobBytesFetched: 0 }
  private readonly memo: TaskMemo<Answer>
  private readonly sessionIdleMs: number
  private readonly maxInboundStreams: number
  /** broker: idle session streams, per connection */
  private readonly pool: DispatchStreamPool
  /** broker: connections whose donor answers only the one-task protocol (negotiated once, not offered the session again) */
  private readonly oneTaskOnly = new WeakSet<Connection>()
  private readonly fetcher: (() => PayloadFetcher | undefined) | undefined
  private readonly pullThresholdBytes: number | undefined

  constructor (components: DispatchComponents, init: DispatchInit = {}) {
    const maxInboundStreams = init.maxInboundStreams ?? DISPATCH_LIMITS.maxInboundStreams
    const limits = { ...DISPATCH_LIMITS, maxInboundStreams }
    // donors behind NAT are reached through relays: without limited connections, relayed dispatch silently fails
    super(components.registrar, { protocol: DISPATCH_PROTOCOL, name: 'dispatch', inbound: init.runTask != null ? handlerOptions(limits, true) : undefined })
    this.components = components
    this.maxInboundStreams = maxInboundStreams
    this.runTask = init.runTask
    this.admit = init.admit
    this.suspendedMs = init.suspendedMs
    this.maxPayloadBytes = Math.min(init.maxPayloadBytes ?? MAX_PAYLOAD_BYTES, PAYLOAD_CEILING_BYTES)
    this.maxOutputBytes = Math.min(init.maxOutputBytes ?? MAX_OUTPUT_BYTES, MAX_OUTPUT_BYTES)
    this.openStreamTimeoutMs = init.openStreamTimeoutMs ?? OPEN_STREAM_TIMEOUT_MS
    this.stallTimeoutMs = init.stallTimeoutMs ?? STALL_TIMEOUT_MS
    this.executeMarginMs = init.executeMarginMs ?? EXECUTE_MARGIN_MS
    this.log = init.logger ?? createLogger('protocols.dispatch')
    this.modules = new ModuleCache(init.moduleCacheBytes ?? MODULE_CACHE_BYTES)
    this.contents = new ModuleCache(init.contentCacheBytes ?? CONTENT_CACHE_BYTES)
    this.sessionIdleMs = init.sessionIdleMs ?? SESSION_IDLE_MS
    this.pool = new DispatchStreamPool({
      idleMs: init.idleStreamMs ?? IDLE_STREAM_MS,
      maxIdlePerConnection: MAX_IDLE_STREAMS,
      onCloseError: (err) => { this.log.debug(`an idle dispatch stream did not close: ${messageOf(err)}`, { protocol: DISPATCH_SESSION_PROTOCOL, code: codeOf(err) }) }
    })
    this.fetcher = init.fetch
    this.pullThresholdBytes = init.pullThresholdBytes
    this.memo = new TaskMemo<Answer>({
      maxEntries: init.rememberTasks ?? REMEMBER_TASKS,
      maxBytes: REMEMBER_BYTES,
      sizeOf: (a) => a.stdout.byteLength + a.stderr.byteLength + (a.filesBytes?.byteLength ?? 0)
    })
  }

  async start (): Promise<void> {
    if (this.isStarted()) return
    await super.start()
    // every task running here follows it (`execute`): as many listeners as tasks, not a leak
    setMaxListeners(Infinity, this.stopping)
    // the session protocol beside the one-task one: a broker that speaks it keeps its stream for the next task
    if (this.runTask != null) {
      const limits = handlerOptions({ ...DISPATCH_LIMITS, maxInboundStreams: this.maxInboundStreams }, true)
      await this.components.registrar.handle(DISPATCH_SESSION_PROTOCOL, async (stream, connection) => { await this.answerSession(stream, connection) }, limits)
    }
  }

  /** The fetch service (a getter: libp2p builds the services side by side). */
  private get fetch (): PayloadFetcher | undefined {
    return this.fetcher?.()
  }

  async stop (): Promise<void> {
    const started = this.isStarted()
    await super.stop()
    if (started && this.runTask != null) await this.components.registrar.unhandle(DISPATCH_SESSION_PROTOCOL)
    this.pool.clear()
    this.memo.clear()
    this.modules.clear()
    this.contents.clear()
  }

  /** Donor: whether the module is cached, so an offer can answer `hasModule`. Any multibase spelling of the CID works. */
  hasModule (moduleCid: string): boolean {
    const key = parseCid(moduleCid)?.toString()
    return key != null && this.modules.has(key)
  }

  /** Donor: which of these directory blob CIDs it holds, for an offer's `hasFiles` (in canonical spelling). */
  hasFiles (cids: readonly string[]): string[] {
    return cids.filter(cid => { const key = parseCid(cid)?.toString(); return key != null && this.contents.has(key) })
  }

  // ---- broker side ---------------------------------------------------------

  /**
   * Sends a task to a donor and waits for its verified result.
   *
   * Throws DispatchTimeoutError (with the phase), DispatchFailedError (the
   * stream failed), ModuleNotCachedError (send the module bytes and retry),
   * ExecutorCrashedError (the donor's executor broke under the task: run it
   * elsewhere), PayloadTooLargeError, MalformedMessageError (the donor's
   * answer) or ReceiptInvalidError (the answer is not what the receipt proves).
   */
  async dispatch (target: ProtocolTarget, task: DispatchTask, options: DispatchOptions = {}): Promise<DispatchResult> {
    const peer = peerOf(target).toString()
    const toSend = task.tree != null ? blobsToSend(task.tree, task.donorHasFiles) : []
    this.checkPayloadSizes(task, toSend)
    const fetches = this.fetch != null && task.donorFetches === true
    const { push: blobs, pull: files } = splitPulledFiles(toSend, fetches ? this.pullThresholdBytes ?? PULL_THRESHOLD_BYTES : undefined)
    const pulls: Pulls = { ...(this.fetch != null ? pullsOf(task, this.pullThresholdBytes) : {}), ...(files.length > 0 ? { files } : {}) }
    // encode before any I/O: a bad field is our caller's bug, named by the codec
    const out: Outgoing = { task, blobs, header: encodeDispatchHeader(headerOf(task, blobs.length, pulls)), peer, pulls }
    try {
      return await this.dispatchOn(target, out, options, true)
    } catch (err) {
      if (!(err instanceof StaleStreamError)) throw err
      // a kept stream the donor had closed: the same task on a new stream (the donor runs a taskId once)
      this.log.debug(`task ${task.taskId} to ${peer}: the kept dispatch stream had closed (${messageOf(err.cause)}); sending it on a new stream`, { peer, task: task.taskId, code: codeOf(err.cause) })
      return await this.dispatchOn(target, out, options, false)
    }
  }

  /** One try of a dispatch: on a kept session stream when `mayReuse` and one is idle, else on a new stream. */
  private async dispatchOn (target: ProtocolTarget, out: Outgoing, options: DispatchOptions, mayReuse: boolean): Promise<DispatchResult> {
    const { task, peer } = out
    const progress = options.onProgress ?? (() => {})
    const timer = new PhaseTimer<DispatchPhase>((phase, ms) => new DispatchTimeoutError(phase, ms, peer), options.signal)
    let lease: Lease | undefined
    // the donor's fetches of what it pulls are progress of the task: each frame served restarts the phase's budget
    const releases = this.grantPulls(peer, task, out.pulls, () => { timer.touch() })
    try {
      timer.enter('open-stream', this.openStreamTimeoutMs)
      lease = await this.streamFor(target, mayReuse, timer.signal)
      // the address is formatted only for a caller that listens
      if (options.onProgress != null && isConnection(target)) {
        progress({ type: 'dispatch:stream-opened', detail: { remoteAddr: target.remoteAddr.toString(), limited: target.limits != null } })
      }
      await this.send(lease.io, out, timer, progress, !lease.session)
      const answer = await this.receive(lease.io, task, peer, timer, progress)
      timer.dispose()
      // the answer was read whole: the stream is at a task boundary, ready for the next one
      if (lease.session && isConnection(target)) this.pool.give(target, lease.io)
      lease = undefined
      return await this.accept(peer, task, answer, options)
    } catch (err) {
      const reason = timer.expired ?? err
      lease?.io.stream.abort(reason instanceof Error ? reason : new Error(String(reason)))
      if (timer.expired != null) throw timer.expired
      if (options.signal?.aborted === true) throw err
      if (lease?.reused === true && staleStream(err, timer.current)) throw new StaleStreamError(`the kept dispatch stream to ${peer} failed before any answer`, { cause: err })
      if (err instanceof WorldComputeError) throw err
      throw new DispatchFailedError(timer.current ?? 'open-stream', peer, err)
    } finally {
      timer.dispose()
      for (const release of releases) release()
    }
  }

  /**
   * The stream a task goes out on: a kept session stream of this connection,
   * else a new one offering the session protocol first (a donor that answers
   * only the one-task protocol is remembered per connection). A bare PeerId
   * target gets a one-task stream.
   */
  private async streamFor (target: ProtocolTarget, mayReuse: boolean, signal: AbortSignal): Promise<Lease> {
    if (!isConnection(target)) {
      return { io: framed(await openProtocolStream(target, this.protocol, this.components.connectionManager, { signal }), DISPATCH_LIMITS), session: false, reused: false }
    }
    const kept = mayReuse ? this.pool.take(target) : undefined
    if (kept != null) return { io: kept, session: true, reused: true }
    const protocols = this.oneTaskOnly.has(target) ? [this.protocol] : [DISPATCH_SESSION_PROTOCOL, this.protocol]
    const stream = await target.newStream(protocols, { signal, runOnLimitedConnection: true })
    const session = stream.protocol === DISPATCH_SESSION_PROTOCOL
    if (!session) this.oneTaskOnly.add(target)
    return { io: framed(stream, DISPATCH_LIMITS), session, reused: false }
  }

  /** Broker: lets the donor fetch what it pulls, while this dispatch lasts. */
  private grantPulls (peer: string, task: DispatchTask, pulls: Pulls, onServed: () => void): Array<() => void> {
    const grants: Array<() => void> = []
    if (pulls.module === true && task.module != null) grants.push(this.fetch?.grant(peer, task.moduleCid, task.module, { onServed }) ?? (() => {}))
    if (pulls.input === true) grants.push(this.fetch?.grant(peer, task.inputCid, task.input, { onServed }) ?? (() => {}))
    for (const [cid, bytes] of pulls.files ?? []) grants.push(this.fetch?.grant(peer, cid, bytes, { onServed }) ?? (() => {}))
    return grants
  }

  /** Broker: what a task may send, each part: this node's limit, or the job's own payload limit when it asked for more (the donor's offer already agreed to it). */
  private checkPayloadSizes (task: DispatchTask, blobs: Array<[string, Payload]>): void {
    const limit = Math.min(Math.max(this.maxPayloadBytes, task.limits.payloadBytes ?? 0), PAYLOAD_CEILING_BYTES)
    const sizes: Array<[string, number]> = [['module', task.module?.byteLength ?? 0], ['input', task.input.byteLength], ...blobs.map(([cid, b]): [string, number] => [`directory file ${cid}`, b.byteLength])]
    for (const [what, size] of sizes) {
      if (size > limit) {
        throw new PayloadTooLargeError(`task ${task.taskId}: the ${what} is ${size} bytes, over the ${limit}-byte limit`, limit)
      }
    }
  }

  /** The send phase: the header, the module (unless the donor has it or pulls it), the input (unless pulled), then (`close`: a one-task stream) our half-close. */
  private async send (io: FramedStream, out: Outgoing, timer: PhaseTimer<DispatchPhase>, progress: Progress, close: boolean): Promise<void> {
    const { blobs, header, pulls } = out
    const task = pulls.module === true ? { ...out.task, module: undefined } : out.task
    timer.enter('send', this.stallTimeoutMs)
    const moduleSize = task.module?.byteLength ?? 0
    const inputSize = pulls.input === true ? 0 : task.input.byteLength
    const treeSize = task.tree != null ? task.tree.manifestBytes.byteLength + blobs.reduce((n, [, b]) => n + b.byteLength, 0) : 0
    const total = moduleSize + inputSize + treeSize
    const sending = (base: number): PayloadOptions => stalls(timer, (n) => { progress({ type: 'dispatch:sent', detail: { bytes: base + n, total } }) })
    if (task.tree == null && total <= SMALL_MESSAGE_BYTES && (task.module == null || task.module instanceof Uint8Array) && task.input instanceof Uint8Array) {
      // a small task held in memory (not streamed from the broker's blob files) goes in one write: the muxer,
      // Noise and the socket see one message, not five
      await io.writeFrames([header, ...(task.module != null ? io.payloadFrames(task.module) : []), ...(pulls.input === true ? [] : io.payloadFrames(task.input))], { signal: timer.signal })
      sending(0).onFrame?.(total)
      if (close) await io.stream.close({ signal: timer.signal })
      return
    }
    await io.writeFrame(header, { signal: timer.signal })
    if (task.module != null) await io.writePayload(task.module, sending(0))
    if (pulls.input !== true) await io.writePayload(task.input, sending(moduleSize))
    if (task.tree != null) {
      await writeTree(io, task.tree, blobs, sending, moduleSize + inputSize)
      this.treeStats.blobsSent += blobs.length
      this.treeStats.blobBytesSent += treeSize - task.tree.manifestBytes.byteLength
      this.treeStats.blobsPulled += pulls.files?.length ?? 0
      this.treeStats.blobBytesPulled += (pulls.files ?? []).reduce((n, [, b]) => n + b.byteLength, 0)
    }
    // half-close: the donor sees the end of our side; its answer still flows back
    if (close) await io.stream.close({ signal: timer.signal })
  }

  /** The execute and receive phases: the donor's result header, then its stdout and stderr. */
  private async receive (io: FramedStream, task: DispatchTask, peer: string, timer: PhaseTimer<DispatchPhase>, progress: Progress): Promise<Answer> {
    const deadlineMs = task.limits.deadlineMs ?? DEFAULT_JOB_LIMITS.deadlineMs
    timer.enter('execute', deadlineMs + this.executeMarginMs)
    progress({ type: 'dispatch:executing', detail: { deadlineMs } })
    const header = await io.readMessage(decodeDispatchResult, 'dispatch result', { signal: timer.signal })

    timer.enter('receive', this.stallTimeoutMs)
    for (const [what, size] of [['stdout', header.stdoutSize], ['stderr', header.stderrSize]] as const) {
      if (size > this.maxOutputBytes) {
        throw new PayloadTooLargeError(`donor ${peer} announced ${size} bytes of ${what} for task ${task.taskId}, over the ${this.maxOutputBytes}-byte limit`, this.maxOutputBytes)
      }
    }
    const total = header.stdoutSize + header.stderrSize
    const receiving = (base: number): PayloadOptions => stalls(timer, (n) => { progress({ type: 'dispatch:received', detail: { bytes: base + n, total } }) })
    const stdout = await io.readPayload(header.stdoutSize, 'stdout', receiving(0))
    const stderr = await io.readPayload(header.stderrSize, 'stderr', receiving(header.stdoutSize))
    return { header, stdout, stderr, ...await this.receiveFiles(io, task, peer, header, receiving(total)) }
  }

  /** The output files document after stderr: present exactly for a task with a tree. */
  private async receiveFiles (io: FramedStream, task: DispatchTask, peer: string, header: DispatchResultHeader, options: PayloadOptions): Promise<Pick<Answer, 'files' | 'filesBytes'>> {
    if (header.filesSize == null) {
      if (task.tree != null && header.refused == null && header.moduleMissing !== true) throw new ProtocolViolationError(`donor ${peer} answered task ${task.taskId}, which has directories, without its output files`)
      return {}
    }
    if (task.tree == null) throw new ProtocolViolationError(`donor ${peer} answered task ${task.taskId}, which has no directories, with output files`)
    if (header.filesSize > this.maxOutputBytes) {
      throw new PayloadTooLargeError(`donor ${peer} announced ${header.filesSize} bytes of output files for task ${task.taskId}, over the ${this.maxOutputBytes}-byte limit`, this.maxOutputBytes)
    }
    const filesBytes = await io.readPayload(header.filesSize, 'output files', options)
    return { filesBytes, files: decodeOutputFiles(filesBytes, this.maxOutputBytes) }
  }

  /** The donor's whole answer, judged: a module it no longer has, the receipt, an executor that crashed. */
  private async accept (peer: string, task: DispatchTask, answer: Answer, options: AbortOptions): Promise<DispatchResult> {
    if (answer.header.moduleMissing === true && task.module == null) {
      throw new ModuleNotCachedError(task.moduleCid, peer)
    }
    if (answer.header.filesMissing === true && (task.donorHasFiles?.length ?? 0) > 0) {
      throw new FilesNotCachedError(peer, task.taskId)
    }
    const result = await this.verifyResult(peer, task, answer, options)
    if (answer.header.refused != null) {
      throw new DispatchRefusedError(peer, task.taskId, answer.header.refused, answer.header.error)
    }
    if (answer.header.errorCode === 'EXECUTOR_CRASHED') {
      throw new ExecutorCrashedError(peer, task.taskId, answer.header.error)
    }
    return result
  }

  private async verifyResult (peer: string, task: DispatchTask, answer: Answer, options: AbortOptions): Promise<DispatchResult> {
    const { header: result, stdout, stderr } = answer
    const body = await verifyReceipt(result.receipt, {
      executor: peer,
      taskId: task.taskId,
      moduleCid: task.moduleCid,
      inputCid: task.inputCid,
      outputBytes: encodeOutput(stdout, stderr, answer.files)
    }, options)
    // the receipt is what the broker keeps: the unsigned header must say the same
    const pairs: Array<[string, unknown, unknown]> = [
      ['outputCid', body.outputCid, result.outputCid],
      ['status', body.status, result.status],
      ['exitCode', body.exitCode, result.exitCode ?? null],
      ['fuelUsed', body.fuelUsed, result.fuelUsed]
    ]
    for (const [field, signed, stated] of pairs) {
      if (signed !== stated) {
        throw new ReceiptInvalidError(`donor ${peer} answered task ${task.taskId} with ${field} ${String(stated)}, but its signed receipt says ${String(signed)}`)
      }
    }
    const out: DispatchResult = {
      status: result.status,
      stdout,
      stderr,
      outputCid: result.outputCid,
      fuelUsed: result.fuelUsed,
      durationMs: result.durationMs,
      receipt: result.receipt,
      executor: peer,
      receiptVerified: true
    }
    if (result.exitCode !== undefined) out.exitCode = result.exitCode
    if (result.error !== undefined) out.error = result.error
    if (answer.files != null) {
      out.files = answer.files.files
      out.removedFiles = answer.files.removed
    }
    return out
  }

  // ---- donor side ----------------------------------------------------------

  protected async answer (stream: Stream, connection: Connection): Promise<void> {
    await this.answerOne(framed(stream, DISPATCH_LIMITS), connection, { session: false, first: true })
  }

  /** `/worldcompute/dispatch/1.1.0`: one task after another on the stream, until the broker ends it or leaves it idle. */
  private async answerSession (stream: Stream, connection: Connection): Promise<void> {
    const frames = framed(stream, DISPATCH_LIMITS)
    let first = true
    while (await this.answerOne(frames, connection, { session: true, first })) first = false
  }

  /**
   * Reads one task, runs it (or refuses it) and answers. True when the
   * stream is open for the broker's next task (a session stream); a session
   * that ends at a task boundary (the broker's close, or idle for
   * `sessionIdleMs`) is closed quietly.
   */
  private async answerOne (frames: FramedStream, connection: Connection, mode: { session: boolean, first: boolean }): Promise<boolean> {
    const { stream } = frames
    const peer = connection.remotePeer.toString()
    const timer = new PhaseTimer<'receiving' | 'sending'>((phase, ms) => new StreamStalledError(this.protocol, peer, phase, ms), this.stopping)
    const io = stalls(timer)
    let header: DispatchHeader | undefined
    let admission: Admission | undefined
    try {
      timer.enter('receiving', mode.first ? this.stallTimeoutMs : this.sessionIdleMs)
      header = await frames.readMessage(decodeDispatchHeader, 'dispatch header', io)
      timer.enter('receiving', this.stallTimeoutMs)
      this.checkAnnouncedSizes(header)
      admission = this.admitTask(header, peer)
      if (!admission.admitted) {
        await this.answerRefusal(frames, header, peer, admission, timer, !mode.session)
        return mode.session
      }
      const module = header.sendsModule ? await frames.readPayload(header.moduleSize, 'module', io) : undefined
      const input = header.pullInput === true ? undefined : await frames.readPayload(header.inputSize, 'input', io)
      const tree = await readTree(frames, header, this.maxPayloadBytes, io)
      // execution has its own guard (deadline + margin), fetches their own stall timers; no stall timer while they run
      timer.dispose()
      const pulled = await this.pullAll(header, tree, connection)
      if ('refusal' in pulled) {
        await this.sendAnswer(frames, await this.refuse(header, 'rejected', pulled.refusal.reason, { refused: pulled.refusal.code }), timer, !mode.session)
        return mode.session
      }

      const answer = await this.answerTask(header, { module: module ?? pulled.module, input: input ?? pulled.input ?? new Uint8Array(0), tree, pulledModule: pulled.module != null }, peer)
      await this.sendAnswer(frames, answer, timer, !mode.session)
      this.log.info(`task ${header.taskId} from ${peer}: ${answer.header.status}${answer.header.error != null ? ` (${answer.header.error})` : ''}`, {
        peer, task: header.taskId, job: header.jobId, fuel: answer.header.fuelUsed, ms: answer.header.durationMs, relayed: connection.limits != null, code: answer.header.errorCode
      })
      return mode.session
    } catch (err) {
      const reason = timer.expired ?? err
      if (!mode.first && header == null && !isBadHeader(reason)) {
        // between tasks: the broker ended the session, left it idle, or the connection went; no task is lost
        await this.endSession(stream, peer, reason)
        return false
      }
      warnRepeated(this.log, `dispatch from ${peer} dropped${header != null ? ` (task ${header.taskId})` : ''}: ${messageOf(reason)}`, {
        peer, protocol: mode.session ? DISPATCH_SESSION_PROTOCOL : this.protocol, task: header?.taskId, code: codeOf(reason), field: reason instanceof MalformedMessageError ? reason.field : undefined
      })
      stream.abort(reason instanceof Error ? reason : new Error(String(reason)))
      return false
    } finally {
      timer.dispose()
      if (admission?.admitted === true) admission.release()
    }
  }

  /** Donor: what the header says to pull (module, input, directory files, the last into `tree.fetched`), or why not. */
  private async pullAll (header: DispatchHeader, tree: ReceivedTree | undefined, connection: Connection): Promise<{ module?: Uint8Array, input?: Uint8Array } | Refused> {
    const pulled = await pulledPayloads(this.fetch, header, connection, this.stopping)
    if ('refusal' in pulled || tree == null) return pulled
    const files = await pulledFiles(this.fetch, tree.pull, connection, this.stopping)
    if ('refusal' in files) return files
    for (const [cid, bytes] of files.files) {
      tree.fetched.set(cid, bytes)
      this.treeStats.blobsFetched++
      this.treeStats.blobBytesFetched += bytes.byteLength
    }
    return pulled
  }

  /** A session stream at a task boundary that its broker ended or left idle: our side closed too. */
  private async endSession (stream: Stream, peer: string, reason: unknown): Promise<void> {
    this.log.debug(`dispatch session from ${peer} ended between tasks: ${messageOf(reason)}`, { peer, protocol: DISPATCH_SESSION_PROTOCOL, code: codeOf(reason) })
    if (stream.status !== 'open') return
    try {
      await stream.close({ signal: AbortSignal.any([this.stopping, AbortSignal.timeout(this.stallTimeoutMs)]) })
    } catch (err) {
      this.log.debug(`dispatch session from ${peer} did not close: ${messageOf(err)}`, { peer, protocol: DISPATCH_SESSION_PROTOCOL, code: codeOf(err) })
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    }
  }

  /** The answer, then stdout and stderr, then (`close`: a one-task stream) our close; under the stall timer. */
  private async sendAnswer (frames: FramedStream, answer: Answer, timer: PhaseTimer<'receiving' | 'sending'>, close: boolean): Promise<void> {
    const io = stalls(timer)
    timer.enter('sending', this.stallTimeoutMs)
    const header = encodeDispatchResult(answer.header)
    const size = answer.stdout.byteLength + answer.stderr.byteLength + (answer.filesBytes?.byteLength ?? 0)
    if (size <= SMALL_MESSAGE_BYTES) {
      // a small answer goes in one write (one muxer frame, one encryption, one socket write)
      const outputs = [answer.stdout, answer.stderr, ...(answer.filesBytes != null ? [answer.filesBytes] : [])]
      await frames.writeFrames([header, ...outputs.flatMap(bytes => frames.payloadFrames(bytes))], io)
      if (close) await frames.stream.close({ signal: timer.signal })
      return
    }
    await frames.writeFrame(header, io)
    await frames.writePayload(answer.stdout, io)
    await frames.writePayload(answer.stderr, io)
    if (answer.filesBytes != null) await frames.writePayload(answer.filesBytes, io)
    if (close) await frames.stream.close({ signal: timer.signal })
  }

  /**
   * A re-send of a task this broker already runs here joins it without
   * admission; anything else needs the runner's admission (an accepted
   * offer), and without a runner that admits, nothing is admitted.
   */
  private admitTask (header: DispatchHeader, peer: string): Admission {
    if (this.memo.get(memoKey(peer, header.taskId)) != null) return { admitted: true, release: () => {} }
    const req: AdmissionRequest = { jobId: header.jobId, taskId: header.taskId, moduleCid: header.moduleCid, moduleSize: header.sendsModule || header.pullModule === true ? header.moduleSize : 0, inputSize: header.inputSize, limits: header.limits, offered: header.offered === true, ...(header.meter != null ? { meter: header.meter } : {}) }
    return this.admit?.(req, { peer }) ?? { admitted: false, code: 'no-offer', reason: 'this donor runs no task it was not offered' }
  }

  /**
   * A dispatch that was not admitted: its payload is read and discarded (so
   * an honest broker whose offer lapsed finishes sending and reads why), and
   * a signed `rejected` answer with the refusal code goes back. Nothing runs
   * and nothing is kept; one log line per broker per interval.
   */
  private async answerRefusal (frames: FramedStream, header: DispatchHeader, peer: string, refusal: Admission & { admitted: false }, timer: PhaseTimer<'receiving' | 'sending'>, close: boolean): Promise<void> {
    const io = stalls(timer)
    if (header.sendsModule) await frames.skipPayload(header.moduleSize, 'module', io)
    if (header.pullInput !== true) await frames.skipPayload(header.inputSize, 'input', io)
    await skipTree(frames, header, io)
    const fields = { peer, task: header.taskId, job: header.jobId, code: refusal.code }
    // a dispatch that carried its own offer and was declined is an offer's answer (busy is routine), not a broker out of step
    if (header.offered === true && refusal.code !== 'no-offer') this.log.debug(`dispatch of task ${header.taskId} from ${peer} declined: ${refusal.reason}`, fields)
    else warnRepeated(this.log, `dispatch of task ${header.taskId} from ${peer} refused: ${refusal.reason}`, fields)
    const answer = await this.refuse(header, 'rejected', refusal.reason, { refused: refusal.code })
    await this.sendAnswer(frames, answer, timer, close)
  }

  private checkAnnouncedSizes (header: DispatchHeader): void {
    const sizes = header.sendsModule || header.pullModule === true ? [['module', header.moduleSize], ['input', header.inputSize]] as const : [['input', header.inputSize]] as const
    for (const [what, size] of sizes) {
      if (size > this.maxPayloadBytes) {
        throw new PayloadTooLargeError(`${what}: announced ${size} bytes, over this donor's ${this.maxPayloadBytes}-byte limit`, this.maxPayloadBytes)
      }
    }
  }

  /** Verifies the bytes, then runs the task once per taskId (or joins the run already under way). */
  private async answerTask (header: DispatchHeader, payload: { module: Uint8Array | undefined, input: Uint8Array, tree: ReceivedTree | undefined, pulledModule?: boolean }, peer: string): Promise<Answer> {
    const { module, input } = payload
    const inputCid = parseCid(header.inputCid)
    if (inputCid == null || !inputCid.equals(rawCid(input))) {
      return await this.refuse(header, 'rejected', `input bytes do not match inputCid ${header.inputCid}`)
    }
    // the decoder checked that it parses; the canonical spelling is the cache key
    const moduleKey = parseCid(header.moduleCid)?.toString() ?? header.moduleCid
    if (module != null) {
      if (moduleKey !== rawCid(module).toString()) {
        return await this.refuse(header, 'invalid_module', `module bytes do not match moduleCid ${header.moduleCid}`)
      }
      // a pulled module stays in the content store on disk, not in memory too
      if (payload.pulledModule !== true) this.modules.put(moduleKey, module)
    }

    for (const [cid, bytes] of payload.tree?.blobs ?? []) {
      this.contents.put(cid, bytes)
      this.treeStats.blobsReceived++
      this.treeStats.blobBytesReceived += bytes.byteLength
    }

    const fingerprint = JSON.stringify([header.jobId, moduleKey, inputCid.toString(), header.args, header.env, header.limits, header.manifestCid ?? null])
    const key = memoKey(peer, header.taskId)
    const known = this.memo.get(key)
    if (known != null) {
      if (known.fingerprint !== fingerprint) {
        return await this.refuse(header, 'rejected', `taskId ${header.taskId} was already used for a different task`)
      }
      this.log.debug(`task ${header.taskId} from ${peer} is a retry: ${known.settled ? 'returning the result' : 'joining the run under way'}`, { peer, task: header.taskId })
      return await known.promise
    }

    const moduleBytes = module ?? this.modules.get(moduleKey) ?? await this.fetch?.held(moduleKey)
    if (moduleBytes == null) {
      return await this.refuse(header, 'rejected', `module ${header.moduleCid} is not cached on this donor: send the module bytes`, { moduleMissing: true })
    }
    const preopens = this.preopensOf(payload.tree)
    if (preopens != null && 'missing' in preopens) {
      return await this.refuse(header, 'rejected', `${preopens.missing.length} directory file(s) are not cached on this donor: send them all`, { filesMissing: true })
    }
    return await this.memo.add(key, fingerprint, this.execute(header, moduleBytes, input, preopens?.dirs, peer)).promise
  }

  /** The task's directories with their bytes: the blobs that came with it first, then those it fetched, then the content cache. */
  private preopensOf (tree: ReceivedTree | undefined): { dirs: JobDir[] } | { missing: string[] } | undefined {
    if (tree == null) return undefined
    return treeFromManifest(tree.manifest, (cid) => tree.blobs.get(cid) ?? tree.fetched.get(cid) ?? this.contents.get(cid))
  }

  private async execute (header: DispatchHeader, module: Uint8Array, input: Uint8Array, preopens: JobDir[] | undefined, peer: string): Promise<Answer> {
    const runTask = this.runTask
    if (runTask == null) throw new Error('dispatch handler registered without runTask')
    const deadlineMs = header.limits.deadlineMs ?? DEFAULT_JOB_LIMITS.deadlineMs
    const guardMs = deadlineMs + DONOR_EXECUTE_MARGIN_MS
    // one plain signal for the run, told by the guard and by the service stopping: the executor and the runner listen to it
    const run = new AbortController()
    const guard = runningTimeout(guardMs, this.suspendedMs, run)
    const unfollow = follow(this.stopping, run)
    const { signal } = run
    const req: ExecuteRequest = {
      jobId: header.jobId,
      taskId: header.taskId,
      module,
      moduleCid: header.moduleCid,
      input,
      args: header.args,
      env: header.env,
      limits: header.limits,
      ...(header.moduleName != null ? { moduleName: header.moduleName } : {}),
      ...(preopens != null ? { preopens } : {})
    }
    const started = Date.now()
    let result: ExecuteResult
    try {
      result = await raceSignal(runTask(req, { signal, peer }), signal)
    } catch (err) {
      guard.clear()
      unfollow()
      // no result to sign: the donor is stopping, or the runner gave the task up (its broker left)
      if (this.stopping.aborted || err instanceof TaskAbandonedError) throw err
      const failure = guard.expired()
        ? { status: 'deadline_exceeded' as const, error: `the executor did not finish within the deadline (${deadlineMs} ms) plus ${DONOR_EXECUTE_MARGIN_MS} ms` }
        : { status: 'failed' as const, error: `executor error: ${messageOf(err)}` }
      this.log.warn(`task ${header.taskId}: ${failure.error}`, { task: header.taskId, code: codeOf(err) })
      result = { ...failure, stdout: EMPTY, stderr: EMPTY, fuelUsed: 0, durationMs: Date.now() - started }
    }
    guard.clear()
    unfollow()
    const filesBytes = (result.files ?? []).reduce((n, f) => n + f.data.byteLength + Buffer.byteLength(f.path), 0)
    if (result.stdout.byteLength > MAX_OUTPUT_BYTES || result.stderr.byteLength > MAX_OUTPUT_BYTES || filesBytes > MAX_OUTPUT_BYTES) {
      // the executor caps output (files included) at the job's outputBytes; this is the wire's own cap behind it
      result = { ...result, status: 'output_too_large', exitCode: undefined, error: `output over the ${MAX_OUTPUT_BYTES}-byte protocol limit`, stdout: EMPTY, stderr: EMPTY, files: [], removedFiles: [] }
    }
    return await this.seal(header, result)
  }

  /** An answer for a task that did not run; signed like any other, so the broker can show why. */
  private async refuse (header: DispatchHeader, status: ExecStatus, error: string, marks: Pick<DispatchResultHeader, 'moduleMissing' | 'refused' | 'filesMissing'> = {}): Promise<Answer> {
    const answer = await this.seal(header, { status, error, stdout: EMPTY, stderr: EMPTY, fuelUsed: 0, durationMs: 0 })
    Object.assign(answer.header, marks)
    return answer
  }

  private async seal (header: DispatchHeader, result: ExecuteResult): Promise<Answer> {
    // only a task with a tree has output files: without one, outputCid is the one peers without directories compute
    const files = header.manifestCid != null ? { files: result.files ?? [], removed: result.removedFiles ?? [] } : undefined
    const cid = outputCid(result.stdout, result.stderr, files)
    const fuelUsed = Math.max(0, Math.round(result.fuelUsed))
    const receipt = await signReceipt(this.components.privateKey, {
      taskId: header.taskId,
      moduleCid: header.moduleCid,
      inputCid: header.inputCid,
      outputCid: cid,
      status: result.status,
      exitCode: result.exitCode ?? null,
      fuelUsed,
      executor: this.components.peerId.toString()
    })
    const resultHeader: DispatchResultHeader = {
      status: result.status,
      outputCid: cid,
      fuelUsed,
      durationMs: Math.max(0, Math.round(result.durationMs)),
      stdoutSize: result.stdout.byteLength,
      stderrSize: result.stderr.byteLength,
      receipt
    }
    if (result.exitCode !== undefined) resultHeader.exitCode = result.exitCode
    // the wire boundary: the broker gets the status and a cause, never this donor's paths or stack frames
    if (result.error !== undefined) resultHeader.error = sanitiseForPeer(result.error, Math.min(PEER_TEXT_LENGTH, MAX_ERROR_LENGTH))
    if (result.errorCode !== undefined) resultHeader.errorCode = result.errorCode
    if (files == null) return { header: resultHeader, stdout: result.stdout, stderr: result.stderr }
    const filesBytes = encodeOutputFiles(files)
    resultHeader.filesSize = filesBytes.byteLength
    return { header: resultHeader, stdout: result.stdout, stderr: result.stderr, files, filesBytes }
  }
}

type Progress = (evt: DispatchProgressEvent) => void

/** The header of a task's dispatch, `blobCount` blobs of its tree following. */
function headerOf (task: DispatchTask, blobCount: number, pulls: Pulls = {}): DispatchHeader {
  return {
    jobId: task.jobId,
    taskId: task.taskId,
    moduleCid: task.moduleCid,
    inputCid: task.inputCid,
    args: task.args,
    env: task.env,
    limits: task.limits,
    moduleSize: task.module?.byteLength ?? 0,
    inputSize: task.input.byteLength,
    sendsModule: task.module != null && pulls.module !== true,
    ...(pulls.module === true ? { pullModule: true } : {}),
    ...(pulls.input === true ? { pullInput: true } : {}),
    ...(pulls.files != null && pulls.files.length > 0 ? { pullFiles: pulls.files.map(([cid]) => cid) } : {}),
    ...(task.offered === true ? { offered: true, ...(task.meter != null ? { meter: task.meter } : {}) } : {}),
    ...(task.moduleName != null ? { moduleName: task.moduleName } : {}),
    ...(task.tree != null ? { manifestCid: task.tree.manifestCid, manifestSize: task.tree.manifestBytes.byteLength, blobCount } : {})
  }
}

/** A session's next header that arrived and is wrong (a broker out of step, not an ended session): warned about. */
function isBadHeader (err: unknown): boolean {
  if (err instanceof StreamEndedEarlyError) return false
  return err instanceof MalformedMessageError || err instanceof ProtocolViolationError || err instanceof PayloadTooLargeError
}

/**
 * A failure on a kept stream that says it was closed before the task got
 * there (written into a stream the donor had ended, the end read where the
 * answer should be): not the task's fault, and nothing of it ran.
 */
function staleStream (err: unknown, phase: DispatchPhase | undefined): boolean {
  if (phase !== 'send' && phase !== 'execute') return false
  return err instanceof StreamEndedEarlyError || !(err instanceof WorldComputeError)
}

/** Payload options under a stall timer: every frame restarts it, then `onFrame` (progress) runs. */
function stalls (timer: Pick<PhaseTimer<string>, 'signal' | 'touch'>, onFrame?: (bytes: number) => void): PayloadOptions {
  return {
    signal: timer.signal,
    onFrame: (bytes) => {
      timer.touch()
      onFrame?.(bytes)
    }
  }
}

/** Runs and results are remembered per broker: one broker cannot join or read another's task. */
function memoKey (peer: string, taskId: string): string {
  return `${peer} ${taskId}`
}

/**
 * A timeout like AbortSignal.timeout(ms) that leaves out the time the
 * donor's jobs were suspended (`suspendedMs`, a running total): at expiry it
 * waits again for whatever suspension accrued meanwhile. It aborts
 * `controller` (a new one by default), so one signal can carry it beside
 * other reasons; `expired` says whether it was this timeout that fired.
 * `clear` ends it.
 */
export function runningTimeout (ms: number, suspendedMs?: () => number, controller = new AbortController()): { signal: AbortSignal, clear: () => void, expired: () => boolean } {
  const base = suspendedMs?.() ?? 0
  const start = performance.now()
  let fired = false
  const check = (): void => {
    const left = ms - (performance.now() - start - ((suspendedMs?.() ?? 0) - base))
    if (left > 0) {
      timer = setTimeout(check, left).unref()
      return
    }
    fired = !controller.signal.aborted
    controller.abort(new DOMException('The operation timed out after its running time', 'TimeoutError'))
  }
  let timer = setTimeout(check, ms).unref()
  return { signal: controller.signal, clear: () => { clearTimeout(timer) }, expired: () => fired }
}
