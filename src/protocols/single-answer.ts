/**
 * The mechanics of a "one answer" protocol (nat-info, relay-info): the asking
 * side opens a stream and reads one dag-cbor frame; the answering side writes
 * it and closes. Shared so each protocol keeps only its message and its
 * service; the error mapping (timeout per request, request failure, protocol
 * violation passed through) stays the same for every one of them.
 */
import { WorldComputeError } from '../core/errors.ts'
import { ProtocolRequestError, ProtocolTimeoutError } from './errors.ts'
import { FramedStream } from './framing.ts'
import type { AbortOptions, Connection, Stream } from '@libp2p/interface'

export interface FrameLimits {
  maxFrameBytes: number
  maxBufferBytes: number
}

/** Answering side: writes `bytes` as one frame and closes, bounded by `timeoutMs`; throws on failure (the caller logs it and aborts the stream). */
export async function writeSingleAnswer (stream: Stream, bytes: Uint8Array, limits: FrameLimits & { timeoutMs: number }): Promise<void> {
  const signal = AbortSignal.timeout(limits.timeoutMs)
  const framed = new FramedStream(stream, { maxFrameBytes: limits.maxFrameBytes, maxBufferBytes: limits.maxBufferBytes })
  await framed.writeFrame(bytes, { signal })
  await stream.close({ signal })
}

export interface AskOptions extends FrameLimits, AbortOptions {
  protocol: string
  /** the message's name in errors, e.g. "NAT info" */
  what: string
  timeoutMs: number
  /** relayed connections too (the protocol handler must allow it) */
  runOnLimitedConnection?: boolean
}

/** Asking side: opens `protocol` on `connection`, reads and decodes the one answer. */
export async function askSingleAnswer<T> (connection: Connection, decode: (bytes: Uint8Array) => T, options: AskOptions): Promise<T> {
  const peer = connection.remotePeer.toString()
  const timeout = AbortSignal.timeout(options.timeoutMs)
  const signal = options.signal != null ? AbortSignal.any([options.signal, timeout]) : timeout
  let stream: Stream | undefined
  try {
    stream = await connection.newStream(options.protocol, { signal, ...(options.runOnLimitedConnection === true ? { runOnLimitedConnection: true } : {}) })
    const framed = new FramedStream(stream, { maxFrameBytes: options.maxFrameBytes, maxBufferBytes: options.maxBufferBytes })
    const answer = await framed.readMessage(decode, options.what, { signal })
    await stream.close({ signal })
    return answer
  } catch (err) {
    stream?.abort(err instanceof Error ? err : new Error(String(err)))
    if (timeout.aborted && options.signal?.aborted !== true) throw new ProtocolTimeoutError(options.protocol, peer, options.timeoutMs, { cause: err })
    if (options.signal?.aborted === true || err instanceof WorldComputeError) throw err
    throw new ProtocolRequestError(options.protocol, peer, err)
  }
}
