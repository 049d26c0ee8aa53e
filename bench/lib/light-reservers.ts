/**
 * A lightweight relay client for the relay scale benchmark
 * (bench/relay-scale.ts): the real wire protocol, none of a libp2p node.
 * Each client is one TCP connection from its own loopback source address
 * (js-libp2p's TCP transport), multistream-select to /noise, the Noise XX
 * handshake with its own Ed25519 identity (@chainsafe/libp2p-noise), yamux
 * (early muxer negotiation in the handshake, else multistream-select), and one
 * hop stream sending RESERVE and reading the relay's STATUS. Afterwards it
 * answers the relay's pings (the relay's connection monitor aborts a
 * connection whose ping fails, which would drop the reservation) and refuses
 * every other protocol the relay opens (identify) with multistream "na".
 *
 * Why not full js-libp2p nodes: one node with TCP, Noise, yamux and the
 * circuit transport is ~1.5 MB of RSS in a client process (bench/memory.ts:
 * 125 nodes per ~187 MB process); 10,000 would need ~15 GB on a shared
 * machine. One of these clients is a socket, a Noise session and a muxer.
 *
 * Like a donor's reservation watchdog (src/donor/reservation-manager.ts), each
 * client sends its relay a yamux ping frame every `watchdogMs` (15 s as a
 * donor does over TCP; 0 for none), spread over the interval by one timer per
 * process; yamux's own keep-alive (every 30 s) is on, as on a donor.
 *
 * Started with child_process.fork; reports over IPC; exits when the parent
 * disconnects.
 *
 *   fork('bench/lib/light-reservers.ts', [relayTcpAddr, ipBlock, watchdogMs])
 *   → { type: 'reserve', count, concurrency }  reserve `count` more, timing each
 *   ← { type: 'reserved', ms: number[], failed, errors, held, rssKb }
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import * as mss from '@libp2p/multistream-select'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { performance } from 'node:perf_hooks'
import { raceSignal } from '../../src/core/async.ts'
import type { Connection, MultiaddrConnection, StreamMuxer, StreamMuxerFactory, Stream, Upgrader } from '@libp2p/interface'

export type LightRequest = { type: 'reserve', count: number, concurrency: number }
export type LightReply =
  | { type: 'reserved', ms: number[], failed: number, errors: string[], held: number, rssKb: number, watchdogPings: number, watchdogFailures: number }
  | { type: 'fatal', error: string }

const HOP = '/libp2p/circuit/relay/0.2.0/hop'
const PING = '/ipfs/ping/1.0.0'
const YAMUX = '/yamux/1.0.0'
/** HopMessage { type: RESERVE (0) }: field 1, varint 0 */
const RESERVE = Uint8Array.of(0x08, 0x00)
/** Status.OK in circuit relay v2's protobuf */
const STATUS_OK = 100

const [relayArg, blockArg, watchdogArg] = process.argv.slice(2)
const send = (m: LightReply): void => { process.send?.(m) }
if (process.send == null || relayArg == null || !relayArg.startsWith('/ip4/127.')) {
  process.stderr.write('light-reservers.ts: fork it with [relayTcpAddr on 127.x, ipBlock] (it reports over IPC)\n')
  process.exit(2)
}
const relay = multiaddr(relayArg)
const block = Number(blockArg ?? 0)
const logger = defaultLogger()
const transport = tcp()({ logger, metrics: undefined })
const yamuxFactory: StreamMuxerFactory = yamux()()
const muxers = new Map([[YAMUX, yamuxFactory]])
const held: StreamMuxer[] = []
let made = 0
// a donor's DEFAULT_PING_INTERVAL_MS (not imported: this process stays light); the parent always passes it
const watchdogMs = Number(watchdogArg ?? 15_000)
/** the watchdog's timer: every WATCHDOG_TICK_MS, the share of the clients due */
const WATCHDOG_TICK_MS = 100
const watchdog = { cursor: 0, pings: 0, failures: 0 }

function watchdogTick (): void {
  const share = Math.ceil(held.length * WATCHDOG_TICK_MS / watchdogMs)
  if (watchdog.cursor >= held.length) watchdog.cursor = 0
  for (const m of held.slice(watchdog.cursor, watchdog.cursor + share)) {
    if (m.status !== 'open') continue
    watchdog.pings++
    // a donor's answer window is 2 s (reservation-manager.ts)
    const ping = (m as StreamMuxer & { ping?: () => Promise<number> }).ping
    if (ping == null) throw new Error('this yamux has no ping(): the watchdog cannot be emulated')
    // as Pinger.linkRtt does: the window raced outside the muxer, whose own signal would make a late answer abort the connection
    const pong = ping.call(m)
    raceSignal(pong, AbortSignal.timeout(2_000)).catch(() => { watchdog.failures++ })
  }
  watchdog.cursor += share
}
if (watchdogMs > 0) setInterval(watchdogTick, WATCHDOG_TICK_MS)

/** Each client its own source address, so the relay's per-host connection rate limit sees one connect per host. */
function sourceIp (i: number): string {
  return `127.${100 + block}.${Math.floor(i / 250) % 250}.${1 + (i % 250)}`
}

/** The upgrade libp2p's upgrader does for an outbound connection, without a node around it. */
async function secure (maConn: MultiaddrConnection, signal: AbortSignal): Promise<StreamMuxer> {
  const privateKey = await generateKeyPair('Ed25519')
  const encrypter = noise()({ privateKey, peerId: peerIdFromPrivateKey(privateKey), logger, upgrader: { getStreamMuxers: () => muxers } } as unknown as Parameters<ReturnType<typeof noise>>[0])
  await mss.select(maConn, ['/noise'], { signal })
  const secured = await encrypter.secureOutbound(maConn, { signal })
  let factory = secured.streamMuxer
  if (factory == null) {
    await mss.select(secured.connection, [YAMUX], { signal })
    factory = yamuxFactory
  }
  const muxer = factory.createStreamMuxer(secured.connection)
  muxer.addEventListener('stream', (evt) => { void answer(evt.detail) })
  return muxer
}

/** Inbound streams from the relay: ping is echoed, anything else refused ("na"). */
async function answer (stream: Stream): Promise<void> {
  try {
    await mss.handle(stream, [PING], { signal: AbortSignal.timeout(10_000) })
    for await (const buf of stream) stream.send(buf)
  } catch (err) {
    // identify and the like: the relay learns we do not speak it; nothing is lost for the bench
    stream.abort(err as Error)
  }
}

/** RESERVE on a new hop stream; resolves when the relay answered OK. */
async function reserve (muxer: StreamMuxer, signal: AbortSignal): Promise<void> {
  const stream = await muxer.createStream({ signal })
  await mss.select(stream, [HOP], { signal })
  const lp = lpStream(stream)
  await lp.write(RESERVE, { signal })
  const reply = (await lp.read({ signal })).subarray()
  const status = fieldOf(reply, 5)
  await stream.close({ signal })
  if (status !== STATUS_OK) throw new Error(`relay answered status ${String(status)}`)
}

/** The value of a top-level varint field in a protobuf message (the others are skipped). */
function fieldOf (buf: Uint8Array, wanted: number): number | undefined {
  let i = 0
  const varint = (): number => {
    let v = 0
    let shift = 0
    while (i < buf.length) {
      const b = buf[i++]
      v += (b & 0x7f) * 2 ** shift
      if ((b & 0x80) === 0) break
      shift += 7
    }
    return v
  }
  while (i < buf.length) {
    const key = varint()
    const field = key >>> 3
    const wire = key & 7
    if (wire === 0) {
      const v = varint()
      if (field === wanted) return v
    } else if (wire === 2) {
      // read the length first: `i += varint()` would add it to the position before the length's own bytes
      const length = varint()
      i += length
    } else if (wire === 1) i += 8
    else if (wire === 5) i += 4
    else throw new Error(`protobuf wire type ${wire} in a HopMessage`)
  }
  return undefined
}

/** One client: dial, upgrade, reserve; the time from the dial to the relay's OK. */
async function oneClient (i: number): Promise<number> {
  // not AbortSignal.timeout: the TCP transport ties the socket to the dial's
  // signal, which would then close a held reservation 30 s after it was taken
  const deadline = new AbortController()
  const timer = setTimeout(() => { deadline.abort(new Error('no reservation within 30 s')) }, 30_000)
  const signal = deadline.signal
  const t0 = performance.now()
  let muxer: StreamMuxer | undefined
  // the TCP transport hands the raw connection to an upgrader: this one is the Noise + yamux upgrade above
  const upgrader = { upgradeOutbound: async (maConn: MultiaddrConnection) => { muxer = await secure(maConn, signal); return {} as Connection } } as unknown as Upgrader
  try {
    await transport.dial(relay, { upgrader, signal, localAddress: sourceIp(i) } as Parameters<typeof transport.dial>[1])
    if (muxer == null) throw new Error('upgrade produced no muxer')
    await reserve(muxer, signal)
  } catch (err) {
    muxer?.abort(err as Error)
    throw err
  } finally {
    clearTimeout(timer)
  }
  held.push(muxer)
  return performance.now() - t0
}

async function reserveMany (count: number, concurrency: number): Promise<LightReply> {
  const ms: number[] = []
  const errors: string[] = []
  let failed = 0
  let left = count
  const worker = async (): Promise<void> => {
    while (left > 0) {
      left--
      const i = made++
      try {
        ms.push(await oneClient(i))
      } catch (err) {
        failed++
        if (errors.length < 5) errors.push(`client ${i} (${sourceIp(i)}): ${(err as Error).message}`)
      }
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker))
  const live = held.filter(m => m.status === 'open').length
  return { type: 'reserved', ms, failed, errors, held: live, rssKb: Math.round(process.memoryUsage().rss / 1024), watchdogPings: watchdog.pings, watchdogFailures: watchdog.failures }
}

process.on('message', (m: LightRequest) => {
  if (m.type !== 'reserve') return
  reserveMany(m.count, m.concurrency).then(send, (err: unknown) => { send({ type: 'fatal', error: (err as Error).stack ?? String(err) }) })
})
process.on('disconnect', () => {
  for (const m of held) m.abort(new Error('benchmark over'))
  process.exit(0)
})
