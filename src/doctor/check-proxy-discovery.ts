import type { DoctorCheck, DoctorObservations } from '../core/doctor.ts'

const SOURCE_WORDS: Record<string, string> = {
  flag: '--proxy-pac',
  config: 'config.json "proxyPac"',
  'wpad-dhcp': 'WPAD by DHCP (option 252)',
  'wpad-dns': 'WPAD by DNS'
}

/** Proxies from the environment; those a PAC named (source `PAC <url>`) are discovery's own result. */
export function configuredProxies (obs: Pick<DoctorObservations, 'proxies'>): DoctorObservations['proxies'] {
  return obs.proxies.filter(p => !p.source.startsWith('PAC '))
}

/**
 * `proxy-discovery`: `yes` a PAC is in use (where from, and what it named for
 * the relays); `no` discovery ran (no proxy configured, a direct dial failed)
 * and found nothing usable, with where it looked; `unknown` it was not needed
 * (a proxy is configured, or direct dials worked) or did not finish.
 */
export function checkProxyDiscovery (obs: DoctorObservations): DoctorCheck {
  const d = obs.proxyDiscovery
  const result = (value: DoctorCheck['value'], detail: string): DoctorCheck => ({ name: 'proxy-discovery', value, detail })
  const configured = configuredProxies(obs)
  if (configured.length > 0) return result('unknown', `not needed: a proxy is configured (${configured.map(p => `${p.url} from ${p.source}`).join(', ')})`)
  if (d == null) return result('unknown', 'this node does no PAC / WPAD discovery: not observed')
  const where = d.looked.length > 0 ? `; looked at ${d.looked.join('; ')}` : ''
  switch (d.state) {
    case 'found': {
      const named = d.answers.length > 0 ? `; it named ${d.answers.map(a => `${a.answer} for ${a.url}`).join(', ')}` : '; no relay dial has asked it yet'
      return result('yes', `the PAC ${d.url ?? '?'} from ${SOURCE_WORDS[d.source ?? ''] ?? d.source ?? '?'} is in use${named}`)
    }
    case 'not-found':
      return result('no', `no proxy is configured and a direct dial failed, but the network names no proxy: ${d.detail ?? 'no PAC found'}${where}`)
    case 'failed':
      return result('no', `${d.detail ?? `the PAC ${d.url ?? '?'} cannot be used`}${where}`)
    case 'running':
      return result('unknown', `the look-up for the network's proxy (WPAD) had not finished when the doctor stopped${where}`)
    case 'not-needed':
      return result('unknown', 'not needed: no proxy is configured and direct dials to the relays worked (or none failed)')
  }
}
