import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { streamPair } from '@libp2p/utils'
import { PayloadTooLargeError, ProtocolViolationError, StreamEndedEarlyError } from '../../src/protocols/errors.ts'
import { FramedStream } from '../../src/protocols/framing.ts'

const init = { maxFrameBytes: 1024, maxBufferBytes: 1024 * 1024 }

async function framedPair (): Promise<[FramedStream, FramedStream]> {
  const [a, b] = await streamPair()
  return [new FramedStream(a, init), new FramedStream(b, init)]
}

function pattern (n: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => i % 251)
}

describe('framing', () => {
  it('carries a payload split into frames and closed by an empty frame', async () => {
    const [a, b] = await framedPair()
    const payload = pattern(5000)
    const sent: number[] = []
    const received: number[] = []
    await a.writePayload(payload, { onFrame: (n) => { sent.push(n) } })
    const got = await b.readPayload(payload.byteLength, 'input', { onFrame: (n) => { received.push(n) } })
    assert.deepEqual(got, payload)
    assert.deepEqual(sent, [1024, 2048, 3072, 4096, 5000])
    assert.deepEqual(received, sent)
  })

  it('carries a message and payloads written at once as the same frames the reader reads one by one', async () => {
    const [a, b] = await framedPair()
    const header = pattern(10)
    const input = pattern(2500)
    await a.writeFrames([header, ...a.payloadFrames(input), ...a.payloadFrames(new Uint8Array(0))], {})
    assert.deepEqual(await b.readFrame('header', {}), header)
    assert.deepEqual(await b.readPayload(input.byteLength, 'input', {}), input)
    assert.equal((await b.readPayload(0, 'stderr', {})).byteLength, 0)
  })

  it('refuses to write at once a frame over the frame limit, before sending anything', async () => {
    const [a] = await framedPair()
    await assert.rejects(a.writeFrames([pattern(10), pattern(1025)], {}), PayloadTooLargeError)
  })

  it('carries an empty payload as the terminator alone', async () => {
    const [a, b] = await framedPair()
    await a.writePayload(new Uint8Array(0), {})
    assert.equal((await b.readPayload(0, 'stderr', {})).byteLength, 0)
  })

  it('cuts off a payload at the first byte over what was announced', async () => {
    const [a, b] = await framedPair()
    await a.writePayload(pattern(3000), {})
    await assert.rejects(b.readPayload(2000, 'stdout', {}), (err: unknown) => {
      assert.ok(err instanceof PayloadTooLargeError)
      assert.match(err.message, /stdout: the peer announced 2000 bytes and sent more \(2048 so far\)/)
      return true
    })
  })

  it('refuses a payload that ends before what was announced', async () => {
    const [a, b] = await framedPair()
    await a.writePayload(pattern(100), {})
    await assert.rejects(b.readPayload(200, 'module', {}), (err: unknown) => {
      assert.ok(err instanceof ProtocolViolationError)
      assert.match(err.message, /module: the peer announced 200 bytes but sent 100/)
      return true
    })
  })

  it('refuses a frame over the frame limit', async () => {
    const [a, b] = await framedPair()
    const big = new FramedStream(a.stream, { ...init, maxFrameBytes: 4096 })
    await big.writeFrame(pattern(2048), {})
    await assert.rejects(b.readFrame('dispatch header', {}), (err: unknown) => {
      assert.ok(err instanceof PayloadTooLargeError)
      assert.match(err.message, /dispatch header: a frame is over the 1024-byte frame limit/)
      return true
    })
    await assert.rejects(a.writeFrame(pattern(2048), {}), /refusing to send a 2048-byte frame/)
  })

  it('reports a stream that ends in the middle of a message', async () => {
    const [a, b] = await framedPair()
    a.stream.send(new Uint8Array([10, 1, 2, 3]))
    await a.stream.close()
    await assert.rejects(b.readFrame('offer request', {}), (err: unknown) => {
      assert.ok(err instanceof StreamEndedEarlyError, String(err))
      assert.ok(err instanceof ProtocolViolationError, 'still a protocol violation, with its code')
      assert.equal(err.code, 'PROTOCOL_VIOLATION')
      assert.match(err.message, /^offer request: /, 'names the message it was reading')
      return true
    })
  })
})
