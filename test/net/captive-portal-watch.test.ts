/**
 * The donor's captive portal watch (src/donor/captive-portal-watch.ts) on a
 * fake clock: when it probes, its back-off while a portal is seen, the one
 * warning, and the wake of the reservation manager once the portal lets the
 * device out.
 */
import assert from 'node:assert/strict'
import { afterEach, beforeEach, describe, it, mock } from 'node:test'
import { CaptivePortalWatch } from '../../src/donor/captive-portal-watch.ts'
import { recordingLogger, type LogLine } from '../helpers/recording-logger.ts'
import { renderStatus } from '../../src/cli/render.ts'
import type { CaptivePortalProbe, DaemonStatus } from '../../src/core/types.ts'

const URLS = ['http://198.51.100.10:80/generate_204']
const RELAY = '12D3KooWGvdtpGj2EWhKEukHYaHEdK7BTGXyivp27nDq4ChkZwHk'
const SIGN_IN = 'http://portal.lab.example/login'

function answer (state: CaptivePortalProbe['state']): CaptivePortalProbe {
  const answers: CaptivePortalProbe['answers'] = state === 'yes'
    ? [{ url: URLS[0], outcome: 'portal', status: 302, signInUrl: SIGN_IN, detail: `302 redirect to ${SIGN_IN}` }]
    : state === 'no' ? [{ url: URLS[0], outcome: 'relay', status: 204, detail: '204 from the relay' }] : [{ url: URLS[0], outcome: 'silent', detail: 'no answer' }]
  return { state, ...(state === 'yes' ? { url: SIGN_IN } : {}), answers, detail: state, checkedAt: new Date().toISOString() }
}

/** Starts the watch and lets its first probe, 1 s later, run. */
async function started (watch: CaptivePortalWatch): Promise<void> {
  watch.start()
  await settle()
  mock.timers.tick(1_000)
  await settle()
}

/** Lets the watch's promises settle between clock ticks (setImmediate is not faked). */
async function settle (): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>(resolve => { setImmediate(resolve) })
}

describe('the captive portal watch', () => {
  let lines: LogLine[]
  let probes: number[]
  let script: Array<CaptivePortalProbe['state']>
  let letOut: number
  let watch: CaptivePortalWatch

  beforeEach(() => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 })
    lines = []
    probes = []
    letOut = 0
    script = []
    watch = new CaptivePortalWatch({
      urls: URLS,
      probe: async () => {
        probes.push(Date.now())
        return answer(script.shift() ?? 'no')
      },
      onLetOut: () => { letOut++ },
      relayOf: url => url === URLS[0] ? RELAY : undefined,
      recheck: { initialMs: 10_000, maxMs: 60_000 },
      suspectIntervalMs: 30_000,
      logger: recordingLogger(lines)
    })
  })

  afterEach(async () => {
    await watch.stop()
    mock.timers.reset()
  })

  it('probes 1 s after start, warns once with the sign-in URL, asks again at 10 s, 20 s, 40 s, 60 s, and wakes the relays when the relay answers', async () => {
    script = ['yes', 'yes', 'yes', 'yes', 'yes', 'no']
    await started(watch)
    assert.deepEqual(probes, [1_001_000])
    const seen = watch.status()
    assert.equal(seen.state, 'yes')
    assert.equal(seen.url, SIGN_IN)
    assert.equal(seen.since, new Date(1_001_000).toISOString())
    for (const wait of [10_000, 20_000, 40_000, 60_000, 60_000]) {
      mock.timers.tick(wait - 1)
      await settle()
      const before = probes.length
      mock.timers.tick(1)
      await settle()
      assert.equal(probes.length, before + 1, `a probe after ${wait} ms, not before`)
    }
    const warnings = lines.filter(l => l.fields?.code === 'CAPTIVE_PORTAL')
    assert.equal(warnings.length, 1, 'one warning for the whole time the portal is seen')
    assert.equal(warnings[0].level, 'warn')
    assert.equal(warnings[0].fields?.url, SIGN_IN)
    assert.equal(warnings[0].fields?.peer, RELAY, 'the warning names the relay whose probe met the portal')
    assert.equal(warnings[0].fields?.addr, URLS[0])
    assert.match(warnings[0].msg, /sign-in page \(captive portal\) at http:\/\/portal\.lab\.example\/login: open it in a browser and sign in/)
    assert.equal(letOut, 1)
    assert.equal(watch.status().state, 'no')
    assert.equal(watch.status().url, undefined)
    assert.ok(lines.some(l => l.level === 'info' && l.fields?.code === 'CAPTIVE_PORTAL_GONE'))
  })

  it('runs no timer while no portal is seen, and probes on suspicion at most once per interval', async () => {
    script = ['no', 'no', 'no']
    await started(watch)
    assert.equal(probes.length, 1)
    mock.timers.tick(3_600_000)
    await settle()
    assert.equal(probes.length, 1, 'no probe without a reason')
    watch.suspect()
    await settle()
    assert.equal(probes.length, 2, 'the last probe was long ago: at once')
    watch.suspect()
    watch.suspect()
    await settle()
    assert.equal(probes.length, 2, 'not again within the interval')
    mock.timers.tick(30_000)
    await settle()
    assert.equal(probes.length, 3)
    assert.equal(letOut, 0, 'no portal was seen: nothing to wake')
  })

  it('keeps a portal seen through a silent probe, and asks again', async () => {
    script = ['yes', 'unknown', 'yes']
    await started(watch)
    mock.timers.tick(10_000)
    await settle()
    assert.equal(watch.status().state, 'yes', 'silence is not the portal letting us out')
    mock.timers.tick(20_000)
    await settle()
    assert.equal(probes.length, 3)
    assert.equal(lines.filter(l => l.fields?.code === 'CAPTIVE_PORTAL').length, 1)
    assert.equal(letOut, 0)
  })

  it('asks again at once when a relay connection opens while a portal is seen, and not otherwise', async () => {
    script = ['yes', 'no']
    await started(watch)
    watch.relayReached()
    await settle()
    assert.equal(probes.length, 2, 'no wait for the 10 s re-check')
    assert.equal(watch.status().state, 'no')
    assert.equal(letOut, 1)
    watch.relayReached()
    await settle()
    assert.equal(probes.length, 2, 'no portal seen: a relay connection asks nothing')
  })

  it('logs a probe that throws as a warning with its code and goes on', async () => {
    const failing = new CaptivePortalWatch({
      urls: URLS,
      probe: async () => { throw new Error('out of file descriptors') },
      onLetOut: () => {},
      logger: recordingLogger(lines)
    })
    await started(failing)
    await failing.stop()
    const line = lines.find(l => l.fields?.code === 'CAPTIVE_PORTAL_PROBE_FAILED')
    assert.ok(line != null)
    assert.equal(line.level, 'warn')
    assert.equal(failing.status().state, 'unknown')
  })
})

describe('worldcompute status', () => {
  const base: DaemonStatus = {
    peerId: '12D3KooWFHoexRyGtSjZ4w9efbFsD5R1bDvjAg5WcKkMe38NtXpC',
    reachability: 'unknown',
    reachabilityReason: 'no relay yet',
    listenAddrs: [],
    relays: [],
    connections: [],
    bootstrap: [],
    startedAt: '2026-12-06T18:00:00.000Z',
    version: 'test'
  }
  const rendered = (s: DaemonStatus): string[] => {
    const out: string[] = []
    renderStatus({ out: (l) => { out.push(l) }, err: () => {} }, s)
    return out
  }

  it('says in plain words where to sign in while a portal is seen', () => {
    const out = rendered({ ...base, captivePortal: { state: 'yes', url: SIGN_IN, since: '2026-12-06T18:00:01.000Z', checkedAt: '2026-12-06T18:00:11.000Z' } })
    assert.ok(out.includes(`Captive portal: this network shows a sign-in page at ${SIGN_IN} (since 2026-12-06T18:00:01.000Z): open it in a browser and sign in; the donor joins by itself afterwards`), out.join('\n'))
  })

  it('says none when a relay answered, and nothing before the first check', () => {
    assert.ok(rendered({ ...base, captivePortal: { state: 'no', checkedAt: '2026-12-06T18:00:11.000Z' } }).includes('Captive portal: none (a relay answered the probe)'))
    assert.ok(!rendered({ ...base, captivePortal: { state: 'unknown' } }).some(l => l.startsWith('Captive portal')))
    assert.ok(!rendered(base).some(l => l.startsWith('Captive portal')), 'an older daemon without the field')
  })
})
