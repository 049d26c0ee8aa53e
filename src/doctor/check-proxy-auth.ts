import type { DoctorCheck, DoctorObservations, RungObservation } from '../core/doctor.ts'
import type { ProxyAuthView, ProxyStatus } from '../core/types.ts'

/**
 * `proxy-auth`: did a proxy ask us to authenticate, and did we get through?
 *
 *  - `yes`: a proxy answered a CONNECT with 407 and opened the tunnel after
 *    we authenticated (the scheme: Basic, NTLM, or Negotiate carrying NTLM);
 *  - `no`: a proxy asked and we could not pass: no credentials in the proxy
 *    variable, only schemes we cannot do (Kerberos), or credentials refused,
 *    with the schemes it offered;
 *  - `unknown`: no proxy configured, or none asked for authentication.
 *
 * Read from the proxies in the donor's status (src/net/proxy-auth.ts records
 * each 407 and its outcome on the router that every dial, the doctor's rungs
 * included, goes through); a rung that failed with a PROXY_AUTH_* code counts
 * too, for a proxy whose record is missing.
 */

const SCHEMES: Record<NonNullable<ProxyAuthView['scheme']>, string> = {
  basic: 'Basic',
  ntlm: 'NTLM',
  negotiate: 'Negotiate (NTLM inside SPNEGO)'
}

const WHY: Record<Exclude<ProxyAuthView['last'], 'passed'>, string> = {
  required: 'no credentials were given',
  unsupported: 'it offers only schemes we cannot do',
  failed: 'it rejected the credentials'
}

function offeredText (auth: ProxyAuthView): string {
  return auth.offered.length > 0 ? `offered ${auth.offered.join(', ')}` : 'named no scheme'
}

function passedText (p: ProxyStatus & { auth: ProxyAuthView }): string {
  const scheme = p.auth.scheme != null ? SCHEMES[p.auth.scheme] : 'its scheme'
  return `${p.url} (${p.source}) asked for authentication (${offeredText(p.auth)}) and opened ${p.auth.passed} tunnel(s) after ${scheme}`
}

function refusedText (p: ProxyStatus & { auth: ProxyAuthView }): string {
  const why = p.auth.last !== 'passed' ? WHY[p.auth.last] : 'it refused later attempts'
  return `${p.url} (${p.source}) asked for authentication (${offeredText(p.auth)}) and ${why}${p.auth.code != null ? ` [${p.auth.code}]` : ''}: ${p.auth.detail ?? 'no detail'}`
}

function authRungs (obs: DoctorObservations): RungObservation[] {
  return obs.rungs.filter(r => r.outcome === 'failure' && r.code?.startsWith('PROXY_AUTH_') === true)
}

export function checkProxyAuth (obs: DoctorObservations): DoctorCheck {
  const asked = obs.proxies.filter((p): p is ProxyStatus & { auth: ProxyAuthView } => p.auth != null)
  const passed = asked.filter(p => p.auth.passed > 0)
  if (passed.length > 0) {
    const others = asked.filter(p => p.auth.passed === 0)
    const also = others.length > 0 ? `; but ${others.map(refusedText).join('; ')}` : ''
    return { name: 'proxy-auth', value: 'yes', detail: `${passed.map(passedText).join('; ')}${also}` }
  }
  if (asked.length > 0) return { name: 'proxy-auth', value: 'no', detail: asked.map(refusedText).join('; ') }
  const rungs = authRungs(obs)
  if (rungs.length > 0) {
    return { name: 'proxy-auth', value: 'no', detail: [...new Set(rungs.map(r => `${r.proxy ?? 'the proxy'} [${r.code ?? ''}]: ${r.cause ?? 'no detail'}`))].join('; ') }
  }
  if (obs.proxies.length === 0) return { name: 'proxy-auth', value: 'unknown', detail: 'no proxy configured: nothing to authenticate to' }
  return { name: 'proxy-auth', value: 'unknown', detail: `no proxy asked for authentication (${obs.proxies.map(p => p.url).join(', ')} opened its tunnels without a 407, or was not used)` }
}
