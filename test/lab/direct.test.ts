/**
 * Direct upgrades in the namespace lab (issue 4 "Direct upgrades", issue 6
 * "cone ↔ cone (direct upgrade expected)", "cone ↔ symmetric", "open ↔ open"):
 * two relay-only donors meet through a relay; where the networks allow, the
 * submitter gets a direct connection to the executor (WebRTC through two cone
 * NATs, or a plain dial of a public address) and the job takes it; where they
 * do not, the job stays relayed and the log says why. Two donors on one LAN
 * dial each other across it, even behind a firewall that lets no UDP out.
 *
 *   npm run test:lab -- --only cone-direct
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { it } from 'node:test'
import { dialsOf, statusOf, tail, type DonorNode } from './processes.ts'
import { labSuite, pairScenario, runJobAcross, scenarioKeys, secs, TEST_TIMEOUT_MS, type PairContext } from './scenario.ts'
import type { Lab } from './topology.ts'
import type { DaemonStatus } from '../../src/core/types.ts'

const only = scenarioKeys(['cone-direct', 'cone-symmetric', 'open-direct', 'lan-direct'] as const)
/** the lab's "internet" is TEST-NET, which js-libp2p calls private: declare it public where a public address must count */
const LAB_PUBLIC = ['--public-range', '198.51.100.0/24', '--public-range', '192.0.2.0/24', '--public-range', '203.0.113.0/24']

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** Polls the donor's `status --json` until `done` holds; bounded by `timeoutMs`. */
async function waitStatus (lab: Lab, donor: DonorNode, what: string, done: (s: DaemonStatus) => boolean, timeoutMs: number): Promise<{ status: DaemonStatus, ms: number }> {
  const started = Date.now()
  const deadline = started + timeoutMs
  let last: DaemonStatus | undefined
  while (Date.now() < deadline) {
    if (!donor.proc.running()) throw new Error(`daemon ${donor.name} exited before ${what}; stderr:\n${tail(donor.proc.stderr())}`)
    const s = await statusOf(lab, donor).catch(() => undefined)
    if (s != null) {
      last = s
      if (done(s)) return { status: s, ms: Date.now() - started }
    }
    await sleep(200)
  }
  throw new Error(`${donor.name}: no ${what} within ${timeoutMs} ms; last connections ${JSON.stringify(last?.connections ?? null)}; directPaths ${JSON.stringify(last?.directPaths ?? null)}; natMapping ${String(last?.natMapping)}; stderr:\n${tail(donor.proc.stderr())}`)
}

async function executorId (ctx: PairContext): Promise<string> {
  const id = (await statusOf(ctx.lab, ctx.executor))?.peerId
  assert.ok(id != null, 'the executor answers status')
  return id
}

labSuite('Network-namespace lab: direct upgrades between donors that meet through a relay', () => {
  it('Donors behind cone NATs at two sites get a direct WebRTC connection through both NATs, and the job takes it', { skip: only('cone-direct'), timeout: TEST_TIMEOUT_MS }, async (t) => {
    await pairScenario(t, {
      key: 'cone-direct',
      submitter: { nat: 'cone' },
      executor: { nat: 'cone' },
      jobLabel: 'again: ',
      during: async (ctx) => {
        const { lab, submitter, executor } = ctx
        const exec = await executorId(ctx)
        // an idle donor hears no executors (its idle cost must not grow with the mesh); its first job makes its
        // broker listen, and it upgrades as soon as it learns the executor, once both NAT types are measured
        await runJobAcross(ctx, 'warm-up: ')
        const up = await waitStatus(lab, submitter, 'WebRTC connection to the executor',
          s => s.connections.some(c => c.peerId === exec && c.transport === 'webrtc' && c.direct), 45_000)
        const path = up.status.directPaths?.find(p => p.peerId === exec)
        t.diagnostic(`time to direct connection: ${secs(up.ms)} after the warm-up job (WebRTC dial ${String(path?.durationMs)} ms); ${path?.reason ?? ''}`)
        assert.equal(path?.state, 'direct', JSON.stringify(up.status.directPaths))
        assert.equal(up.status.natMapping, 'endpoint-independent')
        assert.ok(up.status.connections.some(c => c.peerId === exec && c.transport === 'circuit'), 'the relayed connection stays open as the fallback')
        const e = await statusOf(lab, executor)
        assert.ok(e?.connections.some(c => c.peerId === up.status.peerId && c.transport === 'webrtc' && c.direct), 'the executor sees the WebRTC connection too')
        const rtc = (await dialsOf(lab, submitter)).attempts.filter(a => a.transport === 'webrtc')
        t.diagnostic(`submitter's WebRTC dial records: ${rtc.map(a => `${a.outcome} at ${a.phase} in ${a.duration_ms} ms`).join('; ')}`)
        assert.ok(rtc.some(a => a.outcome === 'success' && a.purpose === 'upgrade'))

        const job = await runJobAcross(ctx, 'first: ')
        assert.equal(job.view.replicas[0].path, 'direct', 'the job went over the direct connection')
        const s = await statusOf(lab, submitter)
        assert.ok(s?.connections.some(c => c.peerId === exec && c.transport === 'webrtc'), 'the direct connection is WebRTC')
      }
    })
  })

  it('A cone-NAT donor and a symmetric-NAT donor stay relayed, and the log says why WebRTC was skipped', { skip: only('cone-symmetric'), timeout: TEST_TIMEOUT_MS }, async (t) => {
    await pairScenario(t, {
      key: 'cone-symmetric',
      submitter: { nat: 'cone' },
      executor: { nat: 'symmetric' },
      during: async (ctx) => {
        const { lab, submitter } = ctx
        const exec = await executorId(ctx)
        // the submitter's first job makes its broker listen for executors, and so decide about this one
        const job = await runJobAcross(ctx, 'first: ')
        assert.equal(job.view.replicas[0].path, 'relayed')
        const skipped = await waitStatus(lab, submitter, 'a WebRTC decision about the executor',
          s => s.directPaths?.some(p => p.peerId === exec && (p.state === 'skipped' || p.state === 'failed') && /symmetric/.test(p.reason)) === true, 45_000)
        const path = skipped.status.directPaths?.find(p => p.peerId === exec)
        t.diagnostic(`decided ${secs(skipped.ms)} after the first job: ${path?.state ?? '?'}: ${path?.reason ?? ''}`)
        const log = readFileSync(submitter.logFile, 'utf8').split('\n').filter(l => l.includes('WebRTC skipped'))
        t.diagnostic(`submitter's log:\n${log.slice(0, 3).join('\n')}`)
        assert.ok(log.some(l => l.includes(exec) && /symmetric NAT/.test(l)), 'one log line names the peer and the symmetric NAT')
        const rtc = (await dialsOf(lab, submitter)).attempts.filter(a => a.transport === 'webrtc')
        assert.deepEqual(rtc, [], 'no WebRTC dial was attempted: skipped at once')
      }
    })
  })

  it('Two donors on one LAN behind a firewall that lets no UDP out meet through a relay, dial each other across the LAN, and the job takes it', { skip: only('lan-direct'), timeout: TEST_TIMEOUT_MS }, async (t) => {
    await pairScenario(t, {
      key: 'lan-direct',
      submitter: { nat: 'cone', firewall: 'tcp-80-443-only' },
      executor: { nat: 'cone', firewall: 'tcp-80-443-only' },
      sameSite: true,
      // private listen addresses: announced to nobody, told only in the nat-info answer to a peer that asks
      extraListen: ip => [`/ip4/${ip}/tcp/4001`, `/ip4/${ip}/udp/4001/quic-v1`],
      jobLabel: 'again: ',
      during: async (ctx) => {
        const { lab, submitter, executor } = ctx
        const exec = await executorId(ctx)
        const lanPrefix = `/ip4/${lab.ip('executor').split('.').slice(0, 3).join('.')}.`
        const e = await statusOf(lab, executor)
        assert.ok(e?.listenAddrs.every(a => !a.startsWith(lanPrefix)), `the executor announces no LAN address: ${e?.listenAddrs.join(' ') ?? '?'}`)
        // an idle donor hears no executors; its first job makes its broker listen and upgrade (the task itself may go
        // relayed or, when the upgrade wins the race with its dispatch, already across the LAN)
        await runJobAcross(ctx, 'warm-up: ')
        const up = await waitStatus(lab, submitter, 'direct connection to the executor across the LAN',
          s => s.connections.some(c => c.peerId === exec && c.direct && c.remoteAddr.startsWith(lanPrefix)), 45_000)
        const path = up.status.directPaths?.find(p => p.peerId === exec)
        t.diagnostic(`time to direct connection: ${secs(up.ms)} after the warm-up job: ${path?.transport ?? '?'} ${path?.addr ?? ''} in ${String(path?.durationMs)} ms; ${path?.reason ?? ''}`)
        assert.equal(path?.state, 'direct', JSON.stringify(up.status.directPaths))
        assert.match(path?.reason ?? '', /address on this network/)
        // the premise: no UDP gets out, so WebRTC was never possible here (the STUN probe's verdict may come after the upgrade)
        await waitStatus(lab, submitter, 'STUN verdict that no UDP gets out', s => s.udp === 'no', 30_000)
        const lanDials = (await dialsOf(lab, submitter)).attempts.filter(a => a.purpose === 'upgrade' && a.target.startsWith(lanPrefix))
        assert.ok(lanDials.some(a => a.outcome === 'success'), JSON.stringify(lanDials))

        const job = await runJobAcross(ctx, 'first: ')
        assert.equal(job.view.replicas[0].path, 'direct', 'the job went over the LAN')
      }
    })
  })

  it('Donors on open networks with public addresses connect directly, and the job goes over TCP or QUIC', { skip: only('open-direct'), timeout: TEST_TIMEOUT_MS }, async (t) => {
    await pairScenario(t, {
      key: 'open-direct',
      submitter: { nat: 'none' },
      executor: { nat: 'none' },
      extraListen: ip => [`/ip4/${ip}/tcp/4001`, `/ip4/${ip}/udp/4001/quic-v1`],
      donorArgs: () => LAB_PUBLIC,
      // the relays' AutoNAT v2 server must count the lab's addresses as public to dial them back
      relayArgs: LAB_PUBLIC,
      jobLabel: 'again: ',
      during: async (ctx) => {
        const { lab, submitter } = ctx
        const exec = await executorId(ctx)
        // an idle donor hears no executors; its first job makes its broker listen and connect
        await runJobAcross(ctx, 'warm-up: ')
        const up = await waitStatus(lab, submitter, 'direct TCP/QUIC connection to the executor',
          s => s.connections.some(c => c.peerId === exec && c.direct && (c.transport === 'tcp' || c.transport === 'quic')), 45_000)
          .catch(async (err: unknown) => {
            const e = await statusOf(lab, ctx.executor)
            t.diagnostic(`executor: reachability ${String(e?.reachability)} (${String(e?.reachabilityReason)}); advertises ${e?.listenAddrs.join(' ') ?? '?'}`)
            throw err
          })
        // AutoNAT v2 dial-backs may close it once (DirectPaths dials again): still there a moment later?
        await sleep(1_500)
        await waitStatus(lab, submitter, 'direct TCP/QUIC connection to the executor, still open',
          s => s.connections.some(c => c.peerId === exec && c.direct && (c.transport === 'tcp' || c.transport === 'quic')), 20_000)
        const conn = up.status.connections.find(c => c.peerId === exec && c.direct && (c.transport === 'tcp' || c.transport === 'quic'))
        const path = up.status.directPaths?.find(p => p.peerId === exec)
        t.diagnostic(`time to direct connection: ${secs(up.ms)} after the warm-up job: ${conn?.transport ?? '?'} ${conn?.remoteAddr ?? ''}; ${path?.reason ?? '(connected by the broker or the executor)'}`)
        const job = await runJobAcross(ctx, 'first: ')
        assert.equal(job.view.replicas[0].path, 'direct', 'the job went over the direct connection')
        const s = await statusOf(lab, submitter)
        assert.ok(s?.connections.some(c => c.peerId === exec && c.direct && (c.transport === 'tcp' || c.transport === 'quic')))
      }
    })
  })
})
