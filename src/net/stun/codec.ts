import stun from '@msimerson/stun'
import { randomBytes } from 'node:crypto'
import { WorldComputeError } from '../../core/errors.ts'

/**
 * The STUN wire format (RFC 5389 Binding, RFC 5780 attributes) for our relay
 * responder and the donor's NAT probe. Encoding and decoding are done by
 * `@msimerson/stun` (the maintained fork of the `stun` package: attribute
 * parsing, XOR-MAPPED-ADDRESS, FINGERPRINT); this file only narrows it to the
 * few messages we send and receive, as plain data.
 */

export const MAGIC_COOKIE = 0x2112a442
const C = stun.constants
export const BINDING_REQUEST = C.STUN_BINDING_REQUEST
export const BINDING_SUCCESS = C.STUN_BINDING_RESPONSE
export const BINDING_ERROR = C.STUN_BINDING_ERROR_RESPONSE
export const ATTR_CHANGE_REQUEST = C.STUN_ATTR_CHANGE_REQUEST
export const ATTR_OTHER_ADDRESS = C.STUN_ATTR_OTHER_ADDRESS
export const ATTR_RESPONSE_ORIGIN = C.STUN_ATTR_RESPONSE_ORIGIN

/** RFC 5780 §7.2: CHANGE-REQUEST flag bits */
const CHANGE_IP = 0x04
const CHANGE_PORT = 0x02

export interface StunEndpoint {
  address: string
  port: number
}

export interface ChangeRequest {
  changeIp: boolean
  changePort: boolean
}

export interface DecodedStun {
  kind: 'binding-request' | 'binding-success' | 'binding-error' | 'other'
  type: number
  transactionId: Buffer
  /** RFC 3489 message (no magic cookie) */
  legacy: boolean
  changeRequest?: ChangeRequest
  /** XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS */
  mapped?: StunEndpoint
  otherAddress?: StunEndpoint
  responseOrigin?: StunEndpoint
  error?: { code: number, reason: string }
  /** comprehension-required attributes (type < 0x8000) we do not understand (RFC 5389 §7.3.1) */
  unknownRequired: number[]
}

/** A datagram that is not a STUN message we can read. */
export class StunDecodeError extends WorldComputeError {
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, 'STUN_DECODE', options)
  }
}

/** Attributes a Binding request may carry that we understand (everything else < 0x8000 gets a 420). */
const UNDERSTOOD = new Set([
  C.STUN_ATTR_CHANGE_REQUEST, C.STUN_ATTR_FINGERPRINT, C.STUN_ATTR_SOFTWARE, C.STUN_ATTR_PADDING,
  C.STUN_ATTR_MAPPED_ADDRESS, C.STUN_ATTR_XOR_MAPPED_ADDRESS, C.STUN_ATTR_OTHER_ADDRESS,
  C.STUN_ATTR_RESPONSE_ORIGIN, C.STUN_ATTR_ERROR_CODE, C.STUN_ATTR_UNKNOWN_ATTRIBUTES
])

/**
 * Cheap pre-check before decoding (RFC 5389 §6): two leading zero bits, a
 * length that is a multiple of 4 and matches the datagram, and the magic
 * cookie. Stray datagrams are dropped without a decode.
 */
export function looksLikeStun (bytes: Uint8Array): boolean {
  if (bytes.byteLength < 20 || (bytes[0] & 0xc0) !== 0) return false
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const length = view.getUint16(2)
  return length % 4 === 0 && length + 20 === bytes.byteLength && view.getUint32(4) === MAGIC_COOKIE
}

export function newTransactionId (): Buffer {
  return randomBytes(12)
}

export function encodeBindingRequest (options: { transactionId?: Buffer, change?: Partial<ChangeRequest> } = {}): { bytes: Buffer, transactionId: Buffer } {
  const transactionId = options.transactionId ?? newTransactionId()
  const msg = stun.createMessage(BINDING_REQUEST, transactionId)
  const flags = (options.change?.changeIp === true ? CHANGE_IP : 0) | (options.change?.changePort === true ? CHANGE_PORT : 0)
  if (flags !== 0) msg.addAttribute(ATTR_CHANGE_REQUEST, flags)
  return { bytes: msg.toBuffer(), transactionId }
}

export interface BindingSuccessInit {
  transactionId: Buffer
  /** the source address the request came from, as seen by us */
  mapped: StunEndpoint
  /** the address the response is sent from (RFC 5780 §7.3) */
  responseOrigin: StunEndpoint
  /** the alternate address and port (RFC 5780 §7.3), when we have one */
  otherAddress?: StunEndpoint
  software?: string
}

export function encodeBindingSuccess (init: BindingSuccessInit): Buffer {
  const msg = stun.createMessage(BINDING_SUCCESS, init.transactionId)
  msg.addXorAddress(init.mapped.address, init.mapped.port)
  // MAPPED-ADDRESS too: RFC 3489-era clients read only that one
  msg.addAddress(init.mapped.address, init.mapped.port)
  msg.addAttribute(ATTR_RESPONSE_ORIGIN, init.responseOrigin.address, init.responseOrigin.port)
  if (init.otherAddress != null) msg.addAttribute(ATTR_OTHER_ADDRESS, init.otherAddress.address, init.otherAddress.port)
  if (init.software != null) msg.addSoftware(init.software)
  msg.addFingerprint()
  return msg.toBuffer()
}

export function encodeBindingError (init: { transactionId: Buffer, code: number, reason: string, unknownAttributes?: number[] }): Buffer {
  const msg = stun.createMessage(BINDING_ERROR, init.transactionId)
  msg.addError(init.code, init.reason)
  if (init.unknownAttributes != null && init.unknownAttributes.length > 0) msg.addUnknownAttributes(init.unknownAttributes)
  msg.addFingerprint()
  return msg.toBuffer()
}

function endpoint (value: unknown): StunEndpoint | undefined {
  if (value == null || typeof value !== 'object') return undefined
  const v = value as { address?: unknown, port?: unknown }
  return typeof v.address === 'string' && typeof v.port === 'number' ? { address: v.address, port: v.port } : undefined
}

const ATTR_XOR_MAPPED_ADDRESS = 0x0020

/**
 * An IPv6 XOR-MAPPED-ADDRESS, read from the bytes: @msimerson/stun XORs an
 * IPv6 address with the magic cookie alone when decoding (the transaction ID
 * is not set on the message yet), so every byte past the fourth came out wrong.
 */
function xorMappedIpv6 (bytes: Buffer): StunEndpoint | undefined {
  const end = Math.min(bytes.length, 20 + bytes.readUInt16BE(2))
  for (let at = 20; at + 4 <= end;) {
    const type = bytes.readUInt16BE(at)
    const length = bytes.readUInt16BE(at + 2)
    if (type === ATTR_XOR_MAPPED_ADDRESS && length === 20 && bytes[at + 5] === 0x02 && at + 24 <= end) {
      const port = bytes.readUInt16BE(at + 6) ^ (MAGIC_COOKIE >>> 16)
      const key = bytes.subarray(4, 20)
      const groups: string[] = []
      for (let i = 0; i < 16; i += 2) groups.push(((((bytes[at + 8 + i] ^ key[i]) << 8) | (bytes[at + 9 + i] ^ key[i + 1]))).toString(16))
      // the URL parser writes IPv6 in its canonical short form (RFC 5952)
      return { address: new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1), port }
    }
    at += 4 + Math.ceil(length / 4) * 4
  }
  return undefined
}

export function decodeStun (bytes: Buffer): DecodedStun {
  if (!looksLikeStun(bytes)) throw new StunDecodeError(`not a STUN message (${bytes.byteLength} bytes without a STUN header and magic cookie)`)
  let msg: ReturnType<typeof stun.decode>
  try {
    msg = stun.decode(bytes)
  } catch (err) {
    throw new StunDecodeError(`malformed STUN message: ${(err as Error).message}`, { cause: err })
  }
  const kind = msg.type === BINDING_REQUEST
    ? 'binding-request'
    : msg.type === BINDING_SUCCESS ? 'binding-success' : msg.type === BINDING_ERROR ? 'binding-error' : 'other'
  const out: DecodedStun = { kind, type: msg.type, transactionId: Buffer.from(msg.transactionId), legacy: msg.isLegacy(), unknownRequired: [] }
  for (const attr of msg) {
    if (attr.type < 0x8000 && !UNDERSTOOD.has(attr.type)) out.unknownRequired.push(attr.type)
  }
  const change = msg.getAttribute(ATTR_CHANGE_REQUEST)?.value
  if (typeof change === 'number') out.changeRequest = { changeIp: (change & CHANGE_IP) !== 0, changePort: (change & CHANGE_PORT) !== 0 }
  const mapped = xorMappedIpv6(bytes) ?? endpoint(msg.getXorAddress()) ?? endpoint(msg.getAddress())
  if (mapped != null) out.mapped = mapped
  const other = endpoint(msg.getAttribute(ATTR_OTHER_ADDRESS)?.value)
  if (other != null) out.otherAddress = other
  const origin = endpoint(msg.getAttribute(ATTR_RESPONSE_ORIGIN)?.value)
  if (origin != null) out.responseOrigin = origin
  const error = msg.getError()
  if (error != null) out.error = { code: error.code, reason: error.reason }
  return out
}

export function endpointText (e: StunEndpoint): string {
  return e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`
}
