/**
 * One of the client processes of the relay memory benchmark (bench/memory.ts):
 * `count` lightweight js-libp2p nodes (TCP, Noise, yamux, identify, ping and
 * the circuit relay v2 transport, nothing else) in this process, each listening
 * on `<relay>/p2p-circuit`, which makes the transport dial the relay and take a
 * reservation on it. Started with child_process.fork: it reports over IPC and
 * exits when the parent disconnects, so it cannot outlive the benchmark.
 *
 *   fork('bench/lib/reservation-clients.ts', [relayTcpAddr, count, index, concurrency])
 *
 * Each node dials from its own loopback source address (127.<20+index>.x.y):
 * a real relay sees one donor per IP, and js-libp2p refuses more than a few
 * inbound connections per second from one host (inboundConnectionThreshold).
 * `concurrency` bounds how many reservations this process has in flight: the
 * relay upgrades at most maxIncomingPendingConnections (js-libp2p default 10)
 * inbound connections at once and refuses the rest. Message 'halt' stops
 * taking new reservations (the parent ran out of time), 'check' asks how many
 * are still held.
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { createLibp2p, type Libp2p } from 'libp2p'

export type ClientMessage =
  | { type: 'progress', granted: number, failed: number, attempts: number }
  | { type: 'done', granted: number, failed: number, attempts: number, errors: string[], ms: number, rssKb: number }
  | { type: 'held', granted: number, lost: number }
  | { type: 'fatal', error: string }

const [relayAddr, countArg, indexArg, concArg] = process.argv.slice(2)
const send = (m: ClientMessage): void => { process.send?.(m) }

if (process.send == null) {
  process.stderr.write('reservation-clients.ts must be started with child_process.fork (it reports over IPC)\n')
  process.exit(2)
}
if (relayAddr == null || !relayAddr.startsWith('/ip4/127.')) {
  send({ type: 'fatal', error: `relay address must be on loopback, got ${String(relayAddr)}` })
  process.exit(2)
}

const count = Number(countArg)
const index = Number(indexArg)
const concurrency = Math.max(1, Number(concArg ?? 2))
const ATTEMPTS = 3
const nodes: Libp2p[] = []
const errors: string[] = []
let granted = 0
let failed = 0
let attempts = 0

function sourceIp (i: number): string {
  return `127.${20 + index}.${Math.floor(i / 250)}.${1 + (i % 250)}`
}

function hasCircuitAddr (node: Libp2p): boolean {
  return node.getMultiaddrs().some(ma => ma.toString().includes('/p2p-circuit'))
}

async function reserveOne (i: number): Promise<void> {
  for (let a = 1; a <= ATTEMPTS; a++) {
    attempts++
    const node = await createLibp2p({
      // started below, inside the try: a failed reservation is a counted failure, not a crash
      start: false,
      addresses: { listen: [`${relayAddr}/p2p-circuit`] },
      // localAddress is passed through to net.connect (the typings list only a subset of its options)
      transports: [tcp({ dialOpts: { localAddress: sourceIp(i) } as Record<string, unknown> }), circuitRelayTransport()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { identify: identify(), ping: ping() },
      // the relay still pings every client (its own connection monitor); the
      // clients' monitors are off because 125+ nodes per process on a loaded
      // machine miss their 5 s ping deadline and drop the very reservations
      // being measured (seen at load average ~20 on 2 cores)
      connectionMonitor: { enabled: false }
    })
    try {
      // start() listens, i.e. dials the relay and reserves; it rejects if that fails
      await node.start()
      if (!hasCircuitAddr(node)) throw new Error('started, but no /p2p-circuit address: the reservation was not granted')
      nodes.push(node)
      granted++
      return
    } catch (err) {
      await Promise.resolve(node.stop()).catch((e: unknown) => { errors.push(`node ${i}: stop after a failed start: ${String(e)}`) })
      const msg = `node ${i} (${sourceIp(i)}) attempt ${a}: ${(err as Error).message}`
      if (errors.length < 20) errors.push(msg)
      if (a < ATTEMPTS) await new Promise(resolve => setTimeout(resolve, 500 * a))
    }
  }
  failed++
}

let next = 0

async function main (): Promise<void> {
  const t0 = Date.now()
  const progress = setInterval(() => { send({ type: 'progress', granted, failed, attempts }) }, 1_000)
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++
      await reserveOne(i)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, async () => { await worker() }))
  clearInterval(progress)
  send({ type: 'done', granted, failed, attempts, errors, ms: Date.now() - t0, rssKb: Math.round(process.memoryUsage().rss / 1024) })
}

process.on('message', (m: { type: string }) => {
  // out of time: take no new reservations (the ones in flight finish)
  if (m.type === 'halt') next = count
  // the parent asks, after the hold, whether every reservation is still there
  if (m.type === 'check') {
    const still = nodes.filter(hasCircuitAddr).length
    send({ type: 'held', granted: still, lost: nodes.length - still })
  }
})
// the parent went away (finished, or died): stop everything and leave
process.on('disconnect', () => {
  const force = setTimeout(() => { process.exit(0) }, 5_000)
  void Promise.allSettled(nodes.map(async n => { await n.stop() })).then(() => { clearTimeout(force); process.exit(0) })
})

main().catch((err: unknown) => {
  send({ type: 'fatal', error: (err as Error).stack ?? String(err) })
  process.exit(1)
})
