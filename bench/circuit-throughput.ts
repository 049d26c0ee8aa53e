/**
 * Bulk throughput through a circuit relay on this machine, against plain
 * js-libp2p doing the same:
 *
 *   plain  two js-libp2p nodes (TCP, Noise, Yamux, identify, the circuit
 *          relay v2 transport) and a js-libp2p circuit relay v2 server, all
 *          as js-libp2p ships them but for the relay's per-circuit data and
 *          duration limits, raised so the transfer fits
 *   ours   two daemons listening only through the relay, and the product's
 *          relay (bench/lib/mesh.ts), the receiver reserving on it
 *
 * Each round sends 8 MiB on a new stream over the one circuit connection
 * (an 8-byte length, the bytes, then a one-byte answer once all are in);
 * rounds of the two alternate, so load on the shared machine hits both.
 * Everything runs in this one process on 127.0.0.1.
 *
 *   node_modules/.bin/node bench/circuit-throughput.ts [--quick] [--json-out FILE]
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2p } from 'libp2p'
import { receiveBulk, sendBulk } from './lib/bulk.ts'
import { benchMain, progress, row } from './lib/report.ts'
import { relayBootstrap, RELAY_ONLY, startBenchDaemon, startBenchRelay } from './lib/mesh.ts'
import { benchLogging } from './lib/log-sink.ts'
import { fmt, summarize } from './lib/stats.ts'
import { MeshNode } from '../src/net/mesh-node.ts'
import type { Cleanup } from './lib/report.ts'
import type { Connection } from '@libp2p/interface'

const BULK = '/wc-bench/circuit-bulk/1.0.0'
const MiB = 1024 * 1024
const ROUND_BYTES = 8 * MiB

/** One bulk round on `conn` (bench/lib/bulk.ts), MiB/s. */
async function sendRound (conn: Connection): Promise<number> {
  return await sendBulk(conn, { protocol: BULK, bytes: ROUND_BYTES, runOnLimitedConnection: true, waitMs: 30_000 })
}

async function plainNode (opts: { relay?: boolean, listen: string[] }): Promise<Libp2p> {
  const node = await createLibp2p({
    addresses: { listen: opts.listen },
    transports: [tcp(), circuitRelayTransport()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      ...(opts.relay === true
        ? { relay: circuitRelayServer({ reservations: { defaultDataLimit: BigInt(4096 * MiB), defaultDurationLimit: 30 * 60_000 } }) }
        : {})
    }
  })
  await node.start()
  return node
}

/** Plain js-libp2p: relay server, receiver reserving on it, sender dialling the circuit. */
async function plainCircuit (cleanup: Cleanup): Promise<Connection> {
  const relay = await plainNode({ relay: true, listen: ['/ip4/127.0.0.1/tcp/0'] })
  cleanup.add('stop plain relay', async () => { await relay.stop() })
  const receiver = await plainNode({ listen: ['/p2p-circuit'] })
  cleanup.add('stop plain receiver', async () => { await receiver.stop() })
  await receiver.handle(BULK, receiveBulk, { runOnLimitedConnection: true })
  await receiver.dial(relay.getMultiaddrs()[0])
  const deadline = Date.now() + 20_000
  while (!receiver.getMultiaddrs().some(a => a.toString().includes('/p2p-circuit')) && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 50))
  const circuit = receiver.getMultiaddrs().find(a => a.toString().includes('/p2p-circuit'))
  if (circuit == null) throw new Error('the plain receiver got no reservation within 20 s')
  const sender = await plainNode({ listen: [] })
  cleanup.add('stop plain sender', async () => { await sender.stop() })
  return await sender.dial(circuit, { signal: AbortSignal.timeout(20_000) })
}

/** Ours: the product's relay, and two daemons reachable only through it. */
async function ourCircuit (root: string, cleanup: Cleanup): Promise<Connection> {
  const relay = await startBenchRelay(join(root, 'relay'), cleanup)
  const receiver = await startBenchDaemon(join(root, 'receiver'), relay, { listen: RELAY_ONLY, execute: false }, cleanup)
  const sender = await startBenchDaemon(join(root, 'sender'), relay, { listen: RELAY_ONLY, execute: false }, cleanup)
  await MeshNode.libp2pOf(receiver.donor.mesh).handle(BULK, receiveBulk, { runOnLimitedConnection: true })
  const circuit = multiaddr(`${relayBootstrap(relay)[0]}/p2p-circuit/p2p/${receiver.peerId}`)
  return await MeshNode.libp2pOf(sender.donor.mesh).dial(circuit, { signal: AbortSignal.timeout(20_000) })
}

await benchMain('bench/circuit-throughput', { quick: 120_000, full: 240_000 }, async (args, cleanup) => {
  benchLogging({})
  const root = mkdtempSync(join(tmpdir(), 'wc-bench-circuit-'))
  cleanup.add('remove temp dir', () => { rmSync(root, { recursive: true, force: true }) })
  const plain = await plainCircuit(cleanup)
  const ours = await ourCircuit(root, cleanup)
  // our relay limits a circuit to 64 MiB by default: warm-up and rounds stay under it
  const rounds = args.quick ? 3 : 6
  await sendRound(plain)
  await sendRound(ours)
  const rates = { plain: [] as number[], ours: [] as number[] }
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? ['plain', 'ours'] as const : ['ours', 'plain'] as const
    for (const k of order) rates[k].push(await sendRound(k === 'plain' ? plain : ours))
    progress(`round ${r + 1}/${rounds}: plain ${rates.plain.at(-1)?.toFixed(1)} MiB/s, ours ${rates.ours.at(-1)?.toFixed(1)} MiB/s`)
  }
  const p = summarize(rates.plain)
  const o = summarize(rates.ours)
  process.stdout.write(`\ncircuit throughput, ${rounds} rounds of 8 MiB\n  plain js-libp2p ${fmt(p, 'MiB/s')}\n  ours ${fmt(o, 'MiB/s')}\n`)
  return {
    bench: 'circuit-throughput',
    rows: [row({ benchmark: 'circuit throughput: 8 MiB through a relay, all on 127.0.0.1', baselineName: 'plain js-libp2p nodes + circuit relay v2 server', baseline: p, figure: o, unit: 'MiB/s', ratioLabel: 'ours / plain js-libp2p', target: { op: '>=', value: 0.9 } })],
    notes: [`Circuit throughput: plain = js-libp2p v3 nodes with TCP, Noise, Yamux, identify and the circuit relay v2 transport, and a circuit relay v2 server whose per-circuit data and duration limits are raised (its defaults, 128 KiB and 2 min, stop a bulk transfer); ours = two daemons listening only through the product's relay. ${rounds} rounds of 8 MiB each on a new stream over one circuit connection per side, alternating, after one untimed round each; all in one process on 127.0.0.1, so sender, relay and receiver share its event loop.`]
  }
})
