/**
 * The messages of PCP (RFC 6887, the MAP opcode) and NAT-PMP (RFC 6886),
 * encoded and decoded here: both are a few fixed-layout UDP datagrams to the
 * default gateway's port 5351. No maintained JavaScript PCP client exists
 * (nat-port-mapper speaks UPnP and NAT-PMP only), and the two protocols share
 * the port, the transaction shape and the version-fallback rule (a NAT-PMP
 * gateway answers a PCP request with "unsupported version"), so one small
 * client for both is simpler than one library and one hand-written half.
 */
import { isIPv4 } from 'node:net'
import { randomBytes } from 'node:crypto'
import { errorWithCode } from '../core/errors.ts'

/** The gateway's port for both protocols. */
export const PCP_SERVER_PORT = 5351

export const PCP_VERSION = 2
export const NATPMP_VERSION = 0

const PCP_OPCODE_MAP = 1
const PCP_RESPONSE_BIT = 0x80
const PCP_HEADER_BYTES = 24
const PCP_MAP_BYTES = 36

/** PCP's result codes (RFC 6887 §7.4). */
export const PCP_RESULTS: Readonly<Record<number, string>> = Object.freeze({
  0: 'SUCCESS',
  1: 'UNSUPP_VERSION',
  2: 'NOT_AUTHORIZED',
  3: 'MALFORMED_REQUEST',
  4: 'UNSUPP_OPCODE',
  5: 'UNSUPP_OPTION',
  6: 'MALFORMED_OPTION',
  7: 'NETWORK_FAILURE',
  8: 'NO_RESOURCES',
  9: 'UNSUPP_PROTOCOL',
  10: 'USER_EX_QUOTA',
  11: 'CANNOT_PROVIDE_EXTERNAL',
  12: 'ADDRESS_MISMATCH',
  13: 'EXCESSIVE_REMOTE_PEERS'
})

/** NAT-PMP's result codes (RFC 6886 §3.5). */
export const NATPMP_RESULTS: Readonly<Record<number, string>> = Object.freeze({
  0: 'SUCCESS',
  1: 'UNSUPPORTED_VERSION',
  2: 'NOT_AUTHORIZED',
  3: 'NETWORK_FAILURE',
  4: 'OUT_OF_RESOURCES',
  5: 'UNSUPPORTED_OPCODE'
})

export type MappedProtocol = 'tcp' | 'udp'

export interface MapRequest {
  protocol: MappedProtocol
  internalPort: number
  /** the port we would like outside; 0 lets the gateway choose */
  suggestedExternalPort: number
  /** seconds; 0 deletes the mapping */
  lifetimeSeconds: number
}

export interface PcpMapRequest extends MapRequest {
  /** our address as the gateway sees the packet's source (PCP checks it: ADDRESS_MISMATCH) */
  clientIp: string
  /** 12 random bytes naming this mapping; a renewal or deletion repeats them */
  nonce: Uint8Array
}

export interface MapResponse {
  /** 0 on success; the protocol's own code otherwise */
  result: number
  /** the code's name in the protocol's table */
  resultName: string
  lifetimeSeconds: number
  /** the gateway's seconds since its mappings were last lost (a smaller epoch than expected: they were) */
  epochSeconds: number
  internalPort: number
  externalPort: number
  /** PCP only: the external address assigned (NAT-PMP asks for it separately) */
  externalIp?: string
  protocol: MappedProtocol
  nonce?: Uint8Array
}

/** A datagram that is no answer to our request, or malformed. */
export class PortMappingWireError extends errorWithCode('PORT_MAPPING_BAD_REPLY') {}

export function newNonce (): Uint8Array {
  return new Uint8Array(randomBytes(12))
}

const ianaProtocol = (p: MappedProtocol): number => p === 'tcp' ? 6 : 17

/** An address as the 16 bytes PCP carries: IPv4 as ::ffff:a.b.c.d (RFC 6887 §5). */
export function encodePcpAddress (ip: string): Uint8Array {
  const out = new Uint8Array(16)
  if (isIPv4(ip)) {
    out[10] = 0xff
    out[11] = 0xff
    ip.split('.').forEach((octet, i) => { out[12 + i] = Number(octet) })
    return out
  }
  throw new PortMappingWireError(`PCP client address must be IPv4 here, got ${ip}`)
}

export function decodePcpAddress (bytes: Uint8Array): string {
  const mapped = bytes.subarray(0, 10).every(b => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff
  if (mapped) return [...bytes.subarray(12, 16)].join('.')
  const groups: string[] = []
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16))
  return groups.join(':')
}

/** A PCP MAP request: the 24-byte common header and the 36-byte MAP payload. */
export function encodePcpMap (req: PcpMapRequest): Uint8Array {
  if (req.nonce.length !== 12) throw new PortMappingWireError('a PCP nonce is 12 bytes')
  const buf = Buffer.alloc(PCP_HEADER_BYTES + PCP_MAP_BYTES)
  buf.writeUInt8(PCP_VERSION, 0)
  buf.writeUInt8(PCP_OPCODE_MAP, 1)
  buf.writeUInt32BE(req.lifetimeSeconds, 4)
  buf.set(encodePcpAddress(req.clientIp), 8)
  const p = PCP_HEADER_BYTES
  buf.set(req.nonce, p)
  buf.writeUInt8(ianaProtocol(req.protocol), p + 12)
  buf.writeUInt16BE(req.internalPort, p + 16)
  buf.writeUInt16BE(req.suggestedExternalPort, p + 18)
  // suggested external address: "any IPv4" (::ffff:0.0.0.0)
  buf.set(encodePcpAddress('0.0.0.0'), p + 20)
  return new Uint8Array(buf)
}

/**
 * A PCP MAP response, or the NAT-PMP-shaped "unsupported version" a NAT-PMP
 * gateway sends back to a PCP request (version 0, result 1): the caller falls
 * back to NAT-PMP on that result.
 */
export function decodePcpMap (bytes: Uint8Array): MapResponse {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (buf.length >= 4 && buf.readUInt8(0) === NATPMP_VERSION) {
    const result = buf.readUInt16BE(2)
    // a NAT-PMP gateway's answer to a version it does not speak: its code 1 is PCP's UNSUPP_VERSION too
    if (result === 0) throw new PortMappingWireError('a version-0 success in answer to a PCP request')
    return { result, resultName: result === 1 ? 'UNSUPP_VERSION' : NATPMP_RESULTS[result] ?? `code ${result}`, lifetimeSeconds: 0, epochSeconds: 0, internalPort: 0, externalPort: 0, protocol: 'tcp' }
  }
  if (buf.length < PCP_HEADER_BYTES) throw new PortMappingWireError(`a PCP response is at least ${PCP_HEADER_BYTES} bytes, got ${buf.length}`)
  if (buf.readUInt8(0) !== PCP_VERSION) throw new PortMappingWireError(`PCP version ${buf.readUInt8(0)} in the response`)
  const op = buf.readUInt8(1)
  if (op !== (PCP_RESPONSE_BIT | PCP_OPCODE_MAP)) throw new PortMappingWireError(`not a MAP response (opcode byte ${op})`)
  const result = buf.readUInt8(3)
  const head = { result, resultName: PCP_RESULTS[result] ?? `code ${result}`, lifetimeSeconds: buf.readUInt32BE(4), epochSeconds: buf.readUInt32BE(8) }
  // an error response may carry the payload or not (RFC 6887 §7.2: it is copied from the request when it can be)
  if (buf.length < PCP_HEADER_BYTES + PCP_MAP_BYTES) {
    if (result === 0) throw new PortMappingWireError(`a successful MAP response is ${PCP_HEADER_BYTES + PCP_MAP_BYTES} bytes, got ${buf.length}`)
    return { ...head, internalPort: 0, externalPort: 0, protocol: 'tcp' }
  }
  const p = PCP_HEADER_BYTES
  return {
    ...head,
    nonce: new Uint8Array(buf.subarray(p, p + 12)),
    protocol: buf.readUInt8(p + 12) === 17 ? 'udp' : 'tcp',
    internalPort: buf.readUInt16BE(p + 16),
    externalPort: buf.readUInt16BE(p + 18),
    externalIp: decodePcpAddress(new Uint8Array(buf.subarray(p + 20, p + 36)))
  }
}

/** NAT-PMP: the external address request (opcode 0). */
export function encodeNatPmpExternalAddress (): Uint8Array {
  return new Uint8Array([NATPMP_VERSION, 0])
}

export function decodeNatPmpExternalAddress (bytes: Uint8Array): { result: number, resultName: string, epochSeconds: number, externalIp?: string } {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (buf.length < 8) throw new PortMappingWireError(`a NAT-PMP response is at least 8 bytes, got ${buf.length}`)
  if (buf.readUInt8(0) !== NATPMP_VERSION || buf.readUInt8(1) !== 128) throw new PortMappingWireError(`not a NAT-PMP external address response (${buf.readUInt8(0)}/${buf.readUInt8(1)})`)
  const result = buf.readUInt16BE(2)
  const head = { result, resultName: NATPMP_RESULTS[result] ?? `code ${result}`, epochSeconds: buf.readUInt32BE(4) }
  if (result !== 0) return head
  if (buf.length < 12) throw new PortMappingWireError(`a NAT-PMP external address response is 12 bytes, got ${buf.length}`)
  return { ...head, externalIp: [...buf.subarray(8, 12)].join('.') }
}

/** NAT-PMP: a mapping request (opcode 1 UDP, 2 TCP); lifetime 0 deletes it. */
export function encodeNatPmpMap (req: MapRequest): Uint8Array {
  const buf = Buffer.alloc(12)
  buf.writeUInt8(NATPMP_VERSION, 0)
  buf.writeUInt8(req.protocol === 'udp' ? 1 : 2, 1)
  buf.writeUInt16BE(req.internalPort, 4)
  buf.writeUInt16BE(req.suggestedExternalPort, 6)
  buf.writeUInt32BE(req.lifetimeSeconds, 8)
  return new Uint8Array(buf)
}

export function decodeNatPmpMap (bytes: Uint8Array, protocol: MappedProtocol): MapResponse {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (buf.length < 8) throw new PortMappingWireError(`a NAT-PMP response is at least 8 bytes, got ${buf.length}`)
  const op = protocol === 'udp' ? 129 : 130
  if (buf.readUInt8(0) !== NATPMP_VERSION || buf.readUInt8(1) !== op) throw new PortMappingWireError(`not a NAT-PMP ${protocol} mapping response (${buf.readUInt8(0)}/${buf.readUInt8(1)})`)
  const result = buf.readUInt16BE(2)
  const head = { result, resultName: NATPMP_RESULTS[result] ?? `code ${result}`, epochSeconds: buf.readUInt32BE(4), protocol }
  if (result !== 0) return { ...head, lifetimeSeconds: 0, internalPort: 0, externalPort: 0 }
  if (buf.length < 16) throw new PortMappingWireError(`a NAT-PMP mapping response is 16 bytes, got ${buf.length}`)
  return { ...head, internalPort: buf.readUInt16BE(8), externalPort: buf.readUInt16BE(10), lifetimeSeconds: buf.readUInt32BE(12) }
}

export function sameNonce (a: Uint8Array | undefined, b: Uint8Array): boolean {
  return a != null && a.length === b.length && a.every((v, i) => v === b[i])
}
