/**
 * The WebRTC transport a daemon loads: @libp2p/webrtc's private-to-private
 * transport alone, never the package's index with its WebRTC-direct transport
 * (certificate code no daemon runs). A child Node process records every
 * module it loads (a module load hook) while it calls `loadWebRtc`.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'

const MODULE = fileURLToPath(new URL('../../src/net/webrtc-runtime.ts', import.meta.url))

const CHILD = `
import { registerHooks } from 'node:module'
const loaded = []
registerHooks({ load (url, context, next) { loaded.push(url); return next(url, context) } })
const { loadWebRtc } = await import(${JSON.stringify(MODULE)})
const webRTC = await loadWebRtc()
const factory = webRTC({})
process.stdout.write(JSON.stringify({ webRTC: typeof webRTC, factory: typeof factory, loaded }))
`

describe('loading the WebRTC transport', () => {
  it('gives a webRTC factory from the private-to-private transport without loading the WebRTC-direct transport or its certificate code', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', CHILD], { maxBuffer: 16 * 1024 * 1024 })
    const out = JSON.parse(stdout) as { webRTC: string, factory: string, loaded: string[] }
    assert.equal(out.webRTC, 'function')
    assert.equal(out.factory, 'function')
    assert.ok(out.loaded.some(u => u.includes('@libp2p/webrtc/dist/src/private-to-private/transport.js')), 'the private-to-private transport was not loaded')
    // private-to-public/pb/message.js is the data channel's own message format, shared by both transports
    const unwanted = out.loaded.filter(u => /@libp2p\/webrtc\/dist\/src\/(index\.js|private-to-public\/(transport|listener|utils)\b)|@peculiar\/|asn1js/.test(u))
    assert.deepEqual(unwanted, [])
  })
})
