/**
 * An in-process relay on 127.0.0.1 built the way the composition root builds
 * one (prepareRelay → MeshNode → RelayService), with its admission guard in
 * reach, and lightweight js-libp2p clients that reserve on it from a chosen
 * loopback source address: to the relay, 127.0.0.2 and 127.0.0.3 are two IPs.
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { createLibp2p, type Libp2p } from 'libp2p'
import { loadRelayConfig, type RelayFlags } from '../../src/config/config.ts'
import { createLogger } from '../../src/log/logger.ts'
import { MeshNode } from '../../src/net/mesh-node.ts'
import { prepareRelay } from '../../src/relay/relay-service.ts'
import { RelayService } from '../../src/relay/relay-service.ts'
import { tempDir } from '../helpers/mesh.ts'
import type { Track } from '../helpers/cleanup.ts'
import type { RelayGuard } from '../../src/relay/relay-guard.ts'
import type { PrivateKey } from '@libp2p/interface'

export interface TestRelay {
  service: RelayService
  guard: RelayGuard
  /** the relay's TCP address with its PeerId */
  addr: string
  /** every address it listens on (a QUIC one when `flags.listen` asks for it) */
  listenAddrs: string[]
  /** its node: for tests that look at the relay's own connections */
  mesh: MeshNode
  stop: () => Promise<void>
}

/** A relay on 127.0.0.1 (TCP only, no STUN) with `flags` on top of the defaults. */
export async function startGuardedRelay (flags: Partial<RelayFlags> = {}): Promise<TestRelay> {
  const dir = tempDir('wc-relay-limits-')
  const config = loadRelayConfig({ dataDir: dir.path, listen: ['/ip4/127.0.0.1/tcp/0'], noStun: true, ...flags }, {})
  const logger = createLogger('relay')
  const parts = await prepareRelay(config, await generateKeyPair('Ed25519'), logger)
  const mesh = await MeshNode.create(parts.node)
  const service = new RelayService({ config, mesh, logger })
  const info = await service.start()
  const addr = info.listenAddrs.find(a => a.startsWith('/ip4/127.0.0.1/tcp/'))
  if (addr == null) throw new Error(`the relay listens on no 127.0.0.1 TCP address: ${info.listenAddrs.join(' ')}`)
  return {
    service,
    guard: parts.guard,
    addr: addr.includes('/p2p/') ? addr : `${addr}/p2p/${info.peerId}`,
    listenAddrs: info.listenAddrs,
    mesh,
    stop: async () => { await service.stop(); dir.cleanup() }
  }
}

export interface ClientInit {
  /** the loopback address the client dials from @default 127.0.0.1 */
  sourceIp?: string
  privateKey?: PrivateKey
}

/** A bare node that dials the relay from `sourceIp` and reserves on it; not started. */
export async function reservingClient (relayAddr: string, init: ClientInit = {}): Promise<Libp2p> {
  return await createLibp2p({
    start: false,
    ...(init.privateKey != null ? { privateKey: init.privateKey } : {}),
    addresses: { listen: [`${relayAddr}/p2p-circuit`] },
    // localAddress is passed through to net.connect (the typings list only a subset of its options)
    transports: [tcp({ dialOpts: { localAddress: init.sourceIp ?? '127.0.0.1' } as Record<string, unknown> }), circuitRelayTransport()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() },
    connectionMonitor: { enabled: false }
  })
}

/**
 * Starts `client`, which reserves on the relay: 'granted' with a circuit
 * address, else the refusal's message (the client is stopped then).
 */
export async function tryReserve (client: Libp2p): Promise<'granted' | string> {
  try {
    await client.start()
    if (client.getMultiaddrs().some(ma => ma.toString().includes('/p2p-circuit'))) return 'granted'
    await client.stop()
    return 'started without a circuit address'
  } catch (err) {
    await client.stop()
    return (err as Error).message
  }
}

/** `track` for libp2p nodes (their stop() may return void): stopped after the test, returned as given. */
export function nodeTracker (track: Track): <N extends Libp2p>(node: N) => N {
  return (node) => {
    track({ stop: async () => { await node.stop() } })
    return node
  }
}
