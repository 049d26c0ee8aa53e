/**
 * Evidence bundles: what `doctor --evidence` writes validates, carries no
 * proxy password, and every kind of damage is rejected with a reason — by
 * the library and by `worldcompute evidence validate`.
 */
import assert from 'node:assert/strict'
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { assess } from '../../src/doctor/assess.ts'
import { validateEvidence, writeEvidenceBundle } from '../../src/doctor/evidence.ts'
import { runCli } from '../helpers/cli.ts'
import type { DoctorObservations, DoctorReport } from '../../src/core/doctor.ts'
import type { DialAttempt } from '../../src/core/types.ts'

const root = mkdtempSync(join(tmpdir(), 'wc-evidence-'))
after(() => { rmSync(root, { recursive: true, force: true }) })

const R = '12D3KooWQDkDvGNNGUoD3kFFaVSzTZ3udBbj3zMxiFHdb7aAmDgY'
const WS = `/ip4/198.51.100.10/tcp/443/ws/p2p/${R}`
const PASSWORD = 'c0rp:pr0xy@pass'
const PROXY = `http://donor:${encodeURIComponent(PASSWORD)}@198.51.100.30:3128`

function report (): DoctorReport {
  const obs: DoctorObservations = {
    bootstrap: [WS],
    relays: [R],
    dns: [{ addr: WS, via: 'literal', resolved: [WS] }],
    doh: [],
    dohEndpoints: [],
    rungs: [{ relay: R, addr: WS, transport: 'ws', host: '198.51.100.10', port: 443, outcome: 'success', phase: 'protocol', durationMs: 40, proxy: 'http://***@198.51.100.30:3128' }],
    proxies: [{ url: 'http://***@198.51.100.30:3128', kind: 'http', source: 'HTTPS_PROXY', usedFor: ['wss', 'ws'], noProxyRules: 0, inUse: true, relays: [R], tunnels: 1 }],
    nat: { mapping: 'no-udp', filtering: 'unknown', udp: 'no', reason: 'no answer over UDP', servers: ['198.51.100.10:3478'] },
    reachability: { value: 'private', reason: 'relay-only' },
    reservations: [{ peerId: R, circuitAddr: `${WS}/p2p-circuit`, transport: 'ws', since: '2026-11-29T20:00:01.000Z', addr: WS }],
    reservationErrors: [{ relay: R, state: 'reserved' }],
    tls: [],
    tlsNote: 'no WebSocket-over-TLS connection',
    clock: { detail: 'no direct path' },
    webrtcTransport: true,
    observedMs: 2000
  }
  return { ...assess(obs), startedAt: '2026-11-29T20:00:00.000Z', endedAt: '2026-11-29T20:00:02.000Z', version: '0.1.0', peerId: '12D3KooWHYjXBnGXRwkjpmZX7HG9ANHNgkS6EjVuAGmaEohkKwRi', observations: obs }
}

const trace: DialAttempt[] = [
  { ts: '2026-11-29T20:00:00.100Z', target: WS, peerId: R, transport: 'ws', phase: 'protocol', outcome: 'success', cause: 'connected (through proxy http://***@198.51.100.30:3128)', code: 'OK', duration_ms: 40.4, purpose: 'doctor' },
  { ts: '2026-11-29T20:00:00.100Z', target: `/ip4/198.51.100.10/tcp/4001/p2p/${R}`, peerId: R, transport: 'tcp', phase: 'tcp-connect', outcome: 'failure', cause: 'TCP connect timed out', code: 'TIMEOUT', duration_ms: 2500, purpose: 'doctor' }
]

let n = 0
function bundle (): string {
  const dir = join(root, `run${n++}`)
  return writeEvidenceBundle({
    root: dir,
    report: report(),
    trace,
    // a careless log line with the proxy URL in it: the bundle must not keep the password
    log: `20:00:00.000 INFO  net: proxy from HTTPS_PROXY=${PROXY}\n20:00:00.100 INFO  net.dial: dial ok\n`,
    env: { HTTPS_PROXY: PROXY, WORLDCOMPUTE_BOOTSTRAP: WS, SECRET_TOKEN: 'never-kept' },
    command: 'worldcompute doctor --evidence x'
  })
}

function only (dir: string): { ok: boolean, problems: string[] } {
  const [v] = validateEvidence(dir)
  return v
}

describe('evidence bundles', () => {
  it('writes phase1/firewall-traversal/<UTC stamp>/ with the five files, which validate', () => {
    const dir = bundle()
    assert.match(dir, /phase1\/firewall-traversal\/20261129T200000Z$/)
    assert.deepEqual(readdirSync(dir).sort(), ['index.md', 'metadata.json', 'results.json', 'run.log', 'trace.jsonl'])
    const v = only(dir)
    assert.deepEqual(v.problems, [])
    const meta = JSON.parse(readFileSync(join(dir, 'metadata.json'), 'utf8'))
    assert.equal(meta.area, 'firewall-traversal')
    assert.equal(meta.machines[0].network_profile.nat_mapping, 'no-udp')
    assert.equal(meta.machines[0].network_profile.path.viaProxy, true)
    assert.deepEqual(Object.keys(meta.env).sort(), ['HTTPS_PROXY', 'WORLDCOMPUTE_BOOTSTRAP'], 'only the named variables are kept')
    const results = JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8'))
    assert.equal(results.overall, 'partial', 'can donate, but some checks are not yes')
    assert.deepEqual(results.assertions[0], { name: 'can-donate', expected: true, observed: true, pass: true })
    const lines = readFileSync(join(dir, 'trace.jsonl'), 'utf8').trim().split('\n').map(l => JSON.parse(l))
    assert.equal(lines.length, 2)
    assert.deepEqual(Object.keys(lines[1]).slice(0, 8), ['type', 'ts', 'target', 'transport', 'phase', 'outcome', 'cause', 'duration_ms'])
    assert.equal(lines[0].duration_ms, 40)
    // the whole root validates too (every bundle under it)
    assert.equal(validateEvidence(join(root, 'run0')).every(x => x.ok), true)
  })

  it('keeps no proxy password in any file', () => {
    const dir = bundle()
    for (const f of readdirSync(dir)) {
      const text = readFileSync(join(dir, f), 'utf8')
      assert.ok(!text.includes(PASSWORD) && !text.includes(encodeURIComponent(PASSWORD)), `${f} holds the proxy password`)
      assert.ok(!text.includes('never-kept'), `${f} holds an unrelated environment variable`)
    }
    assert.match(readFileSync(join(dir, 'run.log'), 'utf8'), /HTTPS_PROXY=http:\/\/\*\*\*@198\.51\.100\.30:3128/)
  })

  const damages: Array<[string, (dir: string) => void, RegExp]> = [
    ['a missing file', dir => { rmSync(join(dir, 'trace.jsonl')) }, /trace\.jsonl is missing/],
    ['results.json that is not JSON', dir => { writeFileSync(join(dir, 'results.json'), '{"overall": "pass",') }, /results\.json.*not valid JSON/],
    ['an overall that contradicts the assertions', dir => {
      const r = JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8'))
      r.overall = 'pass'
      writeFileSync(join(dir, 'results.json'), JSON.stringify(r))
    }, /overall is "pass" but \d+ assertion\(s\) failed/],
    ['a metadata field missing', dir => {
      const m = JSON.parse(readFileSync(join(dir, 'metadata.json'), 'utf8'))
      delete m.git_sha
      m.machines = []
      writeFileSync(join(dir, 'metadata.json'), JSON.stringify(m))
    }, /"git_sha" must be a non-empty string/],
    ['a trace line that is not a dial attempt', dir => { appendFileSync(join(dir, 'trace.jsonl'), '{"type":"dial_attempt","ts":"yesterday","target":"x","transport":"tcp","phase":"tcp-connect","outcome":"lost","cause":"","duration_ms":-1}\n') }, /trace\.jsonl line 3: "ts" must be an ISO 8601/],
    ['a password left in a URL', dir => { appendFileSync(join(dir, 'run.log'), `retrying through ${PROXY}\n`) }, /run\.log contains credentials in a URL/],
    ['a run.log of 10 MB', dir => { truncateSync(join(dir, 'run.log'), 10 * 1024 * 1024) }, /run\.log is 10485760 bytes; it must be under 10485760/]
  ]
  for (const [what, damage, expected] of damages) {
    it(`rejects a bundle with ${what}, saying why`, () => {
      const dir = bundle()
      damage(dir)
      const v = only(dir)
      assert.equal(v.ok, false)
      assert.ok(v.problems.some(p => expected.test(p)), `expected ${String(expected)} among:\n${v.problems.join('\n')}`)
    })
  }

  it('`worldcompute evidence validate` exits 0 for a good bundle and 1 with the reasons for a damaged one', async () => {
    const good = bundle()
    const ok = await runCli(['evidence', 'validate', good])
    assert.equal(ok.code, 0, ok.stderr)
    assert.match(ok.stdout, /^valid: .*20261129T200000Z \(overall partial, 2 dial attempt\(s\)\)/)
    const bad = bundle()
    rmSync(join(bad, 'index.md'))
    writeFileSync(join(bad, 'metadata.json'), '[]')
    const res = await runCli(['evidence', 'validate', bad])
    assert.equal(res.code, 1)
    assert.match(res.stdout, /INVALID: /)
    assert.match(res.stdout, /index\.md is missing/)
    assert.match(res.stdout, /metadata\.json.*must hold a JSON object/)
    const missing = await runCli(['evidence', 'validate', join(root, 'nowhere')])
    assert.equal(missing.code, 1)
    assert.match(missing.stderr, /does not exist/)
    assert.ok(!existsSync(join(root, 'nowhere')))
  })
})
