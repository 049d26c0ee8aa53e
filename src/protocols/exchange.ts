/**
 * The mechanics every protocol of this folder shares, so each protocol file
 * keeps only its messages and what it does with them:
 *
 * - `StreamLimits`: the per-protocol bounds (frame size, read buffer, streams
 *   per connection), one shape for every constants.ts;
 * - `request`: the asking side of an exchange: open the stream, run it within
 *   one time budget, map failures to ProtocolTimeoutError /
 *   ProtocolRequestError (a named error of ours, e.g. a malformed answer,
 *   passes as it is);
 * - `askSingleAnswer`: a `request` whose answer is one dag-cbor frame, and
 *   `decodeVersioned` for the small `{ v, … }` answers of nat-info and relay-info;
 * - `serveAnswer`: the answering side: run the answer within its budget,
 *   close; on failure one log line naming peer, protocol and code, and the
 *   stream aborted (a libp2p handler must not throw).
 */
import * as dagCbor from '@ipld/dag-cbor'
import { WorldComputeError } from '../core/errors.ts'
import { warnRepeated } from '../log/repeats.ts'
import { openProtocolStream, peerOf } from './components.ts'
import { codeOf, messageOf, ProtocolRequestError, ProtocolTimeoutError, ProtocolViolationError } from './errors.ts'
import { FramedStream } from './framing.ts'
import { PhaseTimer } from './timer.ts'
import type { Logger } from '../log/logger.ts'
import type { ProtocolTarget, StreamOpener } from './components.ts'
import type { AbortOptions, Connection, Stream, StreamHandlerOptions } from '@libp2p/interface'

/** How large and how many: the bounds of one protocol's streams. */
export interface StreamLimits {
  /** largest frame accepted or sent */
  maxFrameBytes: number
  /** bytes buffered between the muxer and the reader; more aborts the stream */
  maxBufferBytes: number
  /** streams of this protocol at once on one connection, each way */
  maxInboundStreams: number
  maxOutboundStreams: number
}

/** The handler registration options for a protocol with these limits. */
export function handlerOptions (limits: StreamLimits, runOnLimitedConnection: boolean): StreamHandlerOptions {
  return { runOnLimitedConnection, maxInboundStreams: limits.maxInboundStreams, maxOutboundStreams: limits.maxOutboundStreams }
}

/** Wraps a stream in the length-prefixed framing with these limits. */
export function framed (stream: Stream, limits: StreamLimits): FramedStream {
  return new FramedStream(stream, { maxFrameBytes: limits.maxFrameBytes, maxBufferBytes: limits.maxBufferBytes })
}

export interface RequestOptions extends AbortOptions {
  protocol: string
  limits: StreamLimits
  /** the whole exchange: open, ask, answer */
  timeoutMs: number
  /** opens the stream when the target is a PeerId */
  connectionManager?: StreamOpener
  /**
   * also over relayed (limited) connections; the other side's handler must
   * allow it too @default true
   */
  runOnLimitedConnection?: boolean
}

/**
 * Asking side: opens `protocol` on `target` and runs `exchange` on the
 * framed stream with a signal that fires after `timeoutMs` or when the
 * caller's signal does. The stream is aborted on any failure.
 */
export async function request<T> (target: ProtocolTarget, options: RequestOptions, exchange: (stream: FramedStream, signal: AbortSignal) => Promise<T>): Promise<T> {
  const peer = peerOf(target).toString()
  const timer = new PhaseTimer<'request'>((_phase, ms) => new ProtocolTimeoutError(options.protocol, peer, ms), options.signal)
  timer.enter('request', options.timeoutMs)
  let stream: Stream | undefined
  try {
    stream = await openProtocolStream(target, options.protocol, options.connectionManager, { signal: timer.signal, runOnLimitedConnection: options.runOnLimitedConnection })
    return await exchange(framed(stream, options.limits), timer.signal)
  } catch (err) {
    stream?.abort(err instanceof Error ? err : new Error(String(err)))
    if (timer.expired != null) throw timer.expired
    if (options.signal?.aborted === true || err instanceof WorldComputeError) throw err
    throw new ProtocolRequestError(options.protocol, peer, err)
  } finally {
    timer.dispose()
  }
}

/** Asking side of a "one answer" protocol: the request is the stream itself; reads and decodes the one frame that comes back. */
export async function askSingleAnswer<T> (target: ProtocolTarget, decode: (bytes: Uint8Array) => T, what: string, options: RequestOptions): Promise<T> {
  return await request(target, options, async (stream, signal) => {
    const answer = await stream.readMessage(decode, what, { signal })
    await stream.stream.close({ signal })
    return answer
  })
}

export interface ServeOptions {
  protocol: string
  limits: StreamLimits
  /** the whole answer: read, decide, write, close */
  timeoutMs: number
  /** ends answers in flight: the service stopping */
  signal: AbortSignal
  log: Logger
  /** the log line when it fails, before the cause: e.g. (peer) => `offer from ${peer} dropped` */
  failed: (peer: string) => string
}

/**
 * Answering side: runs `answer` on the framed stream, then closes it. Never
 * throws: a failure is logged once (peer, protocol, code) and the stream aborted.
 */
export async function serveAnswer (stream: Stream, connection: Connection, options: ServeOptions, answer: (stream: FramedStream, signal: AbortSignal) => Promise<void>): Promise<void> {
  const peer = connection.remotePeer.toString()
  const signal = AbortSignal.any([options.signal, AbortSignal.timeout(options.timeoutMs)])
  try {
    await answer(framed(stream, options.limits), signal)
    await stream.close({ signal })
  } catch (err) {
    warnRepeated(options.log, `${options.failed(peer)}: ${messageOf(err)}`, { peer, protocol: options.protocol, code: codeOf(err) })
    stream.abort(err instanceof Error ? err : new Error(String(err)))
  }
}

/**
 * Decodes a small dag-cbor map `{ v: version, … }`; a ProtocolViolationError
 * naming `what` when the bytes are not dag-cbor, not a map, or another version.
 */
export function decodeVersioned (bytes: Uint8Array, what: string, version: number): Record<string, unknown> {
  let value: unknown
  try {
    value = dagCbor.decode(bytes)
  } catch (err) {
    throw new ProtocolViolationError(`${what} is not dag-cbor: ${(err as Error).message}`, { cause: err })
  }
  const m = value as Record<string, unknown> | null
  if (m == null || typeof m !== 'object' || m.v !== version) {
    // only a number is quoted: String() of a peer's map runs its "toString" key, and throws when that is not a function
    const v = m?.v
    throw new ProtocolViolationError(`${what} has unknown version ${typeof v === 'number' ? v : `(${v === null ? 'null' : typeof v})`}`)
  }
  return m
}
