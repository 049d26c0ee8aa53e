import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { sanitiseForPeer } from '../../src/protocols/sanitise.ts'

const roots = { install: '/opt/worldcompute/', home: '/home/alice' }

describe('what a donor says to other peers in words', () => {
  it('shows paths under the install root and the home directory relative to them, and hides other absolute paths', () => {
    const text = "ENOENT: open '/opt/worldcompute/src/executor/worker.ts' (data in /home/alice/.worldcompute/jobs.sqlite, temp /var/tmp/wc-1/x, C:\\Users\\bob\\wc.js)"
    assert.equal(sanitiseForPeer(text, 1024, roots), "ENOENT: open '<install>/src/executor/worker.ts' (data in ~/.worldcompute/jobs.sqlite, temp <path>, <path>)")
  })

  it('drops JavaScript stack frames, file URLs and the native frames of a V8 fatal report, and keeps the cause', () => {
    const js = 'Error: boom\n    at run (file:///opt/worldcompute/src/executor/worker.ts:12:3)\n    at node:internal/process/task_queues:95:5'
    assert.equal(sanitiseForPeer(js, 1024, roots), 'Error: boom')
    const fatal = '#\n# Fatal JavaScript invalid size error 169220804\n#\n 1: 0xe0f3a1 node::Abort() [/usr/bin/node]\n 2: 0x1a2b3c  [/usr/bin/node]'
    assert.equal(sanitiseForPeer(fatal, 1024, roots), 'Fatal JavaScript invalid size error 169220804')
  })

  it('keeps multiaddrs, protocol IDs and ordinary words as they are', () => {
    const text = 'no route to /ip4/203.0.113.7/tcp/4001/p2p/12D3KooWCUxGstisocAwjyRccMAVqDFAksLECFj23zxN7fP231Wj over /worldcompute/dispatch/1.0.0: limits.memoryBytes 268435456 is above 134217728 (a/b)'
    assert.equal(sanitiseForPeer(text, 1024, roots), text)
  })

  it('caps the length', () => {
    const out = sanitiseForPeer('x'.repeat(5000), 100, roots)
    assert.equal(out.length, 100)
    assert.ok(out.endsWith('…'))
  })
})
