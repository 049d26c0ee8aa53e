/**
 * Module bytes by CID, bounded by total bytes, least recently used evicted
 * first. A donor that still has a module answers offers with `hasModule: true`
 * and the broker skips sending it (modules are typically much larger than inputs).
 */
export class ModuleCache {
  private readonly maxBytes: number
  private readonly entries = new Map<string, Uint8Array>()
  private totalBytes = 0

  constructor (maxBytes: number) {
    this.maxBytes = maxBytes
  }

  get size (): number {
    return this.entries.size
  }

  get bytes (): number {
    return this.totalBytes
  }

  has (key: string): boolean {
    return this.entries.has(key)
  }

  /** The bytes, marking them most recently used. */
  get (key: string): Uint8Array | undefined {
    const bytes = this.entries.get(key)
    if (bytes != null) {
      this.entries.delete(key)
      this.entries.set(key, bytes)
    }
    return bytes
  }

  /** Stores verified bytes; a module larger than the whole cache is not kept. */
  put (key: string, bytes: Uint8Array): void {
    if (bytes.byteLength > this.maxBytes) return
    const previous = this.entries.get(key)
    if (previous != null) {
      this.entries.delete(key)
      this.totalBytes -= previous.byteLength
    }
    this.entries.set(key, bytes)
    this.totalBytes += bytes.byteLength
    for (const [oldKey, oldBytes] of this.entries) {
      if (this.totalBytes <= this.maxBytes) break
      this.entries.delete(oldKey)
      this.totalBytes -= oldBytes.byteLength
    }
  }

  clear (): void {
    this.entries.clear()
    this.totalBytes = 0
  }
}
