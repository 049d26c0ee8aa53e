/**
 * The memory baseline for an idle daemon: the smallest js-libp2p node with the
 * daemon's transports and basic services (TCP, QUIC, WebSockets, Noise, yamux,
 * identify, ping), listening on 127.0.0.1 only and holding one connection to
 * the relay given as the argument, as the daemon holds one. Nothing else: no
 * discovery, no bootstrap list, no gossip, no relay transport, no API.
 *
 *   node_modules/.bin/node bench/lib/bare-node.ts /ip4/127.0.0.1/tcp/N/p2p/RELAY
 *
 * Prints one JSON line ({"peerId","connected"}) once the connection is up,
 * then idles until SIGTERM/SIGINT.
 */
import { noise } from '@chainsafe/libp2p-noise'
import { quic } from '@chainsafe/libp2p-quic'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'

const target = process.argv[2]
if (target == null || !target.startsWith('/ip4/127.')) {
  process.stderr.write('usage: bare-node.ts /ip4/127.x.y.z/tcp/PORT/p2p/PEER (loopback only)\n')
  process.exit(2)
}

const node = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/udp/0/quic-v1', '/ip4/127.0.0.1/tcp/0/ws'] },
  transports: [tcp(), quic(), webSockets()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify(), ping: ping() }
})
await node.start()
const conn = await node.dial(multiaddr(target), { signal: AbortSignal.timeout(20_000) })
process.stdout.write(`${JSON.stringify({ peerId: node.peerId.toString(), connected: conn.remotePeer.toString() })}\n`)

let stopping = false
const stop = (): void => {
  if (stopping) return
  stopping = true
  const force = setTimeout(() => { process.exit(1) }, 5_000)
  Promise.resolve(node.stop()).then(() => { clearTimeout(force); process.exit(0) }, (err: unknown) => {
    process.stderr.write(`bare-node: stop failed: ${String(err)}\n`)
    process.exit(1)
  })
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
