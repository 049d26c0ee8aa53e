/**
 * `PUT /v1/blobs/{cid}` through the real API server and a real blob store:
 * bytes streamed to disk and checked against their CID, nothing left behind
 * by a wrong CID, an oversize body or a connection cut mid-way.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { join } from 'node:path'
import { after, afterEach, before, describe, it } from 'node:test'
import { ApiClient } from '../../src/api/client.ts'
import { fileRawCid, rawCidOfDigest } from '../../src/api/blobs.ts'
import { ApiServer } from '../../src/api/server.ts'
import { BlobStore, submittedPayload } from '../../src/broker/blob-store.ts'
import { rawCidString } from '../../src/codec/cid.ts'
import { ensureDataDir } from '../../src/config/data-dir.ts'
import { ApiError } from '../../src/core/errors.ts'
import { tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'
import { routes, type ApiHandlers } from '../../src/api/routes.ts'
import type { DaemonStatus } from '../../src/core/types.ts'
import type { JobView } from '../../src/core/job.ts'

const dir = tempDir('wc-api-blobs-')
after(() => { dir.cleanup() })

const LIMIT = 4 * 1024 * 1024

function handlers (blobs: BlobStore): ApiHandlers {
  const unused = async (): Promise<never> => { throw new Error('not called by an upload') }
  return {
    health: unused, status: async (): Promise<DaemonStatus> => await unused(), dials: unused, ping: unused, submitJob: unused, job: unused, jobs: unused, jobFiles: unused, cancelJob: unused, pause: unused, resume: unused, donated: unused,
    putBlob: async ({ cid, body }, { signal }) => await blobs.put(cid, body, { signal })
  }
}

function bytesOf (size: number, seed: number): Buffer {
  const b = Buffer.alloc(size)
  for (let i = 0; i < size; i++) b[i] = (i * seed + (i >> 10)) & 0xff
  return b
}

describe('PUT /v1/blobs/{cid}', () => {
  const dataDir = join(dir.path, 'data')
  const blobDir = join(dataDir, 'blobs')
  let server: ApiServer
  let client: ApiClient
  let blobs: BlobStore
  before(async () => {
    blobs = new BlobStore({ dir: blobDir, maxBlobBytes: LIMIT })
    server = new ApiServer({ paths: ensureDataDir(dataDir), port: 0, handlers: handlers(blobs), version: 'test' })
    await server.start()
    client = new ApiClient({ dataDir })
  })
  after(async () => { await server.stop() })

  it('the CID the API computes is the codec\'s CID of the same bytes', async () => {
    const bytes = bytesOf(100_000, 3)
    const file = join(dir.path, 'same.bin')
    writeFileSync(file, bytes)
    assert.equal(await fileRawCid(file), rawCidString(bytes))
    assert.equal(rawCidOfDigest(createHash('sha256').update(new Uint8Array(0)).digest()), rawCidString(new Uint8Array(0)))
  })

  it('stores a file under its CID, streamed to disk, and a second upload of it keeps nothing new', async () => {
    const bytes = bytesOf(3 * 1024 * 1024 + 17, 7)
    const file = join(dir.path, 'good.bin')
    writeFileSync(file, bytes)
    const cid = await fileRawCid(file)
    assert.deepEqual(await client.putBlob(cid, file), { cid, size: bytes.byteLength, stored: true })
    assert.ok(readFileSync(join(blobDir, cid)).equals(bytes))
    assert.deepEqual(await client.putBlob(cid, file), { cid, size: bytes.byteLength, stored: false })
    assert.equal(blobs.source(cid).byteLength, bytes.byteLength)
  })

  it('refuses bytes that do not hash to the CID, with BLOB_CID_MISMATCH, and keeps no part of them', async () => {
    const file = join(dir.path, 'liar.bin')
    writeFileSync(file, bytesOf(200_000, 5))
    const cid = rawCidString(bytesOf(200_000, 11))
    await assert.rejects(client.putBlob(cid, file), (err: unknown) => err instanceof ApiError && err.code === 'BLOB_CID_MISMATCH' && err.status === 422)
    assert.equal(existsSync(join(blobDir, cid)), false)
    assert.deepEqual(readdirSync(blobDir).filter(n => n.endsWith('.part')), [])
  })

  it('refuses a CID that names no raw blob before reading the body', async () => {
    const file = join(dir.path, 'small.bin')
    writeFileSync(file, 'hi')
    // a dag-cbor CID: the address of a document, never of a module or input
    await assert.rejects(client.putBlob('bafyreigdmqpykrgxyaxtlafqpqhzrb7qy2rh75nldvfd4tucqmqqme5yje', file), (err: unknown) => err instanceof ApiError && err.code === 'BLOB_CID_INVALID')
  })

  it('cuts off an upload over the size limit with 413 TOO_LARGE and keeps no part of it', async () => {
    const bytes = bytesOf(LIMIT + 1024 * 1024, 13)
    const file = join(dir.path, 'big.bin')
    writeFileSync(file, bytes)
    const cid = rawCidString(bytes)
    const status = await rawPut(cid, bytes, { port: server.port, token: client.endpoint().token })
    // the server answers before the client has sent everything: either the answer or a reset reaches us
    assert.ok(status === 413 || status === 'reset', `status ${status}`)
    await waitFor('the part file removed', () => readdirSync(blobDir).some(n => n.endsWith('.part')) ? undefined : true, 5_000)
    assert.equal(existsSync(join(blobDir, cid)), false)
  })

  it('refuses a body declared over the route\'s cap with 413 before reading it', async () => {
    const token = client.endpoint().token
    const status = await new Promise<number>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: server.port, method: 'PUT', path: `/v1/blobs/${rawCidString(new Uint8Array(1))}`, headers: { authorization: `Bearer ${token}`, 'content-length': 5 * 1024 * 1024 * 1024 } }, (res) => {
        res.resume()
        resolve(res.statusCode ?? 0)
        req.destroy()
      })
      req.on('error', (err) => { if (!req.destroyed) reject(err) })
      req.write('x')
    })
    assert.equal(status, 413)
  })

  it('removes the part file of an upload whose connection is cut mid-way', async () => {
    const bytes = bytesOf(2 * 1024 * 1024, 17)
    const cid = rawCidString(bytes)
    const token = client.endpoint().token
    const req = request({ host: '127.0.0.1', port: server.port, method: 'PUT', path: `/v1/blobs/${cid}`, headers: { authorization: `Bearer ${token}`, 'content-length': bytes.byteLength } })
    req.on('error', () => {})
    req.write(bytes.subarray(0, 1024 * 1024))
    await waitFor('a part file being written', () => readdirSync(blobDir).some(n => n.endsWith('.part')) ? true : undefined, 5_000)
    req.destroy()
    await waitFor('the part file removed', () => readdirSync(blobDir).some(n => n.endsWith('.part')) ? undefined : true, 5_000)
    assert.equal(existsSync(join(blobDir, cid)), false)
  })
})

function queuedView (jobId: string, moduleCid: string, inputCid: string): JobView {
  return { jobId, status: 'queued', final: false, message: 'queued', exitCode: null, error: null, outputCid: null, fuelUsed: null, durationMs: 0, replicasWanted: 1, replicas: [], moduleCid, inputCid, createdAt: new Date().toISOString(), finishedAt: null }
}

describe('ApiClient.submitJobByCid', () => {
  const dataDir = join(dir.path, 'by-cid')
  let server: ApiServer
  let client: ApiClient
  let blobs: BlobStore
  /** what each submit named: the module's CID, or the size of its base64 */
  const submits: Array<{ moduleCid?: string, inlineBytes: number }> = []
  const uploads: string[] = []
  const module = bytesOf(30_000, 19)
  const moduleCid = rawCidString(module)

  /** A daemon's submit as daemon.ts makes it: a CID it does not hold is BLOB_NOT_FOUND (submittedPayload). */
  function submittingHandlers (withUploads: boolean): ApiHandlers {
    const base = handlers(blobs)
    return {
      ...base,
      putBlob: withUploads ? async (req, options) => { uploads.push(req.cid); return await blobs.put(req.cid, req.body, options) } : undefined,
      submitJob: async (req) => {
        submits.push({ ...(req.moduleCid != null ? { moduleCid: req.moduleCid } : {}), inlineBytes: Buffer.from(req.module, 'base64').byteLength })
        const module = submittedPayload(blobs, req.module, req.moduleCid)
        const input = submittedPayload(blobs, req.input, req.inputCid)
        return queuedView(`job-${submits.length}`, module.cid, input.cid)
      }
    }
  }

  async function serve (withUploads: boolean): Promise<void> {
    submits.length = 0
    uploads.length = 0
    server = new ApiServer({ paths: ensureDataDir(dataDir), port: 0, handlers: submittingHandlers(withUploads), version: 'test' })
    await server.start()
    client = new ApiClient({ dataDir })
  }
  afterEach(async () => { await server.stop() })

  it('uploads the module once, when the daemon answers BLOB_NOT_FOUND, and names it by CID alone after', async () => {
    blobs = new BlobStore({ dir: join(dataDir, 'blobs-1') })
    await serve(true)
    const request = { input: '', moduleName: 'm.wasm', args: [], env: [], replicas: 1, limits: {} }
    assert.equal((await client.submitJobByCid(request, module)).jobId, 'job-2')
    assert.deepEqual(uploads, [moduleCid])
    assert.deepEqual(submits, [{ moduleCid, inlineBytes: 0 }, { moduleCid, inlineBytes: 0 }])
    assert.equal((await client.submitJobByCid(request, module)).jobId, 'job-3')
    assert.deepEqual(uploads, [moduleCid], 'no second upload')
    assert.equal(submits.length, 3)
    assert.deepEqual(submits[2], { moduleCid, inlineBytes: 0 })
  })

  it('names a module changed in place between two submits by its new CID', async () => {
    blobs = new BlobStore({ dir: join(dataDir, 'blobs-4') })
    await serve(true)
    const request = { input: '', moduleName: 'm.wasm', args: [], env: [], replicas: 1, limits: {} }
    const changing = Uint8Array.from(module)
    await client.submitJobByCid(request, changing)
    changing[100] ^= 0xff
    await client.submitJobByCid(request, changing)
    const changedCid = rawCidString(changing)
    assert.notEqual(changedCid, moduleCid)
    assert.deepEqual(submits.map(x => x.moduleCid), [moduleCid, moduleCid, changedCid, changedCid], 'each version named by its own CID, each uploaded once')
    assert.deepEqual(uploads, [moduleCid, changedCid])
  })

  it('sends the module inline to a daemon that takes no uploads (NOT_AVAILABLE)', async () => {
    blobs = new BlobStore({ dir: join(dataDir, 'blobs-2') })
    await serve(false)
    const accepted = await client.submitJobByCid({ input: '', moduleName: 'm.wasm', args: [], env: [], replicas: 1, limits: {} }, module)
    assert.equal(accepted.jobId, 'job-2')
    assert.deepEqual(submits, [{ moduleCid, inlineBytes: 0 }, { inlineBytes: module.byteLength }])
  })

  it('an input CID the daemon lacks still ends in BLOB_NOT_FOUND, after one upload of the module', async () => {
    blobs = new BlobStore({ dir: join(dataDir, 'blobs-3') })
    await serve(true)
    const inputCid = rawCidString(bytesOf(100, 23))
    await assert.rejects(client.submitJobByCid({ input: '', inputCid, moduleName: 'm.wasm', args: [], env: [], replicas: 1, limits: {} }, module),
      (err: unknown) => err instanceof ApiError && err.code === 'BLOB_NOT_FOUND')
    assert.deepEqual(uploads, [moduleCid])
    assert.equal(submits.length, 2)
  })

  it('passes on a refusal other than BLOB_NOT_FOUND without uploading', async () => {
    blobs = new BlobStore({ dir: join(dataDir, 'blobs-4') })
    await serve(true)
    await assert.rejects(client.submitJobByCid({ input: 'not base64!', moduleName: 'm.wasm', args: [], env: [], replicas: 1, limits: {} }, module),
      (err: unknown) => err instanceof ApiError && err.code === 'BAD_REQUEST')
    assert.deepEqual(uploads, [])
  })
})

/** A PUT of `bytes` with node:http: the status, or 'reset' when the server closed the connection first. */
async function rawPut (cid: string, bytes: Buffer, target: { port: number, token: string }): Promise<number | 'reset'> {
  return await new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port: target.port, method: 'PUT', path: `/v1/blobs/${cid}`, headers: { authorization: `Bearer ${target.token}`, 'content-length': bytes.byteLength } }, (res) => {
      res.resume()
      resolve(res.statusCode ?? 0)
    })
    req.on('error', () => { resolve('reset') })
    req.end(bytes)
  })
}

describe('a submit naming blobs by CID', () => {
  const cid = rawCidString(new Uint8Array([1, 2, 3]))
  const parse = routes.submitJob.parseRequest

  it('takes moduleCid, inputCid and a file cid in place of their base64 bytes', () => {
    const req = parse({ moduleCid: cid, inputCid: cid, dirs: [{ guest: '/data', files: [{ path: 'a.bin', cid }] }] })
    assert.equal(req.moduleCid, cid)
    assert.equal(req.module, '')
    assert.equal(req.inputCid, cid)
    assert.equal(req.input, '')
    assert.deepEqual(req.dirs?.[0].files, [{ path: 'a.bin', data: '', cid }])
  })

  it('still takes the base64 fields alone', () => {
    const req = parse({ module: 'AGFzbQ==', input: 'aGk=' })
    assert.equal(req.module, 'AGFzbQ==')
    assert.equal(req.input, 'aGk=')
    assert.equal(req.moduleCid, undefined)
  })

  it('refuses bytes and a CID for the same part, and a CID that is not base32', () => {
    assert.throws(() => parse({ module: 'AGFzbQ==', moduleCid: cid }), /give module or moduleCid, not both/)
    assert.throws(() => parse({ module: 'AGFzbQ==', inputCid: 'QmNotBase32' }), /inputCid must be a CIDv1 in base32/)
    assert.throws(() => parse({ module: 'AGFzbQ==', dirs: [{ guest: '/d', files: [{ path: 'a', data: 'aGk=', cid }] }] }), /give data or cid, not both/)
  })
})
