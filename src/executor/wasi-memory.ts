/**
 * The guest's linear memory as the WASI host functions see it: bounds-checked
 * views, little-endian integers, iovec arrays, and the fuel charge for host
 * work, shared by the shim's parts (process, streams, files, poll).
 */

/** At most this many iovecs per fd_read/fd_write call, as POSIX's IOV_MAX on Linux; more is EINVAL. */
export const IOV_MAX = 1024

/**
 * Fuel of host calls (part of the cost rule named by METER_VERSION): a call
 * costs in proportion to the guest bytes it touches, so that a fuel budget
 * bounds host work as it bounds guest code. Copies cost 1 per 64 bytes (as
 * memory.copy does) plus 1 per iovec; random bytes cost 1 each, since each 32
 * of them take a SHA-256; a path lookup or a directory entry costs 1.
 */
export const HostFuel = {
  perIovec: 1,
  copyShift: 6,
  perRandomByte: 1,
  perLookup: 1
} as const

/** Charges `units` of fuel; throws (unwinding the guest) when the budget is spent. */
export type FuelCharge = (units: number) => void

/** A pointer or length from the guest points outside its memory; the call returns EFAULT. */
export class GuestMemoryFault extends Error {
  constructor (ptr: number, len: number, size: number) {
    super(`guest range ${ptr}+${len} is outside its ${size}-byte memory`)
    this.name = 'GuestMemoryFault'
  }
}

export class GuestMemory {
  private memory?: WebAssembly.Memory
  /**
   * The memory's buffer and a DataView over all of it, kept between calls:
   * getting `memory.buffer` and making a DataView cost more than the rest of
   * a one-byte fd_write. Growing the memory detaches the buffer (its length
   * becomes 0), and only then are both taken again.
   */
  private buffer = new ArrayBuffer(0)
  private data = new DataView(this.buffer)
  charge: FuelCharge = () => {}

  attach (memory: WebAssembly.Memory, charge?: FuelCharge): void {
    this.memory = memory
    this.buffer = new ArrayBuffer(0)
    if (charge !== undefined) this.charge = charge
  }

  /** The current buffer, with `data` over it. */
  private current (): ArrayBuffer {
    if (this.buffer.byteLength === 0) {
      if (this.memory === undefined) throw new Error('WasiShim.attach(memory) was not called before the guest ran')
      this.buffer = this.memory.buffer
      this.data = new DataView(this.buffer)
    }
    return this.buffer
  }

  /** `ptr` as an offset, after checking that `len` bytes from it are inside the memory (EFAULT otherwise). */
  private checked (ptr: number, len: number): number {
    const size = this.current().byteLength
    const p = ptr >>> 0 // i32 arguments arrive signed
    if (p + (len >>> 0) > size) throw new GuestMemoryFault(p, len >>> 0, size)
    return p
  }

  bytes (ptr: number, len: number): Uint8Array {
    const p = this.checked(ptr, len)
    return new Uint8Array(this.buffer, p, len >>> 0)
  }

  view (ptr: number, len: number): DataView {
    const b = this.bytes(ptr, len)
    return new DataView(b.buffer, b.byteOffset, b.byteLength)
  }

  getU32 (ptr: number): number {
    const p = this.checked(ptr, 4) // first: it may take a new buffer and DataView
    return this.data.getUint32(p, true)
  }

  setU32 (ptr: number, value: number): void {
    const p = this.checked(ptr, 4)
    this.data.setUint32(p, value, true)
  }

  setU64 (ptr: number, value: bigint): void {
    const p = this.checked(ptr, 8)
    this.data.setBigUint64(p, value, true)
  }

  /** A zeroed struct of `size` bytes at `ptr`, to fill in. */
  struct (ptr: number, size: number): DataView {
    const b = this.bytes(ptr, size)
    b.fill(0)
    return new DataView(b.buffer, b.byteOffset, b.byteLength)
  }

  /**
   * Checks the iovec/ciovec array at `iovs` (ptr at i * 8, len at i * 8 + 4,
   * read in place with getU32: no object per iovec) and charges for it, before
   * any is touched; returns its count, or undefined (EINVAL) above IOV_MAX.
   */
  iovecs (iovs: number, count: number): number | undefined {
    const n = count >>> 0
    if (n > IOV_MAX) return undefined
    this.checked(iovs, n * 8)
    this.charge(n * HostFuel.perIovec)
    return n
  }

  chargeCopy (bytes: number): void {
    this.charge(bytes >>> HostFuel.copyShift)
  }

  /** A copy of the guest bytes at ptr..ptr+len, charged. */
  copyIn (ptr: number, len: number): Uint8Array {
    const b = this.bytes(ptr, len)
    this.chargeCopy(b.length)
    return b.slice()
  }
}
