/**
 * Bytes addressed by their offset in the stream (the poll protocol's
 * sequence numbers): `base` is the offset of the first byte held, `end` the
 * offset after the last. Dropping acknowledged bytes and reading from an
 * offset are what a retried request needs to be answered identically.
 */
export class ByteQueue {
  #chunks: Uint8Array[] = []
  #base = 0
  #length = 0

  get base (): number { return this.#base }
  get end (): number { return this.#base + this.#length }
  get length (): number { return this.#length }

  push (bytes: Uint8Array): void {
    if (bytes.byteLength === 0) return
    this.#chunks.push(bytes)
    this.#length += bytes.byteLength
  }

  /** Forgets the bytes before `offset` (base ≤ offset ≤ end). */
  dropUntil (offset: number): void {
    let n = offset - this.#base
    while (n > 0 && this.#chunks.length > 0) {
      const head = this.#chunks[0]
      if (head.byteLength <= n) {
        this.#chunks.shift()
        n -= head.byteLength
        this.#base += head.byteLength
        this.#length -= head.byteLength
      } else {
        this.#chunks[0] = head.subarray(n)
        this.#base += n
        this.#length -= n
        n = 0
      }
    }
  }

  /** Up to `max` bytes from `offset` (base ≤ offset ≤ end), copied into one buffer. */
  read (offset: number, max: number): Uint8Array {
    const size = Math.max(0, Math.min(max, this.end - offset))
    const out = new Uint8Array(size)
    let skip = offset - this.#base
    let at = 0
    for (const chunk of this.#chunks) {
      if (at >= size) break
      if (skip >= chunk.byteLength) { skip -= chunk.byteLength; continue }
      const part = chunk.subarray(skip, skip + (size - at))
      out.set(part, at)
      at += part.byteLength
      skip = 0
    }
    return out
  }
}
