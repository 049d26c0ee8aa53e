import { join } from 'node:path'
import { ApiServer } from '../api/server.ts'
import type { ApiHandlers } from '../api/routes.ts'
import { Broker } from '../broker/broker.ts'
import { JobStore } from '../broker/job-store.ts'
import { BlobStore, submittedFile, submittedPayload } from '../broker/blob-store.ts'
import { jobFilesView, jobView } from '../broker/job-view.ts'
import { MeshTaskNetwork } from '../broker/mesh-task-network.ts'
import { DEFAULT_JOB_LIMITS, type ExecStatus, type JobLimits } from '../core/job.ts'
import { JobRunner } from '../donor/job-runner.ts'
import { DonorControls, NotExecutingError } from '../donor/controls.ts'
import { DonatedStore } from '../donor/donated-store.ts'
import { Executor } from '../executor/index.ts'
import { capacity, type CapacityService } from '../protocols/capacity/index.ts'
import { dispatch, type DispatchService } from '../protocols/dispatch/index.ts'
import { fetch, type FetchService } from '../protocols/fetch/index.ts'
import { ContentStore } from '../donor/content-store.ts'
import { transportOf } from '../net/transport-of.ts'
import { offer, type OfferService } from '../protocols/offer/index.ts'
import { natInfo } from '../protocols/nat-info/index.ts'
import { cancel, type CancelService } from '../protocols/cancel/index.ts'
import { ensureDataDir, lockDataDir, type DataDirPaths } from '../config/data-dir.ts'
import { loadOrCreateIdentity, type Identity } from '../config/identity.ts'
import { VERSION } from '../core/version.ts'
import { DonorService } from '../donor/donor-service.ts'
import { createLogger, type Logger } from '../log/logger.ts'
import { MeshNode } from '../net/mesh-node.ts'
import type { MeshComponents } from '../net/components.ts'
import { parseProxyEnvironment } from '../net/proxy-env.ts'
import { MeshResolver } from '../net/dns-resolver.ts'
import { trustSystemCertificates } from '../net/tls-intercept.ts'
import { prepareRelay, RelayService, type RelayInfo, type RelayParts } from '../relay/relay-service.ts'
import type { NodeMetrics, JobFinalStatus } from '../metrics/node-metrics.ts'
import type { DaemonConfig, RelayConfig } from '../config/config.ts'
import type { RelayDialler, ReservationManagerInit } from '../donor/reservation-manager.ts'
import { SandboxKeeper } from './sandbox.ts'
import { ServiceAnswers } from './service-answers.ts'
import { Teardown } from './teardown.ts'
import { letMemoryReducerRun } from './memory-reducer.ts'
import { RelayNotListeningError, startFailure } from './start-errors.ts'

/**
 * The composition root: the only place that wires net, roles and the API
 * together, in named steps (data dir and identity → job store → node → roles
 * → API → start). Everything a step starts is registered with a Teardown:
 * `stop()` stops it, and so does a later step that fails; the start then
 * rejects with a named error (`startFailure`) that the CLI prints as one line.
 */

export interface DaemonHandle {
  peerId: string
  apiPort: number
  donor: DonorService
  broker: Broker
  executor?: Executor
  /** the port /metrics is served on; absent without --metrics */
  metricsPort?: number
  stop: () => Promise<void>
}

export interface StartDaemonOptions {
  logger?: Logger
  /** test seam: faster retry and watchdog timing */
  reservation?: Omit<ReservationManagerInit, 'bootstrap' | 'logger'>
  /** test seam: capacity announcement interval @default 30000 */
  announceIntervalMs?: number
  /** benchmark seam: how the donor dials its relays, built on the mesh @default the dial ladder */
  relayDialler?: (components: Pick<MeshComponents, 'dialler'>) => RelayDialler
}

/** The node and the protocol services built into it. */
interface Net {
  mesh: MeshNode
  resolver: MeshResolver
  capacityService: CapacityService
  offerService: OfferService
  dispatchService: DispatchService
  cancelService: CancelService
  /** big modules and inputs fetched by CID (`--content-cache`); absent with --no-execute */
  content?: ContentStore
}

/** The job-running side of a donor; absent with --no-execute. */
interface Execution {
  executor: Executor
  sandbox: SandboxKeeper
  runner: JobRunner
  /** pause, cpu limit, busy machine, run hours: whether jobs run now */
  controls: DonorControls
}

/** What the roles tell the metrics as it happens; bound once the metrics exist, so nothing is counted without --metrics. */
interface RoleEvents {
  taskExecuted?: (status: ExecStatus) => void
  jobFinished?: (status: JobFinalStatus) => void
}

interface Roles {
  history: DonatedStore
  maxLimits: JobLimits
  execution?: Execution
  donor: DonorService
  broker: Broker
  /** modules, inputs and files uploaded with `PUT /v1/blobs/{cid}`, one file each under blobs/ in the data directory */
  blobs: BlobStore
}

/** The Teardown name of the local API, which `stop()` stops first. */
const LOCAL_API = 'local API'

/** `/p2p-circuit` in the listen list means "reachable through relays"; the reservation manager does that. */
function directListenAddrs (config: DaemonConfig): DaemonConfig['listen'] {
  return config.listen.filter(ma => ma.toString() !== '/p2p-circuit')
}

export async function startDaemon (config: DaemonConfig, options: StartDaemonOptions = {}): Promise<DaemonHandle> {
  const log = options.logger ?? createLogger('daemon')
  const teardown = new Teardown({ logger: log })
  const startedAt = Date.now()
  try {
    const { paths, identity } = await openDataDir(config, log, teardown)
    const store = openStore(paths, teardown)
    const history = openHistory(paths, teardown)
    const answers = new ServiceAnswers()
    const warm: SandboxWarmer = {}
    const content = config.donor.execute ? new ContentStore({ dir: join(paths.root, 'content'), maxBytes: config.donor.contentCacheBytes }) : undefined
    const net = await startNet(config, identity, answers, options, teardown, warm, content)
    const events: RoleEvents = {}
    const roles = buildRoles(config, paths, net, { store, history }, options, log, events)
    answers.attach({ runner: roles.execution?.runner, nat: roles.donor })
    warm.executor = roles.execution?.executor
    const api = await startApi(config, paths, net, roles, teardown)
    const metrics = await startDonorMetrics(config, net.mesh, roles, events, { startedAt, teardown })
    await startRoles(roles, teardown)
    logStarted(config, net.mesh, roles, log)
    letMemoryReducerRun()
    return { ...daemonHandle(net.mesh, api, roles, teardown, log), ...(metrics?.port != null ? { metricsPort: metrics.port } : {}) }
  } catch (err) {
    return await teardown.rollBack(startFailure(err))
  }
}

/** Step 1: the data directory (held for this process) and the node's identity, and the system CA store trusted (before any TLS dial). */
async function openDataDir (config: DaemonConfig, log: Logger, teardown: Teardown): Promise<{ paths: DataDirPaths, identity: Identity }> {
  const { paths, identity } = await takeDataDir(config.dataDir, log, teardown)
  // WSS to relays trusts the OS store too (what `node --use-system-ca` does), so a
  // TLS-inspecting proxy whose CA IT installed works with no flag; before any TLS dial
  trustSystemCertificates(createLogger('net.tls'))
  return { paths, identity }
}

/**
 * The data directory, locked for this process before anything in it is
 * used: a second node on it would take the same PeerId, resume the same
 * jobs and remove the first one's API endpoint when it stops.
 */
async function takeDataDir (root: string, log: Logger, teardown: Teardown): Promise<{ paths: DataDirPaths, identity: Identity }> {
  const paths = ensureDataDir(root)
  const lock = lockDataDir(paths)
  teardown.add('data directory lock', () => { lock.release() })
  if (lock.takenOver != null) log.warn(`took over the lock ${lock.path} left by ${lock.takenOver.pid != null ? `PID ${lock.takenOver.pid}, which is no longer running` : 'a process that wrote no PID in it'} (it did not stop cleanly)`, { code: 'STALE_LOCK' })
  const identity = await loadOrCreateIdentity(root)
  if (identity.created) log.info(`created a new identity ${identity.peerId.toString()} in ${identity.path}`)
  return { paths, identity }
}

/** Step 2: the broker's job store; a damaged, unreadable or full one fails the start with a `JobStoreError`. */
function openStore (paths: DataDirPaths, teardown: Teardown): JobStore {
  const store = new JobStore(join(paths.root, 'jobs.sqlite'))
  teardown.add('job store', () => { store.close() })
  return store
}

/** The executor to warm when an offer is accepted (the sandbox starts on demand); set once the roles exist. */
interface SandboxWarmer { executor?: Pick<Executor, 'warm'> }

/** Step 2b: the donor's history of tasks run for others; a damaged or unwritable one fails the start with a `DonatedStoreError`. */
function openHistory (paths: DataDirPaths, teardown: Teardown): DonatedStore {
  const history = new DonatedStore(join(paths.root, 'donated.sqlite'))
  teardown.add('donated history', () => { history.close() })
  return history
}

/** Step 3: the libp2p node with our protocol services, answering through `answers`. */
async function startNet (config: DaemonConfig, identity: Identity, answers: ServiceAnswers, options: StartDaemonOptions, teardown: Teardown, warm: SandboxWarmer, content?: ContentStore): Promise<Net> {
  const execute = config.donor.execute
  // OS resolver first, then DoH: for the bootstrap names and libp2p's own /dnsaddr lookups
  const resolver = new MeshResolver({ doh: config.doh, logger: createLogger('net.dns') })
  // set once the node is built: the dispatch service reaches the fetch service built beside it through this
  let fetchService: FetchService | undefined
  const mesh = await MeshNode.create({
    privateKey: identity.privateKey,
    dns: resolver,
    // HTTPS_PROXY, ALL_PROXY, NO_PROXY, … (lower-case first, like curl); a bad value stops the start, naming the variable
    proxy: parseProxyEnvironment(process.env),
    // with none there: the PAC of --proxy-pac / "proxyPac", else WPAD once a direct dial fails
    proxyDiscovery: config.proxyPac != null ? { explicit: config.proxyPac } : {},
    listen: directListenAddrs(config),
    // ranges a private deployment (or the namespace lab) treats as public: AutoNAT, identify, announcements
    publicRanges: config.publicRanges,
    // private-to-private WebRTC for direct upgrades (donor/direct-paths.ts); off with --no-direct
    webrtc: config.direct,
    // the home router's PCP / NAT-PMP / UPnP IGD, for the TCP and QUIC listeners (net/port-mapping.ts)
    portMapping: { enabled: config.portMapping, logger: createLogger('net.port-mapping') },
    logger: createLogger('net'),
    services: {
      capacity: capacity({
        getCapacity: execute ? () => answers.capacity() : undefined,
        announceIntervalMs: options.announceIntervalMs,
        // other donors' announcements only while this node's broker places jobs: an idle donor hears none
        listen: 'on-demand',
        logger: createLogger('protocols.capacity')
      }),
      // tells peers our NAT type, so both sides know whether WebRTC can punch through
      natInfo: natInfo({ getInfo: () => answers.natInfo(), logger: createLogger('protocols.nat-info') }),
      offer: offer({
        decideOffer: execute
          ? (req, ctx) => {
              const answer = answers.decideOffer(req, ctx)
              // the task follows an accepted offer: the sandbox starts while it travels
              if (answer.accept) warm.executor?.warm()
              return answer
            }
          : undefined,
        logger: createLogger('protocols.offer')
      }),
      dispatch: dispatch({
        maxPayloadBytes: config.donor.maxPayloadBytes,
        runTask: execute ? async (req, o) => await answers.runTask(req, o) : undefined,
        admit: execute ? (req, ctx) => answers.admit(req, ctx) : undefined,
        suspendedMs: execute ? () => answers.suspendedMs() : undefined,
        // big modules and inputs: granted to the donors a task goes to (broker), fetched into the content store (donor)
        fetch: () => fetchService,
        logger: createLogger('protocols.dispatch')
      }),
      fetch: fetch({ serve: true, store: content, transportOf: (addr) => transportOf(addr), logger: createLogger('protocols.fetch') }),
      cancel: cancel({
        cancelTasks: execute ? (req, ctx) => answers.cancelTasks(req, ctx) : undefined,
        logger: createLogger('protocols.cancel')
      })
    }
  })
  // the node listens once created: stopped by the donor when it stops, and here when a later step fails
  teardown.add('libp2p node', async () => { await mesh.stop() })
  // only with a default gateway and a listener on a private LAN address (never a loopback-only node)
  mesh.portMapping.start()
  teardown.add('port mappings', async () => { await mesh.portMapping.stop() })
  const { capacity: capacityService, offer: offerService, dispatch: dispatchService, cancel: cancelService } = mesh.services
  fetchService = mesh.services.fetch
  return { mesh, resolver, capacityService, offerService, dispatchService, cancelService, ...(content != null ? { content } : {}) }
}

/** Step 4: the roles on the node (built, not started): job runner, donor, broker. */
function buildRoles (config: DaemonConfig, paths: DataDirPaths, net: Net, { store, history }: { store: JobStore, history: DonatedStore }, options: StartDaemonOptions, log: Logger, events: RoleEvents): Roles {
  const { mesh, resolver, capacityService, offerService, dispatchService, cancelService } = net
  const maxLimits: JobLimits = {
    ...DEFAULT_JOB_LIMITS,
    memoryBytes: config.donor.maxJobMemoryBytes,
    deadlineMs: config.donor.maxDeadlineMs,
    payloadBytes: config.donor.maxPayloadBytes
  }
  const execution = config.donor.execute ? buildExecution(config, maxLimits, net, { paths, history }, log, events) : undefined
  // the winning dial rung is remembered per network in the data dir
  const donor = new DonorService({ mesh, bootstrap: config.bootstrap, version: VERSION, reservation: { stateDir: paths.stateDir, resolver, refuseIntercepted: config.refuseIntercepted, relayDialler: options.relayDialler?.(mesh.components), ...options.reservation }, direct: config.direct ? { announcedAddrs: (id) => capacityService.capacityOf(id)?.addrs ?? [] } : false })
  // our addresses changed (a reservation made or lost): announce them now rather than at the next interval
  mesh.components.events.on('self:peer:update', () => { capacityService.notifyChanged() })
  // an executor we learn of gets a direct connection ahead of any job, where the networks allow
  capacityService.addEventListener('executor:added', (evt) => { donor.direct?.schedule(evt.detail.peerId, evt.detail.addrs, 'it announced capacity') })
  const blobs = new BlobStore({ dir: join(paths.root, 'blobs') })
  const broker = new Broker({
    store,
    blobs,
    network: new MeshTaskNetwork({ mesh: mesh.components, capacity: capacityService, offer: offerService, dispatch: dispatchService, cancel: cancelService, relays: () => donor.connectedRelays() }),
    self: mesh.peerId,
    networkPrefixes: config.replicaNetworkPrefix,
    onJobFinished: (final) => { events.jobFinished?.(final.status) },
    keepJobs: config.keepJobs
  })
  return { history, maxLimits, execution, donor, broker, blobs }
}

/** The executor sandbox, the keeper that restarts it, and the job runner that answers offers and dispatches with it. */
function buildExecution (config: DaemonConfig, maxLimits: JobLimits, net: Net, { paths, history }: { paths: DataDirPaths, history: DonatedStore }, log: Logger, events: RoleEvents): Execution {
  const { mesh, capacityService, dispatchService } = net
  // the sandbox process starts at the first job and stops after 5 idle minutes: an idle donor is one process
  const executor = new Executor({ maxConcurrent: config.donor.maxConcurrentJobs, maxLimits, startOnDemand: true })
  const sandbox = new SandboxKeeper({ executor, logger: log })
  const { cpuLimit, suspendWhenBusy, runHours } = config.donor
  const controls = new DonorControls({
    target: executor,
    cpuLimit,
    suspendWhenBusy,
    runHours,
    statePath: join(paths.stateDir, 'controls.json'),
    sandboxPid: () => executor.sandboxPid,
    onChange: () => { capacityService.notifyChanged() },
    logger: createLogger('donor.controls')
  })
  const runner: JobRunner = new JobRunner({
    executor,
    unavailable: () => sandbox.unavailable() ?? executor.unavailable(),
    paused: () => controls.declineReason(),
    onTaskEnded: (task) => { history.add(task) },
    maxLimits,
    maxConcurrent: config.donor.maxConcurrentJobs,
    memoryBudgetBytes: config.donor.memoryBudgetBytes,
    maxTasksPerBroker: config.donor.maxTasksPerBroker,
    addrs: () => mesh.components.addresses.advertisedAddrs(),
    hasModule: (cid) => dispatchService.hasModule(cid) || (net.content?.has(cid) ?? false),
    fetchesByCid: net.content != null,
    hasFiles: (cids) => dispatchService.hasFiles(cids),
    onChange: () => {
      capacityService.notifyChanged()
      controls.setJobs(runner.runningTasks())
    },
    onExecuted: (result) => { events.taskExecuted?.(result.status) }
  }, mesh.components)
  return { executor, sandbox, runner, controls }
}

/**
 * Step 5: the local API, before the donor joins the mesh: a clash on a port
 * the operator chose fails the start before this identity dials anyone; the
 * built-in default, taken by another donor on this host, moves to the next
 * free port (the CLI finds it in api-endpoint.json).
 */
async function startApi (config: DaemonConfig, paths: DataDirPaths, net: Net, roles: Roles, teardown: Teardown): Promise<ApiServer> {
  const api = new ApiServer({ paths, port: config.apiPort, nextFreePort: config.apiPortSource === 'default', version: VERSION, handlers: apiHandlers(net.mesh, roles, net.capacityService) })
  await api.start()
  teardown.add(LOCAL_API, async () => { await api.stop() })
  return api
}

/**
 * Step 5b: the Prometheus endpoint (only with --metrics), before the donor
 * joins the mesh for the same reason as the API: a port clash stops the start
 * before this identity dials anyone.
 */
async function startDonorMetrics (config: DaemonConfig, mesh: MeshNode, roles: Roles, events: RoleEvents, at: { startedAt: number, teardown: Teardown }): Promise<NodeMetrics | undefined> {
  if (config.metrics == null) return undefined
  const { NodeMetrics } = await loadMetrics()
  const metrics = new NodeMetrics({ endpoint: config.metrics, startedAt: at.startedAt, logger: createLogger('metrics') }, {
    dials: mesh.telemetry,
    connections: mesh.components.connections,
    donor: { reservations: () => roles.donor.heldReservations() }
  })
  // before start: a failed listen still drops the dial subscription
  at.teardown.add('metrics endpoint', async () => { await metrics.stop() })
  await metrics.start()
  events.taskExecuted = (status) => { metrics.taskExecuted(status) }
  events.jobFinished = (status) => { metrics.jobFinished(status) }
  return metrics
}

/**
 * The Prometheus side (prom-client and OpenTelemetry's API: about 160 KB of
 * source), loaded only by a node started with --metrics.
 */
async function loadMetrics (): Promise<typeof import('../metrics/node-metrics.ts')> {
  return await import('../metrics/node-metrics.ts')
}

function apiHandlers (mesh: MeshNode, roles: Roles, capacity: Pick<Net['capacityService'], 'known' | 'listening'>): ApiHandlers {
  const { donor, broker, maxLimits, history, blobs } = roles
  const executor = roles.execution?.executor
  const controls = roles.execution?.controls
  const ownControls = (): DonorControls => {
    if (controls == null) throw new NotExecutingError('this daemon runs no jobs for others (started with --no-execute): there is nothing to pause or resume')
    return controls
  }
  return {
    health: async () => ({ ok: true, peerId: mesh.peerId, version: VERSION, pid: process.pid }),
    status: async () => ({
      ...donor.status(),
      executor: executor != null
        ? { accepting: true, ...executor.status(), maxLimits }
        : { accepting: false, reason: 'started with --no-execute' },
      // a status call is no demand for executors: it reads the table without starting to listen
      knownExecutors: capacity.known().length,
      executorsListening: capacity.listening(),
      // always a boolean (the dashboard's Pause/Resume button): a daemon with --no-execute is never paused
      paused: controls?.view().paused ?? false,
      ...(controls != null ? { controls: controls.view() } : {}),
      portMapping: mesh.portMapping.status()
    }),
    pause: async () => ownControls().pause(),
    resume: async () => ownControls().resume(),
    donated: async ({ limit }) => ({ tasks: history.list(limit) }),
    dials: async ({ limit }) => ({ total: mesh.telemetry.count(), attempts: mesh.telemetry.recent(limit) }),
    ping: async ({ target, count }, { signal }) => await donor.ping(target, count, { signal }),
    putBlob: async ({ cid, body }, { signal }) => await blobs.put(cid, body, { signal }),
    submitJob: async (req) => {
      // no await from here to the job's rows: a blob file found now is referenced before any sweep can run
      const dirs = req.dirs?.map(d => ({ guest: d.guest, files: d.files.map(f => submittedFile(blobs, f)), emptyDirs: d.emptyDirs }))
      const module = submittedPayload(blobs, req.module, req.moduleCid)
      const input = submittedPayload(blobs, req.input, req.inputCid)
      const job = broker.submit({
        module: module.payload,
        moduleCid: module.cid,
        input: input.payload,
        inputCid: input.cid,
        moduleName: req.moduleName,
        args: req.args,
        env: req.env,
        limits: req.limits,
        replicas: req.replicas,
        executors: req.executors,
        dirs
      })
      return jobView(job, [], false)
    },
    jobFiles: async ({ id, path }) => {
      const { job, tasks } = broker.getJob(id)
      return jobFilesView(job, tasks, path)
    },
    job: async ({ id, full }) => {
      const { job, tasks } = broker.getJob(id)
      return jobView(job, tasks, full)
    },
    cancelJob: async ({ id }, { signal }) => {
      const done = await broker.cancel(id, { signal })
      const { job, tasks } = broker.getJob(id)
      return { ...done, job: jobView(job, tasks, false) }
    },
    jobs: async ({ limit }) => ({ jobs: broker.listJobs(limit).map(job => jobView(job, broker.getJob(job.jobId).tasks, false)) })
  }
}

/**
 * Step 6: the executor and the donor (joining the mesh) in parallel, then the
 * broker. The executor spawns its sandbox at the first job (startOnDemand),
 * so its start only opens it to jobs; a job waits for the sandbox to come up
 * (a few hundred ms), and a sandbox that does not start is not fatal: the
 * job ends EXECUTOR_CRASHED and offers are declined for a while
 * (Executor.unavailable), as the SandboxKeeper does for a failed start.
 */
async function startRoles (roles: Roles, teardown: Teardown): Promise<void> {
  const { execution, donor, broker } = roles
  if (execution != null) teardown.add('executor', async () => { await execution.executor.stop() })
  if (execution != null) {
    execution.runner.start()
    teardown.add('job runner', () => { execution.runner.stop() })
    teardown.add('donor controls', () => { execution.controls.stop() })
  }
  teardown.add('donor', async () => { await donor.stop() })
  const [sandbox, joined] = await Promise.allSettled([execution?.executor.start(), donor.start()])
  if (joined.status === 'rejected') throw joined.reason
  if (sandbox.status === 'rejected' && execution != null) {
    execution.sandbox.startFailed(sandbox.reason, () => { execution.runner.changed() })
  }
  if (execution != null) teardown.add('sandbox restarts', () => { execution.sandbox.stop() })
  broker.start()
  teardown.add('broker', async () => { await broker.stop() })
}

function logStarted (config: DaemonConfig, mesh: MeshNode, roles: Roles, log: Logger): void {
  log.info(config.donor.execute
    ? `executing jobs: ${config.donor.maxConcurrentJobs} at once, up to ${Math.round(roles.maxLimits.memoryBytes / 1048576)} MiB and ${roles.maxLimits.deadlineMs / 1000} s each`
    : 'not executing jobs (--no-execute): this daemon only submits')
  log.info(`donor ${mesh.peerId} started; bootstrap relays (${config.bootstrapSource}): ${config.bootstrap.length === 0 ? 'none' : config.bootstrap.map(String).join(', ')}`)
  const direct = mesh.components.addresses.listenAddrs().filter(a => !a.includes('/p2p-circuit'))
  log.info(direct.length === 0 ? 'listening only through relays' : `listening on ${direct.join(', ')}`)
}

function daemonHandle (mesh: MeshNode, api: ApiServer, roles: Roles, teardown: Teardown, log: Logger): DaemonHandle {
  let stopping: Promise<void> | undefined
  const stopAll = async (): Promise<void> => {
    // the API first, although it started before the roles: no request reaches a role that is stopping
    const failures = [...await teardown.stopNow(LOCAL_API), ...await teardown.stopAll()]
    log.info('donor stopped')
    if (failures.length > 0) throw failures[0]
  }
  return {
    peerId: mesh.peerId,
    apiPort: api.port,
    donor: roles.donor,
    broker: roles.broker,
    executor: roles.execution?.executor,
    stop: async () => {
      stopping ??= stopAll()
      await stopping
    }
  }
}

export interface RelayHandle {
  info: RelayInfo
  relay: RelayService
  /** the port /metrics is served on; absent without --metrics */
  metricsPort?: number
  stop: () => Promise<void>
}

export interface StartRelayOptions {
  logger?: Logger
  /** test seam: relay announcement interval @default 10000 */
  announceIntervalMs?: number
}

/**
 * Starts a relay on its data directory (locked for this process, as a
 * daemon's is). A relay that listens on none of its addresses is stopped and
 * the start rejects with `RelayNotListeningError`: nobody could reach it.
 */
export async function startRelay (config: RelayConfig, options: StartRelayOptions = {}): Promise<RelayHandle> {
  const log = options.logger ?? createLogger('relay')
  const teardown = new Teardown({ logger: log })
  try {
    const { identity } = await takeDataDir(config.dataDir, log, teardown)
    const parts = await prepareRelay(config, identity.privateKey, log)
    const mesh = await MeshNode.create(parts.node).catch(async (err: unknown) => { await parts.stun?.stop(); throw err })
    const relay = new RelayService({ config, mesh, stun: parts.stun, tlsCertificate: parts.tlsCertificate, observedAddrs: parts.observedAddrs, announceIntervalMs: options.announceIntervalMs, logger: log })
    // stops its node and STUN responder, started or not
    teardown.add('relay', async () => { await relay.stop() })
    // the node listens once created: checked before the relay announces itself to anyone
    if (config.listen.length > 0 && mesh.components.addresses.boundAddrs().length === 0) throw new RelayNotListeningError(config.listen.map(String))
    // before the relay announces itself: a metrics port clash stops the start
    const metrics = await startRelayMetrics(config, mesh, relay, parts, teardown)
    const info = await relay.start()
    // a relay idles too, between reservations: its start-up clean-up belongs to its start (memory-reducer.ts)
    letMemoryReducerRun()
    let stopping: Promise<void> | undefined
    return {
      info,
      relay,
      ...(metrics?.port != null ? { metricsPort: metrics.port } : {}),
      stop: async () => {
        stopping ??= teardown.stopAll().then(failures => { if (failures.length > 0) throw failures[0] })
        await stopping
      }
    }
  } catch (err) {
    return await teardown.rollBack(startFailure(err))
  }
}

/** The relay's Prometheus endpoint (only with --metrics): reservations and refusals read at scrape time, circuits and bytes as counted on its node. */
async function startRelayMetrics (config: RelayConfig, mesh: MeshNode, relay: RelayService, parts: RelayParts, teardown: Teardown): Promise<NodeMetrics | undefined> {
  if (config.metrics == null) return undefined
  const { NodeMetrics } = await loadMetrics()
  const metrics = new NodeMetrics({ endpoint: config.metrics, logger: createLogger('metrics') }, {
    dials: mesh.telemetry,
    connections: mesh.components.connections,
    relay: {
      reservationCount: () => relay.reservationCount(),
      circuits: () => parts.traffic.circuits(),
      bytes: () => parts.traffic.bytes(),
      refusals: () => parts.guard.refusalCounts()
    }
  })
  // before start: a failed listen still drops the dial subscription
  teardown.add('metrics endpoint', async () => { await metrics.stop() })
  await metrics.start()
  return metrics
}
