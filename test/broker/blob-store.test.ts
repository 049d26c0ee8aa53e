import assert from 'node:assert/strict'
import { existsSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { BlobCidMismatchError, BlobNotFoundError, BlobStore, BlobTooLargeError, submittedFile, submittedPayload } from '../../src/broker/blob-store.ts'
import { JobStore, ON_DISK, type JobSpec } from '../../src/broker/job-store.ts'
import { rawCidString } from '../../src/codec/cid.ts'
import { loadTree, submittedTree } from '../../src/broker/job-tree.ts'
import { addressTree } from '../../src/codec/manifest.ts'
import { tempDir } from '../helpers/mesh.ts'

/** Big blobs as files of the data directory: written as they arrive, checked, read back in chunks, deleted with the jobs that used them. */

const dir = tempDir('wc-blob-store-')
after(() => { dir.cleanup() })

async function * chunksOf (bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.byteLength; i += size) yield bytes.subarray(i, i + size)
}

async function collect (source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const c of source) parts.push(c)
  return Buffer.concat(parts)
}

function pattern (size: number): Uint8Array {
  const b = new Uint8Array(size)
  for (let i = 0; i < size; i++) b[i] = (i * 13 + (i >> 9)) & 0xff
  return b
}

describe('blob store', () => {
  it('keeps bytes that hash to their CID and reads them back in chunks of its own', async () => {
    const blobs = new BlobStore({ dir: join(dir.path, 'round-trip') })
    const bytes = pattern(3 * 1024 * 1024 + 5)
    const cid = rawCidString(bytes)
    assert.deepEqual(await blobs.put(cid, chunksOf(bytes, 64 * 1024)), { cid, size: bytes.byteLength, stored: true })
    const source = blobs.source(cid)
    assert.equal(source.byteLength, bytes.byteLength)
    assert.ok((await collect(source.chunks())).equals(bytes))
    assert.deepEqual(submittedPayload(blobs, '', cid).cid, cid)
  })

  it('hands a small blob to the broker as its bytes, read whole, and a bigger one as a source read in chunks', async () => {
    const blobs = new BlobStore({ dir: join(dir.path, 'payload') })
    const small = pattern(1000)
    const big = pattern(70_000)
    await blobs.put(rawCidString(small), chunksOf(small, 100))
    await blobs.put(rawCidString(big), chunksOf(big, 10_000))
    const whole = blobs.payload(rawCidString(small), 64 * 1024)
    assert.ok(whole instanceof Uint8Array)
    assert.ok(Buffer.from(whole).equals(small))
    const chunked = blobs.payload(rawCidString(big), 64 * 1024)
    assert.ok(!(chunked instanceof Uint8Array))
    assert.ok((await collect(chunked.chunks())).equals(big))
    assert.throws(() => blobs.payload(rawCidString(pattern(10)), 64 * 1024), BlobNotFoundError)
  })

  it('keeps nothing of bytes that hash to another CID, or of more bytes than its limit', async () => {
    const at = join(dir.path, 'refused')
    const blobs = new BlobStore({ dir: at, maxBlobBytes: 1024 })
    await assert.rejects(blobs.put(rawCidString(pattern(100)), chunksOf(pattern(101), 10)), BlobCidMismatchError)
    await assert.rejects(blobs.put(rawCidString(pattern(2048)), chunksOf(pattern(2048), 100)), BlobTooLargeError)
    assert.deepEqual(readdirSync(at), [])
    assert.throws(() => blobs.source(rawCidString(pattern(100))), BlobNotFoundError)
  })

  it('deletes part files a stopped daemon left when it opens', () => {
    const at = join(dir.path, 'leftover')
    assert.equal(new BlobStore({ dir: at }).dir, at)
    writeFileSync(join(at, 'bafkreiabc.123456.part'), 'half')
    assert.equal(new BlobStore({ dir: at }).dir, at)
    assert.deepEqual(readdirSync(at), [])
  })

  it('deletes a blob file once the job store no longer refers to it and its upload is older than the grace', async () => {
    const blobs = new BlobStore({ dir: join(dir.path, 'retention') })
    const store = new JobStore(join(dir.path, 'retention.sqlite'))
    const input = pattern(100_000)
    const inputCid = rawCidString(input)
    await blobs.put(inputCid, chunksOf(input, 4096))
    const orphan = pattern(5000)
    const orphanCid = rawCidString(orphan)
    await blobs.put(orphanCid, chunksOf(orphan, 4096))
    const module = new Uint8Array([0, 97, 115, 109])
    const spec: JobSpec = { jobId: 'job-1', moduleCid: rawCidString(module), inputCid, moduleName: 'm.wasm', args: [], env: [], limits: {}, replicas: 1 }
    store.createJob(spec, module, ON_DISK)
    assert.equal(store.getBlob(inputCid), undefined, 'an on-disk blob has no bytes in the table')
    assert.equal(store.blobOnDisk(inputCid), true)
    const referenced = (cid: string): boolean => store.blobOnDisk(cid)
    // a fresh upload no job names yet waits for its submit
    assert.equal(blobs.sweep(referenced), 0)
    const old = new Date(Date.now() - 2 * 60 * 60 * 1000)
    for (const cid of [inputCid, orphanCid]) utimesSync(join(blobs.dir, cid), old, old)
    assert.equal(blobs.sweep(referenced), 1, 'only the upload no job names goes')
    assert.equal(existsSync(join(blobs.dir, orphanCid)), false)
    store.finishJob('job-1', 'completed', { status: 'succeeded', exitCode: 0, agreeing: 1, message: 'ok' })
    assert.equal(store.prune(0), 1)
    assert.equal(blobs.sweep(referenced), 1, 'the pruned job\'s input goes with it')
    assert.deepEqual(readdirSync(blobs.dir), [])
    store.close()
  })

  it('stores a directory file uploaded as a blob without its bytes, keeps it from the sweep while its job is kept, and loads it back as a source', async () => {
    const blobs = new BlobStore({ dir: join(dir.path, 'tree-files') })
    const store = new JobStore(join(dir.path, 'tree-files.sqlite'))
    const big = pattern(3 * 1024 * 1024)
    const bigCid = rawCidString(big)
    await blobs.put(bigCid, chunksOf(big, 65536))
    const small = new TextEncoder().encode('small file')
    const files = [submittedFile(blobs, { path: '/data/big.bin', data: '', cid: bigCid }), submittedFile(blobs, { path: '/data/small.txt', data: Buffer.from(small).toString('base64') })]
    const tree = submittedTree([{ guest: '/data', files }])
    assert.ok(tree != null)
    // the same manifest as the one addressed from the bytes: the donor checks it against its files' bytes
    assert.equal(tree.manifestCid, addressTree([{ guest: '/data', files: [{ path: '/data/big.bin', data: big }, { path: '/data/small.txt', data: small }] }]).manifestCid)
    const module = new Uint8Array([0, 97, 115, 109])
    const spec: JobSpec = { jobId: 'job-tree', moduleCid: rawCidString(module), inputCid: rawCidString(new Uint8Array(0)), moduleName: 'm.wasm', args: [], env: [], limits: {}, replicas: 1, manifestCid: tree.manifestCid }
    store.createJob(spec, module, new Uint8Array(0), tree)
    assert.equal(store.getBlob(bigCid), undefined, 'the big file has no bytes in the table')
    assert.equal(store.blobOnDisk(bigCid), true)
    assert.deepEqual(store.getBlob(rawCidString(small)), small, 'a file sent inline keeps its bytes in the table')
    assert.ok(statSync(store.path).size < big.byteLength / 4, `the database is ${statSync(store.path).size} bytes`)
    const loaded = loadTree(store, tree.manifestCid, cid => store.getBlob(cid) ?? (store.blobOnDisk(cid) ? blobs.source(cid) : undefined))
    assert.ok(loaded != null)
    const source = loaded.blobs.get(bigCid)
    assert.ok(source != null && !(source instanceof Uint8Array), 'the big file comes back as a source, not bytes')
    assert.equal(source.byteLength, big.byteLength)
    assert.deepEqual(await collect(source.chunks()), Buffer.from(big))
    const old = new Date(Date.now() - 2 * 60 * 60 * 1000)
    utimesSync(join(blobs.dir, bigCid), old, old)
    assert.equal(blobs.sweep(cid => store.blobOnDisk(cid)), 0, 'a file of a kept job stays')
    store.finishJob('job-tree', 'completed', { status: 'succeeded', exitCode: 0, agreeing: 1, message: 'ok' })
    assert.equal(store.prune(0), 1)
    assert.equal(blobs.sweep(cid => store.blobOnDisk(cid)), 1, 'the pruned job\'s file goes with it')
    store.close()
  })

  it('a blob both a file and bytes in the table is read from the table', () => {
    const store = new JobStore(join(dir.path, 'both.sqlite'))
    const module = new Uint8Array([0, 97, 115, 109])
    const input = pattern(1000)
    const base = { moduleCid: rawCidString(module), inputCid: rawCidString(input), moduleName: 'm.wasm', args: [], env: [], limits: {}, replicas: 1 }
    store.createJob({ ...base, jobId: 'job-a' }, module, ON_DISK)
    assert.equal(store.blobOnDisk(base.inputCid), true)
    store.createJob({ ...base, jobId: 'job-b' }, module, input)
    assert.equal(store.blobOnDisk(base.inputCid), false)
    assert.deepEqual(store.getBlob(base.inputCid), input)
    store.close()
  })
})
