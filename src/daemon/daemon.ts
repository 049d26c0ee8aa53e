import { join } from 'node:path'
import { ApiServer } from '../api/server.ts'
import { Broker } from '../broker/broker.ts'
import { JobStore } from '../broker/job-store.ts'
import { jobView } from '../broker/job-view.ts'
import { MeshTaskNetwork } from '../broker/mesh-task-network.ts'
import { rawCidString } from '../codec/cid.ts'
import { DEFAULT_JOB_LIMITS, type JobLimits } from '../core/job.ts'
import { JobRunner } from '../donor/job-runner.ts'
import { Executor } from '../executor/index.ts'
import { capacity } from '../protocols/capacity/index.ts'
import { dispatch } from '../protocols/dispatch/index.ts'
import { offer } from '../protocols/offer/index.ts'
import { natInfo } from '../protocols/nat-info/index.ts'
import { ensureDataDir } from '../config/data-dir.ts'
import { loadOrCreateIdentity } from '../config/identity.ts'
import { VERSION } from '../core/version.ts'
import { ConfigError } from '../core/errors.ts'
import { DonorService } from '../donor/donor-service.ts'
import { createLogger, type Logger } from '../log/logger.ts'
import { pause } from '../core/async.ts'
import { MeshNode } from '../net/mesh-node.ts'
import { parseProxyEnvironment } from '../net/proxy-env.ts'
import { MeshResolver } from '../net/dns-resolver.ts'
import { trustSystemCertificates } from '../net/tls-intercept.ts'
import { prepareRelay, RelayService, type RelayInfo } from '../relay/relay-service.ts'
import type { DaemonConfig, RelayConfig } from '../config/config.ts'
import type { ReservationManagerInit } from '../donor/reservation-manager.ts'
import { codeOf, messageOf } from '../protocols/errors.ts'

/** Pauses between attempts to start an executor sandbox that failed to start: capped, never giving up. */
const SANDBOX_RETRY_MS = [5_000, 15_000, 60_000]

/**
 * The composition root: the only place that wires net, roles and the API
 * together. Everything it starts, `stop()` stops.
 */

export interface DaemonHandle {
  peerId: string
  apiPort: number
  donor: DonorService
  broker: Broker
  executor?: Executor
  stop: () => Promise<void>
}

export interface StartDaemonOptions {
  logger?: Logger
  /** test seam: faster retry and watchdog timing */
  reservation?: Omit<ReservationManagerInit, 'bootstrap' | 'logger'>
  /** test seam: capacity announcement interval @default 5000 */
  announceIntervalMs?: number
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
  // WSS to relays trusts the OS store too (what `node --use-system-ca` does), so a
  // TLS-inspecting proxy whose CA IT installed works with no flag; before any TLS dial
  trustSystemCertificates(createLogger('net.tls'))

  const maxLimits: JobLimits = {
    ...DEFAULT_JOB_LIMITS,
    memoryBytes: config.donor.maxJobMemoryBytes,
    deadlineMs: config.donor.maxDeadlineMs
  }
  // services are built inside createLibp2p, the job runner after it: late binding
  let runner: JobRunner | undefined
  let donorRole: DonorService | undefined
  const execute = config.donor.execute
  // OS resolver first, then DoH: for the bootstrap names and libp2p's own /dnsaddr lookups
  const resolver = new MeshResolver({ doh: config.doh, logger: createLogger('net.dns') })
  const mesh = await MeshNode.create({
    privateKey: identity.privateKey,
    dns: resolver,
    // HTTPS_PROXY, ALL_PROXY, NO_PROXY, … (lower-case first, like curl); a bad value stops the start, naming the variable
    proxy: parseProxyEnvironment(process.env),
    listen: directListenAddrs(config),
    // ranges a private deployment (or the namespace lab) treats as public: AutoNAT, identify, announcements
    publicRanges: config.publicRanges,
    // private-to-private WebRTC for direct upgrades (donor/direct-paths.ts); off with --no-direct
    webrtc: config.direct,
    logger: createLogger('net'),
    services: {
      capacity: capacity({
        getCapacity: execute ? () => runner?.capacity() : undefined,
        announceIntervalMs: options.announceIntervalMs,
        logger: createLogger('protocols.capacity')
      }),
      // tells peers our NAT type, so both sides know whether WebRTC can punch through
      natInfo: natInfo({ getInfo: () => donorRole?.natInfo() ?? { mapping: 'unknown', filtering: 'unknown', udp: 'unknown', webrtc: false }, logger: createLogger('protocols.nat-info') }),
      offer: offer({
        decideOffer: execute ? (req, ctx) => runner != null ? runner.decideOffer(req, ctx) : { accept: false, reason: 'starting', hasModule: false, freeSlots: 0 } : undefined,
        logger: createLogger('protocols.offer')
      }),
      dispatch: dispatch({
        runTask: execute
          ? async (req, o) => {
            if (runner == null) throw new Error('the donor is still starting')
            return await runner.runTask(req, o)
          }
          : undefined,
        logger: createLogger('protocols.dispatch')
      })
    }
  })
  const { capacity: capacityService, offer: offerService, dispatch: dispatchService } = mesh.services

  const executor = execute ? new Executor({ maxConcurrent: config.donor.maxConcurrentJobs, maxLimits }) : undefined
  /** why the sandbox is not running after a failed start (undefined: it runs, or is still starting) */
  let sandboxDown: string | undefined
  const daemonStopped = new AbortController()
  const keepStartingSandbox = async (ex: Executor): Promise<void> => {
    for (let attempt = 0; !daemonStopped.signal.aborted; attempt++) {
      const wait = SANDBOX_RETRY_MS[Math.min(attempt, SANDBOX_RETRY_MS.length - 1)]
      await pause(wait, { signal: daemonStopped.signal })
      if (daemonStopped.signal.aborted) return
      try {
        await ex.start()
        sandboxDown = undefined
        log.info(`the executor sandbox is up after ${attempt + 2} attempts: this donor takes jobs again`)
        runner?.changed()
        return
      } catch (err) {
        sandboxDown = messageOf(err)
        const next = SANDBOX_RETRY_MS[Math.min(attempt + 1, SANDBOX_RETRY_MS.length - 1)]
        log.error(`the executor sandbox did not start (attempt ${attempt + 2}): ${sandboxDown}; retrying in ${next / 1000} s`, { code: codeOf(err) })
      }
    }
  }
  if (executor != null) {
    runner = new JobRunner({
      executor,
      unavailable: () => sandboxDown != null ? `the executor sandbox is not running (${sandboxDown})` : undefined,
      maxLimits,
      maxConcurrent: config.donor.maxConcurrentJobs,
      memoryBudgetBytes: config.donor.memoryBudgetBytes,
      addrs: () => mesh.components.addresses.advertisedAddrs(),
      hasModule: (cid) => dispatchService.hasModule(cid),
      onChange: () => { capacityService.notifyChanged() }
    })
  }
  // the winning dial rung is remembered per network in the data dir
  const donor = new DonorService({ mesh, bootstrap: config.bootstrap, version: VERSION, reservation: { stateDir: paths.stateDir, resolver, refuseIntercepted: config.refuseIntercepted, dialStrategy: dialStrategyFromEnv(), ...options.reservation }, direct: config.direct ? { announcedAddrs: (id) => capacityService.capacityOf(id)?.addrs ?? [] } : false })
  donorRole = donor
  // an executor we learn of gets a direct connection ahead of any job, where the networks allow
  capacityService.addEventListener('executor:added', (evt) => { donor.direct?.schedule(evt.detail.peerId, evt.detail.addrs, 'it announced capacity') })
  const store = new JobStore(join(paths.root, 'jobs.sqlite'))
  const broker = new Broker({
    store,
    network: new MeshTaskNetwork({ mesh: mesh.components, capacity: capacityService, offer: offerService, dispatch: dispatchService, relays: () => donor.connectedRelays() }),
    self: mesh.peerId
  })
  const api = new ApiServer({
    paths,
    port: config.apiPort,
    version: VERSION,
    handlers: {
      health: async () => ({ ok: true, peerId: mesh.peerId, version: VERSION, pid: process.pid }),
      status: async () => ({
        ...donor.status(),
        executor: executor != null
          ? { accepting: true, ...executor.status(), maxLimits }
          : { accepting: false, reason: 'started with --no-execute' }
      }),
      dials: async ({ limit }) => ({ total: mesh.telemetry.count(), attempts: mesh.telemetry.recent(limit) }),
      ping: async ({ target, count }, { signal }) => await donor.ping(target, count, { signal }),
      submitJob: async (req) => {
        const module = Buffer.from(req.module, 'base64')
        const input = Buffer.from(req.input, 'base64')
        const job = broker.submit({
          module,
          moduleCid: rawCidString(module),
          input,
          inputCid: rawCidString(input),
          moduleName: req.moduleName,
          args: req.args,
          env: req.env,
          limits: req.limits,
          replicas: req.replicas
        })
        return jobView(job, [], false)
      },
      job: async ({ id, full }) => {
        const { job, tasks } = broker.getJob(id)
        return jobView(job, tasks, full)
      },
      jobs: async ({ limit }) => ({ jobs: broker.listJobs(limit).map(job => jobView(job, broker.getJob(job.jobId).tasks, false)) })
    }
  })

  // start the API first so a port clash fails before any network activity
  try {
    await api.start()
  } catch (err) {
    store.close()
    throw err
  }
  try {
    // in parallel: spawning the sandbox process takes a few hundred ms of CPU,
    // and joining the mesh (dial, reservation) should not queue behind it —
    // "start → dispatchable" is the figure donors see. Offers that arrive
    // before the sandbox is up wait for it (Executor.start is idempotent).
    const [sandbox, joined] = await Promise.allSettled([executor?.start(), donor.start()])
    if (joined.status === 'rejected') throw joined.reason
    if (sandbox.status === 'rejected' && executor != null) {
      // not fatal: a loaded machine can take longer than the start timeout to
      // bring the sandbox up; the donor stays in the mesh, declines offers and
      // says why, and keeps trying (capped backoff) until the sandbox runs
      sandboxDown = messageOf(sandbox.reason)
      log.error(`the executor sandbox did not start: ${sandboxDown}; this donor takes no jobs until it does, retrying in ${SANDBOX_RETRY_MS[0] / 1000} s`, { code: codeOf(sandbox.reason) })
      void keepStartingSandbox(executor)
    }
    broker.start()
  } catch (err) {
    await api.stop()
    await executor?.stop()
    await donor.stop()
    store.close()
    throw err
  }
  log.info(execute
    ? `executing jobs: ${config.donor.maxConcurrentJobs} at once, up to ${Math.round(maxLimits.memoryBytes / 1048576)} MiB and ${maxLimits.deadlineMs / 1000} s each`
    : 'not executing jobs (--no-execute): this daemon only submits')
  log.info(`donor ${mesh.peerId} started; bootstrap relays (${config.bootstrapSource}): ${config.bootstrap.length === 0 ? 'none' : config.bootstrap.map(String).join(', ')}`)
  const direct = mesh.components.addresses.listenAddrs().filter(a => !a.includes('/p2p-circuit'))
  log.info(direct.length === 0 ? 'listening only through relays' : `listening on ${direct.join(', ')}`)

  let stopping: Promise<void> | undefined
  return {
    peerId: mesh.peerId,
    apiPort: api.port,
    donor,
    broker,
    executor,
    stop: async () => {
      stopping ??= (async () => {
        daemonStopped.abort()
        await api.stop()
        await broker.stop()
        await donor.stop()
        await executor?.stop()
        store.close()
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

export async function startRelay (config: RelayConfig, options: { logger?: Logger, /** test seam: relay announcement interval @default 10000 */ announceIntervalMs?: number } = {}): Promise<RelayHandle> {
  const log = options.logger ?? createLogger('relay')
  ensureDataDir(config.dataDir)
  const identity = await loadOrCreateIdentity(config.dataDir)
  if (identity.created) log.info(`created a new identity ${identity.peerId.toString()} in ${identity.path}`)
  const parts = await prepareRelay(config, identity.privateKey, log)
  const mesh = await MeshNode.create(parts.node).catch(async (err: unknown) => { await parts.stun?.stop(); throw err })
  const relay = new RelayService({ config, mesh, stun: parts.stun, tlsCertificate: parts.tlsCertificate, announceIntervalMs: options.announceIntervalMs, logger: log })
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

/** WORLDCOMPUTE_DIAL_STRATEGY=libp2p-default: the benchmark baseline (bench/dispatchable.ts); anything else is refused. */
function dialStrategyFromEnv (): 'ladder' | 'libp2p-default' {
  const v = process.env.WORLDCOMPUTE_DIAL_STRATEGY
  if (v == null || v === '' || v === 'ladder') return 'ladder'
  if (v === 'libp2p-default') return v
  throw new ConfigError(`WORLDCOMPUTE_DIAL_STRATEGY must be "ladder" or "libp2p-default", got "${v}"`)
}
