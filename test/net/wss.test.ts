import assert from 'node:assert/strict'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { firstJson, runCli, startCli, type LongRunning } from '../helpers/cli.ts'
import { tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'
import { makeTestCerts } from '../helpers/tls.ts'

const dir = tempDir('wc-wss-')
const started: LongRunning[] = []

after(async () => {
  for (const p of started) await p.stop()
  dir.cleanup()
})

describe('WebSocket over TLS to a relay', () => {
  it('an untrusted relay certificate is reported at the tls phase, and trusting the CA gives a wss reservation', async () => {
    const certDir = join(dir.path, 'certs')
    mkdirSync(certDir)
    const certs = makeTestCerts(certDir)
    const relay = startCli(['relay', '--data-dir', join(dir.path, 'relay'), '--json',
      '--listen', '/ip4/127.0.0.1/tcp/0/tls/ws', '--tls-cert', certs.cert, '--tls-key', certs.key])
    started.push(relay)
    const info = await firstJson(relay)
    const wssAddr: string | undefined = info.announceAddrs.find((a: string) => a.includes('/tls/ws'))
    assert.ok(wssAddr != null, `relay advertises a /tls/ws address: ${JSON.stringify(info)}`)

    // without the CA: the donor must say the certificate is the problem, not "ErrorEvent"
    const untrustedDir = join(dir.path, 'donor-untrusted')
    const untrusted = startCli(['daemon', '--data-dir', untrustedDir, '--listen', '/p2p-circuit', '--api-port', '0', '--bootstrap', wssAddr])
    started.push(untrusted)
    const failure = await waitFor('a recorded TLS failure', async () => {
      const res = await runCli(['dials', '--data-dir', untrustedDir, '--json'])
      if (res.code !== 0) return undefined
      return JSON.parse(res.stdout).attempts.find((a: any) => a.outcome === 'failure' && a.target === wssAddr)
    }, 20_000)
    assert.equal(failure.transport, 'wss')
    assert.equal(failure.phase, 'tls')
    assert.equal(failure.code, 'TLS_UNTRUSTED')
    assert.match(failure.cause, /certificate/)
    assert.match(failure.cause, /NODE_EXTRA_CA_CERTS/)
    await waitFor('the failure line on stderr', () => /dial failed: .*\/tls\/ws.*\(wss\).* at tls: TLS certificate rejected/.test(untrusted.stderr()) ? true : undefined)
    assert.equal(await untrusted.stop(), 0)

    // with the CA trusted the same address works and status says wss
    const trustedDir = join(dir.path, 'donor-trusted')
    const trusted = startCli(['daemon', '--data-dir', trustedDir, '--listen', '/p2p-circuit', '--api-port', '0', '--bootstrap', wssAddr],
      { env: { NODE_EXTRA_CA_CERTS: certs.caCert } })
    started.push(trusted)
    const status = await waitFor('a reservation over wss', async () => {
      const res = await runCli(['status', '--data-dir', trustedDir, '--json'])
      if (res.code !== 0) return undefined
      const s = JSON.parse(res.stdout)
      return s.relays.length > 0 ? s : undefined
    }, 20_000)
    assert.equal(status.relays[0].transport, 'wss')
    assert.equal(status.relays[0].peerId, info.peerId)
    assert.equal(await trusted.stop(), 0)
  })
})
