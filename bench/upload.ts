/**
 * Blob upload throughput (issue 15, big data): `PUT /v1/blobs/{cid}` through
 * the real API server (token, routing) into the real blob store (hashed as
 * it arrives, written to a part file, fsynced, renamed), sent by the real
 * client (`uploadBlob`, a file streamed from disk), against a plain loopback
 * HTTP PUT of the same file into a file on the same disk (no hash, no
 * fsync, no rename) in the same run. Rounds alternate the two; each upload
 * goes under a fresh CID-checked name (the store deletes the last one), so
 * none is answered from a blob held already.
 *
 * A second row: a donor's fetch of a blob by CID (`/worldcompute/fetch/1.0.0`
 * between two libp2p nodes on 127.0.0.1 over TCP, Noise and yamux: framed,
 * hashed, written to the content store, fsynced and handed back whole, as the
 * donor does before running the task) against a plain libp2p stream of the
 * same bytes on the same connection whose reader only counts them.
 *
 * A third row: the same fetch and plain stream over a path of 50 ms round
 * trip (a delay line on 127.0.0.1 holding every chunk 25 ms each way). A
 * fetch asks for a blob in 8 MiB ranges, one range ahead, so the figure shows
 * what the requests' round trips cost beside the plain stream.
 *
 *   node_modules/.bin/node bench/upload.ts [--quick] [--json-out FILE]
 */
import { createReadStream, createWriteStream, mkdtempSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs'
import { createServer, request, type Server } from 'node:http'
import { connect, createServer as createNetServer, type Socket } from 'node:net'
import { multiaddr } from '@multiformats/multiaddr'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { pipeline } from 'node:stream/promises'
import { fileRawCid, uploadBlob } from '../src/api/blobs.ts'
import { ApiServer } from '../src/api/server.ts'
import { BlobStore } from '../src/broker/blob-store.ts'
import { ensureDataDir } from '../src/config/data-dir.ts'
import { benchMain, row } from './lib/report.ts'
import { summarize } from './lib/stats.ts'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { tcp } from '@libp2p/tcp'
import { createLibp2p, type Libp2p } from 'libp2p'
import { rawCidString } from '../src/codec/cid.ts'
import { portOf } from '../src/core/format.ts'
import { ContentStore } from '../src/donor/content-store.ts'
import { fetch, type FetchService } from '../src/protocols/fetch/index.ts'
import type { ApiHandlers } from '../src/api/routes.ts'
import type { BenchRow } from './lib/report.ts'
import type { Connection } from '@libp2p/interface'
import type { DaemonStatus } from '../src/core/types.ts'

const MiB = 1024 * 1024

function handlers (blobs: BlobStore): ApiHandlers {
  const unused = async (): Promise<never> => { throw new Error('not part of the upload bench') }
  return {
    health: unused, status: async (): Promise<DaemonStatus> => await unused(), dials: unused, ping: unused, submitJob: unused, job: unused, jobs: unused, jobFiles: unused, cancelJob: unused, pause: unused, resume: unused, donated: unused,
    putBlob: async ({ cid, body }, { signal }) => await blobs.put(cid, body, { signal })
  }
}

/** The baseline: a PUT whose body goes straight into a file. */
async function plainServer (dir: string): Promise<{ server: Server, port: number }> {
  const server = createServer((req, res) => {
    const path = join(dir, 'plain.bin')
    pipeline(req, createWriteStream(path)).then(() => { res.end('{}') }, (err: Error) => { res.statusCode = 500; res.end(err.message) })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  return { server, port: typeof address === 'object' && address != null ? address.port : 0 }
}

async function plainPut (port: number, path: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: 'PUT', path: '/plain', headers: { 'content-length': statSync(path).size } }, (res) => {
      res.resume()
      res.on('end', () => { res.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`)) })
    })
    req.on('error', reject)
    createReadStream(path).pipe(req)
  })
}

/** A file of `size` bytes whose first 8 bytes are `round`: a new CID each round. */
function writeRoundFile (path: string, size: number, round: number): void {
  const bytes = Buffer.alloc(size)
  for (let i = 0; i < size; i += 4096) bytes[i] = (i >> 12) & 0xff
  bytes.writeBigUInt64BE(BigInt(round), 0)
  writeFileSync(path, bytes)
}

const PLAIN_PROTOCOL = '/bench/plain-bytes/1.0.0'

async function fetchNode (service: ReturnType<typeof fetch>): Promise<Libp2p<{ fetch: FetchService }>> {
  return await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()], services: { fetch: service } })
}

/** The baseline: `bytes` written in 256 KiB chunks on a plain stream, the reader counting them. */
async function plainStream (conn: Connection, bytes: Uint8Array): Promise<void> {
  const stream = await conn.newStream(PLAIN_PROTOCOL)
  for (let at = 0; at < bytes.byteLength; at += 256 * 1024) {
    if (!stream.send(bytes.subarray(at, at + 256 * 1024))) await new Promise(resolve => stream.addEventListener('drain', resolve, { once: true }))
  }
  await stream.close()
}

/** Donor fetch by CID against a plain stream of the same bytes, rounds alternating. */
async function fetchRow (dir: string, size: number, rounds: number, cleanup: { add: (name: string, f: () => void | Promise<void>) => void }, delayMs = 0): Promise<BenchRow> {
  const store = new ContentStore({ dir: join(dir, 'content'), maxBytes: 2 * size })
  const broker = await fetchNode(fetch({ serve: true }))
  const donor = await fetchNode(fetch({ store }))
  cleanup.add('libp2p nodes', async () => { await broker.stop(); await donor.stop() })
  let counted = 0
  let arrived = (): void => {}
  await broker.handle(PLAIN_PROTOCOL, (stream) => {
    stream.addEventListener('message', (evt) => { counted += evt.data.byteLength })
    // the whole payload has arrived when the sender's end closes
    stream.addEventListener('remoteCloseWrite', () => { arrived(); void stream.close() })
  })
  let target = broker.getMultiaddrs()[0]
  if (delayMs > 0) {
    const line = await delayLine(portOf(target.toString()) ?? 0, delayMs)
    cleanup.add('delay line', line.close)
    target = multiaddr(`/ip4/127.0.0.1/tcp/${line.port}/p2p/${broker.peerId.toString()}`)
  }
  const path = delayMs > 0 ? `, ${2 * delayMs} ms round trip` : ''
  const conn = await donor.dial(target)
  const fetchRate: number[] = []
  const plainRate: number[] = []
  for (let r = 0; r < rounds; r++) {
    const bytes = new Uint8Array(size).fill(r + 1)
    const cid = rawCidString(bytes)
    const release = broker.services.fetch.grant(donor.peerId.toString(), cid, bytes)
    let t = performance.now()
    await donor.services.fetch.fetch(conn, { cid, size, what: 'input' })
    fetchRate.push(size / MiB / ((performance.now() - t) / 1000))
    release()
    rmSync(join(store.dir, cid))
    const before = counted
    const done = new Promise<void>(resolve => { arrived = resolve })
    t = performance.now()
    await plainStream(conn, bytes)
    await done
    plainRate.push(size / MiB / ((performance.now() - t) / 1000))
    if (counted - before !== size) throw new Error(`the plain stream delivered ${counted - before} of ${size} bytes`)
  }
  return row({ benchmark: `donor fetch by CID ${size / MiB} MiB${path} (MiB/s)`, baselineName: `plain libp2p stream of the same bytes${path}`, baseline: summarize(plainRate), figure: summarize(fetchRate), unit: 'MiB/s', ratioLabel: 'fetch / plain stream', target: { op: '>=', value: 0.5 } })
}

/** the delayed path: 25 ms each way through a delay line in front of the broker */
const ONE_WAY_DELAY_MS = 25

/**
 * A TCP delay line on 127.0.0.1 in front of `target`: every chunk is passed
 * on `delayMs` after it arrived, in order, both ways. The kernel's netem is
 * not in every kernel (nor in this machine's), and latency is what the row
 * is about: the line buffers whatever arrives, so it adds delay, not a
 * bandwidth limit.
 */
async function delayLine (targetPort: number, delayMs: number): Promise<{ port: number, close: () => void }> {
  const sockets = new Set<Socket>()
  const pass = (from: Socket, to: Socket): void => {
    from.on('data', (chunk: Buffer) => { setTimeout(() => { if (!to.destroyed) to.write(chunk) }, delayMs) })
    from.on('end', () => { setTimeout(() => { to.end() }, delayMs) })
    from.on('error', (err) => { to.destroy(err) })
  }
  const server = createNetServer((inbound) => {
    const outbound = connect(targetPort, '127.0.0.1')
    for (const s of [inbound, outbound]) { s.setNoDelay(true); sockets.add(s); s.on('close', () => sockets.delete(s)) }
    pass(inbound, outbound)
    pass(outbound, inbound)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  return {
    port: typeof address === 'object' && address != null ? address.port : 0,
    close: () => { for (const s of sockets) s.destroy(); server.close() }
  }
}

await benchMain('upload', { quick: 120_000, full: 300_000 }, async (args, cleanup) => {
  const size = (args.quick ? 64 : 256) * MiB
  const rounds = args.quick ? 3 : 5
  const dir = mkdtempSync(join(tmpdir(), 'wc-bench-upload-'))
  cleanup.add('temp dir', () => { rmSync(dir, { recursive: true, force: true }) })
  const blobs = new BlobStore({ dir: join(dir, 'data', 'blobs') })
  const paths = ensureDataDir(join(dir, 'data'))
  const api = new ApiServer({ paths, port: 0, handlers: handlers(blobs), version: 'bench' })
  await api.start()
  cleanup.add('API server', async () => { await api.stop() })
  const plain = await plainServer(dir)
  cleanup.add('plain server', () => { plain.server.close() })
  const token = readFileSync(paths.apiToken, 'utf8').trim()
  const source = join(dir, 'source.bin')
  const blobRate: number[] = []
  const plainRate: number[] = []
  for (let r = 0; r < rounds; r++) {
    writeRoundFile(source, size, r)
    const cid = await fileRawCid(source)
    let t = performance.now()
    await uploadBlob({ port: api.port, token }, cid, source)
    blobRate.push(size / MiB / ((performance.now() - t) / 1000))
    unlinkSync(join(blobs.dir, cid))
    t = performance.now()
    await plainPut(plain.port, source)
    plainRate.push(size / MiB / ((performance.now() - t) / 1000))
  }
  const figure = summarize(blobRate)
  const baseline = summarize(plainRate)
  const rttSize = (args.quick ? 32 : 64) * MiB
  return {
    bench: 'upload',
    rows: [
      row({ benchmark: `upload ${size / MiB} MiB: PUT /v1/blobs/{cid} (MiB/s)`, baselineName: 'plain loopback HTTP PUT to a file', baseline, figure, unit: 'MiB/s', ratioLabel: 'blob upload / plain PUT', target: { op: '>=', value: 0.5 } }),
      await fetchRow(dir, size, rounds, cleanup),
      await fetchRow(join(dir, 'rtt'), rttSize, rounds, cleanup, ONE_WAY_DELAY_MS)
    ],
    notes: [
      `${rounds} rounds of ${size / MiB} MiB each, alternating; the blob upload hashes (sha-256) and fsyncs what the plain PUT only writes; the CID is computed before the timer starts`,
      'the fetch frames, hashes, writes to disk, fsyncs and assembles whole in memory (the bytes the task runs on) what the plain stream only counts',
      `delayed path: ${rttSize / MiB} MiB, ${rounds} rounds alternating, through a delay line on 127.0.0.1 that passes every chunk on ${ONE_WAY_DELAY_MS} ms after it arrived, each way (latency only: it buffers, so no bandwidth limit)`
    ]
  }
})
