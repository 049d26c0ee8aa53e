/**
 * One end of the bulk-transfer benchmark in bench/lab-paths.ts, run as its
 * own process inside a lab namespace (`ip netns exec`), so the bytes cross
 * the lab's real veths, routers and relay process.
 *
 *   receive --ip IP --relay RELAY_TCP_MULTIADDR [--tcp-port 5201] [--libp2p-port 5202]
 *     A plain node:net server, and two libp2p nodes built with the product's
 *     own MeshNode (src/net/mesh-node.ts: the same TCP/QUIC/WS transports,
 *     Noise, Yamux, circuit-relay-v2 transport, identify, gossipsub … as the
 *     daemon): `shipped`, exactly as the daemon has it, and `no-ping-abort`,
 *     the same with libp2p's connection monitor told not to abort a
 *     connection whose keep-alive ping timed out (see NodeConfig). Each
 *     listens on TCP (ports P and P+1) and holds a reservation on the relay.
 *     Prints { ready, targets: { mode: address } }, then one line per transfer
 *     received ({ received, mode, bytes, wallMs, cpuMs }: its own first byte →
 *     last byte), and serves until SIGTERM.
 *
 *   send --plan MODE,… --bytes N [--warmup W] --targets JSON
 *     Modes: tcp, direct:shipped, circuit:shipped, direct:no-ping-abort,
 *     circuit:no-ping-abort (the sender uses a node of the same configuration).
 *     With --warmup, first one untimed W-byte transfer per plan entry; then
 *     one N-byte transfer per plan entry, in that order, each on a fresh
 *     connection; prints one JSON line per transfer ({ mode, bytes, ms, cpuMs, … },
 *     warm-ups marked `warmup: true`; a timed transfer that breaks prints
 *     { mode, failed: true, afterMs, error } and the next one still runs),
 *     then exits.
 *
 * Wire format, the same on a plain socket and a libp2p stream: an 8-byte
 * big-endian length N, then N bytes; the receiver answers one byte (0x01)
 * once all N are in. The sender's clock runs from just before the first
 * byte is written to the answer arriving, so connection set-up (TCP
 * handshake, Noise, Yamux, the relay's HOP/STOP exchange, protocol
 * negotiation) is outside the timed region for every mode alike.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { createServer, connect, type Socket } from 'node:net'
import { randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { MeshNode } from '../../src/net/mesh-node.ts'
import type { Connection, Stream } from '@libp2p/interface'

export const BULK_PROTOCOL = '/wc-bench/bulk/1.0.0'
const CHUNK = 256 * 1024
const HEADER = 8
/** every network wait of one transfer is bounded by this */
const TRANSFER_TIMEOUT_MS = 180_000

type Chunk = Uint8Array | { byteLength: number, subarray: (start?: number, end?: number) => Uint8Array }

/** Counts bytes until the header's length is complete; returns true exactly once, when it is. */
class Tally {
  private header = new Uint8Array(HEADER)
  private headerGot = 0
  private want = -1
  private got = 0
  done = false

  add (chunk: Chunk): boolean {
    let bytes = chunk instanceof Uint8Array ? chunk : chunk.subarray()
    if (this.headerGot < HEADER) {
      const take = Math.min(HEADER - this.headerGot, bytes.byteLength)
      this.header.set(bytes.subarray(0, take), this.headerGot)
      this.headerGot += take
      bytes = bytes.subarray(take)
      if (this.headerGot === HEADER) this.want = Number(new DataView(this.header.buffer).getBigUint64(0))
    }
    this.got += bytes.byteLength
    if (!this.done && this.want >= 0 && this.got >= this.want) {
      this.done = true
      return true
    }
    return false
  }

  get received (): number { return this.got }
  get expected (): number { return this.want }
}

/** CPU time of this whole process, ms (user + system): how busy an endpoint was during a transfer. */
function cpuMs (): number {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}

/** The receiver's side of one transfer, from its first byte to its last: wall and CPU time. */
class ReceiveClock {
  private t0 = 0
  private cpu0 = 0
  first (): void {
    if (this.t0 === 0) { this.t0 = performance.now(); this.cpu0 = cpuMs() }
  }

  report (mode: string, bytes: number): void {
    line({ received: true, mode, bytes, wallMs: performance.now() - this.t0, cpuMs: cpuMs() - this.cpu0 })
  }
}

function headerFor (n: number): Uint8Array {
  const h = new Uint8Array(HEADER)
  new DataView(h.buffer).setBigUint64(0, BigInt(n))
  return h
}

function line (obj: unknown): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`)
}

// ---------------------------------------------------------------------------
// libp2p nodes

/**
 * 'shipped': MeshNode exactly as the daemon builds it. 'no-ping-abort': the
 * same, except that libp2p's connection monitor (a ping on every connection
 * every 10 s, timeout adaptive but at least 5 s) no longer aborts a
 * connection whose ping failed: during a bulk transfer through a relay the
 * ping queues behind the data, times out, and the monitor kills the circuit.
 */
export type NodeConfig = 'shipped' | 'no-ping-abort'

async function makeNode (config: NodeConfig, listen: string[]): Promise<MeshNode> {
  const mesh = await MeshNode.create({ privateKey: await generateKeyPair('Ed25519'), listen: listen.map(a => multiaddr(a)) })
  if (config === 'no-ping-abort') {
    const monitor = (MeshNode.libp2pOf(mesh).services.internals as { components: Record<string, { abortConnectionOnPingFailure?: boolean } | undefined> }).components.connectionMonitor
    // js-libp2p 3.x ConnectionMonitor field; fail loudly rather than measure the shipped behaviour under the wrong name
    if (monitor == null || typeof monitor.abortConnectionOnPingFailure !== 'boolean') throw new Error('this js-libp2p has no connectionMonitor.abortConnectionOnPingFailure to switch off')
    monitor.abortConnectionOnPingFailure = false
  }
  return mesh
}

// ---------------------------------------------------------------------------
// receiver

async function receive (ip: string, relayAddr: string, tcpPort: number, libp2pPort: number): Promise<void> {
  const server = createServer(socket => {
    const tally = new Tally()
    const clock = new ReceiveClock()
    socket.on('data', (d: Buffer) => {
      clock.first()
      if (tally.add(d)) {
        socket.end(Uint8Array.of(1))
        clock.report('tcp', tally.expected)
      }
    })
    socket.on('error', (err) => { process.stderr.write(`stream-endpoint: plain TCP connection from ${socket.remoteAddress ?? '?'}: ${err.message}\n`) })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(tcpPort, ip, () => { server.off('error', reject); resolve() })
  })

  // one node per configuration, each on its own port with its own reservation
  const nodes: Array<{ config: NodeConfig, mesh: MeshNode, port: number }> = []
  const ready: Record<string, string> = { tcp: `${ip}:${tcpPort}` }
  for (const [i, config] of (['shipped', 'no-ping-abort'] as NodeConfig[]).entries()) {
    const port = libp2pPort + i
    const mesh = await makeNode(config, [`/ip4/${ip}/tcp/${port}`])
    nodes.push({ config, mesh, port })
    await MeshNode.libp2pOf(mesh).handle(BULK_PROTOCOL, async (stream: Stream, connection: Connection) => {
      const tally = new Tally()
      const clock = new ReceiveClock()
      const mode = `${connection.remoteAddr.toString().includes('/p2p-circuit') ? 'circuit' : 'direct'}:${config}`
      try {
        for await (const chunk of stream) {
          clock.first()
          if (tally.add(chunk)) {
            stream.send(Uint8Array.of(1))
            clock.report(mode, tally.expected)
            await stream.close({ signal: AbortSignal.timeout(TRANSFER_TIMEOUT_MS) })
            break
          }
        }
        if (!tally.done) process.stderr.write(`stream-endpoint: ${mode} bulk stream ended after ${tally.received} bytes, before its length was complete\n`)
      } catch (err) {
        process.stderr.write(`stream-endpoint: ${mode} bulk stream failed after ${tally.received} bytes: ${(err as Error).message}\n`)
        line({ received: false, mode, bytes: tally.expected, got: tally.received, error: `${(err as Error).name}: ${(err as Error).message}` })
        stream.abort(err as Error)
      }
    }, { runOnLimitedConnection: true })
    await mesh.start()
    // the relay's TCP address (both legs of the circuit then ride TCP, like the baseline)
    const relayConn = await mesh.components.dialler.dialTransport(multiaddr(relayAddr), { purpose: 'reservation', signal: AbortSignal.timeout(20_000) })
    const reservation = await mesh.components.reservations.reserve(relayConn, { signal: AbortSignal.timeout(20_000) })
    const circuit = reservation.circuitAddrs.find(a => a.startsWith(relayAddr)) ?? reservation.circuitAddrs[0]
    ready[`direct:${config}`] = `/ip4/${ip}/tcp/${port}/p2p/${mesh.peerId}`
    ready[`circuit:${config}`] = circuit.includes(`/p2p/${mesh.peerId}`) ? circuit : `${circuit}/p2p/${mesh.peerId}`
  }
  line({ ready: true, targets: ready })

  await new Promise<void>(resolve => {
    process.once('SIGTERM', resolve)
    process.once('SIGINT', resolve)
  })
  server.close()
  for (const n of nodes) await n.mesh.stop()
}

// ---------------------------------------------------------------------------
// sender

/** The bytes sent: one random chunk repeated (Noise encrypts anyway; nothing on the path compresses). */
const payloadChunk = randomBytes(CHUNK)

async function sendPlain (target: string, bytes: number): Promise<Record<string, unknown>> {
  const [host, port] = target.split(':')
  const socket: Socket = connect({ host, port: Number(port), noDelay: true })
  const signal = AbortSignal.timeout(TRANSFER_TIMEOUT_MS)
  const failed = new Promise<never>((_resolve, reject) => {
    socket.once('error', reject)
    signal.addEventListener('abort', () => { reject(new Error(`plain TCP transfer to ${target} not done within ${TRANSFER_TIMEOUT_MS} ms`)) }, { once: true })
  })
  try {
    await Promise.race([new Promise<void>(resolve => socket.once('connect', () => { resolve() })), failed])
    const answer = Promise.race([new Promise<void>(resolve => socket.once('data', () => { resolve() })), failed])
    const t0 = performance.now()
    const cpu0 = cpuMs()
    socket.write(headerFor(bytes))
    for (let sent = 0; sent < bytes;) {
      const n = Math.min(CHUNK, bytes - sent)
      sent += n
      if (!socket.write(n === CHUNK ? payloadChunk : payloadChunk.subarray(0, n))) {
        await Promise.race([new Promise<void>(resolve => socket.once('drain', () => { resolve() })), failed])
      }
    }
    await answer
    const ms = performance.now() - t0
    return { mode: 'tcp', bytes, ms, cpuMs: cpuMs() - cpu0, remoteAddr: target }
  } finally {
    socket.destroy()
  }
}

async function sendLibp2p (mesh: MeshNode, mode: string, target: string, bytes: number): Promise<Record<string, unknown>> {
  const signal = AbortSignal.timeout(TRANSFER_TIMEOUT_MS)
  // dialTransport: exactly this address on a new connection (no reuse of the previous mode's connection)
  const conn: Connection = await mesh.components.dialler.dialTransport(multiaddr(target), { purpose: 'internal', signal: AbortSignal.timeout(20_000) })
  try {
    const relayed = conn.remoteAddr.toString().includes('/p2p-circuit')
    if (relayed !== mode.startsWith('circuit')) throw new Error(`asked for a ${mode} connection, got ${conn.remoteAddr.toString()}`)
    const stream = await conn.newStream(BULK_PROTOCOL, { runOnLimitedConnection: true, signal })
    try {
      const t0 = performance.now()
      const cpu0 = cpuMs()
      stream.send(headerFor(bytes))
      for (let sent = 0; sent < bytes;) {
        const n = Math.min(CHUNK, bytes - sent)
        sent += n
        if (!stream.send(n === CHUNK ? payloadChunk : payloadChunk.subarray(0, n))) await stream.onDrain({ signal })
      }
      let answered = false
      for await (const chunk of stream) {
        if (chunk.byteLength > 0) { answered = true; break }
      }
      const ms = performance.now() - t0
      const cpu = cpuMs() - cpu0
      if (!answered) throw new Error(`${mode} stream to ${target} ended without the receiver's answer`)
      await stream.close({ signal: AbortSignal.timeout(10_000) })
      return { mode, bytes, ms, cpuMs: cpu, remoteAddr: conn.remoteAddr.toString(), limited: conn.limits != null }
    } catch (err) {
      stream.abort(err as Error)
      throw err
    }
  } finally {
    await closeBounded(conn)
  }
}

/**
 * Closes a connection, bounded: closing a circuit the connection monitor has
 * just aborted can wait for ever on a promise no timer keeps alive (the
 * process then exits with "unsettled top-level await"), so a ref'd timer
 * bounds it and the connection is aborted instead.
 */
async function closeBounded (conn: Connection): Promise<void> {
  if (conn.status !== 'open') return
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([
      conn.close({ signal: AbortSignal.timeout(10_000) }),
      new Promise<void>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error('close did not finish within 10 s')) }, 10_000) })
    ])
  } catch (err) {
    process.stderr.write(`stream-endpoint: closing ${conn.remoteAddr.toString()}: ${(err as Error).message}; aborting it\n`)
    conn.abort(err as Error)
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Modes: `tcp` (plain socket), `direct:<config>` and `circuit:<config>`
 * (libp2p, see NodeConfig); `targets` maps each mode to its address.
 */
async function send (plan: string[], bytes: number, warmupBytes: number, targets: Record<string, string>): Promise<void> {
  // one sender node per configuration, created when a mode first needs it
  const nodes = new Map<string, MeshNode>()
  const nodeFor = async (config: string): Promise<MeshNode> => {
    if (config !== 'shipped' && config !== 'no-ping-abort') throw new Error(`unknown node configuration "${config}" (shipped, no-ping-abort)`)
    let mesh = nodes.get(config)
    if (mesh == null) {
      mesh = await makeNode(config, [])
      await mesh.start()
      nodes.set(config, mesh)
    }
    return mesh
  }
  const once = async (mode: string, n: number): Promise<Record<string, unknown>> => {
    const target = targets[mode]
    if (target == null) throw new Error(`no target for mode ${mode}`)
    if (mode === 'tcp') return await sendPlain(target, n)
    const [kind, config] = mode.split(':')
    if (kind !== 'circuit' && kind !== 'direct') throw new Error(`unknown mode "${mode}" (tcp, direct:<config>, circuit:<config>)`)
    return await sendLibp2p(await nodeFor(config), mode, target, n)
  }
  try {
    // untimed warm-ups first, so no timed transfer pays for this process's JIT of its code path
    for (const mode of warmupBytes > 0 ? plan : []) {
      try {
        line({ ...(await once(mode, warmupBytes)), warmup: true })
      } catch (err) {
        line({ mode, bytes: warmupBytes, warmup: true, failed: true, error: `${(err as Error).name}: ${(err as Error).message}` })
      }
    }
    for (const mode of plan) {
      const started = performance.now()
      try {
        line(await once(mode, bytes))
      } catch (err) {
        // a transfer that breaks is a result too (how often, after how long, why): report it and go on with the next mode
        line({ mode, bytes, failed: true, afterMs: performance.now() - started, error: `${(err as Error).name}: ${(err as Error).message}` })
      }
    }
  } finally {
    for (const mesh of nodes.values()) await mesh.stop()
  }
}

// ---------------------------------------------------------------------------

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    ip: { type: 'string' },
    relay: { type: 'string' },
    'tcp-port': { type: 'string', default: '5201' },
    'libp2p-port': { type: 'string', default: '5202' },
    plan: { type: 'string' },
    bytes: { type: 'string' },
    targets: { type: 'string' },
    warmup: { type: 'string', default: '0' }
  }
})
try {
  if (positionals[0] === 'receive') {
    if (values.ip == null || values.relay == null) throw new Error('receive needs --ip and --relay')
    await receive(values.ip, values.relay, Number(values['tcp-port']), Number(values['libp2p-port']))
  } else if (positionals[0] === 'send') {
    if (values.plan == null || values.bytes == null || values.targets == null) throw new Error('send needs --plan, --bytes and --targets')
    await send(values.plan.split(','), Number(values.bytes), Number(values.warmup), JSON.parse(values.targets) as Record<string, string>)
  } else {
    throw new Error(`usage: stream-endpoint.ts receive|send … (got "${positionals.join(' ')}")`)
  }
  process.exit(0)
} catch (err) {
  process.stderr.write(`stream-endpoint ${positionals[0] ?? ''} failed: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
}
