/**
 * Direct upgrades on loopback (traversal issue, "Direct upgrades"): two
 * relay-only donors that meet through a relay get a private-to-private WebRTC
 * connection signalled through the relay, the relayed connection stays open,
 * and the next job takes the direct path. Real relay (with its STUN
 * responder), real daemons, real @libp2p/webrtc (node-datachannel) on 127.0.0.1.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { loadDaemonConfig, loadRelayConfig } from '../../src/config/config.ts'
import { startDaemon, startRelay, type DaemonHandle, type RelayHandle } from '../../src/daemon/daemon.ts'
import { ApiClient } from '../../src/api/client.ts'
import { decodeNatInfo, encodeNatInfo } from '../../src/protocols/nat-info/index.ts'
import { webrtcBlocker } from '../../src/donor/direct-paths.ts'
import { renderStatus } from '../../src/cli/render.ts'
import { transportOf, viaRelay } from '../../src/net/transport-of.ts'
import { stopAfterEach } from '../helpers/cleanup.ts'
import { captureJsonLogs } from '../helpers/logs.ts'
import { FAST_RESERVATION, reservedStatus, startTestDonor, tempDir } from '../helpers/mesh.ts'
import { freeUdpPorts } from '../helpers/ports.ts'
import { waitFor } from '../helpers/wait.ts'
import { executorsSeen, finished, submit } from '../helpers/jobs.ts'

const dir = tempDir()
const { lines, records } = captureJsonLogs()
const track = stopAfterEach()

after(() => { dir.cleanup() })

/** A relay with its STUN responder and a relay-only, non-executing submitter bootstrapped to it. */
async function relayAndSubmitter (tag: string): Promise<{ bootstrap: string[], submitterDir: string, submitterHandle: DaemonHandle }> {
  const ports = await freeUdpPorts(2)
  const relay: RelayHandle = track(await startRelay(loadRelayConfig({ dataDir: join(dir.path, `relay-${tag}`), listen: ['/ip4/127.0.0.1/tcp/0'], stunPorts: ports.map(String) }, {})))
  const bootstrap = relay.info.announceAddrs.filter(a => a.includes('/tcp/'))
  const submitterDir = join(dir.path, `submitter-${tag}`)
  const submitterHandle = track(await startDaemon(loadDaemonConfig({ dataDir: submitterDir, bootstrap, listen: ['/p2p-circuit'], apiPort: '0', noExecute: true }, {}), { reservation: FAST_RESERVATION }))
  return { bootstrap, submitterDir, submitterHandle }
}

describe('direct upgrades', () => {
  it('names a /p2p-circuit/webrtc address webrtc and keeps it out of the direct listen addresses', () => {
    const a = '/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWFHoexRyGtSjZ4w9efbFsD5R1bDvjAg5WcKkMe38NtXpC/p2p-circuit/webrtc/p2p/12D3KooWCGJb5ADauuQUiaWQhFEnZugqEj3tMrcrtg4TcLDDuUma'
    assert.equal(transportOf(a), 'webrtc')
    assert.equal(viaRelay(a), true)
    assert.equal(transportOf(a.replace('/webrtc', '')), 'circuit')
    assert.equal(transportOf('/webrtc/p2p/12D3KooWCGJb5ADauuQUiaWQhFEnZugqEj3tMrcrtg4TcLDDuUma'), 'webrtc')
    assert.equal(viaRelay('/ip4/198.51.100.7/udp/4001/quic-v1'), false)
  })

  it('skips WebRTC for symmetric, address-dependent and UDP-less networks, and allows it for cone NAT or none', () => {
    assert.match(webrtcBlocker('the peer', { mapping: 'address-and-port-dependent', udp: 'yes' }) ?? '', /symmetric NAT/)
    assert.match(webrtcBlocker('the peer', { mapping: 'address-dependent', udp: 'yes' }) ?? '', /address-dependent/)
    assert.match(webrtcBlocker('this donor', { mapping: 'no-udp', udp: 'no' }) ?? '', /no UDP/)
    assert.equal(webrtcBlocker('x', { mapping: 'endpoint-independent', udp: 'yes' }), undefined)
    assert.equal(webrtcBlocker('x', { mapping: 'none', udp: 'yes' }), undefined)
    assert.equal(webrtcBlocker('x', { mapping: 'unknown', udp: 'unknown' }), undefined, 'unknown is not hopeless: the upgrader waits for a verdict, then tries')
  })

  it('round-trips the nat-info message and reads words it does not know as unknown', () => {
    const info = { mapping: 'endpoint-independent', filtering: 'address-and-port-dependent', udp: 'yes', webrtc: true } as const
    assert.deepEqual(decodeNatInfo(encodeNatInfo(info)), info)
    const future = decodeNatInfo(encodeNatInfo({ ...info, mapping: 'something-new' as any }))
    assert.equal(future.mapping, 'unknown')
    assert.throws(() => decodeNatInfo(new Uint8Array([0xff])), /not dag-cbor/)
  })

  it('two relay-only donors get a WebRTC connection through the relay, the relayed one stays open, and a job goes direct', async (t) => {
    const ports = await freeUdpPorts(2)
    const relay: RelayHandle = track(await startRelay(loadRelayConfig({ dataDir: join(dir.path, 'relay'), listen: ['/ip4/127.0.0.1/tcp/0'], stunPorts: ports.map(String) }, {})))
    const bootstrap = relay.info.announceAddrs.filter(a => a.includes('/tcp/'))
    const executor = track(await startTestDonor(join(dir.path, 'executor'), bootstrap))
    const submitterDir = join(dir.path, 'submitter')
    const submitterHandle = track(await startDaemon(loadDaemonConfig({ dataDir: submitterDir, bootstrap, listen: ['/p2p-circuit'], apiPort: '0', noExecute: true }, {}), { reservation: FAST_RESERVATION }))
    const submitter = { ...submitterHandle, client: new ApiClient({ dataDir: submitterDir }) }
    await waitFor('executor reservation', async () => await reservedStatus(executor.client, relay.info.peerId))
    await waitFor('submitter reservation', async () => await reservedStatus(submitter.client, relay.info.peerId))
    const executorStatus = await executor.client.call('status', {})
    assert.ok(executorStatus.listenAddrs.some(a => transportOf(a) === 'webrtc'), `the executor advertises a /webrtc address: ${executorStatus.listenAddrs.join(' ')}`)
    assert.equal(executorStatus.reachability, 'private', 'a /webrtc address is not a direct listen address')
    await executorsSeen(submitter, 1)

    const started = Date.now()
    const status = await waitFor('a WebRTC connection from the submitter to the executor', async () => {
      const s = await submitter.client.call('status', {})
      return s.connections.some(c => c.peerId === executor.peerId && c.transport === 'webrtc' && c.direct) ? s : undefined
    }, 40_000, 100)
    const seenMs = Date.now() - started
    const path = status.directPaths?.find(p => p.peerId === executor.peerId)
    assert.equal(path?.state, 'direct', JSON.stringify(status.directPaths))
    assert.equal(path?.transport, 'webrtc')
    assert.match(path?.reason ?? '', /WebRTC through the NATs/)
    assert.ok(status.connections.some(c => c.peerId === executor.peerId && c.transport === 'circuit' && !c.direct), 'the relayed connection is still open (fallback)')
    const out: string[] = []
    renderStatus({ out: l => { out.push(l) }, err: () => {} }, status)
    assert.ok(out.some(l => /direct\s+webrtc/.test(l)), `status shows the WebRTC connection: ${out.join('\n')}`)
    assert.ok(out.some(l => l.startsWith('Direct paths (')), out.join('\n'))
    const onExecutor = await executor.client.call('status', {})
    assert.ok(onExecutor.connections.some(c => c.peerId === submitter.peerId && c.transport === 'webrtc' && c.direct), 'the executor sees the WebRTC connection too')
    const dials = await submitter.client.call('dials', { limit: 200 })
    const rtc = dials.attempts.find(d => d.transport === 'webrtc' && d.outcome === 'success')
    assert.ok(rtc != null, 'the WebRTC dial is in the dial telemetry')
    assert.equal(rtc.purpose, 'upgrade')
    assert.ok(records().some(r => r.level === 'info' && r.component === 'donor.direct' && r.peer === executor.peerId && r.transport === 'webrtc' && typeof r.duration_ms === 'number'), 'the upgrade is logged at INFO')
    t.diagnostic(`WebRTC upgrade: dial ${String(path?.durationMs)} ms; seen in status ${seenMs} ms after the executor was known`)

    const view = await finished(submitter.client, (await submit(submitter.client, 'primes.wasm', { input: '1000\n' })).jobId)
    assert.equal(view.status, 'succeeded', view.message)
    assert.equal(view.stdout, 'primes below 1000: 168\n')
    assert.equal(view.replicas[0].executor, executor.peerId)
    assert.equal(view.replicas[0].path, 'direct')
    assert.equal(view.replicas[0].receiptVerified, true)
  })

  it('a failed first WebRTC attempt is followed by a second one within seconds, not after the minute-long back-off', async (t) => {
    const { bootstrap, submitterDir, submitterHandle } = await relayAndSubmitter('retry')
    // fault injection: the submitter's first WebRTC dial fails as a spoiled DTLS handshake does; later ones are real
    const dialler = submitterHandle.donor.mesh.components.dialler
    const realDial = dialler.dialTransport.bind(dialler)
    let webrtcDials = 0
    let secondDialAt: number | undefined
    dialler.dialTransport = async (ma, options) => {
      if (transportOf(ma.toString()) === 'webrtc') {
        if (++webrtcDials === 1) throw Object.assign(new Error('injected: RTCPeerConnection connection state became "closed"'), { name: 'ConnectionFailedError' })
        if (webrtcDials === 2) secondDialAt = Date.now()
      }
      return await realDial(ma, options)
    }
    const submitter = { ...submitterHandle, client: new ApiClient({ dataDir: submitterDir }) }
    const executor = track(await startTestDonor(join(dir.path, 'executor-retry'), bootstrap))
    await executorsSeen(submitter, 1)
    const webrtcFailure = (attempt: number): Record<string, unknown> | undefined => records().find(r => r.level === 'warn' && r.component === 'donor.direct' && r.peer === executor.peerId && r.transport === 'webrtc' && r.attempt === attempt)
    const failedAt = await waitFor('the first WebRTC attempt to fail', () => webrtcFailure(1) != null ? Date.now() : undefined, 40_000, 50)
    const failure = webrtcFailure(1)
    assert.match(String(failure?.msg), /injected: RTCPeerConnection connection state became "closed"/, 'the cause is in the warning')
    // what is under test is when the second attempt starts; whether it connects is WebRTC's business, and a real
    // handshake can time out when the machine is loaded: then it must be reported as attempt 2, with its cause
    const outcome = await waitFor('the second WebRTC attempt to connect or fail', async () => {
      if (webrtcFailure(2) != null) return 'failed'
      const s = await submitter.client.call('status', {})
      return s.connections.some(c => c.peerId === executor.peerId && c.transport === 'webrtc' && c.direct) ? 'connected' : undefined
    }, 30_000, 100)
    assert.ok(secondDialAt != null, 'a second WebRTC dial was made')
    const afterMs = secondDialAt - failedAt
    t.diagnostic(`second attempt started ${afterMs} ms after the first failed, and ${outcome}`)
    assert.equal(webrtcDials, 2, 'exactly one more attempt')
    assert.ok(afterMs < 15_000, `the second attempt started ${afterMs} ms after the failure, not after the 60 s back-off`)
    const status = await submitter.client.call('status', {})
    if (outcome === 'connected') assert.equal(status.directPaths?.find(p => p.peerId === executor.peerId)?.state, 'direct')
    else assert.match(String(webrtcFailure(2)?.msg), /\S/, 'the second failure names its cause')
  })

  it('an upgrade to WebRTC in the middle of a job leaves the relayed task running to completion', async (t) => {
    const { bootstrap, submitterDir, submitterHandle } = await relayAndSubmitter('mid')
    // no upgrade until the task runs on the relayed connection: paused before any peer is known
    const direct = submitterHandle.donor.direct
    assert.ok(direct != null)
    direct.stop()
    const submitter = { ...submitterHandle, client: new ApiClient({ dataDir: submitterDir }) }
    const executor = track(await startTestDonor(join(dir.path, 'executor-mid'), bootstrap))
    await executorsSeen(submitter, 1)
    // a task that runs for exactly its deadline: long enough for the upgrade to land mid-task even
    // on a loaded machine where the first WebRTC attempt fails (8 s) and the quick second one connects
    const accepted = await submit(submitter.client, 'infinite-loop.wasm', { limits: { deadlineMs: 25_000 } })
    await waitFor('the task running on the executor', () => (executor.executor?.status().running ?? 0) > 0 ? true : undefined, 15_000)
    const before = await submitter.client.call('status', {})
    const relayed = before.connections.find(c => c.peerId === executor.peerId && c.transport === 'circuit')
    assert.ok(relayed != null, 'the task went over a relayed connection')
    assert.ok(!before.connections.some(c => c.peerId === executor.peerId && c.direct), 'no direct connection yet')

    direct.start()
    direct.schedule(executor.peerId, [], 'test: upgrade mid-job')
    const upgradeStarted = Date.now()
    const upgraded = await waitFor('a WebRTC connection while the task runs', async () => {
      const s = await submitter.client.call('status', {})
      return s.connections.some(c => c.peerId === executor.peerId && c.transport === 'webrtc') ? s : undefined
    }, 22_000, 100).catch(async (err: Error) => {
      const s = await submitter.client.call('status', {})
      throw new Error(`${err.message}; direct paths: ${JSON.stringify(s.directPaths)}; log: ${lines.filter(l => /donor\.direct|webrtc|nat/i.test(l)).slice(-30).join('\n')}`)
    })
    t.diagnostic(`WebRTC connection seen ${Date.now() - upgradeStarted} ms after the upgrade was asked for`)
    const running = await submitter.client.call('job', { id: accepted.jobId, full: false })
    t.diagnostic(`upgraded while the job was ${running.final ? 'already final' : 'still running'}`)
    assert.equal(running.final, false, 'the upgrade landed while the task was still running')
    assert.ok(upgraded.connections.some(c => c.remoteAddr === relayed.remoteAddr), 'the relayed connection carrying the task is still open')

    const view = await finished(submitter.client, accepted.jobId, 60_000)
    assert.equal(view.status, 'deadline_exceeded', view.message)
    assert.equal(view.replicas.length, 1, 'not sent twice')
    assert.equal(view.replicas[0].receiptVerified, true, 'the answer came back, signed, over the relayed connection')
    assert.equal(view.replicas[0].path, 'relayed', 'the task finished where it started')
    assert.ok(!lines.some(l => l.includes(accepted.jobId) && l.includes('path broke')), 'the task was never re-sent')
  })

  it('with --no-direct nothing is upgraded and no /webrtc address is advertised', async () => {
    const relay: RelayHandle = track(await startRelay(loadRelayConfig({ dataDir: join(dir.path, 'relay-nd'), listen: ['/ip4/127.0.0.1/tcp/0'], noStun: true }, {})))
    const bootstrap = relay.info.announceAddrs.filter(a => a.includes('/tcp/'))
    const d = track(await startTestDonor(join(dir.path, 'donor-nd'), bootstrap, ['/p2p-circuit'], { noDirect: true }))
    const s = await waitFor('reservation', async () => await reservedStatus(d.client, relay.info.peerId))
    assert.ok(s.listenAddrs.length > 0 && s.listenAddrs.every(a => transportOf(a) === 'circuit'), s.listenAddrs.join(' '))
    assert.deepEqual(s.directPaths, [])
  })
})
