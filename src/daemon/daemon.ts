import { ApiServer } from '../api/server.ts'
import { ensureDataDir } from '../config/data-dir.ts'
import { loadOrCreateIdentity } from '../config/identity.ts'
import { VERSION } from '../core/version.ts'
import { DonorService } from '../donor/donor-service.ts'
import { createLogger, type Logger } from '../log/logger.ts'
import { MeshNode } from '../net/mesh-node.ts'
import { RelayService, type RelayInfo } from '../relay/relay-service.ts'
import type { DaemonConfig, RelayConfig } from '../config/config.ts'
import type { ReservationManagerInit } from '../donor/reservation-manager.ts'

/**
 * The composition root: the only place that wires net, roles and the API
 * together. Everything it starts, `stop()` stops.
 */

export interface DaemonHandle {
  peerId: string
  apiPort: number
  donor: DonorService
  stop: () => Promise<void>
}

export interface StartDaemonOptions {
  logger?: Logger
  /** test seam: faster retry and watchdog timing */
  reservation?: Omit<ReservationManagerInit, 'bootstrap' | 'logger'>
}

/** `/p2p-circuit` in the listen list means "reachable through relays"; the reservation manager does that. */
function directListenAddrs (config: DaemonConfig): DaemonConfig['listen'] {
  return config.listen.filter(ma => ma.toString() !== '/p2p-circuit')
}

export async function startDaemon (config: DaemonConfig, options: StartDaemonOptions = {}): Promise<DaemonHandle> {
  const log = options.logger ?? createLogger('daemon')
  const paths = ensureDataDir(config.dataDir)
  const identity = await loadOrCreateIdentity(config.dataDir)
  if (identity.created) log.info(`created a new identity ${identity.peerId.toString()} in ${identity.path}`)

  const mesh = await MeshNode.create({
    privateKey: identity.privateKey,
    listen: directListenAddrs(config),
    logger: createLogger('net')
  })
  const donor = new DonorService({ mesh, bootstrap: config.bootstrap, version: VERSION, reservation: options.reservation })
  const api = new ApiServer({
    paths,
    port: config.apiPort,
    version: VERSION,
    handlers: {
      health: async () => ({ ok: true, peerId: mesh.peerId, version: VERSION, pid: process.pid }),
      status: async () => donor.status(),
      dials: async ({ limit }) => ({ total: mesh.telemetry.count(), attempts: mesh.telemetry.recent(limit) }),
      ping: async ({ target, count }, { signal }) => await donor.ping(target, count, { signal })
    }
  })

  // start the API first so a port clash fails before any network activity
  await api.start()
  try {
    await donor.start()
  } catch (err) {
    await api.stop()
    throw err
  }
  log.info(`donor ${mesh.peerId} started; bootstrap relays (${config.bootstrapSource}): ${config.bootstrap.length === 0 ? 'none' : config.bootstrap.map(String).join(', ')}`)
  const direct = mesh.listenAddrs().filter(a => !a.includes('/p2p-circuit'))
  log.info(direct.length === 0 ? 'listening only through relays' : `listening on ${direct.join(', ')}`)

  let stopping: Promise<void> | undefined
  return {
    peerId: mesh.peerId,
    apiPort: api.port,
    donor,
    stop: async () => {
      stopping ??= (async () => {
        await api.stop()
        await donor.stop()
        log.info('donor stopped')
      })()
      await stopping
    }
  }
}

export interface RelayHandle {
  info: RelayInfo
  relay: RelayService
  stop: () => Promise<void>
}

export async function startRelay (config: RelayConfig, options: { logger?: Logger } = {}): Promise<RelayHandle> {
  const log = options.logger ?? createLogger('relay')
  ensureDataDir(config.dataDir)
  const identity = await loadOrCreateIdentity(config.dataDir)
  if (identity.created) log.info(`created a new identity ${identity.peerId.toString()} in ${identity.path}`)
  const relay = new RelayService({ config, privateKey: identity.privateKey, logger: log })
  const info = await relay.start()
  let stopping: Promise<void> | undefined
  return {
    info,
    relay,
    stop: async () => {
      stopping ??= relay.stop()
      await stopping
    }
  }
}

