/**
 * Bulk rounds on one libp2p stream, for the throughput benches: the sender
 * writes an 8-byte length and that many bytes, the receiver reads them all
 * and answers one byte; the sender's rate runs from its first byte to that
 * answer.
 */
import { performance } from 'node:perf_hooks'
import type { Connection, Stream } from '@libp2p/interface'

const MiB = 1024 * 1024
const CHUNK = 64 * 1024

/** The receiving end (a protocol handler): reads the length, then that many bytes, then answers one byte. */
export async function receiveBulk (stream: Stream): Promise<void> {
  let expected = -1
  let received = 0
  try {
    for await (const chunk of stream) {
      const bytes = chunk.subarray()
      let body = bytes
      if (expected < 0) {
        expected = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0))
        body = bytes.subarray(8)
      }
      received += body.byteLength
      if (received >= expected) break
    }
    stream.send(new Uint8Array([1]))
    await stream.close({ signal: AbortSignal.timeout(10_000) })
  } catch (err) {
    stream.abort(err as Error)
  }
}

export interface BulkRound {
  protocol: string
  bytes: number
  /** for a relayed (limited) connection */
  runOnLimitedConnection?: boolean
  /** how long one drain or the close may take @default 30000 */
  waitMs?: number
}

/** MiB/s of one round: first byte written → the receiver's answer. */
export async function sendBulk (conn: Connection, round: BulkRound): Promise<number> {
  const waitMs = round.waitMs ?? 30_000
  const stream = await conn.newStream(round.protocol, { runOnLimitedConnection: round.runOnLimitedConnection, signal: AbortSignal.timeout(10_000) })
  const chunk = new Uint8Array(CHUNK).fill(0x61)
  const head = new Uint8Array(8)
  new DataView(head.buffer).setBigUint64(0, BigInt(round.bytes))
  const t0 = performance.now()
  stream.send(head)
  for (let sent = 0; sent < round.bytes; sent += CHUNK) {
    if (!stream.send(chunk)) await stream.onDrain({ signal: AbortSignal.timeout(waitMs) })
  }
  await stream.close({ signal: AbortSignal.timeout(waitMs) })
  for await (const answer of stream) {
    if (answer.byteLength > 0) break
  }
  return (round.bytes / MiB) / ((performance.now() - t0) / 1000)
}
