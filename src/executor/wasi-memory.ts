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
  charge: FuelCharge = () => {}

  attach (memory: WebAssembly.Memory, charge?: FuelCharge): void {
    this.memory = memory
    if (charge !== undefined) this.charge = charge
  }

  bytes (ptr: number, len: number): Uint8Array {
    if (this.memory === undefined) throw new Error('WasiShim.attach(memory) was not called before the guest ran')
    const buffer = this.memory.buffer
    const p = ptr >>> 0 // i32 arguments arrive signed
    const n = len >>> 0
    if (p + n > buffer.byteLength) throw new GuestMemoryFault(p, n, buffer.byteLength)
    return new Uint8Array(buffer, p, n)
  }

  view (ptr: number, len: number): DataView {
    const b = this.bytes(ptr, len)
    return new DataView(b.buffer, b.byteOffset, b.byteLength)
  }

  setU32 (ptr: number, value: number): void {
    this.view(ptr, 4).setUint32(0, value, true)
  }

  setU64 (ptr: number, value: bigint): void {
    this.view(ptr, 8).setBigUint64(0, value, true)
  }

  /** A zeroed struct of `size` bytes at `ptr`, to fill in. */
  struct (ptr: number, size: number): DataView {
    const b = this.bytes(ptr, size)
    b.fill(0)
    return new DataView(b.buffer, b.byteOffset, b.byteLength)
  }

  /**
   * The iovec/ciovec array as a view (ptr at i * 8, len at i * 8 + 4), read in
   * place: no object per iovec. Undefined (EINVAL) above IOV_MAX entries; the
   * iovecs are charged here, before any is touched.
   */
  iovecs (iovs: number, count: number): DataView | undefined {
    const n = count >>> 0
    if (n > IOV_MAX) return undefined
    const v = this.view(iovs, n * 8)
    this.charge(n * HostFuel.perIovec)
    return v
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
