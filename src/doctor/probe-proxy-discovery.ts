import { pause } from '../core/async.ts'
import type { ProxyDiscoveryObservation } from '../core/doctor.ts'
import type { ProxyRoutes } from '../net/components.ts'
import type { AbortOptions } from '@libp2p/interface'

/** How long the doctor waits for a WPAD look-up still under way when its other probes are done. */
export const PROXY_DISCOVERY_WAIT_MS = 8_000

export interface ProxyDiscoveryProbeOptions extends AbortOptions {
  /** @default PROXY_DISCOVERY_WAIT_MS */
  waitMs?: number
}

/**
 * What PAC / WPAD discovery did on the donor's node: it runs by itself (a
 * direct dial failed with no proxy configured); a look-up still under way is
 * waited for, boundedly, so the doctor reports its outcome rather than
 * "running". An empty object when the node does no discovery.
 */
export async function probeProxyDiscovery (proxies: Pick<ProxyRoutes, 'discovery'>, options: ProxyDiscoveryProbeOptions = {}): Promise<{ proxyDiscovery?: ProxyDiscoveryObservation }> {
  const deadline = Date.now() + (options.waitMs ?? PROXY_DISCOVERY_WAIT_MS)
  let status = proxies.discovery?.()
  while (status?.state === 'running' && Date.now() < deadline) {
    if (await pause(100, { signal: options.signal })) break
    status = proxies.discovery?.()
  }
  return status != null ? { proxyDiscovery: status } : {}
}
