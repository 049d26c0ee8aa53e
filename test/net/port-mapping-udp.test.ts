/**
 * The PCP and NAT-PMP clients against a gateway played by a UDP socket on
 * 127.0.0.1 (the real one listens on the default gateway's port 5351).
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createSocket, type Socket } from 'node:dgram'
import { NatPmpClient, PcpClient } from '../../src/net/port-mapping-udp.ts'
import { PortMappingNoAnswerError, PortMappingRefusedError, PortMappingUnsupportedError, type LanRoute } from '../../src/net/port-mapping-gateway.ts'

const ROUTE: LanRoute = { gateway: '127.0.0.1', iface: 'lo', localAddress: '127.0.0.1' }
const FAST = { initialTimeoutMs: 30, attempts: 2 }

type Answer = (req: Buffer) => Buffer | undefined

/** A gateway that answers each datagram with what `answer` makes of it, and keeps every request. */
class FakeGateway {
  socket: Socket = createSocket('udp4')
  requests: Buffer[] = []
  answer: Answer = () => undefined
  port = 0

  async start (): Promise<void> {
    this.socket.on('message', (msg, rinfo) => {
      this.requests.push(msg)
      const reply = this.answer(msg)
      if (reply != null) this.socket.send(reply, rinfo.port, rinfo.address)
    })
    await new Promise<void>(resolve => { this.socket.bind(0, '127.0.0.1', resolve) })
    this.port = this.socket.address().port
  }
}

/** A PCP server's MAP answer to `req`: its nonce, protocol and port echoed, an external address and port assigned. */
function pcpGrant (req: Buffer, result = 0): Buffer {
  const res = Buffer.alloc(60)
  res[0] = 2
  res[1] = 0x81
  res[3] = result
  res.writeUInt32BE(req.readUInt32BE(4), 4)
  res.writeUInt32BE(1234, 8)
  req.copy(res, 24, 24, 42)
  res.writeUInt16BE(req.readUInt16BE(40) + 1, 42)
  res.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 203, 0, 113, 10], 44)
  return res
}

const gw = new FakeGateway()
before(async () => { await gw.start() })
after(() => { gw.socket.close() })

describe('the PCP client', () => {
  it('maps a port with a MAP request from our address and takes the assigned external address and port', async () => {
    gw.requests = []
    gw.answer = (req) => pcpGrant(req)
    const client = new PcpClient(ROUTE, { ...FAST, serverPort: gw.port })
    try {
      const m = await client.map({ transport: 'tcp', host: '127.0.0.1', port: 4001, suggestedExternalPort: 4001, lifetimeSeconds: 3600 })
      assert.deepEqual(m, { transport: 'tcp', host: '127.0.0.1', port: 4001, externalHost: '203.0.113.10', externalPort: 4002, lifetimeSeconds: 3600 })
      assert.deepEqual([...gw.requests[0].subarray(8, 24)], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1], 'the client address is the packet\'s source')
      // a renewal and the deletion repeat the mapping's nonce: the gateway ties the mapping to it
      await client.map({ transport: 'tcp', host: '127.0.0.1', port: 4001, suggestedExternalPort: 4002, lifetimeSeconds: 3600 })
      await client.unmap(m)
      const nonces = gw.requests.map(r => r.subarray(24, 36).toString('hex'))
      assert.equal(new Set(nonces).size, 1)
      // (a slow answer may have been retransmitted: the deletion is the last request)
      assert.equal(gw.requests.at(-1)?.readUInt32BE(4), 0, 'deleted with lifetime 0')
    } finally {
      client.close()
    }
  })

  it('an answer carrying another nonce is not ours and is ignored', async () => {
    gw.answer = (req) => { const r = pcpGrant(req); r[24] ^= 0xff; return r }
    const client = new PcpClient(ROUTE, { ...FAST, serverPort: gw.port })
    try {
      await assert.rejects(client.map({ transport: 'udp', host: '127.0.0.1', port: 4001, suggestedExternalPort: 4001, lifetimeSeconds: 60 }), PortMappingNoAnswerError)
    } finally {
      client.close()
    }
  })

  it('a NAT-PMP-only gateway\'s "unsupported version" is PortMappingUnsupportedError, a refusal PortMappingRefusedError with the result name', async () => {
    gw.answer = () => Buffer.from([0, 0x81, 0, 1, 0, 0, 0, 9])
    const client = new PcpClient(ROUTE, { ...FAST, serverPort: gw.port })
    try {
      await assert.rejects(client.map({ transport: 'tcp', host: '127.0.0.1', port: 1, suggestedExternalPort: 1, lifetimeSeconds: 60 }), (err: unknown) => err instanceof PortMappingUnsupportedError && err.code === 'PORT_MAPPING_UNSUPPORTED' && err.protocol === 'pcp' && err.phase === 'map')
      gw.answer = (req) => pcpGrant(req, 2)
      await assert.rejects(client.map({ transport: 'tcp', host: '127.0.0.1', port: 1, suggestedExternalPort: 1, lifetimeSeconds: 60 }), (err: unknown) => err instanceof PortMappingRefusedError && err.result === 'NOT_AUTHORIZED' && err.gateway === '127.0.0.1')
    } finally {
      client.close()
    }
  })

  it('a silent gateway is PortMappingNoAnswerError after the retransmissions', async () => {
    gw.requests = []
    gw.answer = () => undefined
    const client = new PcpClient(ROUTE, { ...FAST, serverPort: gw.port })
    try {
      await assert.rejects(client.map({ transport: 'tcp', host: '127.0.0.1', port: 1, suggestedExternalPort: 1, lifetimeSeconds: 60 }), (err: unknown) => err instanceof PortMappingNoAnswerError && err.code === 'PORT_MAPPING_NO_ANSWER')
      assert.equal(gw.requests.length, 2, 'sent once, retransmitted once')
    } finally {
      client.close()
    }
  })
})

describe('the NAT-PMP client', () => {
  it('maps, asks the external address, and deletes with lifetime 0 and external port 0', async () => {
    gw.requests = []
    gw.answer = (req) => {
      if (req[1] === 0) return Buffer.from([0, 128, 0, 0, 0, 0, 0, 1, 198, 51, 100, 9])
      const res = Buffer.alloc(16)
      res[1] = 128 + req[1]
      res.writeUInt16BE(req.readUInt16BE(4), 8)
      res.writeUInt16BE(req.readUInt16BE(6) === 0 ? 0 : 50001, 10)
      res.writeUInt32BE(req.readUInt32BE(8), 12)
      return res
    }
    const client = new NatPmpClient(ROUTE, { ...FAST, serverPort: gw.port })
    try {
      const m = await client.map({ transport: 'udp', host: '127.0.0.1', port: 4001, suggestedExternalPort: 4001, lifetimeSeconds: 600 })
      assert.deepEqual(m, { transport: 'udp', host: '127.0.0.1', port: 4001, externalHost: '198.51.100.9', externalPort: 50001, lifetimeSeconds: 600 })
      await client.unmap(m)
      const del = gw.requests.at(-1) as Buffer
      assert.deepEqual([del[1], del.readUInt16BE(4), del.readUInt16BE(6), del.readUInt32BE(8)], [1, 4001, 0, 0])
    } finally {
      client.close()
    }
  })
})
