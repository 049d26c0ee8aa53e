import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import {
  decodeNatPmpExternalAddress, decodeNatPmpMap, decodePcpAddress, decodePcpMap, encodeNatPmpMap, encodePcpAddress, encodePcpMap,
  PortMappingWireError
} from '../../src/net/port-mapping-wire.ts'

const NONCE = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])

/** A gateway's MAP answer, written field by field from RFC 6887 §7.2 and §11.1. */
function pcpResponse (fields: { result: number, lifetime: number, epoch: number, protocol: number, internalPort: number, externalPort: number, externalIp: number[] }): Uint8Array {
  const buf = Buffer.alloc(60)
  buf[0] = 2
  buf[1] = 0x81
  buf[3] = fields.result
  buf.writeUInt32BE(fields.lifetime, 4)
  buf.writeUInt32BE(fields.epoch, 8)
  buf.set(NONCE, 24)
  buf[36] = fields.protocol
  buf.writeUInt16BE(fields.internalPort, 40)
  buf.writeUInt16BE(fields.externalPort, 42)
  buf.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...fields.externalIp], 44)
  return new Uint8Array(buf)
}

describe('PCP messages (RFC 6887 MAP)', () => {
  it('a MAP request is 60 bytes: version 2, opcode 1, lifetime, the client address as ::ffff:a.b.c.d, nonce, protocol, ports and "any IPv4"', () => {
    const bytes = encodePcpMap({ protocol: 'tcp', internalPort: 4001, suggestedExternalPort: 4001, lifetimeSeconds: 3600, clientIp: '10.1.0.2', nonce: NONCE })
    const b = Buffer.from(bytes)
    assert.equal(b.length, 60)
    assert.deepEqual([b[0], b[1], b[2], b[3]], [2, 1, 0, 0])
    assert.equal(b.readUInt32BE(4), 3600)
    assert.deepEqual([...b.subarray(8, 24)], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 0, 2])
    assert.deepEqual(new Uint8Array(b.subarray(24, 36)), NONCE)
    assert.equal(b[36], 6)
    assert.deepEqual([...b.subarray(37, 40)], [0, 0, 0])
    assert.equal(b.readUInt16BE(40), 4001)
    assert.equal(b.readUInt16BE(42), 4001)
    assert.deepEqual([...b.subarray(44, 60)], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0])
  })

  it('a UDP mapping carries IANA protocol 17', () => {
    const b = encodePcpMap({ protocol: 'udp', internalPort: 1, suggestedExternalPort: 0, lifetimeSeconds: 0, clientIp: '192.168.1.5', nonce: NONCE })
    assert.equal(b[36], 17)
  })

  it('a successful MAP response gives the assigned external address, port and lifetime with the nonce', () => {
    const r = decodePcpMap(pcpResponse({ result: 0, lifetime: 1800, epoch: 77, protocol: 6, internalPort: 4001, externalPort: 40001, externalIp: [203, 0, 113, 10] }))
    assert.equal(r.result, 0)
    assert.equal(r.resultName, 'SUCCESS')
    assert.equal(r.lifetimeSeconds, 1800)
    assert.equal(r.epochSeconds, 77)
    assert.equal(r.protocol, 'tcp')
    assert.equal(r.internalPort, 4001)
    assert.equal(r.externalPort, 40001)
    assert.equal(r.externalIp, '203.0.113.10')
    assert.deepEqual(r.nonce, NONCE)
  })

  it('an error response is named by its result code', () => {
    const r = decodePcpMap(pcpResponse({ result: 2, lifetime: 30, epoch: 1, protocol: 6, internalPort: 4001, externalPort: 0, externalIp: [0, 0, 0, 0] }))
    assert.equal(r.result, 2)
    assert.equal(r.resultName, 'NOT_AUTHORIZED')
  })

  it('a short error response (header only) still decodes, a short success does not', () => {
    const header = pcpResponse({ result: 8, lifetime: 0, epoch: 1, protocol: 6, internalPort: 0, externalPort: 0, externalIp: [0, 0, 0, 0] }).subarray(0, 24)
    assert.equal(decodePcpMap(header).resultName, 'NO_RESOURCES')
    const ok = pcpResponse({ result: 0, lifetime: 0, epoch: 1, protocol: 6, internalPort: 0, externalPort: 0, externalIp: [0, 0, 0, 0] }).subarray(0, 24)
    assert.throws(() => decodePcpMap(ok), PortMappingWireError)
  })

  it('a NAT-PMP gateway\'s version-0 "unsupported version" to a PCP request reads as UNSUPP_VERSION', () => {
    const r = decodePcpMap(new Uint8Array([0, 0x81, 0, 1, 0, 0, 0, 5]))
    assert.equal(r.result, 1)
    assert.equal(r.resultName, 'UNSUPP_VERSION')
  })

  it('a datagram that is no MAP response is rejected with PortMappingWireError', () => {
    assert.throws(() => decodePcpMap(new Uint8Array([2, 0x80, 0, 0])), PortMappingWireError)
    const wrongOp = pcpResponse({ result: 0, lifetime: 1, epoch: 1, protocol: 6, internalPort: 1, externalPort: 1, externalIp: [1, 2, 3, 4] })
    wrongOp[1] = 0x82
    assert.throws(() => decodePcpMap(wrongOp), (err: unknown) => err instanceof PortMappingWireError && err.code === 'PORT_MAPPING_BAD_REPLY')
  })

  it('addresses round-trip: IPv4-mapped in, dotted out; a native IPv6 address is printed as groups', () => {
    assert.equal(decodePcpAddress(encodePcpAddress('198.51.100.7')), '198.51.100.7')
    const v6 = new Uint8Array(16)
    v6[0] = 0x20; v6[1] = 0x01; v6[2] = 0x0d; v6[3] = 0xb8; v6[15] = 1
    assert.equal(decodePcpAddress(v6), '2001:db8:0:0:0:0:0:1')
  })
})

describe('NAT-PMP messages (RFC 6886)', () => {
  it('a TCP mapping request is 12 bytes: version 0, opcode 2, ports and lifetime', () => {
    const b = Buffer.from(encodeNatPmpMap({ protocol: 'tcp', internalPort: 4001, suggestedExternalPort: 4001, lifetimeSeconds: 7200 }))
    assert.deepEqual([b.length, b[0], b[1], b.readUInt16BE(2)], [12, 0, 2, 0])
    assert.deepEqual([b.readUInt16BE(4), b.readUInt16BE(6), b.readUInt32BE(8)], [4001, 4001, 7200])
    assert.equal(encodeNatPmpMap({ protocol: 'udp', internalPort: 1, suggestedExternalPort: 1, lifetimeSeconds: 1 })[1], 1)
  })

  it('a mapping response gives the mapped port and lifetime; an error its name', () => {
    const ok = Buffer.alloc(16)
    ok[1] = 130
    ok.writeUInt32BE(9, 4)
    ok.writeUInt16BE(4001, 8)
    ok.writeUInt16BE(50001, 10)
    ok.writeUInt32BE(3600, 12)
    const r = decodeNatPmpMap(new Uint8Array(ok), 'tcp')
    assert.deepEqual([r.result, r.internalPort, r.externalPort, r.lifetimeSeconds, r.epochSeconds], [0, 4001, 50001, 3600, 9])
    const refused = Buffer.alloc(16)
    refused[1] = 130
    refused.writeUInt16BE(2, 2)
    assert.equal(decodeNatPmpMap(new Uint8Array(refused), 'tcp').resultName, 'NOT_AUTHORIZED')
    // the UDP answer is not the TCP one
    assert.throws(() => decodeNatPmpMap(new Uint8Array(ok), 'udp'), PortMappingWireError)
  })

  it('the external address response gives the public IPv4 address', () => {
    const b = Buffer.from([0, 128, 0, 0, 0, 0, 0, 3, 203, 0, 113, 10])
    assert.equal(decodeNatPmpExternalAddress(new Uint8Array(b)).externalIp, '203.0.113.10')
  })
})
