/**
 * Proxy-only networks in the namespace lab (traversal issue network 6, lab
 * issue "proxy-only ↔ 443-only"): the executor's site has no route out at all
 * except one proxy on the internet; its only configuration is the proxy
 * environment variable. A real squid (basic auth from an htpasswd file) or a
 * real Dante SOCKS5 server runs on an internet host with its own config, pid
 * and log files in the run folder, and is stopped at clean-up.
 *
 *   npm run test:lab -- --only proxy-only      (or WC_LAB_ONLY=proxy-only,proxy-socks5)
 */
import assert from 'node:assert/strict'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { it, type TestContext } from 'node:test'
import { describeAttempt, dialsOf, startDonor, statusOf, tail, type DonorNode } from './processes.ts'
import { DANTED, danteMissing, PASSWORD, PROXY, PROXY_URL, serviceDir, SOCKS_PORT, SQUID_PORT, squidMissing, startSquid, USER, type Service } from './proxy-services.ts'
import { labSuite, pairScenario, scenarioKeys, TEST_TIMEOUT_MS } from './scenario.ts'
import { labEnv, type Lab } from './topology.ts'
import type { DaemonStatus, DialAttempt } from '../../src/core/types.ts'

const only = scenarioKeys(['proxy-only', 'proxy-socks5'] as const)

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** Dante (danted) as a SOCKS5 server without authentication on an internet host. */
async function startDante (lab: Lab, runDir: string): Promise<Service> {
  const dir = serviceDir(runDir, 'dante')
  const log = join(dir, 'danted.log')
  const conf = [
    `logoutput: ${log}`,
    `internal: ${PROXY.ip} port = ${SOCKS_PORT}`,
    `external: ${PROXY.ip}`,
    'clientmethod: none',
    'socksmethod: none',
    'user.privileged: root',
    'user.unprivileged: nobody',
    'client pass {', '  from: 0.0.0.0/0 to: 0.0.0.0/0', '  log: error connect', '}',
    'socks pass {', '  from: 0.0.0.0/0 to: 0.0.0.0/0', '  command: connect', '  log: error connect', '}',
    ''
  ].join('\n')
  writeFileSync(join(dir, 'danted.conf'), conf)
  // -N 1: one worker process; no -D: foreground
  const proc = lab.exec(PROXY.name, [DANTED ?? 'danted', '-f', join(dir, 'danted.conf'), '-p', join(dir, 'danted.pid'), '-N', '1'], { env: labEnv(), logFile: join(dir, 'danted.out') })
  const deadline = Date.now() + 20_000
  // Dante logs nothing when it is ready: probe its port from the proxy host itself
  while (Date.now() < deadline) {
    if (!proc.running()) throw new Error(`danted exited (${String((await proc.exited).code)}): ${proc.stderr()}`)
    const probe = await lab.run(PROXY.name, ['bash', '-c', `exec 3<>/dev/tcp/${PROXY.ip}/${SOCKS_PORT}`], { timeoutMs: 5_000 })
    if (probe.code === 0) break
    await sleep(100)
  }
  return { proc, dir, log, stop: async () => { await proc.stop(5_000) } }
}

/** Every log line, status field and dial record of a donor is free of the proxy password. */
async function assertNoPassword (lab: Lab, donor: DonorNode, status: DaemonStatus | undefined): Promise<void> {
  const encoded = encodeURIComponent(PASSWORD)
  const dials = await dialsOf(lab, donor)
  for (const [what, text] of [['log', donor.proc.stderr() + donor.proc.stdout()], ['status', JSON.stringify(status)], ['dials', JSON.stringify(dials)]] as const) {
    assert.ok(!text.includes(PASSWORD) && !text.includes(encoded), `the proxy password appears in the ${donor.name}'s ${what}`)
  }
}

/** Polls a daemon's dial records (bounded) until one matches. */
async function waitForDial (lab: Lab, donor: DonorNode, match: (a: DialAttempt) => boolean, timeoutMs = 30_000): Promise<DialAttempt> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (!donor.proc.running()) throw new Error(`${donor.name} exited: ${tail(donor.proc.stderr())}`)
    const found = (await dialsOf(lab, donor).catch(() => undefined))?.attempts.find(match)
    if (found != null) return found
    await sleep(300)
  }
  throw new Error(`${donor.name}: no matching dial record within ${timeoutMs} ms; log:\n${tail(donor.proc.stderr())}`)
}

/**
 * Two more daemons on the proxy-only host, each with a broken proxy setting:
 * a wrong password (squid answers 407) and a port the site's firewall drops
 * (the CONNECT never gets an answer). Each failure must be a dial record at
 * phase `proxy` with a cause, and a WARN line at the default log level.
 */
async function proxyFailures (t: TestContext, lab: Lab, runDir: string, relayWs: string): Promise<void> {
  const wrong = startDonor(lab, 'executor', runDir, { name: 'wrongpass', bootstrap: [relayWs], noExecute: true, env: { HTTPS_PROXY: `http://${USER}:not-the-password@${PROXY.ip}:${SQUID_PORT}` } })
  const dropped = startDonor(lab, 'executor', runDir, { name: 'dropped', bootstrap: [relayWs], noExecute: true, env: { HTTPS_PROXY: `http://${USER}:${encodeURIComponent(PASSWORD)}@${PROXY.ip}:${SQUID_PORT + 1}` } })
  try {
    const [auth, stall] = await Promise.all([
      waitForDial(lab, wrong, a => a.outcome === 'failure' && a.target === relayWs),
      waitForDial(lab, dropped, a => a.outcome === 'failure' && a.target === relayWs)
    ])
    t.diagnostic(`wrong password: ${describeAttempt(auth)}`)
    t.diagnostic(`proxy port dropped: ${describeAttempt(stall)}`)
    assert.deepEqual([auth.phase, auth.code], ['proxy', 'PROXY_AUTH_FAILED'])
    assert.match(auth.cause, /407 Proxy Authentication Required/)
    assert.match(auth.cause, /check the user and password in HTTPS_PROXY/)
    assert.deepEqual([stall.phase, stall.code], ['proxy', 'TIMEOUT'])
    assert.match(stall.cause, new RegExp(`through proxy http://\\*\\*\\*@${PROXY.ip.replaceAll('.', '\\.')}:${SQUID_PORT + 1}`))
    for (const d of [wrong, dropped]) {
      assert.match(d.proc.stderr(), / WARN +net\.dial: dial failed: .* at proxy: /, `${d.name} logs the proxy failure at the default level`)
      assert.ok(!d.proc.stderr().includes('not-the-password') && !d.proc.stderr().includes(encodeURIComponent(PASSWORD)), `${d.name}: no password in the log`)
      const st = await statusOf(lab, d)
      assert.equal(st?.relays.length, 0, `${d.name} is not dispatchable`)
      assert.equal(st?.proxies?.[0]?.inUse, false)
    }
  } finally {
    await Promise.all([wrong.proc.stop(10_000), dropped.proc.stop(10_000)])
  }
}

function proxyLine (t: TestContext, s: DaemonStatus | undefined): void {
  t.diagnostic(`executor status.proxies: ${JSON.stringify(s?.proxies)}`)
}

labSuite('Network-namespace lab: a donor whose only way out is a proxy', () => {
  it('A donor whose only way out is an authenticating HTTP CONNECT proxy (HTTPS_PROXY=http://user:pass@proxy:3128) joins and runs a job sent from a 443-only site', { skip: only('proxy-only') ?? squidMissing, timeout: TEST_TIMEOUT_MS }, async (t) => {
    let squid: Service | undefined
    let relayIp = ''
    await pairScenario(t, {
      key: 'proxy-only',
      submitter: { nat: 'cone', firewall: 'tcp-80-443-only' },
      executor: { nat: 'cone', firewall: 'proxy-only', proxy: `${PROXY.ip}:${SQUID_PORT}` },
      services: [PROXY],
      beforeDonors: async ({ lab, runDir }) => {
        squid = await startSquid(lab, runDir)
        t.diagnostic(`squid ${SQUID_PORT} ready on ${PROXY.ip} (pid ${squid.proc.pid}), files in ${squid.dir}`)
        return squid.stop
      },
      // the donor's only configuration beyond the bootstrap list
      donorEnv: (name): Record<string, string> => name === 'executor' ? { HTTPS_PROXY: PROXY_URL } : {},
      // QUIC and TCP 4001 cannot leave the proxy-only site: each must leave a record
      mustExplain: relay => ({ executor: [relay.addr.tcp, relay.addr.quic] }),
      during: async ({ t, lab, runDir, executor, relay }) => {
        const s = await statusOf(lab, executor)
        proxyLine(t, s)
        assert.equal(s?.relays[0]?.transport, 'ws', 'the executor reached the relay over the WebSocket rung')
        const p = s?.proxies?.find(x => x.inUse)
        assert.ok(p != null, `status shows a proxy in use: ${JSON.stringify(s?.proxies)}`)
        assert.deepEqual({ url: p.url, kind: p.kind, source: p.source, relays: p.relays }, {
          url: `http://***@${PROXY.ip}:${SQUID_PORT}`, kind: 'http', source: 'HTTPS_PROXY', relays: [relay.peerId]
        })
        const dials = await dialsOf(lab, executor)
        const win = dials.attempts.find(a => a.target === relay.addr.ws && a.outcome === 'success')
        assert.match(win?.cause ?? '', new RegExp(`through proxy http://\\*\\*\\*@${PROXY.ip.replaceAll('.', '\\.')}:${SQUID_PORT}`), 'the winning dial names the proxy')
        await assertNoPassword(lab, executor, s)
        assert.ok(/INFO +net: proxy: WebSocket dials via http:\/\/\*\*\*@198\.51\.100\.30:3128 \(HTTPS_PROXY\)/.test(executor.proc.stderr()), `the daemon logs the proxy at start-up:\n${tail(executor.proc.stderr(), 15)}`)
        relayIp = relay.addr.ws.split('/')[2]
        await proxyFailures(t, lab, runDir, relay.addr.ws)
      }
    })
    // squid writes a tunnel's access-log line when the tunnel closes: read it once squid has stopped
    const access = readFileSync(squid?.log ?? '', 'utf8')
    t.diagnostic(`squid access.log:\n${tail(access, 6)}`)
    assert.match(access, new RegExp(`TCP_TUNNEL/200 .*CONNECT ${relayIp.replaceAll('.', '\\.')}:443 ${USER} `), 'squid logged the authenticated CONNECT to the relay\'s port 443')
  })

  it('A donor whose only way out is a SOCKS5 proxy (ALL_PROXY=socks5://proxy:1080) joins over TCP through it and runs a job sent from a 443-only site', { skip: only('proxy-socks5') ?? danteMissing, timeout: TEST_TIMEOUT_MS }, async (t) => {
    let dante: Service | undefined
    await pairScenario(t, {
      key: 'proxy-socks5',
      submitter: { nat: 'cone', firewall: 'tcp-80-443-only' },
      executor: { nat: 'cone', firewall: 'proxy-only', proxy: `${PROXY.ip}:${SOCKS_PORT}` },
      services: [PROXY],
      beforeDonors: async ({ lab, runDir }) => {
        dante = await startDante(lab, runDir)
        t.diagnostic(`danted ready on ${PROXY.ip}:${SOCKS_PORT} (pid ${dante.proc.pid}), files in ${dante.dir}`)
        return dante.stop
      },
      donorEnv: (name): Record<string, string> => name === 'executor' ? { ALL_PROXY: `socks5://${PROXY.ip}:${SOCKS_PORT}` } : {},
      mustExplain: relay => ({ executor: [relay.addr.quic] }),
      during: async ({ t, lab, executor, relay }) => {
        const s = await statusOf(lab, executor)
        proxyLine(t, s)
        const p = s?.proxies?.find(x => x.inUse)
        assert.ok(p != null, `status shows the SOCKS5 proxy in use: ${JSON.stringify(s?.proxies)}`)
        assert.deepEqual({ url: p.url, kind: p.kind, source: p.source }, { url: `socks5://${PROXY.ip}:${SOCKS_PORT}`, kind: 'socks5', source: 'ALL_PROXY' })
        const transport = s?.relays[0]?.transport
        assert.ok(transport === 'tcp' || transport === 'ws', `the relay is reached over a proxied rung (tcp or ws), not ${String(transport)}`)
        t.diagnostic(`relay reached over ${String(transport)} through SOCKS5`)
        const log = existsSync(dante?.log ?? '') ? readFileSync(dante?.log ?? '', 'utf8') : ''
        t.diagnostic(`danted log:\n${tail(log, 6)}`)
        assert.match(log, new RegExp(`${relay.addr.tcp.split('/')[2].replaceAll('.', '\\.')}\\.(4001|443)`), 'Dante logged the connection to the relay')
      }
    })
  })
})
