/**
 * Recent tasks by key (the broker and its taskId), in flight or finished, so that a retried dispatch
 * (the broker timed out, the relay dropped the connection) waits for or
 * returns the first run instead of running the task again.
 *
 * Bounded by count and by the bytes finished results hold; the oldest
 * finished entries go first. In-flight entries are only dropped past twice
 * the count bound: they are already bounded by the donor's slots.
 */
export interface MemoEntry<T> {
  /** what the task was: a retry must match it exactly */
  fingerprint: string
  promise: Promise<T>
  settled: boolean
  bytes: number
}

export class TaskMemo<T> {
  private readonly maxEntries: number
  private readonly maxBytes: number
  private readonly sizeOf: (value: T) => number
  private readonly entries = new Map<string, MemoEntry<T>>()
  private totalBytes = 0

  constructor (init: { maxEntries: number, maxBytes: number, sizeOf: (value: T) => number }) {
    this.maxEntries = init.maxEntries
    this.maxBytes = init.maxBytes
    this.sizeOf = init.sizeOf
  }

  get size (): number {
    return this.entries.size
  }

  get (key: string): MemoEntry<T> | undefined {
    return this.entries.get(key)
  }

  /**
   * Remembers a run. A rejected run is forgotten, so a retry can run it
   * again: rejection means the donor stopped, not that the task has a result.
   */
  add (key: string, fingerprint: string, promise: Promise<T>): MemoEntry<T> {
    const entry: MemoEntry<T> = { fingerprint, promise, settled: false, bytes: 0 }
    this.entries.set(key, entry)
    promise.then((value) => {
      if (this.entries.get(key) !== entry) return
      entry.settled = true
      entry.bytes = this.sizeOf(value)
      this.totalBytes += entry.bytes
      this.evict()
    }, () => {
      // the caller awaiting `promise` reports the error; here it only means "not a result"
      if (this.entries.get(key) === entry) this.entries.delete(key)
    })
    this.evict()
    return entry
  }

  clear (): void {
    this.entries.clear()
    this.totalBytes = 0
  }

  private evict (): void {
    for (const [key, entry] of this.entries) {
      if (this.entries.size <= this.maxEntries && this.totalBytes <= this.maxBytes) return
      if (!entry.settled && this.entries.size <= this.maxEntries * 2) continue
      this.entries.delete(key)
      this.totalBytes -= entry.bytes
    }
  }
}
