/**
 * NAT type and reachability in the namespace lab (issue 4 "Reachability",
 * "Private deployments"): real `worldcompute relay` (its STUN responder on
 * UDP 3478/3479) and `worldcompute daemon` processes behind real iptables
 * NATs and firewalls; each donor's `status --json` must name its NAT.
 *
 *   npm run test:lab -- --only nat-type
 *   WC_LAB_RECORD_STUN=test/fixtures/stun …   also writes each site's raw STUN
 *                                               recording there (the classifier's fixtures)
 */
import assert from 'node:assert/strict'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { it, type TestContext } from 'node:test'
import { buildTopology, namespacesWithPrefix, type Firewall, type Lab, type NatKind } from './topology.ts'
import { NODE, startDonor, startRelay, statusOf, tail, type DonorNode, type RelayNode } from './processes.ts'
import { labSuite, markFailed, rows, RUN_ROOT, scenarioKeys, secs, TEST_TIMEOUT_MS, type Row } from './scenario.ts'
import { classifyNat, type StunRecording } from '../../src/net/stun/classify.ts'
import type { DaemonStatus } from '../../src/core/types.ts'

const only = scenarioKeys(['nat-type', 'autonat-open'] as const)
const STUN_RECORD = fileURLToPath(new URL('./stun-record.ts', import.meta.url))
/** the lab's "internet" is TEST-NET, which js-libp2p calls private: declare it public where AutoNAT must work */
const LAB_PUBLIC = ['--public-range', '198.51.100.0/24', '--public-range', '192.0.2.0/24', '--public-range', '203.0.113.0/24']

interface NatCase {
  /** site and fixture name */
  kind: 'cone' | 'symmetric' | 'open' | 'tcp-80-443-only'
  site: string
  host: string
  nat: NatKind
  firewall?: Firewall
  mapping: NonNullable<DaemonStatus['natMapping']>
  udp: NonNullable<DaemonStatus['udp']>
}

const CASES: NatCase[] = [
  { kind: 'cone', site: 'cone', host: 'dcone', nat: 'cone', mapping: 'endpoint-independent', udp: 'yes' },
  { kind: 'symmetric', site: 'sym', host: 'dsym', nat: 'symmetric', mapping: 'address-and-port-dependent', udp: 'yes' },
  { kind: 'open', site: 'open', host: 'dopen', nat: 'none', mapping: 'none', udp: 'yes' },
  { kind: 'tcp-80-443-only', site: 'fw', host: 'dfw', nat: 'cone', firewall: 'tcp-80-443-only', mapping: 'no-udp', udp: 'no' }
]

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** Polls `status --json` until `done` holds; bounded by `timeoutMs`. */
async function waitStatus (lab: Lab, donor: DonorNode, what: string, done: (s: DaemonStatus) => boolean, timeoutMs: number): Promise<{ status: DaemonStatus, ms: number }> {
  const deadline = Date.now() + timeoutMs
  let last: DaemonStatus | undefined
  while (Date.now() < deadline) {
    if (!donor.proc.running()) throw new Error(`daemon ${donor.name} exited before ${what}; stderr:\n${tail(donor.proc.stderr())}`)
    const s = await statusOf(lab, donor).catch(() => undefined)
    if (s != null) {
      last = s
      if (done(s)) return { status: s, ms: Date.now() - donor.startedAt }
    }
    await sleep(250)
  }
  throw new Error(`${donor.name}: no ${what} within ${timeoutMs} ms; last status: natMapping ${String(last?.natMapping)}, udp ${String(last?.udp)}, reachability ${String(last?.reachability)} (${String(last?.reachabilityReason)}), nat ${JSON.stringify(last?.nat)}; stderr:\n${tail(donor.proc.stderr())}`)
}

function stunPortsOf (relay: RelayNode): number[] {
  const line = relay.proc.stdoutLines.find(l => l.startsWith('{'))
  const info = line != null ? JSON.parse(line) as { stunAddrs?: string[] } : {}
  return (info.stunAddrs ?? []).map(a => Number(/\/udp\/(\d+)$/.exec(a)?.[1])).filter(p => p > 0)
}

async function withLab (t: TestContext, key: string, spec: Parameters<typeof buildTopology>[0], body: (lab: Lab, runDir: string, row: Row, track: { donors: DonorNode[], relays: RelayNode[] }) => Promise<void>): Promise<void> {
  const row: Row = { scenario: key, dispatchable: '-', time: '-', path: '-', job: '-', lab: '-' }
  rows.push(row)
  const runDir = join(RUN_ROOT, key)
  const lab = await buildTopology(spec)
  const track = { donors: [] as DonorNode[], relays: [] as RelayNode[] }
  let failure: unknown
  try {
    await body(lab, runDir, row, track)
  } catch (err) {
    failure = err
    markFailed()
    for (const p of [...track.relays, ...track.donors]) t.diagnostic(`--- ${p.host} log (${p.logFile}), last lines:\n${tail(p.proc.stderr(), 25)}`)
  } finally {
    await Promise.all(track.donors.map(async d => await d.proc.stop(10_000)))
    await Promise.all(track.relays.map(async r => await r.proc.stop(10_000)))
    const report = await lab.teardown()
    row.lab = `${lab.setupMs} ms / ${report.ms} ms`
    assert.deepEqual(namespacesWithPrefix(lab.prefix), [], 'no namespace of this scenario is left')
    assert.equal(report.strays, 0, 'no process is left inside a deleted namespace of this scenario')
  }
  if (failure != null) throw failure
}

labSuite('Network-namespace lab: NAT type from the relays\' STUN responders, and AutoNAT v2 reachability', () => {
  it('Donors behind cone NAT, symmetric NAT, no NAT and a TCP-80/443-only firewall report endpoint-independent, address-and-port-dependent, none and no-udp', { skip: only('nat-type'), timeout: TEST_TIMEOUT_MS }, async (t) => {
    await withLab(t, 'nat-type', {
      relays: [{ name: 'relay', ip: '198.51.100.10' }],
      sites: CASES.map(c => ({ name: c.site, nat: c.nat, ...(c.firewall != null ? { firewall: c.firewall } : {}), hosts: [{ name: c.host }] }))
    }, async (lab, runDir, row, track) => {
      const relay = await startRelay(lab, 'relay', runDir)
      track.relays.push(relay)
      const ports = stunPortsOf(relay)
      assert.deepEqual(ports, [3478, 3479], 'the relay announces its STUN responder on 3478 and 3479 in its start-up line')
      const bootstrap = [relay.addr.tcp, relay.addr.quic, relay.addr.ws]
      const donors = CASES.map(c => startDonor(lab, c.host, runDir, { name: c.host, bootstrap, noExecute: true }))
      track.donors.push(...donors)

      // the probe itself, run beside each daemon: its raw recording cross-checks the daemon's verdict
      const recordings = await Promise.all(CASES.map(async c => {
        const res = await lab.run(c.host, [NODE, STUN_RECORD, lab.ip('relay'), ...ports.map(String)], { timeoutMs: 20_000 })
        assert.equal(res.code, 0, `stun-record in ${c.host}: ${res.stderr}`)
        return JSON.parse(res.stdout) as StunRecording
      }))
      const recordDir = process.env.WC_LAB_RECORD_STUN
      if (recordDir != null && recordDir !== '') {
        mkdirSync(recordDir, { recursive: true })
        CASES.forEach((c, i) => { writeFileSync(join(recordDir, `${c.kind}.json`), JSON.stringify(recordings[i], null, 2) + '\n') })
        t.diagnostic(`STUN recordings written to ${recordDir}`)
      }

      // the 443-only donor first waits out its TCP 4001 and QUIC rungs: a minute bounds everyone
      const seen = await Promise.all(donors.map(async d => await waitStatus(lab, d, 'NAT verdict', s => s.natMapping != null && s.natMapping !== 'unknown', 60_000)))
      const figures: string[] = []
      CASES.forEach((c, i) => {
        const { status, ms } = seen[i]
        const offline = classifyNat(recordings[i])
        t.diagnostic(`${c.kind}: natMapping ${String(status.natMapping)}, natFiltering ${String(status.natFiltering)}, udp ${String(status.udp)}, seen as ${String(status.nat?.mappedAddress)} after ${ms} ms (probe ${String(status.nat?.durationMs)} ms): ${String(status.nat?.reason)}; reachability ${status.reachability} (${status.reachabilityReason})`)
        figures.push(`${c.kind} ${String(status.natMapping)} ${secs(ms)}`)
        assert.equal(status.natMapping, c.mapping, `${c.kind}: ${String(status.nat?.reason)}`)
        assert.equal(status.udp, c.udp, `${c.kind}: udp`)
        assert.equal(offline.mapping, c.mapping, `${c.kind}: the standalone probe agrees (${offline.reason})`)
        assert.deepEqual(status.nat?.servers, ports.map(p => `${lab.ip('relay')}:${p}`), `${c.kind}: probed the relay it is connected to, on the announced ports`)
        if (c.nat === 'cone' && c.firewall == null) assert.equal(status.natFiltering, 'address-and-port-dependent', 'a conntrack NAT drops the answer from the other port')
        if (c.udp === 'yes' && c.mapping !== 'none') assert.equal(status.nat?.mappedAddress?.split(':')[0], lab.publicIp(c.host), `${c.kind}: seen at the site router's WAN address`)
        // relay-only donors: reachable through the relay, and status says why
        assert.equal(status.reachability, 'private')
      })
      row.path = figures.join('; ')
    })
  })

  it('A donor with a public address on an open network is confirmed public by the relay\'s AutoNAT v2 server once the lab ranges are declared public', { skip: only('autonat-open'), timeout: TEST_TIMEOUT_MS }, async (t) => {
    await withLab(t, 'autonat-open', {
      relays: [{ name: 'relay', ip: '198.51.100.10' }],
      sites: [{ name: 'open', nat: 'none', hosts: [{ name: 'dopen' }] }, { name: 'cone', nat: 'cone', hosts: [{ name: 'dcone' }] }]
    }, async (lab, runDir, row, track) => {
      // the relay's AutoNAT v2 server refuses to dial back what libp2p calls private: it needs the ranges too
      const relay = await startRelay(lab, 'relay', runDir, { args: LAB_PUBLIC })
      track.relays.push(relay)
      const bootstrap = [relay.addr.tcp, relay.addr.quic, relay.addr.ws]
      const open = startDonor(lab, 'dopen', runDir, { name: 'dopen', bootstrap, noExecute: true, extraListen: [`/ip4/${lab.ip('dopen')}/tcp/4001`], args: LAB_PUBLIC })
      const cone = startDonor(lab, 'dcone', runDir, { name: 'dcone', bootstrap, noExecute: true, extraListen: [`/ip4/${lab.ip('dcone')}/tcp/4001`], args: LAB_PUBLIC })
      track.donors.push(open, cone)

      const pub = await waitStatus(lab, open, 'public reachability', s => s.reachability === 'public', 60_000)
      t.diagnostic(`open donor: ${pub.status.reachability} after ${pub.ms} ms: ${pub.status.reachabilityReason}; advertises ${pub.status.listenAddrs.join(' ')}`)
      assert.match(pub.status.reachabilityReason, /AutoNAT v2 confirmed \/ip4\/192\.0\.2\.\d+\/tcp\/4001/)
      assert.ok(pub.status.listenAddrs.some(a => a.startsWith(`/ip4/${lab.ip('dopen')}/tcp/4001/`)), 'its verified public address is advertised')

      const c = await waitStatus(lab, cone, 'a reservation', s => s.relays.length > 0, 60_000)
      t.diagnostic(`cone donor: ${c.status.reachability}: ${c.status.reachabilityReason}; advertises ${c.status.listenAddrs.join(' ')}`)
      assert.equal(c.status.reachability, 'private', 'a donor whose only address is RFC 1918 is private at once')
      assert.ok(c.status.listenAddrs.every(a => a.includes('/p2p-circuit')), `no private address is advertised to the mesh: ${c.status.listenAddrs.join(' ')}`)
      row.path = `open: public after ${secs(pub.ms)}; cone: private`
    })
  })
})
