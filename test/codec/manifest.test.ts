import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import * as dagCbor from '@ipld/dag-cbor'
import { dagCborCidString, rawCidString } from '../../src/codec/cid.ts'
import { MalformedMessageError } from '../../src/codec/errors.ts'
import { addressTree, decodeManifest, decodeOutputFiles, encodeManifest, encodeOutputFiles, manifestBlobCids, treeFromManifest } from '../../src/codec/manifest.ts'
import { outputCid } from '../../src/codec/receipt.ts'
import type { JobDir } from '../../src/core/job.ts'

const enc = new TextEncoder()
const tree: JobDir[] = [
  { guest: '/out', files: [], emptyDirs: ['/out/logs'] },
  { guest: '/data', files: [{ path: '/data/b.txt', data: enc.encode('bee') }, { path: '/data/a.txt', data: enc.encode('a') }, { path: '/data/sub/copy.txt', data: enc.encode('bee') }] }
]

function malformedAt (field: string) {
  return (err: unknown) => err instanceof MalformedMessageError && err.field === field
}

describe('tree manifest', () => {
  it('names each file by its CIDv1 raw and the tree by the manifest\'s CIDv1 dag-cbor', () => {
    const t = addressTree(tree)
    assert.deepEqual(t.manifest.dirs.map(d => d.guest), ['/data', '/out'])
    assert.deepEqual(t.manifest.dirs[0].files, [
      { path: '/data/a.txt', cid: rawCidString(enc.encode('a')), size: 1 },
      { path: '/data/b.txt', cid: rawCidString(enc.encode('bee')), size: 3 },
      { path: '/data/sub/copy.txt', cid: rawCidString(enc.encode('bee')), size: 3 }
    ])
    assert.equal(t.manifestCid, dagCborCidString(t.manifestBytes))
    // equal contents are one blob
    assert.equal(t.blobs.size, 2)
    assert.deepEqual(manifestBlobCids(t.manifest), [rawCidString(enc.encode('bee')), rawCidString(enc.encode('a'))])
  })

  it('gives the same CID whatever order the tree was read in', () => {
    const reversed = [...tree].reverse().map(d => ({ ...d, files: [...d.files].reverse() }))
    assert.equal(addressTree(reversed).manifestCid, addressTree(tree).manifestCid)
  })

  it('round-trips through the decoder and rebuilds the preopens from blobs', () => {
    const t = addressTree(tree)
    const decoded = decodeManifest(t.manifestBytes)
    assert.deepEqual(decoded, t.manifest)
    // files addressed from their bytes keep them as bytes
    const rebuilt = treeFromManifest(decoded, cid => { const blob = t.blobs.get(cid); return blob instanceof Uint8Array ? blob : undefined })
    assert.ok('dirs' in rebuilt)
    assert.deepEqual(rebuilt.dirs[0].files.map(f => [f.path, new TextDecoder().decode(f.data)]), [['/data/a.txt', 'a'], ['/data/b.txt', 'bee'], ['/data/sub/copy.txt', 'bee']])
    assert.deepEqual(rebuilt.dirs[1].emptyDirs, ['/out/logs'])
  })

  it('lists the blobs a cache lacks instead of rebuilding', () => {
    const t = addressTree(tree)
    const a = rawCidString(enc.encode('a'))
    const rebuilt = treeFromManifest(t.manifest, cid => cid === a ? enc.encode('a') : undefined)
    assert.deepEqual(rebuilt, { missing: [rawCidString(enc.encode('bee'))] })
  })

  it('refuses paths outside their preopen, "..", and a path given twice, naming the field', () => {
    const cid = rawCidString(enc.encode('x'))
    const bad = (dirs: unknown) => dagCbor.encode({ dirs })
    assert.throws(() => decodeManifest(bad([{ guest: '/data', files: [{ path: '/etc/passwd', cid, size: 1 }], emptyDirs: [] }])), malformedAt('dirs[0].files[0].path'))
    assert.throws(() => decodeManifest(bad([{ guest: '/data', files: [{ path: '/data/../etc', cid, size: 1 }], emptyDirs: [] }])), malformedAt('dirs[0].files[0].path'))
    assert.throws(() => decodeManifest(bad([{ guest: '/data', files: [{ path: '/data/a', cid, size: 1 }, { path: '/data/a', cid, size: 1 }], emptyDirs: [] }])), malformedAt('dirs[0].files[1].path'))
    assert.throws(() => decodeManifest(bad([{ guest: 'data', files: [], emptyDirs: [] }])), malformedAt('dirs[0].guest'))
    assert.throws(() => decodeManifest(bad([{ guest: '/d', files: [{ path: '/d/a', cid: dagCborCidString(enc.encode('x')), size: 1 }], emptyDirs: [] }])), malformedAt('dirs[0].files[0].cid'))
    assert.throws(() => encodeManifest({ dirs: [{ guest: '/d', files: [], emptyDirs: ['/e'] }] }), malformedAt('dirs[0].emptyDirs[0]'))
  })

  it('refuses a file or an empty directory under a path it gives as a file', () => {
    const cid = rawCidString(enc.encode('x'))
    const bad = (dirs: unknown) => dagCbor.encode({ dirs })
    assert.throws(() => decodeManifest(bad([{ guest: '/d', files: [{ path: '/d/a', cid, size: 1 }], emptyDirs: ['/d/a/b'] }])), malformedAt('dirs[0].files'))
    assert.throws(() => decodeManifest(bad([{ guest: '/d', files: [{ path: '/d/a', cid, size: 1 }, { path: '/d/a/b', cid, size: 1 }], emptyDirs: [] }])), malformedAt('dirs[0].files'))
    assert.throws(() => addressTree([{ guest: '/d', files: [{ path: '/d/a', data: enc.encode('x') }], emptyDirs: ['/d/a/b'] }]), malformedAt('dirs[0].files'))
    // nor a preopen inside another, whose outputs could name one path twice
    assert.throws(() => decodeManifest(bad([{ guest: '/d', files: [], emptyDirs: [] }, { guest: '/d/e', files: [], emptyDirs: [] }])), malformedAt('dirs'))
    // a sibling that sorts between a file and its would-be children is not under it
    assert.equal(decodeManifest(bad([{ guest: '/d', files: [{ path: '/d/a', cid, size: 1 }, { path: '/d/a.txt', cid, size: 1 }], emptyDirs: ['/d/a-b'] }])).dirs[0].files.length, 2)
  })
})

describe('output files', () => {
  const files = { files: [{ path: '/out/r.txt', data: enc.encode('result') }], removed: ['/data/a.txt'] }

  it('round-trips the files document and bounds it by the output limit', () => {
    assert.deepEqual(decodeOutputFiles(encodeOutputFiles(files), 1024), files)
    assert.throws(() => decodeOutputFiles(encodeOutputFiles(files), 10), malformedAt('(message)'))
  })

  it('keeps today\'s outputCid for a job without files and covers the files when present', () => {
    const out = enc.encode('o')
    const err = enc.encode('e')
    assert.equal(outputCid(out, err), dagCborCidString(dagCbor.encode({ stdout: out, stderr: err })))
    assert.notEqual(outputCid(out, err, files), outputCid(out, err))
    const changed = { ...files, files: [{ path: '/out/r.txt', data: enc.encode('other') }] }
    assert.notEqual(outputCid(out, err, files), outputCid(out, err, changed))
    assert.notEqual(outputCid(out, err, files), outputCid(out, err, { ...files, removed: [] }))
  })
})
