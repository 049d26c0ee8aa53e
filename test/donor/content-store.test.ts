import assert from 'node:assert/strict'
import { mkdtempSync, readdirSync, rmSync, truncateSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { rawCidString } from '../../src/codec/cid.ts'
import { ContentStore } from '../../src/donor/content-store.ts'
import { ContentCidMismatchError, ContentTooLargeError } from '../../src/protocols/fetch/index.ts'

function blob (size: number, fill: number): Uint8Array {
  return new Uint8Array(size).fill(fill)
}

/** Writes `bytes` into the store in chunks, as a fetch does. */
async function put (store: ContentStore, bytes: Uint8Array, chunk = 1000): Promise<void> {
  const write = await store.begin(rawCidString(bytes), bytes.byteLength)
  for (let at = 0; at < bytes.byteLength; at += chunk) await write.write(bytes.subarray(at, at + chunk))
  await write.commit()
}

describe('the donor\'s content store', () => {
  let root: string
  let n = 0
  const dir = (): string => join(root, `store-${n++}`)
  before(() => { root = mkdtempSync(join(tmpdir(), 'wc-content-')) })
  after(() => { rmSync(root, { recursive: true, force: true }) })

  it('keeps a blob written in chunks under its CID and reads it back', async () => {
    const store = new ContentStore({ dir: dir() })
    const bytes = blob(5000, 1)
    await put(store, bytes)
    assert.ok(store.has(rawCidString(bytes)))
    assert.deepEqual(await store.read(rawCidString(bytes)), bytes)
    assert.equal(store.bytes, 5000)
  })

  it('reads a blob of many megabytes back whole, in as few reads as it takes, and a file changed under it as it is at open', async () => {
    const at = dir()
    const store = new ContentStore({ dir: at })
    const bytes = new Uint8Array(3 * 1024 * 1024 + 17)
    for (let i = 0; i < bytes.byteLength; i++) bytes[i] = (i * 7 + (i >> 12)) & 0xff
    await put(store, bytes, 256 * 1024)
    assert.deepEqual(await store.read(rawCidString(bytes)), bytes)
    // cut under the store's feet after it was named: what the file holds comes back (a dispatch checks its CID)
    truncateSync(join(at, rawCidString(bytes)), 1000)
    assert.deepEqual(await store.read(rawCidString(bytes)), bytes.subarray(0, 1000))
  })

  it('keeps nothing, no part file either, of bytes that do not hash to the CID', async () => {
    const at = dir()
    const store = new ContentStore({ dir: at })
    const claimed = blob(100, 2)
    const write = await store.begin(rawCidString(claimed), 100)
    await write.write(blob(100, 3))
    await assert.rejects(write.commit(), (err: unknown) => err instanceof ContentCidMismatchError && err.code === 'CONTENT_CID_MISMATCH')
    await write.abort()
    assert.equal(store.has(rawCidString(claimed)), false)
    assert.deepEqual(readdirSync(at), [])
    assert.equal(store.bytes, 0)
  })

  it('removes the part file of a write given up half-way', async () => {
    const at = dir()
    const store = new ContentStore({ dir: at })
    const bytes = blob(4000, 4)
    const write = await store.begin(rawCidString(bytes), bytes.byteLength)
    await write.write(bytes.subarray(0, 1000))
    assert.equal(write.written, 1000)
    await write.abort()
    assert.deepEqual(readdirSync(at), [])
  })

  it('evicts the least recently used blobs to stay under its cap', async () => {
    const store = new ContentStore({ dir: dir(), maxBytes: 3000 })
    const [a, b, c] = [blob(1000, 5), blob(1000, 6), blob(1000, 7)]
    await put(store, a)
    await put(store, b)
    await put(store, c)
    await store.read(rawCidString(a))
    const d = blob(1000, 8)
    await put(store, d)
    assert.deepEqual([a, b, c, d].map(x => store.has(rawCidString(x))), [true, false, true, true], 'b, used least recently, went')
    assert.equal(store.bytes, 3000)
  })

  it('refuses a blob larger than the whole store with CONTENT_TOO_LARGE', async () => {
    const store = new ContentStore({ dir: dir(), maxBytes: 1000 })
    const bytes = blob(1001, 9)
    await assert.rejects(store.begin(rawCidString(bytes), bytes.byteLength), (err: unknown) => err instanceof ContentTooLargeError && err.code === 'CONTENT_TOO_LARGE')
  })

  it('finds what a previous run kept, oldest use first, and drops its part files and stray names', async () => {
    const at = dir()
    const first = new ContentStore({ dir: at, maxBytes: 2000 })
    const [old, recent] = [blob(1000, 10), blob(1000, 11)]
    await put(first, old)
    await put(first, recent)
    utimesSync(join(at, rawCidString(old)), new Date(1000), new Date(1000))
    writeFileSync(join(at, `${rawCidString(old)}.abc.part`), 'cut short')
    writeFileSync(join(at, 'not-a-cid'), 'x')
    const second = new ContentStore({ dir: at, maxBytes: 2000 })
    assert.equal(second.bytes, 2000)
    await put(second, blob(1000, 12))
    assert.equal(second.has(rawCidString(old)), false, 'the blob used longest ago went first')
    assert.equal(second.has(rawCidString(recent)), true)
    assert.equal(readdirSync(at).some(name => name.endsWith('.part') || name === 'not-a-cid'), false)
  })
})
