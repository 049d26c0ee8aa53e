/**
 * Test helpers that start the real roles in-process on 127.0.0.1, through the
 * same config loaders and composition root the CLI uses.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ApiClient } from '../../src/api/client.ts'
import { loadDaemonConfig, loadRelayConfig, type DaemonFlags } from '../../src/config/config.ts'
import { loadOrCreateIdentity } from '../../src/config/identity.ts'
import { startDaemon, startRelay, type DaemonHandle, type RelayHandle } from '../../src/daemon/daemon.ts'
import type { DaemonStatus } from '../../src/core/types.ts'

export function tempDir (prefix = 'wc-test-'): { path: string, cleanup: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix))
  return { path, cleanup: () => { rmSync(path, { recursive: true, force: true }) } }
}

/** A TCP port on 127.0.0.1 that nothing listens on (bound, then released). */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address != null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

export async function relayPeerId (dataDir: string): Promise<string> {
  return (await loadOrCreateIdentity(dataDir)).peerId.toString()
}

export async function startTestRelay (dataDir: string, listen: string[] = ['/ip4/127.0.0.1/tcp/0']): Promise<RelayHandle> {
  return await startRelay(loadRelayConfig({ dataDir, listen }, {}))
}

/** Fast retry timing so tests see several rounds quickly; production defaults are slower. */
export const FAST_RESERVATION = { initialBackoffMs: 100, maxBackoffMs: 800, watchdogIntervalMs: 300, pingTimeoutMs: 1000 }

export async function startTestDonor (dataDir: string, bootstrap: string[], listen: string[] = ['/p2p-circuit'], flags: Partial<DaemonFlags> = {}): Promise<DaemonHandle & { client: ApiClient }> {
  const handle = await startDaemon(loadDaemonConfig({ dataDir, bootstrap, listen, apiPort: '0', ...flags }, {}), { reservation: FAST_RESERVATION })
  return { ...handle, client: new ApiClient({ dataDir }) }
}

export async function reservedStatus (client: ApiClient, relayId?: string): Promise<DaemonStatus | undefined> {
  const status = await client.call('status', {})
  return status.relays.some(r => relayId == null || r.peerId === relayId) ? status : undefined
}
