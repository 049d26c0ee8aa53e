/**
 * The HTTPS long-polling transport (src/net/https-poll) against WebSocket to
 * the same node, in the same run, in two pairs:
 *
 *   without TLS  one node listening on /ws (the poll route table sits behind
 *                the same listener); a client with a ws connection and a poll
 *                connection to it. Ratios poll / ws.
 *   over TLS     a relay node with a test CA's certificate on /tls/ws; a donor
 *                node with a WSS connection to it and a poll connection to the
 *                poll address derived from the /tls/ws one (pollAddrFor: same
 *                host, port and TLS listener), as a donor behind an
 *                HTTPS-only proxy would dial. Ratios poll over TLS / wss.
 *
 * All on 127.0.0.1. Throughput: rounds of 4 MiB on a new stream, alternating
 * between the pair's two connections. Round trip: a yamux ping frame on the
 * connection (Pinger.linkRtt, timed around the call), alternating.
 *
 * The relay's certificate comes from a private CA made with openssl
 * (test/helpers/tls.ts) in a temporary directory, removed at the end; the
 * CA is trusted in this process only, through tls.setDefaultCACertificates,
 * which the WSS dial and the poll transport's https requests both honour.
 *
 *   node_modules/.bin/node bench/https-poll.ts [--quick] [--json-out FILE]
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import tls from 'node:tls'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { receiveBulk, sendBulk } from './lib/bulk.ts'
import { benchMain, progress, row, type BenchReport, type Cleanup } from './lib/report.ts'
import { benchLogging } from './lib/log-sink.ts'
import { fmt, summarize, type Summary } from './lib/stats.ts'
import { makeTestCerts, type TestCerts } from '../test/helpers/tls.ts'
import { DEFAULT_RELAY_LIMITS } from '../src/config/config.ts'
import { MeshNode, type MeshNodeInit } from '../src/net/mesh-node.ts'
import { pollAddrFor } from '../src/net/https-poll/address.ts'
import type { Connection } from '@libp2p/interface'

const BULK = '/wc-bench/poll-bulk/1.0.0'
const MiB = 1024 * 1024
const ROUND_BYTES = 4 * MiB

/** One bulk round on `conn` (bench/lib/bulk.ts), MiB/s. */
async function sendRound (conn: Connection): Promise<number> {
  return await sendBulk(conn, { protocol: BULK, bytes: ROUND_BYTES, waitMs: 60_000 })
}

type Pair = 'base' | 'poll'
interface Measured { rate: Record<Pair, Summary>, rtt: Record<Pair, Summary> }

/**
 * The same rounds on both connections, alternating which goes first so that
 * neither always runs second on a warmed machine.
 */
async function measure (client: MeshNode, conns: Record<Pair, Connection>, rounds: number, pings: number, label: string): Promise<Measured> {
  await sendRound(conns.base)
  await sendRound(conns.poll)
  const rates: Record<Pair, number[]> = { base: [], poll: [] }
  for (let r = 0; r < rounds; r++) {
    for (const k of r % 2 === 0 ? ['base', 'poll'] as const : ['poll', 'base'] as const) rates[k].push(await sendRound(conns[k]))
    progress(`round ${r + 1}/${rounds}: ${label} ${rates.base.at(-1)?.toFixed(1)} MiB/s, poll ${rates.poll.at(-1)?.toFixed(1)} MiB/s`)
  }
  const rtts: Record<Pair, number[]> = { base: [], poll: [] }
  for (let i = 0; i < pings; i++) {
    for (const k of i % 2 === 0 ? ['base', 'poll'] as const : ['poll', 'base'] as const) {
      // timed here: linkRtt's own figure has a resolution of 1 ms, a loopback round trip is less
      const t0 = performance.now()
      await client.components.pinger.linkRtt(conns[k], { signal: AbortSignal.timeout(10_000) })
      rtts[k].push(performance.now() - t0)
    }
  }
  return { rate: { base: summarize(rates.base), poll: summarize(rates.poll) }, rtt: { base: summarize(rtts.base), poll: summarize(rtts.poll) } }
}

interface Pairing { client: MeshNode, conns: Record<Pair, Connection> }

/** A server on `listen`, a client with one connection to its `suffix` address and one to the poll address derived from it. */
async function pairing (listen: string[], suffix: string, cleanup: Cleanup, relayServer?: MeshNodeInit['relayServer']): Promise<Pairing> {
  const server = await MeshNode.create({ privateKey: await generateKeyPair('Ed25519'), listen: listen.map(a => multiaddr(a)), relayServer })
  await server.start()
  cleanup.add(`stop the ${suffix} server node`, async () => { await server.stop() })
  await MeshNode.libp2pOf(server).handle(BULK, receiveBulk)
  const client = await MeshNode.create({ privateKey: await generateKeyPair('Ed25519'), listen: [] })
  await client.start()
  cleanup.add(`stop the ${suffix} client node`, async () => { await client.stop() })
  const addr = server.components.addresses.boundAddrs().find(a => a.endsWith(suffix))
  if (addr == null) throw new Error(`the server has no ${suffix} address`)
  const target = `${addr}/p2p/${server.peerId}`
  const poll = pollAddrFor(target)
  if (poll == null) throw new Error(`no poll address derived from ${target}`)
  const dial = async (a: ReturnType<typeof multiaddr>): Promise<Connection> =>
    await client.components.dialler.dialTransport(a, { purpose: 'bootstrap', signal: AbortSignal.timeout(10_000) })
  return { client, conns: { base: await dial(multiaddr(target)), poll: await dial(poll) } }
}

/**
 * A relay with a test CA's certificate on /tls/ws. The CA goes into Node's
 * default trust store for this process (both the WSS dial and the poll
 * transport's https requests verify against it) and out again at cleanup.
 */
async function tlsPairing (certs: TestCerts, cleanup: Cleanup): Promise<Pairing> {
  const defaults = tls.getCACertificates('default')
  tls.setDefaultCACertificates([...defaults, readFileSync(certs.caCert, 'utf8')])
  cleanup.add('restore the default CA certificates', async () => { tls.setDefaultCACertificates(defaults) })
  return await pairing(['/ip4/127.0.0.1/tcp/0/tls/ws'], '/tls/ws', cleanup,
    { limits: DEFAULT_RELAY_LIMITS, tls: { certFile: certs.cert, keyFile: certs.key } })
}

function printPair (name: string, base: string, m: Measured, rounds: number, pings: number): void {
  process.stdout.write(`\n${name}: throughput, ${rounds} rounds of 4 MiB: ${base} ${fmt(m.rate.base, 'MiB/s')}, poll ${fmt(m.rate.poll, 'MiB/s')}\n` +
    `${name}: round trip, ${pings} pings: ${base} ${fmt(m.rtt.base, 'ms')}, poll ${fmt(m.rtt.poll, 'ms')}\n`)
}

async function run (args: { quick: boolean }, cleanup: Cleanup): Promise<BenchReport> {
  benchLogging({})
  const rounds = args.quick ? 3 : 6
  const pings = args.quick ? 50 : 200
  const plain = await pairing(['/ip4/127.0.0.1/tcp/0/ws', '/ip4/127.0.0.1/tcp/0/http/http-path/wc-poll%2F1'], '/ws', cleanup)
  const p = await measure(plain.client, plain.conns, rounds, pings, 'ws')
  const certDir = mkdtempSync(join(tmpdir(), 'wc-bench-poll-'))
  cleanup.add('remove the test certificates', async () => { rmSync(certDir, { recursive: true, force: true }) })
  const secure = await tlsPairing(makeTestCerts(certDir), cleanup)
  const s = await measure(secure.client, secure.conns, rounds, pings, 'wss')
  printPair('without TLS', 'ws', p, rounds, pings)
  printPair('over TLS', 'wss', s, rounds, pings)
  return {
    bench: 'https-poll',
    rows: [
      row({ benchmark: 'https-poll throughput: 4 MiB on one connection, 127.0.0.1', baselineName: 'WebSocket to the same listener', baseline: p.rate.base, figure: p.rate.poll, unit: 'MiB/s', ratioLabel: 'poll / ws' }),
      row({ benchmark: 'https-poll round trip: a yamux ping frame, 127.0.0.1', baselineName: 'WebSocket to the same listener', baseline: p.rtt.base, figure: p.rtt.poll, unit: 'ms', ratioLabel: 'poll / ws' }),
      row({ benchmark: 'https-poll over TLS throughput: 4 MiB on one connection, a relay\'s /tls/ws, 127.0.0.1', baselineName: 'WSS to the same listener', baseline: s.rate.base, figure: s.rate.poll, unit: 'MiB/s', ratioLabel: 'poll over TLS / wss' }),
      row({ benchmark: 'https-poll over TLS round trip: a yamux ping frame, a relay\'s /tls/ws, 127.0.0.1', baselineName: 'WSS to the same listener', baseline: s.rtt.base, figure: s.rtt.poll, unit: 'ms', ratioLabel: 'poll over TLS / wss' })
    ],
    notes: [`HTTPS poll vs WebSocket, in two pairs, in one process on 127.0.0.1 (Noise + yamux on every connection). Without TLS: one node listening on /ws with the poll route on the same listener, one client with a connection over each. Over TLS: a relay node with a test CA's certificate on /tls/ws, one donor node with a WSS connection and a poll connection to the poll address derived from the /tls/ws one (the same TLS listener). Per pair: ${rounds} rounds of 4 MiB on a new stream per round, alternating, after one untimed round each; ${pings} yamux ping frames per connection, alternating. The poll transport's cost is its HTTP exchanges: at most one upload and one long poll in flight, 256 KiB per request.`]
  }
}

await benchMain('bench/https-poll', { quick: 150_000, full: 270_000 }, run)
