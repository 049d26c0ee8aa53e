/**
 * The HTTPS long-polling transport (src/net/https-poll) against WebSocket to
 * the same node, in the same run:
 *
 *   ws    a libp2p connection over the node's WebSocket listener
 *   poll  a libp2p connection over HTTP long polling on the same listener
 *         (the route table behind the WebSocket listener)
 *
 * Both on 127.0.0.1 without TLS (a bench node has no certificate; TLS costs
 * both the same per byte, and the poll transport's extra cost is its HTTP
 * exchanges). Throughput: rounds of 4 MiB on a new stream, alternating
 * between the two connections. Round trip: a yamux ping frame on the
 * connection (Pinger.linkRtt, timed around the call), alternating. Ratios
 * are poll / ws.
 *
 *   node_modules/.bin/node bench/https-poll.ts [--quick] [--json-out FILE]
 */
import { performance } from 'node:perf_hooks'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { benchMain, progress, row } from './lib/report.ts'
import { benchLogging } from './lib/log-sink.ts'
import { fmt, summarize } from './lib/stats.ts'
import { MeshNode } from '../src/net/mesh-node.ts'
import { pollAddrFor } from '../src/net/https-poll/address.ts'
import type { Connection, Stream } from '@libp2p/interface'

const BULK = '/wc-bench/poll-bulk/1.0.0'
const MiB = 1024 * 1024
const ROUND_BYTES = 4 * MiB
const CHUNK = 64 * 1024

/** Reads the 8-byte length, then that many bytes, then answers one byte. */
async function receiveBulk (stream: Stream): Promise<void> {
  let expected = -1
  let received = 0
  try {
    for await (const chunk of stream) {
      const bytes = chunk.subarray()
      let body = bytes
      if (expected < 0) {
        expected = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0))
        body = bytes.subarray(8)
      }
      received += body.byteLength
      if (received >= expected) break
    }
    stream.send(new Uint8Array([1]))
    await stream.close({ signal: AbortSignal.timeout(10_000) })
  } catch (err) {
    stream.abort(err as Error)
  }
}

/** MiB/s of one round: first byte written → the receiver's answer. */
async function sendBulk (conn: Connection): Promise<number> {
  const stream = await conn.newStream(BULK, { signal: AbortSignal.timeout(10_000) })
  const chunk = new Uint8Array(CHUNK).fill(0x61)
  const head = new Uint8Array(8)
  new DataView(head.buffer).setBigUint64(0, BigInt(ROUND_BYTES))
  const t0 = performance.now()
  stream.send(head)
  for (let sent = 0; sent < ROUND_BYTES; sent += CHUNK) {
    if (!stream.send(chunk)) await stream.onDrain({ signal: AbortSignal.timeout(60_000) })
  }
  await stream.close({ signal: AbortSignal.timeout(60_000) })
  for await (const answer of stream) {
    if (answer.byteLength > 0) break
  }
  return (ROUND_BYTES / MiB) / ((performance.now() - t0) / 1000)
}

await benchMain('bench/https-poll', { quick: 120_000, full: 240_000 }, async (args, cleanup) => {
  benchLogging({})
  const server = await MeshNode.create({
    privateKey: await generateKeyPair('Ed25519'),
    listen: [multiaddr('/ip4/127.0.0.1/tcp/0/ws'), multiaddr('/ip4/127.0.0.1/tcp/0/http/http-path/wc-poll%2F1')]
  })
  await server.start()
  cleanup.add('stop the server node', async () => { await server.stop() })
  await MeshNode.libp2pOf(server).handle(BULK, receiveBulk)
  const client = await MeshNode.create({ privateKey: await generateKeyPair('Ed25519'), listen: [] })
  await client.start()
  cleanup.add('stop the client node', async () => { await client.stop() })
  const ws = server.components.addresses.boundAddrs().find(a => a.endsWith('/ws'))
  if (ws == null) throw new Error('the server has no /ws address')
  const target = (addr: string): ReturnType<typeof multiaddr> => multiaddr(`${addr}/p2p/${server.peerId}`)
  const conns = {
    ws: await client.components.dialler.dialTransport(target(ws), { purpose: 'bootstrap', signal: AbortSignal.timeout(10_000) }),
    poll: await client.components.dialler.dialTransport(target(pollAddrFor(ws)?.toString() ?? ''), { purpose: 'bootstrap', signal: AbortSignal.timeout(10_000) })
  }
  const rounds = args.quick ? 3 : 6
  const pings = args.quick ? 50 : 200
  await sendBulk(conns.ws)
  await sendBulk(conns.poll)
  const rates = { ws: [] as number[], poll: [] as number[] }
  for (let r = 0; r < rounds; r++) {
    for (const k of r % 2 === 0 ? ['ws', 'poll'] as const : ['poll', 'ws'] as const) rates[k].push(await sendBulk(conns[k]))
    progress(`round ${r + 1}/${rounds}: ws ${rates.ws.at(-1)?.toFixed(1)} MiB/s, poll ${rates.poll.at(-1)?.toFixed(1)} MiB/s`)
  }
  const rtts = { ws: [] as number[], poll: [] as number[] }
  for (let i = 0; i < pings; i++) {
    for (const k of i % 2 === 0 ? ['ws', 'poll'] as const : ['poll', 'ws'] as const) {
      // timed here: linkRtt's own figure has a resolution of 1 ms, a loopback round trip is less
      const t0 = performance.now()
      await client.components.pinger.linkRtt(conns[k], { signal: AbortSignal.timeout(10_000) })
      rtts[k].push(performance.now() - t0)
    }
  }
  const t = { ws: summarize(rates.ws), poll: summarize(rates.poll) }
  const rt = { ws: summarize(rtts.ws), poll: summarize(rtts.poll) }
  process.stdout.write(`\nthroughput, ${rounds} rounds of 4 MiB: ws ${fmt(t.ws, 'MiB/s')}, poll ${fmt(t.poll, 'MiB/s')}\nround trip, ${pings} pings: ws ${fmt(rt.ws, 'ms')}, poll ${fmt(rt.poll, 'ms')}\n`)
  return {
    bench: 'https-poll',
    rows: [
      row({ benchmark: 'https-poll throughput: 4 MiB on one connection, 127.0.0.1', baselineName: 'WebSocket to the same listener', baseline: t.ws, figure: t.poll, unit: 'MiB/s', ratioLabel: 'poll / ws' }),
      row({ benchmark: 'https-poll round trip: a yamux ping frame, 127.0.0.1', baselineName: 'WebSocket to the same listener', baseline: rt.ws, figure: rt.poll, unit: 'ms', ratioLabel: 'poll / ws' })
    ],
    notes: [`HTTPS poll vs WebSocket: one node listening on /ws with the poll route on the same listener, one client with a connection over each (Noise + yamux on both), all in one process on 127.0.0.1 without TLS. Throughput: ${rounds} rounds of 4 MiB on a new stream per round, alternating, after one untimed round each. Round trip: ${pings} yamux ping frames per connection, alternating. The poll transport's cost is its HTTP exchanges: at most one upload and one long poll in flight, 256 KiB per request.`]
  }
})
