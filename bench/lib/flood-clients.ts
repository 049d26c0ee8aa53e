/**
 * The attacker of the relay flood benchmark (bench/relay-flood.ts): throw-away
 * identities from one loopback source address, each dialling the relay,
 * reserving and disconnecting right after, paced under js-libp2p's per-host
 * inbound connection threshold (10/s) so the relay's rate limiter never stops
 * them. Started with child_process.fork; reports over IPC every second and
 * exits when the parent disconnects.
 *
 *   fork('bench/lib/flood-clients.ts', [relayTcpAddr, sourceIp, perSecond])
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'

export interface FloodProgress { type: 'progress', attempts: number, granted: number, refused: number, firstError?: string }

const [relayAddr, sourceIp, rateArg] = process.argv.slice(2)
const perSecond = Math.max(1, Number(rateArg ?? 8))
const counts: FloodProgress = { type: 'progress', attempts: 0, granted: 0, refused: 0 }
let stopped = false

if (process.send == null || relayAddr == null || sourceIp == null) {
  process.stderr.write('flood-clients.ts: fork it with [relayTcpAddr, sourceIp, perSecond] (it reports over IPC)\n')
  process.exit(2)
}

/** One throw-away identity: reserve, then leave at once. */
async function reserveAndLeave (): Promise<void> {
  counts.attempts++
  const node = await createLibp2p({
    start: false,
    addresses: { listen: [`${relayAddr}/p2p-circuit`] },
    transports: [tcp({ dialOpts: { localAddress: sourceIp } as Record<string, unknown> }), circuitRelayTransport()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() },
    connectionMonitor: { enabled: false }
  })
  try {
    await node.start()
    if (node.getMultiaddrs().some(ma => ma.toString().includes('/p2p-circuit'))) counts.granted++
    else counts.refused++
  } catch (err) {
    counts.refused++
    counts.firstError ??= (err as Error).message
  } finally {
    await node.stop()
  }
}

async function main (): Promise<void> {
  const report = setInterval(() => { process.send?.(counts) }, 1_000)
  const gapMs = 1_000 / perSecond
  while (!stopped) {
    const started = Date.now()
    await reserveAndLeave()
    await new Promise(resolve => setTimeout(resolve, Math.max(0, gapMs - (Date.now() - started))))
  }
  clearInterval(report)
}

process.on('disconnect', () => { stopped = true; process.exit(0) })
main().catch((err: unknown) => {
  process.stderr.write(`flood-clients: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
