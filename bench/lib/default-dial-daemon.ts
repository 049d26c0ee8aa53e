/**
 * The baseline of bench/dispatchable.ts: a donor daemon whose relays are
 * dialled the way js-libp2p does it by default — one `dial()` over every
 * address at once — instead of our dial ladder. Everything else is the
 * product's daemon (`startDaemon`), and the transport-level dial recorder
 * still records each attempt, so `worldcompute dials` shows them as usual.
 *
 *   node_modules/.bin/node bench/lib/default-dial-daemon.ts --data-dir DIR --api-port 0 \
 *     --listen /p2p-circuit --bootstrap MA [--bootstrap MA]... [--no-execute]
 *
 * Takes the subset of `worldcompute daemon`'s options the bench uses; runs
 * until SIGTERM/SIGINT.
 */
import { enableCompileCache } from 'node:module'
import { parseArgs } from 'node:util'
import type { LadderResult } from '../../src/net/dial-ladder.ts'
import type { MeshComponents } from '../../src/net/components.ts'
import type { RelayDialler } from '../../src/donor/reservation-manager.ts'

// as bin/worldcompute does: both strategies pay the same start-up cost
enableCompileCache()
const { configureLogging, createLogger } = await import('../../src/log/logger.ts')
const { loadDaemonConfig } = await import('../../src/config/config.ts')
const { startDaemon } = await import('../../src/daemon/daemon.ts')
const { runUntilSignal } = await import('../../src/cli/lifecycle.ts')
const { stdio } = await import('../../src/cli/output.ts')
const { uplinkTransport } = await import('../../src/net/transport-of.ts')

/** js-libp2p's own dial over all the relay's addresses; what it does with them is its business. */
function libp2pDefaultDialler (components: Pick<MeshComponents, 'dialler'>): RelayDialler {
  return {
    dial: async (_peerId, addrs, options): Promise<LadderResult> => {
      const connection = await components.dialler.dialAll([...addrs], { signal: options.signal })
      const addr = connection.remoteAddr.toString()
      return { connection, transport: uplinkTransport(addr), addr, remembered: false, reason: 'js-libp2p default dial (benchmark baseline)', attempts: [] }
    }
  }
}

const { values } = parseArgs({
  options: {
    'data-dir': { type: 'string' },
    'api-port': { type: 'string' },
    listen: { type: 'string', multiple: true },
    bootstrap: { type: 'string', multiple: true },
    'no-execute': { type: 'boolean', default: false }
  },
  strict: true
})
configureLogging({ spec: process.env.WORLDCOMPUTE_LOG, format: 'text' })
createLogger('bench').warn('relays are dialled with one js-libp2p dial() over all their addresses, not the dial ladder (benchmark baseline)')
const config = loadDaemonConfig({
  dataDir: values['data-dir'],
  apiPort: values['api-port'],
  listen: values.listen,
  bootstrap: values.bootstrap,
  noExecute: values['no-execute']
})
await runUntilSignal(stdio, async () => await startDaemon(config, { relayDialler: libp2pDefaultDialler }), (handle) => {
  stdio.err(`baseline daemon ${handle.peerId} running (js-libp2p default dial); API on 127.0.0.1:${handle.apiPort}`)
})
