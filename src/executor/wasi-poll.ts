/**
 * poll_oneoff over the virtual clock. Nothing here ever waits: stdin, stdout,
 * stderr and files are always ready (their bytes are all in memory), and a
 * clock subscription that nothing else beats fires at once, the virtual clock
 * advanced to its deadline. So a guest's sleep(1) takes no real time and
 * moves the clock by exactly one second on every replica.
 */

import { ClockId, Errno, EventType, SUBSCRIPTION_CLOCK_ABSTIME } from './wasi-abi.ts'
import { FsError, type FileNode } from './wasi-fs.ts'
import type { FdTable } from './wasi-fds.ts'
import type { GuestMemory } from './wasi-memory.ts'

/** struct subscription: userdata u64, tag u8 @8, clock { id u32 @16, timeout u64 @24, precision u64 @32, flags u16 @40 } | fd u32 @16 */
const SUBSCRIPTION_SIZE = 48
/** struct event: userdata u64, error u16 @8, type u8 @10, fd_readwrite { nbytes u64 @16, flags u16 @24 } */
const EVENT_SIZE = 32

/** The virtual clock as poll_oneoff needs it: the time now on a clock, and moving it forward. */
export interface VirtualClock {
  /** the reading of `id` now, without advancing it */
  peek: (id: number) => bigint
  /** moves every clock forward by `ns` */
  advance: (ns: bigint) => void
}

interface Ready {
  userdata: bigint
  error: number
  type: number
  nbytes: bigint
}

export function pollOneoff (mem: GuestMemory, fds: FdTable, clock: VirtualClock,
  inPtr: number, outPtr: number, count: number, neventsPtr: number): number {
  const n = count >>> 0
  if (n === 0) return Errno.inval
  const subs = mem.view(inPtr, n * SUBSCRIPTION_SIZE)
  mem.charge(n)
  const ready: Ready[] = []
  let soonest: { wait: bigint, events: Ready[] } | undefined
  for (let i = 0; i < n; i++) {
    const at = i * SUBSCRIPTION_SIZE
    const userdata = subs.getBigUint64(at, true)
    const type = subs.getUint8(at + 8)
    if (type === EventType.clock) {
      const event = clockEvent(subs, at, userdata, clock)
      if ('error' in event) ready.push(event)
      else if (soonest === undefined || event.wait < soonest.wait) soonest = { wait: event.wait, events: [event.ready] }
      else if (event.wait === soonest.wait) soonest.events.push(event.ready)
    } else if (type === EventType.fdRead || type === EventType.fdWrite) {
      ready.push(fdEvent(fds, subs.getUint32(at + 16, true), userdata, type))
    } else {
      ready.push({ userdata, error: Errno.inval, type, nbytes: 0n })
    }
  }
  if (ready.length === 0 && soonest !== undefined) {
    clock.advance(soonest.wait)
    ready.push(...soonest.events)
  }
  const out = mem.struct(outPtr, ready.length * EVENT_SIZE)
  ready.forEach((e, i) => {
    out.setBigUint64(i * EVENT_SIZE, e.userdata, true)
    out.setUint16(i * EVENT_SIZE + 8, e.error, true)
    out.setUint8(i * EVENT_SIZE + 10, e.type)
    out.setBigUint64(i * EVENT_SIZE + 16, e.nbytes, true)
  })
  mem.setU32(neventsPtr, ready.length)
  return Errno.success
}

/** How long a clock subscription waits from now, or its error event for a clock that does not exist. */
function clockEvent (subs: DataView, at: number, userdata: bigint, clock: VirtualClock): { wait: bigint, ready: Ready } | Ready {
  const id = subs.getUint32(at + 16, true)
  const timeout = subs.getBigUint64(at + 24, true)
  const flags = subs.getUint16(at + 40, true)
  if (id !== ClockId.realtime && id !== ClockId.monotonic && id !== ClockId.processCputime && id !== ClockId.threadCputime) {
    return { userdata, error: Errno.inval, type: EventType.clock, nbytes: 0n }
  }
  const now = clock.peek(id)
  const wait = (flags & SUBSCRIPTION_CLOCK_ABSTIME) !== 0 ? (timeout > now ? timeout - now : 0n) : timeout
  return { wait, ready: { userdata, error: Errno.success, type: EventType.clock, nbytes: 0n } }
}

/** A descriptor is always ready; nbytes is what a read would return at once (0 when unknown or for writes). */
function fdEvent (fds: FdTable, fd: number, userdata: bigint, type: number): Ready {
  try {
    const d = fds.get(fd)
    let nbytes = 0n
    if (type === EventType.fdRead) {
      if (d.stream !== undefined) nbytes = BigInt(d.stream.readable?.() ?? 0)
      else if (d.node?.kind === 'file') nbytes = BigInt(Math.max(0, (d.node as FileNode).size - d.pos))
    }
    return { userdata, error: Errno.success, type, nbytes }
  } catch (err) {
    if (err instanceof FsError) return { userdata, error: err.errno, type, nbytes: 0n }
    throw err
  }
}
