import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { streamPair } from '@libp2p/utils'
import { FramedStream, PayloadSourceChangedError, type PayloadSource } from '../../src/protocols/framing.ts'

/** A payload sent from a source read in chunks (a blob file) rather than from bytes in memory. */

const init = { maxFrameBytes: 1024, maxBufferBytes: 1024 * 1024 }

function pattern (n: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 7) % 251)
}

/** A source stating `stated` bytes and yielding `bytes` in chunks of `chunk`. */
function sourceOf (bytes: Uint8Array, chunk: number, stated = bytes.byteLength): PayloadSource {
  return {
    byteLength: stated,
    chunks: async function * () {
      for (let i = 0; i < bytes.byteLength; i += chunk) yield bytes.subarray(i, i + chunk)
    }
  }
}

describe('framing a payload source', () => {
  it('sends chunks of any size as frames of at most the frame limit, which the reader takes as one payload', async () => {
    const [a, b] = await streamPair()
    const [tx, rx] = [new FramedStream(a, init), new FramedStream(b, init)]
    const bytes = pattern(5000)
    const sent: number[] = []
    const reading = rx.readPayload(bytes.byteLength, 'input', {})
    await tx.writePayload(sourceOf(bytes, 1500), { onFrame: (n) => { sent.push(n) } })
    assert.deepEqual(await reading, bytes)
    assert.deepEqual(sent, [1024, 1500, 2524, 3000, 4024, 4500, 5000])
  })

  it('refuses a source that yields fewer or more bytes than it stated, before the terminator', async () => {
    for (const [yielded, stated] of [[3000, 4000], [5000, 4000]]) {
      const [a] = await streamPair()
      const tx = new FramedStream(a, init)
      await assert.rejects(tx.writePayload(sourceOf(pattern(yielded), 1000, stated), {}), PayloadSourceChangedError)
    }
  })
})
