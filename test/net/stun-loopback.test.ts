/**
 * The relay's STUN responder and the donor's probe, over real UDP on
 * loopback: the wire format both ways, RFC 5780 OTHER-ADDRESS /
 * RESPONSE-ORIGIN / CHANGE-REQUEST, and what the classifier makes of a host
 * with no NAT. 127.0.0.2 is a second loopback IP on Linux, which gives the
 * responder the two IPs that "change IP" needs.
 */
import assert from 'node:assert/strict'
import { createSocket } from 'node:dgram'
import { after, before, describe, it } from 'node:test'
import stun from '@msimerson/stun'
import { decodeStun, encodeBindingRequest, type DecodedStun } from '../../src/net/stun/codec.ts'
import { probeNat, recordStunProbe } from '../../src/net/stun/probe.ts'
import { StunResponder, StunResponderError } from '../../src/net/stun/responder.ts'
import { freeUdpPorts } from '../helpers/ports.ts'

/** One request from a fresh socket; the first answer and where it came from, or undefined after `timeoutMs`. */
async function ask (to: { address: string, port: number }, bytes: Buffer, timeoutMs = 1000): Promise<{ res: DecodedStun, from: string } | undefined> {
  const s = createSocket('udp4')
  await new Promise<void>(resolve => s.bind(0, '127.0.0.1', resolve))
  try {
    return await new Promise(resolve => {
      const t = setTimeout(() => { resolve(undefined) }, timeoutMs)
      s.on('message', (msg, rinfo) => { clearTimeout(t); resolve({ res: decodeStun(msg), from: `${rinfo.address}:${rinfo.port}` }) })
      s.send(bytes, to.port, to.address)
    })
  } finally {
    s.close()
  }
}

describe('STUN responder and probe on loopback', () => {
  let one: StunResponder
  let two: StunResponder
  let onePorts: number[]
  let twoPorts: number[]

  before(async () => {
    onePorts = await freeUdpPorts(2)
    one = new StunResponder({ addresses: ['127.0.0.1'], ports: onePorts })
    await one.start()
    twoPorts = await freeUdpPorts(2)
    two = new StunResponder({ addresses: ['127.0.0.1', '127.0.0.2'], ports: twoPorts })
    await two.start()
  })
  after(async () => {
    await one?.stop()
    await two?.stop()
  })

  it('answers a Binding request with the XOR-mapped source address, RESPONSE-ORIGIN and OTHER-ADDRESS', async () => {
    const { bytes, transactionId } = encodeBindingRequest()
    const got = await ask({ address: '127.0.0.1', port: onePorts[0] }, bytes)
    assert.ok(got != null, 'an answer within 1 s')
    assert.equal(got.res.kind, 'binding-success')
    assert.ok(got.res.transactionId.equals(transactionId))
    assert.equal(got.res.mapped?.address, '127.0.0.1')
    assert.deepEqual(got.res.responseOrigin, { address: '127.0.0.1', port: onePorts[0] })
    // one IP: OTHER-ADDRESS names the other port on the same IP (documented deviation from RFC 5780 §7.3)
    assert.deepEqual(got.res.otherAddress, { address: '127.0.0.1', port: onePorts[1] })
    assert.equal(got.from, `127.0.0.1:${onePorts[0]}`)
  })

  it('is readable by another STUN implementation (the package\'s own decoder checks the FINGERPRINT)', async () => {
    const { bytes } = encodeBindingRequest()
    const s = createSocket('udp4')
    await new Promise<void>(resolve => s.bind(0, '127.0.0.1', resolve))
    const raw = await new Promise<Buffer>((resolve, reject) => {
      const t = setTimeout(() => { reject(new Error('no answer within 1 s')) }, 1000)
      s.on('message', msg => { clearTimeout(t); resolve(msg) })
      s.send(bytes, onePorts[0], '127.0.0.1')
    }).finally(() => { s.close() })
    const msg = stun.decode(raw)
    assert.equal(stun.validateFingerprint(msg), true)
    assert.equal(msg.getXorAddress()?.address, '127.0.0.1')
  })

  it('answers "change port" from its other port', async () => {
    const got = await ask({ address: '127.0.0.1', port: onePorts[0] }, encodeBindingRequest({ change: { changePort: true } }).bytes)
    assert.equal(got?.from, `127.0.0.1:${onePorts[1]}`)
    assert.deepEqual(got?.res.responseOrigin, { address: '127.0.0.1', port: onePorts[1] })
  })

  it('refuses "change IP" with 420 when it has one IP, and honours it with two', async () => {
    const refused = await ask({ address: '127.0.0.1', port: onePorts[0] }, encodeBindingRequest({ change: { changeIp: true } }).bytes)
    assert.equal(refused?.res.kind, 'binding-error')
    assert.equal(refused?.res.error?.code, 420)
    const honoured = await ask({ address: '127.0.0.1', port: twoPorts[0] }, encodeBindingRequest({ change: { changeIp: true, changePort: true } }).bytes)
    assert.equal(honoured?.from, `127.0.0.2:${twoPorts[1]}`)
    const plain = await ask({ address: '127.0.0.1', port: twoPorts[0] }, encodeBindingRequest().bytes)
    assert.deepEqual(plain?.res.otherAddress, { address: '127.0.0.2', port: twoPorts[1] })
  })

  it('answers an unknown comprehension-required attribute with 420 and ignores datagrams that are not STUN', async () => {
    const msg = stun.createMessage(stun.constants.STUN_BINDING_REQUEST)
    msg.addAttribute(0x0024, 7) // PRIORITY: an ICE attribute a plain STUN server does not handle
    const got = await ask({ address: '127.0.0.1', port: onePorts[0] }, msg.toBuffer())
    assert.equal(got?.res.error?.code, 420)
    const junk = await ask({ address: '127.0.0.1', port: onePorts[0] }, Buffer.from('GET / HTTP/1.1\r\n\r\n'), 300)
    assert.equal(junk, undefined)
    const answered = one.answered
    // and still serves afterwards
    assert.ok((await ask({ address: '127.0.0.1', port: onePorts[0] }, encodeBindingRequest().bytes)) != null)
    assert.equal(one.answered, answered + 1)
  })

  it('the probe sees no NAT on loopback, and filtering that lets another port through', async () => {
    const r = await probeNat([{ address: '127.0.0.1', ports: onePorts }], { localAddresses: ['127.0.0.1'] })
    assert.equal(r.mapping, 'none', r.reason)
    assert.equal(r.udp, 'yes')
    assert.equal(r.filtering, 'unknown', 'one IP: not port-dependent, EIF vs ADF not measurable')
    assert.equal(r.recording.observations.filter(o => o.socket === 'mapping').length, 2)
    assert.ok(r.recording.observations.every(o => o.answer != null), 'every request was answered')
    const changed = r.recording.observations.find(o => o.change?.changePort === true)
    assert.deepEqual((changed?.answer as { responseOrigin?: unknown } | undefined)?.responseOrigin, { address: '127.0.0.1', port: onePorts[1] })
  })

  it('the probe against a responder with two IPs measures endpoint-independent filtering', async () => {
    const r = await probeNat([{ address: '127.0.0.1', ports: twoPorts }], { localAddresses: ['127.0.0.1'] })
    assert.equal(r.mapping, 'none', r.reason)
    assert.equal(r.filtering, 'endpoint-independent', r.reason)
  })

  it('the probe says "no UDP" when nothing answers, within its bounded wait', async () => {
    const [silent] = await freeUdpPorts(1)
    const started = Date.now()
    const rec = await recordStunProbe([{ address: '127.0.0.1', ports: [silent] }], { timeoutMs: 400 })
    const r = await probeNat([{ address: '127.0.0.1', ports: [silent] }], { timeoutMs: 400 })
    assert.equal(rec.observations.length, 1)
    assert.equal(rec.observations[0].answer, undefined)
    assert.equal(r.mapping, 'no-udp')
    assert.equal(r.udp, 'no')
    // printed, not asserted: how long a probe that gets nothing takes
    console.log(`# no-answer probe: ${Date.now() - started} ms for two probes with a 400 ms window`)
  })

  it('refuses to start on a port that is taken, naming the port', async () => {
    const clash = new StunResponder({ addresses: ['127.0.0.1'], ports: [onePorts[0]] })
    await assert.rejects(clash.start(), (err: Error) => err instanceof StunResponderError && err.message.includes(String(onePorts[0])))
  })
})
