import { errorWithCode } from '../../core/errors.ts'
import type { FramedStream } from '../framing.ts'
import type { Connection } from '@libp2p/interface'

export interface StreamPoolInit {
  /** an idle stream is closed after this long @default 10000 */
  idleMs: number
  /** idle streams kept per connection @default 16 */
  maxIdlePerConnection: number
  /** a stream that could not be closed gracefully (it is aborted then) */
  onCloseError?: (err: unknown) => void
}

interface Idle {
  io: FramedStream
  timer: ReturnType<typeof setTimeout>
}

/** Open both ways, nothing half-closed: a stream a new task can go out on. */
function usable (io: FramedStream): boolean {
  const s = io.stream
  return s.status === 'open' && s.writeStatus === 'writable' && s.readStatus === 'readable' && s.remoteWriteStatus === 'writable' && s.remoteReadStatus === 'readable'
}

/**
 * The broker's idle dispatch session streams (`/worldcompute/dispatch/1.1.0`),
 * per connection: a task takes one instead of opening a stream, and gives
 * it back when its answer has been read whole. A stream idle for `idleMs`
 * is half-closed (the donor's handler ends), and a connection's streams go
 * with it.
 */
export class DispatchStreamPool {
  private readonly init: StreamPoolInit
  private readonly idle = new Map<Connection, Idle[]>()

  constructor (init: StreamPoolInit) {
    this.init = init
  }

  /** An idle stream of `conn` that is still open, most recently used first; undefined when it has none. */
  take (conn: Connection): FramedStream | undefined {
    const list = this.idle.get(conn)
    while (list != null && list.length > 0) {
      const entry = list.pop() as Idle
      clearTimeout(entry.timer)
      if (list.length === 0) this.idle.delete(conn)
      if (usable(entry.io)) return entry.io
      entry.io.stream.abort(new Error('idle dispatch stream no longer open both ways'))
    }
    return undefined
  }

  /** Keeps `io` for the next task on `conn`; closes it when the connection has enough idle ones, or is gone. */
  give (conn: Connection, io: FramedStream): void {
    const list = this.idle.get(conn) ?? []
    if (conn.status !== 'open' || !usable(io) || list.length >= this.init.maxIdlePerConnection) {
      this.close(io)
      return
    }
    const entry: Idle = { io, timer: setTimeout(() => { this.expire(conn, entry) }, this.init.idleMs) }
    entry.timer.unref?.()
    list.push(entry)
    this.idle.set(conn, list)
  }

  /** Idle streams held, over every connection (tests, debugging). */
  size (): number {
    let n = 0
    for (const list of this.idle.values()) n += list.length
    return n
  }

  /** Closes every idle stream (the service stopping). */
  clear (): void {
    for (const list of this.idle.values()) {
      for (const entry of list) {
        clearTimeout(entry.timer)
        this.close(entry.io)
      }
    }
    this.idle.clear()
  }

  private expire (conn: Connection, entry: Idle): void {
    const list = this.idle.get(conn)
    const at = list?.indexOf(entry) ?? -1
    if (list == null || at < 0) return
    list.splice(at, 1)
    if (list.length === 0) this.idle.delete(conn)
    this.close(entry.io)
  }

  /** Half-closes: the donor reads the end at a header boundary and closes its side. */
  private close (io: FramedStream): void {
    io.stream.close({ signal: AbortSignal.timeout(this.init.idleMs) }).catch((err: unknown) => {
      this.init.onCloseError?.(err)
      io.stream.abort(err instanceof Error ? err : new Error(String(err)))
    })
  }
}

/** A kept stream failed before the task reached the donor: the dispatch goes again on a new stream. */
export class StaleStreamError extends errorWithCode('DISPATCH_STREAM_STALE') {}
