import { generateKeyPair } from '@libp2p/crypto/keys'
import { VERSION } from '../core/version.ts'
import { assess } from '../doctor/assess.ts'
import { Doctor } from '../doctor/doctor.ts'
import { DonorService } from '../donor/donor-service.ts'
import { checkRelayTls } from '../donor/relay-tls-check.ts'
import { createLogger, type Logger } from '../log/logger.ts'
import { MeshResolver } from '../net/dns-resolver.ts'
import { MeshNode } from '../net/mesh-node.ts'
import { parseProxyEnvironment } from '../net/proxy-env.ts'
import { trustSystemCertificates } from '../net/tls-intercept.ts'
import type { DaemonConfig } from '../config/config.ts'
import type { DoctorReport, TlsObservation } from '../core/doctor.ts'
import type { DialAttempt } from '../core/types.ts'

/**
 * `worldcompute doctor`, composed here because the daemon layer is the only
 * composition root: the same MeshNode (transports, proxies, telemetry), the
 * same resolver and the same DonorService (reservation manager with its dial
 * ladder, NAT prober, AutoNAT v2) as `worldcompute daemon`, plus the doctor
 * role probing every rung on its own. No API, no executor, no job store.
 *
 * The node runs with a fresh, in-memory identity: a running daemon with the
 * data directory's identity would otherwise lose its reservation to the
 * doctor (a relay keeps one reservation per PeerId). Nothing is written to
 * the data directory (no remembered rungs: each rung is judged afresh).
 */

export interface RunDoctorOptions {
  /** keep the full stack running this long and record everything (--duration), ms */
  durationMs?: number
  /** how long to wait for the donor to settle @default DOCTOR_BUDGET_MS */
  budgetMs?: number
  signal?: AbortSignal
  logger?: Logger
  env?: NodeJS.ProcessEnv
}

export interface DoctorRun {
  report: DoctorReport
  /** every dial and reservation attempt recorded while the doctor ran, oldest first */
  trace: DialAttempt[]
}

/** Bound on the trace kept in memory (a long --duration against a flapping relay). */
const MAX_TRACE = 100_000

export async function runDoctor (config: DaemonConfig, options: RunDoctorOptions = {}): Promise<DoctorRun> {
  const log = options.logger ?? createLogger('doctor')
  const startedAt = new Date()
  // as the daemon does: a TLS-inspecting proxy's CA from the system store is trusted
  trustSystemCertificates(createLogger('net.tls'))
  const privateKey = await generateKeyPair('Ed25519')
  const resolver = new MeshResolver({ doh: config.doh, logger: createLogger('net.dns') })
  const mesh = await MeshNode.create({
    privateKey,
    dns: resolver,
    proxy: parseProxyEnvironment(options.env ?? process.env),
    proxyDiscovery: config.proxyPac != null ? { explicit: config.proxyPac } : {},
    listen: config.listen.filter(ma => ma.toString() !== '/p2p-circuit'),
    publicRanges: config.publicRanges,
    // as the daemon does: the home router is asked to map the listen ports, and the mappings deleted when the doctor stops
    portMapping: { enabled: config.portMapping, logger: createLogger('net.port-mapping') },
    logger: createLogger('net')
  })
  mesh.portMapping.start()
  const trace: DialAttempt[] = []
  const unsubscribe = mesh.telemetry.onAttempt((a) => {
    if (trace.length < MAX_TRACE) trace.push(a)
  })
  const donor = new DonorService({ mesh, bootstrap: config.bootstrap, version: VERSION, reservation: { resolver } })
  try {
    await donor.start()
  } catch (err) {
    // DonorService.stop only stops what started; a node that failed half-way is stopped here
    unsubscribe()
    await mesh.stop().catch((stopErr: Error) => { log.warn(`stopping the node after a failed start: ${stopErr.message}`) })
    throw err
  }
  log.info(`doctor running as ${mesh.peerId} (a throw-away identity); bootstrap relays (${config.bootstrapSource}): ${config.bootstrap.length === 0 ? 'none' : config.bootstrap.map(String).join(', ')}`)
  try {
    const doctor = new Doctor({
      mesh: mesh.components,
      resolver,
      bootstrap: config.bootstrap,
      bootstrapSource: config.bootstrapSource,
      dohEndpoints: config.doh,
      status: () => donor.status(),
      // the daemon's own check of a WSS relay path (relay-info fingerprints against the chain seen)
      tlsProbe: async (conn, addr, { signal }): Promise<TlsObservation> => {
        const check = await checkRelayTls(mesh.components.proxies, conn, addr, { signal })
        return {
          addr,
          ...(check.intercepted !== 'unknown' ? { intercepted: check.intercepted === 'yes' } : {}),
          ...(check.interceptor != null ? { issuer: check.interceptor } : check.seen != null ? { issuer: check.seen.issuerName } : {}),
          detail: check.reason
        }
      },
      // the daemon's node has private-to-private WebRTC for donors (MeshNodeInit.webrtc)
      webrtcTransport: true,
      portMapping: () => mesh.portMapping.status(),
      logger: log,
      ...(options.budgetMs != null ? { budgetMs: options.budgetMs } : {})
    })
    const observations = await doctor.run({ durationMs: options.durationMs, signal: options.signal })
    const assessed = assess(observations)
    log.info(`verdict: ${assessed.verdict}`)
    return {
      report: {
        ...assessed,
        startedAt: startedAt.toISOString(),
        endedAt: new Date().toISOString(),
        version: VERSION,
        peerId: mesh.peerId,
        observations
      },
      trace
    }
  } finally {
    await donor.stop()
    unsubscribe()
  }
}
