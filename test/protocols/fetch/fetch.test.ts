/**
 * The fetch protocol between real libp2p nodes on 127.0.0.1: a donor pulls a
 * big input, module or directory file by CID from the broker that
 * dispatched it, into its content store; the broker serves only what it
 * granted.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, it } from 'node:test'
import { rawCidString } from '../../../src/codec/cid.ts'
import { addressTree } from '../../../src/codec/manifest.ts'
import { ContentStore } from '../../../src/donor/content-store.ts'
import { dispatch, type DispatchService } from '../../../src/protocols/dispatch/index.ts'
import { DispatchFailedError, DispatchRefusedError } from '../../../src/protocols/errors.ts'
import { ContentStoreFullError, fetch, FetchRefusedError, type ContentSink, type FetchService, type OffsetPayloadSource } from '../../../src/protocols/fetch/index.ts'
import type { JobDir } from '../../../src/core/job.ts'
import { admitAll, captureLogs, createTestNode, fakeExecutor, stopAll, task, upper } from '../helpers.ts'
import { waitFor } from '../../helpers/wait.ts'
import type { Libp2p } from 'libp2p'

type Node = Libp2p<Record<string, any>>

const THRESHOLD = 1024
const RANGE = 1024 * 1024

function pattern (size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size)
  for (let i = 0; i < size; i++) out[i] = 0x61 + ((i * seed + (i >> 7)) % 26)
  return out
}

/** The donor's fetch of `blob` from the broker, served from a blob file read by `from(offset)`; the grant released after. */
async function fetchFromFile (ends: { donorFetch: FetchService, brokerFetch: FetchService, donor: Node, broker: Node }, blob: Uint8Array, from: (offset: number) => AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const source: OffsetPayloadSource = { byteLength: blob.byteLength, chunks: () => from(0), chunksFrom: (offset) => from(offset) }
  const release = ends.brokerFetch.grant(ends.donor.peerId.toString(), rawCidString(blob), source)
  try {
    const back = await waitFor('the donor\'s side of the connection', () => ends.donor.getConnections(ends.broker.peerId)[0])
    return await ends.donorFetch.fetch(back, { cid: rawCidString(blob), size: blob.byteLength, what: 'input' })
  } finally {
    release()
  }
}

describe('fetch protocol', () => {
  let nodes: Node[] = []
  let root: string
  let logs: ReturnType<typeof captureLogs>

  beforeEach(() => {
    logs = captureLogs()
    root = mkdtempSync(join(tmpdir(), 'wc-fetch-'))
  })
  afterEach(async () => {
    await stopAll(nodes)
    nodes = []
    logs.restore()
    rmSync(root, { recursive: true, force: true })
  })

  /** A donor that fetches into `store`, a broker that serves what it dispatches, connected over TCP. */
  async function pair (store: ContentSink, exec = fakeExecutor()): Promise<{ donorFetch: FetchService, brokerFetch: FetchService, brokerDispatch: DispatchService, conn: ReturnType<Node['getConnections']>[number], donor: Node, broker: Node }> {
    let donorFetch: FetchService | undefined
    let brokerFetch: FetchService | undefined
    const donor = await createTestNode({ services: { dispatch: dispatch({ runTask: exec.runTask, admit: admitAll, fetch: () => donorFetch }), fetch: fetch({ store, stallTimeoutMs: 2_000, retryBackoff: { initialMs: 10, maxMs: 40 }, rangeBytes: RANGE }) } })
    const broker = await createTestNode({ services: { dispatch: dispatch({ fetch: () => brokerFetch, pullThresholdBytes: THRESHOLD }), fetch: fetch({ serve: true }) } })
    nodes.push(donor, broker)
    donorFetch = donor.services.fetch as FetchService
    brokerFetch = broker.services.fetch as FetchService
    const conn = await broker.dial(donor.getMultiaddrs()[0])
    return { donorFetch, brokerFetch, brokerDispatch: broker.services.dispatch as DispatchService, conn, donor, broker }
  }

  it('lets the donor pull an input over the threshold by CID, range by range, keep it, and not fetch it again for the next task', async () => {
    const store = new ContentStore({ dir: join(root, 'content') })
    const exec = fakeExecutor()
    const { donorFetch, brokerFetch, brokerDispatch, conn } = await pair(store, exec)
    // big enough that the muxer's read buffer (4 MiB) would overflow had the dispatch stream carried it too
    const input = pattern(6 * 1024 * 1024, 7)

    const first = await brokerDispatch.dispatch(conn, { ...task('job-f/0', input), donorFetches: true })
    assert.equal(first.status, 'succeeded')
    assert.deepEqual(first.stdout.subarray(0, input.byteLength), upper(input))
    assert.deepEqual(exec.calls[0].input, input)
    assert.equal(brokerFetch.stats.served, 6, 'six ranges of 1 MiB, each asked once')
    assert.equal(brokerFetch.stats.bytesServed, input.byteLength)
    assert.ok(store.has(rawCidString(input)), 'the donor keeps the input in its content store')

    const second = await brokerDispatch.dispatch(conn, { ...task('job-f/1', input), donorFetches: true })
    assert.equal(second.status, 'succeeded')
    assert.equal(brokerFetch.stats.served, 6, 'the second task is served from the donor\'s store')
    assert.equal(donorFetch.stats.fetches, 1)
  })

  it('lets the donor pull a big module too, and run it from its store when a later dispatch omits it', async () => {
    const store = new ContentStore({ dir: join(root, 'content') })
    const exec = fakeExecutor()
    const { brokerFetch, brokerDispatch, conn } = await pair(store, exec)
    const module = pattern(2 * 1024 * 1024, 17)
    const moduleCid = rawCidString(module)
    const first = await brokerDispatch.dispatch(conn, { ...task('job-m/0', pattern(100, 3), { module, moduleCid }), donorFetches: true })
    assert.equal(first.status, 'succeeded')
    assert.equal(brokerFetch.stats.bytesServed, module.byteLength, 'only the module was pulled: the small input came on the stream')
    assert.ok(store.has(moduleCid))
    // the broker skips the module when the donor's offer said hasModule (its content store counts)
    const second = await brokerDispatch.dispatch(conn, { ...task('job-m/1', pattern(100, 5), { module: null, moduleCid }), donorFetches: true })
    assert.equal(second.status, 'succeeded')
    assert.deepEqual(exec.calls[1].module, module)
    assert.equal(brokerFetch.stats.bytesServed, module.byteLength, 'nothing more was fetched')
  })

  it('hands back the bytes it fetched as they were hashed and kept, not read back from disk; a blob held is read from the store', async () => {
    const inner = new ContentStore({ dir: join(root, 'content') })
    const reads: string[] = []
    const store: ContentSink = {
      has: (cid) => inner.has(cid),
      read: async (cid) => { reads.push(cid); return await inner.read(cid) },
      begin: async (cid, size) => await inner.begin(cid, size)
    }
    const ends = await pair(store)
    // ranges of 1 MiB, written in batches, one frame over the last range's boundary
    const blob = pattern(3 * RANGE + 4096, 19)
    const from = async function * (offset: number): AsyncIterable<Uint8Array> {
      for (let at = offset; at < blob.byteLength; at += 100_000) yield blob.subarray(at, Math.min(at + 100_000, blob.byteLength))
    }
    const got = await fetchFromFile(ends, blob, from)
    assert.deepEqual(got, blob)
    assert.deepEqual(reads, [], 'nothing was read back from the store')
    assert.deepEqual(await inner.read(rawCidString(blob)), blob, 'the store kept the same bytes')
    const again = await fetchFromFile(ends, blob, from)
    assert.deepEqual(again, blob)
    assert.deepEqual(reads, [rawCidString(blob)], 'the second fetch read the blob the store holds')
    assert.equal(ends.donorFetch.stats.fetches, 1)
  })

  it('pushes the input on the dispatch stream to a donor that did not say it fetches', async () => {
    const store = new ContentStore({ dir: join(root, 'content') })
    const { brokerFetch, brokerDispatch, conn } = await pair(store)
    const input = pattern(64 * 1024, 3)
    const result = await brokerDispatch.dispatch(conn, task('job-p/0', input))
    assert.equal(result.status, 'succeeded')
    assert.equal(brokerFetch.stats.served, 0)
    assert.equal(store.size, 0)
  })

  it('refuses a CID the broker did not grant to the asking peer, and the donor keeps nothing of it', async () => {
    const store = new ContentStore({ dir: join(root, 'content') })
    const { donorFetch, brokerFetch, donor, broker } = await pair(store)
    const secret = pattern(4096, 5)
    // granted to someone else: the donor still may not have it
    const release = brokerFetch.grant('12D3KooWSomeoneElse', rawCidString(secret), secret)
    const back = await waitFor('the donor\'s side of the connection', () => donor.getConnections(broker.peerId)[0])
    await assert.rejects(donorFetch.fetch(back, { cid: rawCidString(secret), size: secret.byteLength, what: 'input' }), (err: unknown) => err instanceof FetchRefusedError && err.code === 'FETCH_REFUSED')
    release()
    assert.equal(store.size, 0)
    assert.deepEqual(readdirSync(join(root, 'content')), [], 'no part file is left behind')
    assert.equal(brokerFetch.stats.refused, 1)
  })

  it('asks for the next range while the current one is still being written, never more than one range ahead', async () => {
    const inner = new ContentStore({ dir: join(root, 'content') })
    const blob = pattern(4 * RANGE, 5)
    const asked: number[] = []
    const aheadAtWrite: number[] = []
    // a slow disk: each write of a range's bytes takes 150 ms, long enough for the next range's request and answer
    const store: ContentSink = {
      has: (cid) => inner.has(cid),
      read: async (cid) => await inner.read(cid),
      begin: async (cid, size) => {
        const write = await inner.begin(cid, size)
        return {
          get written () { return write.written },
          write: async (chunk) => {
            await new Promise(resolve => setTimeout(resolve, 150))
            await write.write(chunk)
            aheadAtWrite.push(Math.max(...asked) - write.written)
          },
          commit: async () => { await write.commit() },
          abort: async () => { await write.abort() }
        }
      }
    }
    const ends = await pair(store)
    const from = async function * (offset: number): AsyncIterable<Uint8Array> {
      asked.push(offset)
      for (let at = offset; at < blob.byteLength; at += 64 * 1024) yield blob.subarray(at, Math.min(at + 64 * 1024, blob.byteLength))
    }
    assert.deepEqual(await fetchFromFile(ends, blob, from), blob)
    assert.deepEqual(asked, [0, RANGE, 2 * RANGE, 3 * RANGE], 'each range asked once, in order')
    // when a range (not the last) was on disk, the next one had already been asked for, and never the one after it
    assert.deepEqual(aheadAtWrite, [0, 0, 0, -RANGE], `ranges asked ahead when each write ended: ${aheadAtWrite.join(', ')}`)
  })

  it('resumes a fetch cut short at the bytes already written', async () => {
    const store = new ContentStore({ dir: join(root, 'content') })
    const { donorFetch, brokerFetch, donor, broker } = await pair(store)
    const blob = pattern(1024 * 1024, 11)
    const offsets: number[] = []
    let failedOnce = false
    const from = async function * (offset: number): AsyncIterable<Uint8Array> {
      offsets.push(offset)
      for (let at = offset; at < blob.byteLength; at += 64 * 1024) {
        if (!failedOnce && at >= 512 * 1024) {
          failedOnce = true
          throw new Error('the blob file could not be read (test)')
        }
        yield blob.subarray(at, Math.min(at + 64 * 1024, blob.byteLength))
      }
    }
    // a blob file of the broker's store: read from the start, or from an offset without reading what comes before
    const source: OffsetPayloadSource = { byteLength: blob.byteLength, chunks: () => from(0), chunksFrom: (offset) => from(offset) }
    const peer = donor.peerId.toString()
    const release = brokerFetch.grant(peer, rawCidString(blob), source)
    const back = await waitFor('the donor\'s side of the connection', () => donor.getConnections(broker.peerId)[0])
    const got = await donorFetch.fetch(back, { cid: rawCidString(blob), size: blob.byteLength, what: 'input' })
    release()
    assert.deepEqual(got, blob)
    assert.equal(offsets[0], 0)
    assert.ok(offsets.length === 2 && offsets[1] > 0 && offsets[1] <= 512 * 1024, `resumed at ${offsets.join(', ')}`)
    assert.ok(logs.lines.some(l => l.includes('resuming')), 'the broken attempt is logged')
  })

  it('drops the range asked ahead when the current one breaks, and resumes at the bytes written', async () => {
    const store = new ContentStore({ dir: join(root, 'content') })
    const ends = await pair(store)
    const blob = pattern(3 * RANGE, 13)
    const offsets: number[] = []
    let failedOnce = false
    const from = async function * (offset: number): AsyncIterable<Uint8Array> {
      offsets.push(offset)
      for (let at = offset; at < blob.byteLength; at += 64 * 1024) {
        if (!failedOnce && at >= RANGE / 2) {
          failedOnce = true
          throw new Error('the blob file could not be read (test)')
        }
        // the range ahead is slow to come, so the break lands while it is asked
        if (offset > 0 && at === offset) await new Promise(resolve => setTimeout(resolve, 50))
        yield blob.subarray(at, Math.min(at + 64 * 1024, blob.byteLength))
      }
    }
    assert.deepEqual(await fetchFromFile(ends, blob, from), blob)
    const resumedAt = offsets.find(o => o > 0 && o < RANGE)
    assert.ok(resumedAt != null && resumedAt <= RANGE / 2, `resumed within the first range: ${offsets.join(', ')}`)
    assert.ok(logs.lines.some(l => l.includes('resuming')), 'the broken attempt is logged')
  })

  it('answers a task whose input the donor\'s disk has no room for as refused with disk-full', async () => {
    const full: ContentSink = {
      has: () => false,
      read: async () => { throw new Error('nothing held') },
      begin: async () => { throw new ContentStoreFullError('no room on disk (ENOSPC, test)') }
    }
    const exec = fakeExecutor()
    const { brokerDispatch, conn } = await pair(full, exec)
    const input = pattern(8 * 1024, 13)
    await assert.rejects(brokerDispatch.dispatch(conn, { ...task('job-d/0', input), donorFetches: true }),
      (err: unknown) => err instanceof DispatchRefusedError && err.refusal === 'disk-full' && /CONTENT_STORE_FULL/.test(err.detail ?? ''))
    assert.equal(exec.calls.length, 0, 'nothing ran')
  })

  /** A tree of one big file (pulled by a donor that fetches) and one small one (always pushed). */
  function bigTree (): { dirs: JobDir[], big: Uint8Array, small: Uint8Array } {
    const big = pattern(3 * 1024 * 1024, 11)
    const small = pattern(200, 19)
    return { dirs: [{ guest: '/data', files: [{ path: '/data/big.bin', data: big }, { path: '/data/small.txt', data: small }] }], big, small }
  }

  it('lets the donor pull a big directory file by CID while the small one comes on the stream, and preopens both', async () => {
    const store = new ContentStore({ dir: join(root, 'content') })
    const exec = fakeExecutor()
    const { donor, donorFetch, brokerFetch, brokerDispatch, conn } = await pair(store, exec)
    const { dirs, big, small } = bigTree()
    const tree = addressTree(dirs)

    const first = await brokerDispatch.dispatch(conn, { ...task('job-t/0', pattern(10, 3)), tree, donorFetches: true })
    assert.equal(first.status, 'succeeded')
    const files = exec.calls[0].preopens?.[0].files ?? []
    assert.deepEqual(files.map(f => f.path), ['/data/big.bin', '/data/small.txt'])
    assert.deepEqual(files[0].data, big)
    assert.deepEqual(files[1].data, small)
    assert.deepEqual(brokerDispatch.treeStats, { blobsSent: 1, blobBytesSent: small.byteLength, blobsPulled: 1, blobBytesPulled: big.byteLength, blobsReceived: 0, blobBytesReceived: 0, blobsFetched: 0, blobBytesFetched: 0 })
    assert.equal(brokerFetch.stats.bytesServed, big.byteLength, 'the big file went by fetch, not on the dispatch stream')
    const donorStats = (donor.services.dispatch as DispatchService).treeStats
    assert.equal(donorStats.blobsReceived, 1)
    assert.equal(donorStats.blobBytesReceived, small.byteLength)
    assert.equal(donorStats.blobsFetched, 1)
    assert.equal(donorStats.blobBytesFetched, big.byteLength)
    assert.ok(store.has(rawCidString(big)), 'the donor keeps the big file in its content store')
    assert.ok(!(donor.services.dispatch as DispatchService).hasFiles([rawCidString(big)]).includes(rawCidString(big)), 'one copy: not in the cache of pushed files too')

    const second = await brokerDispatch.dispatch(conn, { ...task('job-t/1', pattern(10, 5)), tree, donorFetches: true })
    assert.equal(second.status, 'succeeded')
    assert.deepEqual(exec.calls[1].preopens?.[0].files[0].data, big)
    assert.equal(brokerFetch.stats.bytesServed, big.byteLength, 'the second task takes the big file from the donor\'s store')
    assert.equal(donorFetch.stats.fetches, 1)
  })

  it('pushes every directory file on the dispatch stream to a donor that did not say it fetches', async () => {
    const store = new ContentStore({ dir: join(root, 'content') })
    const exec = fakeExecutor()
    const { brokerFetch, brokerDispatch, conn } = await pair(store, exec)
    const { dirs, big, small } = bigTree()
    const result = await brokerDispatch.dispatch(conn, { ...task('job-o/0', pattern(10, 3)), tree: addressTree(dirs) })
    assert.equal(result.status, 'succeeded')
    assert.deepEqual(exec.calls[0].preopens?.[0].files[0].data, big)
    assert.equal(brokerDispatch.treeStats.blobsSent, 2)
    assert.equal(brokerDispatch.treeStats.blobBytesSent, big.byteLength + small.byteLength)
    assert.equal(brokerDispatch.treeStats.blobsPulled, 0)
    assert.equal(brokerFetch.stats.served, 0)
    assert.equal(store.size, 0)
  })

  it('fails the dispatch as a path failure when the donor cannot fetch a directory file, with the fetch logged by peer, address, transport and phase', async () => {
    const broken: ContentSink = {
      has: () => false,
      read: async () => { throw new Error('nothing held') },
      begin: async () => ({ written: 0, write: async () => { throw new Error('EIO: the disk failed (test)') }, commit: async () => {}, abort: async () => {} })
    }
    const exec = fakeExecutor()
    const { brokerDispatch, conn, broker } = await pair(broken, exec)
    const { dirs } = bigTree()
    await assert.rejects(brokerDispatch.dispatch(conn, { ...task('job-x/0', pattern(10, 3)), tree: addressTree(dirs), donorFetches: true }),
      (err: unknown) => err instanceof DispatchFailedError && err.code === 'DISPATCH_FAILED')
    assert.equal(exec.calls.length, 0, 'nothing ran')
    const line = logs.lines.find(l => /fetch of directory file \S+ \(\d+ bytes\) from \S+ failed:/.test(l))
    assert.ok(line != null, 'the failed fetch is logged')
    assert.ok(line.includes(`from ${broker.peerId.toString()}`), line)
    for (const field of [/ peer=\S+/, / addr=\/ip4\/127\.0\.0\.1\/tcp\/\d+/, / transport=direct/, / phase=fetch/]) assert.match(line, field)
  })
})
