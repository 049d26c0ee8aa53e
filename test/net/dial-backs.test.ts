/**
 * The dials this node's AutoNAT v2 server makes at other peers' request are
 * recorded as purpose `dial-back`, and one that fails is logged at INFO (it
 * is the check's answer, sent to the peer that asked), while any other dial
 * libp2p makes by itself stays `internal` and a failure of it a WARN. The
 * recorder is the real one, installed on a transport manager whose dial
 * fails as a silent QUIC address does; the server is the slice of
 * @libp2p/autonat-v2's that the tag wraps, dialling through that manager as
 * libp2p's connection manager does (progress handler passed through).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { tagDialBacks } from '../../src/net/dial-backs.ts'
import { DialRecorder } from '../../src/net/dial-recorder.ts'
import { DialTelemetry } from '../../src/net/telemetry.ts'
import { freePort } from '../helpers/mesh.ts'
import { recordingLogger } from '../helpers/recording-logger.ts'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { MeshNode } from '../../src/net/mesh-node.ts'
import type { ProgressHandler as Progress } from '../../src/net/dial-recorder.ts'
import type { Connection } from '@libp2p/interface'

/** A transport manager whose every dial times out, as a QUIC dial to a port nothing answers on. */
function silentTransports (): { dial: (ma: Multiaddr, options?: { onProgress?: Progress }) => Promise<Connection> } {
  return {
    dial: async () => {
      const err = new Error('timed out')
      err.name = 'TimeoutError'
      throw err
    }
  }
}

const ADDR = '/ip4/192.0.2.34/udp/32900/quic-v1'

describe('AutoNAT dial-backs in the dial log', () => {
  it('are recorded as dial-back and their failures logged at INFO; other internal dials stay WARN', async () => {
    const logger = recordingLogger()
    const telemetry = new DialTelemetry({ logger })
    const recorder = new DialRecorder(telemetry, logger)
    const transports = silentTransports()
    recorder.install(transports)
    const server = {
      // as @libp2p/autonat-v2's server: the connection manager's dial, options passed through
      dialClientBack: async (ma: Multiaddr, _nonce: bigint, options: { onProgress?: Progress } = {}): Promise<string> => {
        try {
          await transports.dial(ma, { onProgress: options.onProgress })
          return 'OK'
        } catch (err) {
          return (err as Error).name === 'TimeoutError' ? 'E_DIAL_ERROR' : 'E_INTERNAL_ERROR'
        }
      }
    }
    tagDialBacks({ server }, recorder)

    const seen: string[] = []
    assert.equal(await server.dialClientBack(multiaddr(ADDR), 1n, { onProgress: (evt) => { seen.push(evt.type) } }), 'E_DIAL_ERROR')
    await assert.rejects(transports.dial(multiaddr(ADDR)), { name: 'TimeoutError' })

    const failures = logger.lines.filter(l => l.fields?.purpose != null)
    assert.deepEqual(failures.map(l => [l.fields?.purpose, l.level]), [['dial-back', 'info'], ['internal', 'warn']])
    assert.match(failures[0].msg, /AutoNAT check another peer asked for/)
    assert.equal(failures[0].fields?.transport, 'quic')
    assert.ok(!seen.includes('worldcompute:claim-dial'), 'the claim is answered by the tag, not passed on to the caller\'s handler')
    assert.deepEqual(telemetry.recent().map(a => a.purpose), ['dial-back', 'internal'])
  })

  it('on a real node, a dial-back made through libp2p\'s connection manager reaches the dial log as dial-back', async () => {
    const mesh = await MeshNode.create({ privateKey: await generateKeyPair('Ed25519'), listen: [multiaddr('/ip4/127.0.0.1/tcp/0')], telemetry: new DialTelemetry({ logger: recordingLogger() }) })
    await mesh.start()
    try {
      // a closed port on 127.0.0.1: refused at once
      const closed = await freePort()
      const server = (MeshNode.libp2pOf(mesh).services.autoNAT as { server: { dialClientBack: (ma: Multiaddr, nonce: bigint, options?: object) => Promise<unknown> } }).server
      await server.dialClientBack(multiaddr(`/ip4/127.0.0.1/tcp/${closed}`), 7n, { signal: AbortSignal.timeout(5_000) })
      const attempt = mesh.telemetry.recent().find(a => a.target.includes(`/tcp/${closed}`))
      assert.equal(attempt?.purpose, 'dial-back')
      assert.equal(attempt?.outcome, 'failure')
    } finally {
      await mesh.stop()
    }
  })

  it('leaves a service without the expected server alone', () => {
    const recorder = new DialRecorder(new DialTelemetry({ logger: recordingLogger() }), recordingLogger())
    tagDialBacks(undefined, recorder)
    tagDialBacks({ server: {} }, recorder)
    const service = { server: { other: 1 } }
    tagDialBacks(service, recorder)
    assert.deepEqual(service, { server: { other: 1 } })
  })
})
