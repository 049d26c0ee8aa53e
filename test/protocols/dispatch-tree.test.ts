import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { encode as encodeCbor } from '@ipld/dag-cbor'
import { MalformedMessageError } from '../../src/codec/errors.ts'
import { rawCidString } from '../../src/codec/cid.ts'
import { addressTree } from '../../src/codec/manifest.ts'
import { decodeDispatchHeader, encodeDispatchHeader } from '../../src/codec/messages.ts'
import { outputCid } from '../../src/codec/receipt.ts'
import { decodeReceiptBody } from '../../src/codec/receipt.ts'
import { dispatch, FilesNotCachedError } from '../../src/protocols/dispatch/index.ts'
import { offer } from '../../src/protocols/offer/index.ts'
import { admitAll, bytesOf, createTestNode, task, text, upper, perTestNodesAndLogs } from './helpers.ts'
import type { DispatchProgressEvent, DispatchService, RunTask } from '../../src/protocols/dispatch/index.ts'
import type { OfferService } from '../../src/protocols/offer/index.ts'
import type { ExecuteRequest, JobDir } from '../../src/core/job.ts'
import type { Libp2p } from 'libp2p'

type Node = Libp2p<Record<string, any>>

/**
 * A typed stand-in for the executor's filesystem: writes every preopened
 * file of /data, uppercased, under /out, and removes /data/gone.txt.
 */
function filesystemExecutor (): { runTask: RunTask, calls: ExecuteRequest[] } {
  const calls: ExecuteRequest[] = []
  const runTask: RunTask = async (req) => {
    calls.push(req)
    const files = (req.preopens ?? []).flatMap(d => d.files).map(f => ({ path: f.path.replace(/^\/data\//, '/out/'), data: upper(f.data) }))
    return { status: 'succeeded', exitCode: 0, stdout: bytesOf('ok'), stderr: new Uint8Array(0), fuelUsed: 1, durationMs: 1, files, removedFiles: ['/data/gone.txt'] }
  }
  return { runTask, calls }
}

const TREE: JobDir[] = [{ guest: '/data', files: [{ path: '/data/a.txt', data: bytesOf('alpha') }, { path: '/data/sub/b.txt', data: bytesOf('beta'.repeat(100_000)) }], emptyDirs: ['/data/empty'] }]

describe('dispatch of a task with directories', () => {
  const { nodes } = perTestNodesAndLogs<Node>()

  async function pair (runTask: RunTask): Promise<{ donor: Node, brokerDispatch: DispatchService, brokerOffer: OfferService, donorDispatch: DispatchService }> {
    let donorDispatch: DispatchService | undefined
    const donor = await createTestNode({
      services: {
        dispatch: dispatch({ runTask, admit: admitAll }),
        offer: offer({ decideOffer: (req) => ({ accept: true, hasModule: donorDispatch?.hasModule(req.moduleCid) ?? false, freeSlots: 1, hasFiles: donorDispatch?.hasFiles(req.fileCids ?? []) ?? [] }) })
      }
    })
    donorDispatch = donor.services.dispatch as DispatchService
    const broker = await createTestNode({ services: { dispatch: dispatch(), offer: offer() } })
    nodes.push(donor, broker)
    await broker.dial(donor.getMultiaddrs()[0])
    return { donor, donorDispatch, brokerDispatch: broker.services.dispatch as DispatchService, brokerOffer: broker.services.offer as OfferService }
  }

  /** Offers then dispatches, as the broker does: the offer's `hasFiles` decides which blobs go; returns the bytes sent. */
  async function run (brokerOffer: OfferService, brokerDispatch: DispatchService, donor: Node, taskId: string, tree = addressTree(TREE)): Promise<{ sent: number, result: Awaited<ReturnType<DispatchService['dispatch']>> }> {
    const t = task(taskId, bytesOf('in'))
    const fileCids = [...tree.blobs.keys()]
    const answer = await brokerOffer.offer(donor.peerId, { jobId: t.jobId, taskId, moduleCid: t.moduleCid, moduleSize: 0, inputSize: 2, limits: t.limits, fileCids })
    let sent = 0
    const onProgress = (evt: DispatchProgressEvent): void => { if (evt.type === 'dispatch:sent') sent = evt.detail.bytes }
    const result = await brokerDispatch.dispatch(donor.peerId, { ...t, tree, donorHasFiles: answer.hasFiles }, { onProgress })
    return { sent, result }
  }

  it('preopens the tree on the donor and returns the files the job wrote, covered by the receipt', async () => {
    const exec = filesystemExecutor()
    const { donor, brokerDispatch, brokerOffer } = await pair(exec.runTask)
    const { result } = await run(brokerOffer, brokerDispatch, donor, 'job-t/0')

    assert.equal(exec.calls.length, 1)
    const preopens = exec.calls[0].preopens ?? []
    assert.deepEqual(preopens.map(d => [d.guest, d.files.map(f => f.path), d.emptyDirs]), [['/data', ['/data/a.txt', '/data/sub/b.txt'], ['/data/empty']]])
    assert.equal(text(preopens[0].files[0].data), 'alpha')
    assert.deepEqual(result.files?.map(f => [f.path, text(f.data).slice(0, 8)]), [['/out/a.txt', 'ALPHA'], ['/out/sub/b.txt', 'BETABETA']])
    assert.deepEqual(result.removedFiles, ['/data/gone.txt'])
    const files = { files: result.files ?? [], removed: result.removedFiles ?? [] }
    assert.equal(result.outputCid, outputCid(result.stdout, result.stderr, files))
    assert.equal(decodeReceiptBody(result.receipt.body).outputCid, result.outputCid)
    assert.notEqual(result.outputCid, outputCid(result.stdout, result.stderr))
  })

  it('sends the blobs once: a second task with the same files sends only the manifest, module and input', async () => {
    const exec = filesystemExecutor()
    const { donor, brokerDispatch, brokerOffer } = await pair(exec.runTask)
    const tree = addressTree(TREE)
    const blobBytes = [...tree.blobs.values()].reduce((n, b) => n + b.byteLength, 0)

    const first = await run(brokerOffer, brokerDispatch, donor, 'job-t/1', tree)
    const second = await run(brokerOffer, brokerDispatch, donor, 'job-t/2', tree)

    assert.ok(first.sent >= blobBytes, `first dispatch sent ${first.sent} bytes, fewer than the ${blobBytes} of its files`)
    assert.ok(second.sent < blobBytes / 10, `second dispatch sent ${second.sent} bytes, expected no file bytes`)
    assert.equal(exec.calls.length, 2)
    assert.equal(text(exec.calls[1].preopens?.[0].files[1].data ?? new Uint8Array()).slice(0, 4), 'beta')
    assert.equal(second.result.outputCid, first.result.outputCid)
  })

  it('pushes a file given as a source on the stream in chunks to a donor that does not fetch, and the donor gets its bytes', async () => {
    const exec = filesystemExecutor()
    const { donor, brokerDispatch, brokerOffer } = await pair(exec.runTask)
    const big = bytesOf('gamma'.repeat(200_000))
    const reads: number[] = []
    // a blob file as the broker's blob store hands it: its size, and its bytes in chunks when sent
    const source = {
      byteLength: big.byteLength,
      chunks: async function * () { for (let i = 0; i < big.byteLength; i += 65536) { reads.push(i); yield big.subarray(i, i + 65536) } }
    }
    const tree = addressTree([{ guest: '/data', files: [{ path: '/data/a.txt', data: bytesOf('alpha') }, { path: '/data/big.bin', cid: rawCidString(big), data: source }] }])
    assert.equal(tree.manifestCid, addressTree([{ guest: '/data', files: [{ path: '/data/a.txt', data: bytesOf('alpha') }, { path: '/data/big.bin', data: big }] }]).manifestCid)

    const { sent } = await run(brokerOffer, brokerDispatch, donor, 'job-t/src', tree)

    assert.ok(sent >= big.byteLength, `the dispatch sent ${sent} bytes, fewer than the ${big.byteLength} of the file`)
    assert.ok(reads.length > 1, 'the source was read in chunks')
    const files = exec.calls[0].preopens?.[0].files ?? []
    assert.deepEqual(files.map(f => f.path), ['/data/a.txt', '/data/big.bin'])
    assert.deepEqual(files[1].data, big)
  })

  it('asks again with all the blobs when the donor lost one it said it held', async () => {
    const exec = filesystemExecutor()
    const { donor, brokerDispatch } = await pair(exec.runTask)
    const tree = addressTree(TREE)
    const t = task('job-t/3', bytesOf('in'))
    await assert.rejects(brokerDispatch.dispatch(donor.peerId, { ...t, tree, donorHasFiles: [...tree.blobs.keys()] }), (err: unknown) => err instanceof FilesNotCachedError && err.code === 'FILES_NOT_CACHED')
    assert.equal(exec.calls.length, 0)
    const result = await brokerDispatch.dispatch(donor.peerId, { ...t, tree })
    assert.equal(result.status, 'succeeded')
  })

  it('keeps the output of a task without directories as it was: no files, the same outputCid', async () => {
    const exec = filesystemExecutor()
    const { donor, brokerDispatch } = await pair(exec.runTask)
    const result = await brokerDispatch.dispatch(donor.peerId, task('job-t/4', bytesOf('in')))
    assert.equal(exec.calls[0].preopens, undefined)
    assert.equal(result.files, undefined)
    assert.equal(result.outputCid, outputCid(result.stdout, result.stderr))
  })
})

describe('the dispatch header\'s pullFiles', () => {
  const tree = addressTree(TREE)
  const big = [...tree.blobs.keys()][1]
  const header = { jobId: 'job-h', taskId: 'job-h/0', moduleCid: big, inputCid: big, args: [], env: [], limits: {}, moduleSize: 0, inputSize: 0, sendsModule: false }

  it('round-trips beside the manifest fields, and is left out when there is nothing to pull', () => {
    const withTree = { ...header, manifestCid: tree.manifestCid, manifestSize: tree.manifestBytes.byteLength, blobCount: 1 }
    assert.deepEqual(decodeDispatchHeader(encodeDispatchHeader({ ...withTree, pullFiles: [big] })).pullFiles, [big])
    assert.equal(decodeDispatchHeader(encodeDispatchHeader(withTree)).pullFiles, undefined)
  })

  it('is refused without a manifest, and when it names something that is not a raw CID', () => {
    const wire = { ...header, limits: {}, pullFiles: [big] }
    assert.throws(() => decodeDispatchHeader(encodeCbor(wire)), (err: unknown) => err instanceof MalformedMessageError && err.field === 'manifestCid')
    const withTree = { ...wire, manifestCid: tree.manifestCid, manifestSize: tree.manifestBytes.byteLength, blobCount: 1, pullFiles: [tree.manifestCid] }
    assert.throws(() => decodeDispatchHeader(encodeCbor(withTree)), (err: unknown) => err instanceof MalformedMessageError && err.field === 'pullFiles[0]')
  })
})
