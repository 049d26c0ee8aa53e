import assert from 'node:assert/strict'
import { existsSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { firstJson, runCli, startCli, type LongRunning } from '../helpers/cli.ts'
import { tempDir } from '../helpers/mesh.ts'
import { waitFor } from '../helpers/wait.ts'

const dir = tempDir('wc-cli-')
const started: LongRunning[] = []

after(async () => {
  for (const p of started) await p.stop()
  dir.cleanup()
})

describe('worldcompute CLI', () => {
  it('id prints the same PeerId for the same data dir and keeps the key at mode 0600', async () => {
    const dataDir = join(dir.path, 'id')
    const first = await runCli(['id', '--data-dir', dataDir, '--json'])
    assert.equal(first.code, 0, first.stderr)
    const { peerId } = JSON.parse(first.stdout)
    assert.match(peerId, /^12D3KooW/)
    const second = await runCli(['id', '--data-dir', dataDir])
    assert.equal(second.stdout.trim(), peerId)
    const viaEnv = await runCli(['id', '--json'], { env: { WORLDCOMPUTE_DATA_DIR: dataDir } })
    assert.equal(JSON.parse(viaEnv.stdout).peerId, peerId)
    assert.equal(statSync(join(dataDir, 'identity.key')).mode & 0o777, 0o600)
  })

  it('status with no daemon says so in one line, with how to start one, and exits non-zero', async () => {
    const dataDir = join(dir.path, 'nodaemon')
    const res = await runCli(['status', '--data-dir', dataDir])
    assert.notEqual(res.code, 0)
    assert.equal(res.stdout, '')
    const lines = res.stderr.trim().split('\n')
    assert.equal(lines.length, 1, res.stderr)
    assert.match(lines[0], /no daemon is running/)
    assert.match(lines[0], /worldcompute daemon --data-dir/)
  })

  it('daemon rejects a bad --bootstrap value at start, naming the flag and the value', async () => {
    const res = await runCli(['daemon', '--data-dir', join(dir.path, 'bad'), '--api-port', '0', '--bootstrap', '/ip4/999.1.1.1/tcp/1'])
    assert.notEqual(res.code, 0)
    assert.match(res.stderr, /--bootstrap/)
    assert.match(res.stderr, /\/ip4\/999\.1\.1\.1\/tcp\/1/)
    assert.doesNotMatch(res.stderr, /at .*\.ts:\d+/, 'no stack trace for a user error')
  })

  it('daemon rejects a bad WORLDCOMPUTE_BOOTSTRAP value naming the variable', async () => {
    const res = await runCli(['daemon', '--data-dir', join(dir.path, 'bad-env'), '--api-port', '0'], { env: { WORLDCOMPUTE_BOOTSTRAP: 'not-a-multiaddr' } })
    assert.notEqual(res.code, 0)
    assert.match(res.stderr, /WORLDCOMPUTE_BOOTSTRAP/)
    assert.match(res.stderr, /not-a-multiaddr/)
  })

  it('an unknown flag is a usage error with exit code 2', async () => {
    const res = await runCli(['status', '--no-such-flag'])
    assert.equal(res.code, 2)
    assert.match(res.stderr, /no-such-flag/)
  })

  it('a relay and a relay-only daemon started by hand: status shows the reservation, ping shows the path, SIGTERM stops cleanly', async () => {
    const relay = startCli(['relay', '--data-dir', join(dir.path, 'relay'), '--json', '--listen', '/ip4/127.0.0.1/tcp/0', '--listen', '/ip4/127.0.0.1/udp/0/quic-v1'])
    started.push(relay)
    const info = await firstJson(relay)
    assert.match(info.peerId, /^12D3KooW/)
    assert.ok(info.listenAddrs.length >= 2)
    const tcpAddr: string = info.announceAddrs.find((a: string) => a.includes('/tcp/') && a.startsWith('/ip4/127.0.0.1/'))
    const quicAddr: string = info.announceAddrs.find((a: string) => a.includes('/quic-v1') && a.startsWith('/ip4/127.0.0.1/'))
    assert.ok(tcpAddr != null && quicAddr != null, JSON.stringify(info))

    const dataDir = join(dir.path, 'donor')
    const daemon = startCli(['daemon', '--data-dir', dataDir, '--listen', '/p2p-circuit', '--api-port', '0', '--bootstrap', quicAddr])
    started.push(daemon)
    const status = await waitFor('reservation in status --json', async () => {
      const res = await runCli(['status', '--data-dir', dataDir, '--json'])
      if (res.code !== 0) return undefined
      const s = JSON.parse(res.stdout)
      return s.relays.length > 0 ? s : undefined
    }, 20_000)
    for (const key of ['peerId', 'reachability', 'listenAddrs', 'relays', 'connections']) assert.ok(key in status, `status --json has ${key}`)
    assert.equal(status.reachability, 'private')
    for (const key of ['circuitAddr', 'peerId', 'since', 'transport']) assert.ok(key in status.relays[0], `relays[0] has ${key}`)
    assert.match(status.relays[0].reason, /first to connect/)
    assert.equal(status.relays[0].peerId, info.peerId)
    assert.equal(status.relays[0].transport, 'quic')
    assert.ok(status.connections.some((c: any) => c.peerId === info.peerId && c.direct === true && c.transport === 'quic'))

    const human = await runCli(['status', '--data-dir', dataDir])
    assert.equal(human.code, 0)
    assert.match(human.stdout, /Reachability:\s+private/)
    assert.match(human.stdout, new RegExp(`${info.peerId} over quic`))

    const ping = await runCli(['ping', info.peerId, '--count', '2', '--data-dir', dataDir, '--json'])
    assert.equal(ping.code, 0, ping.stderr)
    const pong = JSON.parse(ping.stdout)
    assert.equal(pong.probes.length, 2)
    assert.ok(pong.probes.every((p: any) => p.ok && p.path === 'direct' && p.transport === 'quic' && typeof p.rttMs === 'number'))
    const pingText = await runCli(['ping', info.peerId, '--count', '1', '--data-dir', dataDir])
    assert.match(pingText.stdout, /direct over quic in \d+ ms/)

    const code = await daemon.stop()
    assert.equal(code, 0, `daemon exit code after SIGTERM; stderr:\n${daemon.stderr()}`)
    assert.match(daemon.stderr(), /donor stopped/)
    const after = await runCli(['status', '--data-dir', dataDir])
    assert.notEqual(after.code, 0)
    assert.match(after.stderr, /no daemon is running/)
    assert.equal(await relay.stop(), 0, relay.stderr())
  })

  it('--log-format json gives one JSON object per line, and WORLDCOMPUTE_LOG filters by level', async () => {
    const dead = '/ip4/127.0.0.1/tcp/9/p2p/12D3KooWCUxGstisocAwjyRccMAVqDFAksLECFj23zxN7fP231Wj'
    const json = startCli(['daemon', '--data-dir', join(dir.path, 'json-log'), '--api-port', '0', '--listen', '/p2p-circuit', '--bootstrap', dead, '--log-format', 'json'])
    started.push(json)
    await waitFor('a dial failure line', () => json.stderr().includes('dial failed:') ? true : undefined)
    assert.equal(await json.stop(), 0)
    const records = json.stderr().split('\n').filter(l => l.startsWith('{')).map(l => JSON.parse(l))
    const failure = records.find(r => r.msg.startsWith('dial failed:'))
    assert.ok(failure != null, json.stderr())
    assert.equal(failure.level, 'warn')
    assert.equal(failure.component, 'net.dial')
    assert.equal(failure.transport, 'tcp')
    assert.equal(failure.phase, 'tcp-connect')
    assert.equal(failure.code, 'ECONNREFUSED')
    assert.equal(failure.peer, '12D3KooWCUxGstisocAwjyRccMAVqDFAksLECFj23zxN7fP231Wj')

    const quiet = startCli(['daemon', '--data-dir', join(dir.path, 'quiet-log'), '--api-port', '0', '--listen', '/p2p-circuit', '--bootstrap', dead], { env: { WORLDCOMPUTE_LOG: 'error,donor=info' } })
    started.push(quiet)
    await waitFor('a retry line from donor.reservation', () => /donor\.reservation: relay .* retrying in/.test(quiet.stderr()) ? true : undefined)
    assert.equal(await quiet.stop(), 0)
    assert.doesNotMatch(quiet.stderr(), /dial failed:/, 'warn lines of net.dial are filtered out at error level')
  })

  it('SIGTERM while the daemon is still starting stops it cleanly, exit 0', async () => {
    const dataDir = join(dir.path, 'early-stop')
    const dead = '/ip4/127.0.0.1/tcp/9/p2p/12D3KooWCUxGstisocAwjyRccMAVqDFAksLECFj23zxN7fP231Wj'
    const daemon = startCli(['daemon', '--data-dir', dataDir, '--api-port', '0', '--listen', '/p2p-circuit', '--bootstrap', dead])
    started.push(daemon)
    // the API answers (its endpoint file appears) before the daemon has finished starting
    await waitFor('the API endpoint file', () => existsSync(join(dataDir, 'api-endpoint.json')) ? true : undefined, 20_000, 10)
    assert.equal(await daemon.stop(), 0, daemon.stderr())
    assert.match(daemon.stderr(), /received SIGTERM, stopping/)
  })

  it('ping to a PeerId nobody knows fails with one line saying why', async () => {
    const dataDir = join(dir.path, 'ping-unknown')
    const daemon = startCli(['daemon', '--data-dir', dataDir, '--api-port', '0', '--listen', '/p2p-circuit'])
    started.push(daemon)
    await waitFor('the daemon API', async () => (await runCli(['status', '--data-dir', dataDir])).code === 0 ? true : undefined, 20_000)
    const res = await runCli(['ping', '12D3KooWCUxGstisocAwjyRccMAVqDFAksLECFj23zxN7fP231Wj', '--data-dir', dataDir])
    assert.notEqual(res.code, 0)
    assert.match(res.stderr.trim(), /^worldcompute: no address known for 12D3KooW\w+ and no relay to try/)
    assert.equal(res.stderr.trim().split('\n').length, 1)
    assert.equal(await daemon.stop(), 0)
  })

  it('demo brings up a relay and two relay-only donors on loopback and exits 0', async () => {
    const res = await runCli(['demo'], { timeoutMs: 60_000 })
    assert.equal(res.code, 0, `stdout:\n${res.stdout}\nstderr:\n${res.stderr}`)
    const joined = res.stdout.split('\n').filter(l => / joined: reached relay .* over (tcp|quic|ws|wss) /.test(l))
    assert.equal(joined.length, 2, res.stdout)
    assert.equal((res.stdout.match(/circuit address: \/ip4\/127\.0\.0\.1\/.*\/p2p-circuit\/p2p\/12D3KooW/g) ?? []).length, 2)
    assert.match(res.stdout, /pong 1 in \d+ ms via relay/)
  })
})
