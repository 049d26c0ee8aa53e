import { duration, portOf, shortPeerId } from '../core/format.ts'
import type { CheckValue, DoctorCheck, DoctorObservations, DoctorPath, DoctorReport, RungObservation } from '../core/doctor.ts'
import type { Transport } from '../core/types.ts'
import { checkHttpsFallback, httpsFallbackAllowlist, httpsFallbackSentence } from './check-https-fallback.ts'
import { checkProxyDiscovery } from './check-proxy-discovery.ts'
import { checkProxyAuth } from './check-proxy-auth.ts'
import { captivePortalSentence, checkCaptivePortal } from './check-captive-portal.ts'
import { checkIpv6 } from './check-ipv6.ts'
import { checkPortMapping } from './check-port-mapping.ts'

/**
 * Turns what the doctor observed into the report: one yes/no/unknown line
 * per check with its cause, the verdict, the path, and the allowlist for
 * the network administrators. Pure (tests feed it recorded observations).
 *
 * The rule everywhere: a `no` needs an observation that something was tried
 * and did not work; a check that could not run, or whose failure is
 * explained by something else (the relay refusing every connection: it is
 * down, so QUIC's silence says nothing about UDP), is `unknown`.
 */

/** Clock skew beyond which TLS certificate checks start failing (certificates are often issued "now - 1 min"). */
export const CLOCK_SKEW_LIMIT_MS = 60_000

/** Phases past the TCP handshake: a rung that reached one of these had a TCP connection. */
const PAST_TCP_CONNECT = new Set(['tls', 'ws-upgrade', 'noise', 'muxer', 'protocol', 'reservation'])

/** Failure codes that mean "the far end answered, no": a refused port is not a blocked network. */
const REFUSED = new Set(['ECONNREFUSED'])

type Assessed = Pick<DoctorReport, 'canDonate' | 'verdict' | 'path' | 'natMapping' | 'checks' | 'allowlist'>

function hostPort (r: RungObservation): string {
  return r.host != null ? `${r.host.includes(':') ? `[${r.host}]` : r.host}:${r.port ?? '?'}` : r.addr
}

function connectedTcp (r: RungObservation): boolean {
  return r.outcome === 'success' || (r.phase != null && PAST_TCP_CONNECT.has(r.phase))
}

function transportWords (t: Transport, port?: number): string {
  const name = t === 'https-poll' ? 'HTTPS long polling' : t === 'wss' ? 'WebSocket/TLS' : t === 'ws' ? 'WebSocket' : t === 'quic' ? 'QUIC (UDP)' : t === 'tcp' ? 'TCP' : t
  return port != null ? `${name} on port ${port}` : name
}

/** A rung in a few words: "198.51.100.10:4001 connected in 12 ms". */
function rungText (r: RungObservation): string {
  const where = `${hostPort(r)}${r.proxy != null ? ` through proxy ${r.proxy}` : ''}`
  switch (r.outcome) {
    case 'success': return `${where} connected in ${duration(r.durationMs)}`
    case 'not-tried': return `${where} not tried`
    case 'cancelled': return `${where} cancelled at ${r.phase ?? 'start'}`
    case 'failure': return `${where} failed at ${r.phase ?? 'start'} after ${duration(r.durationMs)}: ${r.cause ?? r.code ?? 'unknown cause'}`
  }
}

/**
 * A relay that refused a direct TCP connection and answered nothing else is
 * down (or its ports are closed): the network in between is not to blame, so
 * failures of its other rungs say nothing about this network.
 */
function relayLooksDown (obs: DoctorObservations, relay: string): boolean {
  const rungs = obs.rungs.filter(r => r.relay === relay)
  return rungs.length > 0 && !rungs.some(r => r.outcome === 'success') &&
    rungs.some(r => r.proxy == null && r.code != null && REFUSED.has(r.code))
}

function rungsOf (obs: DoctorObservations, pick: (r: RungObservation) => boolean): RungObservation[] {
  return obs.rungs.filter(pick)
}

function check (name: DoctorCheck['name'], value: CheckValue, detail: string): DoctorCheck {
  return { name, value, detail }
}

function checkDns (obs: DoctorObservations): DoctorCheck {
  const names = obs.dns.filter(r => r.via !== 'literal')
  if (names.length === 0) {
    return check('dns', 'unknown', obs.bootstrap.length === 0
      ? 'no bootstrap relay configured: no name to resolve'
      : 'every bootstrap address is an IP address: the OS resolver was not needed, so not tested')
  }
  const osFailed = names.filter(r => r.via === 'doh' || r.via === 'failed')
  if (osFailed.length > 0) {
    const why = osFailed.map(r => `${r.addr}: ${r.via === 'doh' ? `OS resolver: ${r.osError ?? 'failed'}; DNS-over-HTTPS answered` : r.note ?? 'did not resolve'}`)
    return check('dns', 'no', `the OS resolver did not resolve the relays' names (${why.join('; ')})`)
  }
  const byOs = names.filter(r => r.via === 'os')
  if (byOs.length > 0) {
    return check('dns', 'yes', `the OS resolver resolved ${byOs.map(r => `${r.addr} → ${r.resolved.map(a => a.split('/')[2]).filter((v, i, a) => a.indexOf(v) === i).join(', ')}`).join('; ')}`)
  }
  // only WebSocket-over-TLS names, resolved by the OS when the WebSocket connects
  const wss = rungsOf(obs, r => r.transport === 'wss' && names.some(n => n.addr === r.addr))
  if (wss.some(r => connectedTcp(r) && r.proxy == null)) return check('dns', 'yes', `the OS resolver resolved ${wss.map(r => r.host).join(', ')} when the WebSocket connected`)
  return check('dns', 'unknown', 'the only names are WebSocket-over-TLS hosts, resolved when connecting, and no such connection got far enough to tell')
}

function checkDoh (obs: DoctorObservations): DoctorCheck {
  const ok = obs.doh.filter(p => p.ok)
  const fallback = obs.dns.filter(r => r.via === 'doh')
  if (ok.length > 0 || fallback.length > 0) {
    const parts = [
      ...fallback.map(r => `${r.addr} resolved over ${r.endpoint ?? 'DoH'} after the OS resolver failed`),
      ...ok.map(p => `${p.endpoint} answered ${p.name}: ${p.detail}`)
    ]
    return check('doh', 'yes', [...new Set(parts)].join('; '))
  }
  if (obs.doh.length > 0) return check('doh', 'no', `no DNS-over-HTTPS endpoint answered: ${obs.doh.map(p => `${p.endpoint}: ${p.detail}`).join('; ')}`)
  if (obs.dohEndpoints.length === 0) return check('doh', 'unknown', 'no DNS-over-HTTPS endpoint configured (--doh, WORLDCOMPUTE_DOH)')
  return check('doh', 'unknown', 'no bootstrap address is a name: DNS-over-HTTPS was not needed, so not tested')
}

function checkUdp (obs: DoctorObservations): DoctorCheck {
  const nat = obs.nat
  if (nat.udp === 'yes') return check('udp', 'yes', `a relay's STUN responder answered over UDP (${nat.servers.join(', ')})${nat.mappedAddress != null ? `; seen as ${nat.mappedAddress}` : ''}`)
  if (nat.udp === 'no') return check('udp', 'no', nat.reason)
  const quic = rungsOf(obs, r => r.transport === 'quic')
  if (quic.some(r => r.outcome === 'success')) return check('udp', 'yes', `QUIC to ${quic.filter(r => r.outcome === 'success').map(hostPort).join(', ')} connected over UDP (STUN not measured: ${nat.reason})`)
  return check('udp', 'unknown', `not measured: ${nat.reason}`)
}

function checkNat (obs: DoctorObservations): DoctorCheck {
  const { mapping, filtering, reason } = obs.nat
  const text = `mapping ${mapping}, filtering ${filtering}: ${reason}`
  if (mapping === 'none' || mapping === 'endpoint-independent') return check('nat', 'yes', text)
  if (mapping === 'address-dependent' || mapping === 'address-and-port-dependent' || mapping === 'no-udp') return check('nat', 'no', text)
  return check('nat', 'unknown', text)
}

/** Raw TCP (libp2p over TCP, e.g. port 4001) when the bootstrap list has it; the WebSocket ports in the detail. */
function checkTcpConnect (obs: DoctorObservations): DoctorCheck {
  const direct = rungsOf(obs, r => (r.transport === 'tcp' || r.transport === 'ws' || r.transport === 'wss') && r.proxy == null)
  const tried = direct.filter(r => r.outcome === 'success' || r.outcome === 'failure')
  if (tried.length === 0) {
    const proxied = rungsOf(obs, r => r.proxy != null)
    return check('tcp-connect', 'unknown', proxied.length > 0
      ? 'every TCP dial went through the proxy: direct TCP was not tried'
      : 'no TCP address in the bootstrap list (or none resolved): not tested')
  }
  const verdictOf = (r: RungObservation): string => connectedTcp(r)
    ? `${hostPort(r)} (${r.transport}) connects`
    : `${hostPort(r)} (${r.transport}) does not: ${r.cause ?? r.code ?? 'failed'}`
  const detail = [...new Set(tried.map(verdictOf))].join('; ')
  const raw = tried.filter(r => r.transport === 'tcp')
  const decide = raw.length > 0 ? raw : tried
  if (decide.some(connectedTcp)) return check('tcp-connect', 'yes', detail)
  // a failure before TCP (dns) or a cancelled dial proves nothing about TCP
  if (decide.every(r => r.phase === 'tcp-connect' || r.phase === 'proxy')) return check('tcp-connect', 'no', detail)
  return check('tcp-connect', 'unknown', detail)
}

function checkLibp2pOverTcp (obs: DoctorObservations): DoctorCheck {
  const raw = rungsOf(obs, r => r.transport === 'tcp' && (r.outcome === 'success' || r.outcome === 'failure'))
  if (raw.length === 0) return check('libp2p-over-tcp', 'unknown', 'no libp2p-over-TCP address in the bootstrap list (or none resolved): not tested')
  const ok = raw.filter(r => r.outcome === 'success')
  if (ok.length > 0) return check('libp2p-over-tcp', 'yes', `the libp2p handshake (multistream-select, Noise, yamux) completed: ${ok.map(rungText).join('; ')}`)
  const stalled = raw.filter(r => r.phase != null && PAST_TCP_CONNECT.has(r.phase))
  if (stalled.length > 0) {
    return check('libp2p-over-tcp', 'no', stalled.map(r => `${hostPort(r)}: TCP connected, then the handshake ${r.timedOut === true ? `got no answer within ${duration(r.durationMs)}` : `failed at ${r.phase ?? '?'}`} (${r.cause ?? r.code ?? ''}) — likely a protocol-inspecting firewall`).join('; '))
  }
  return check('libp2p-over-tcp', 'unknown', `TCP did not connect, so the handshake was not tried (${raw.map(rungText).join('; ')})`)
}

/** QUIC, plain WebSocket, WebSocket/TLS on 443: yes when one connected, no when tried and failed for a reason of this network. */
function checkRung (obs: DoctorObservations, name: 'quic' | 'ws' | 'wss-443', pick: (r: RungObservation) => boolean, absent: string): DoctorCheck {
  const rungs = rungsOf(obs, pick)
  const ok = rungs.filter(r => r.outcome === 'success')
  if (ok.length > 0) return check(name, 'yes', ok.map(rungText).join('; '))
  const failed = rungs.filter(r => r.outcome === 'failure')
  if (failed.length === 0) return check(name, 'unknown', rungs.length > 0 ? `not completed: ${rungs.map(rungText).join('; ')}` : absent)
  const blamable = failed.filter(r => !relayLooksDown(obs, r.relay) || (r.code != null && REFUSED.has(r.code)))
  if (blamable.length === 0) {
    return check(name, 'unknown', `the relay refused its other ports (it looks down), so this says nothing about the network: ${failed.map(rungText).join('; ')}`)
  }
  return check(name, 'no', failed.map(rungText).join('; '))
}

function checkTls (obs: DoctorObservations): DoctorCheck {
  const seen = obs.tls.filter(t => t.intercepted != null)
  const hit = seen.find(t => t.intercepted === true)
  if (hit != null) return check('tls-intercepted', 'yes', `${hit.addr}: the certificate is issued by ${hit.issuer ?? 'an unknown issuer'}, not the relay's own: a TLS-inspecting middlebox (Noise still authenticates the relay end to end). ${hit.detail}`)
  if (seen.length > 0) return check('tls-intercepted', 'no', seen.map(t => `${t.addr}: ${t.detail}`).join('; '))
  const why = obs.tls.map(t => `${t.addr}: ${t.detail}`)
  return check('tls-intercepted', 'unknown', why.length > 0 ? why.join('; ') : obs.tlsNote ?? 'not checked')
}

function checkProxy (obs: DoctorObservations): DoctorCheck {
  if (obs.proxies.length === 0) return check('proxy', 'no', 'no proxy configured (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and their lower-case forms are unset)')
  const inUse = obs.proxies.filter(p => p.inUse)
  if (inUse.length > 0) return check('proxy', 'yes', `${inUse.map(p => `${p.url} (${p.source})`).join(', ')} carries the relay connection${inUse.flatMap(p => p.relays).length > 0 ? ` to ${[...new Set(inUse.flatMap(p => p.relays))].map(shortPeerId).join(', ')}` : ''}`)
  const proxied = rungsOf(obs, r => r.proxy != null)
  const ok = proxied.filter(r => r.outcome === 'success')
  const configured = obs.proxies.map(p => `${p.url} (${p.source}, for ${p.usedFor.join('/')})`).join(', ')
  if (ok.length > 0) return check('proxy', 'yes', `${configured} is configured and works: ${ok.map(rungText).join('; ')}`)
  const failed = proxied.filter(r => r.outcome === 'failure')
  if (failed.length > 0) return check('proxy', 'no', `${configured} is configured but no dial through it worked: ${failed.map(rungText).join('; ')}`)
  return check('proxy', 'unknown', `${configured} is configured, but no bootstrap address is one it serves (it serves ${[...new Set(obs.proxies.flatMap(p => p.usedFor))].join('/')}; QUIC never can): not tested`)
}

function checkReservation (obs: DoctorObservations): DoctorCheck {
  if (obs.reservations.length > 0) {
    return check('reservation', 'yes', obs.reservations.map(r => `reserved on relay ${shortPeerId(r.peerId)} over ${r.transport}${r.addr != null ? ` (${r.addr})` : ''}`).join('; '))
  }
  if (obs.relays.length === 0) return check('reservation', 'unknown', 'no bootstrap relay configured: nothing to reserve on (give one with --bootstrap /ip4/…/tcp/4001/p2p/<relay PeerId>)')
  const errors = obs.reservationErrors.filter(e => e.error != null)
  if (errors.length === 0) return check('reservation', 'unknown', `no reservation within ${duration(obs.observedMs)}, and no attempt had ended yet`)
  return check('reservation', 'no', errors.map(e => `relay ${shortPeerId(e.relay)}: ${e.error ?? ''}`).join('; '))
}

function checkReachability (obs: DoctorObservations): DoctorCheck {
  const r = obs.reachability
  return check('reachability', r.value === 'public' ? 'yes' : r.value === 'private' ? 'no' : 'unknown', `AutoNAT v2: ${r.value}: ${r.reason}`)
}

function checkWebrtc (obs: DoctorObservations): DoctorCheck {
  const { mapping, udp } = obs.nat
  const note = obs.webrtcTransport ? '' : ' (what the network allows; this build does not dial WebRTC yet)'
  if (udp === 'no' || mapping === 'no-udp') return check('webrtc', 'no', `no UDP out: WebRTC (ICE) cannot punch through${note}`)
  if (mapping === 'address-and-port-dependent' || mapping === 'address-dependent') {
    return check('webrtc', 'no', `${mapping === 'address-and-port-dependent' ? 'symmetric NAT' : 'address-dependent NAT mapping'}: the port a peer must aim at changes per destination, so hole punching fails${note}`)
  }
  if (mapping === 'none' || mapping === 'endpoint-independent') {
    return check('webrtc', 'yes', `${mapping === 'none' ? 'no NAT' : 'endpoint-independent NAT mapping'} and UDP out: direct donor-to-donor connections can be hole-punched${note}`)
  }
  return check('webrtc', 'unknown', `NAT type not measured: ${obs.nat.reason}`)
}

function checkClock (obs: DoctorObservations): DoctorCheck {
  const c = obs.clock
  if (c.skewMs == null) return check('clock-skew', 'unknown', c.detail)
  const text = `${Math.abs(c.skewMs) < 1000 ? 'under 1 s' : `${(Math.abs(c.skewMs) / 1000).toFixed(0)} s ${c.skewMs > 0 ? 'ahead' : 'behind'}`} against ${c.source ?? 'a remote clock'}`
  return Math.abs(c.skewMs) > CLOCK_SKEW_LIMIT_MS
    ? check('clock-skew', 'yes', `this clock is ${text}: TLS certificate checks may fail; fix the time (NTP)`)
    : check('clock-skew', 'no', text)
}

function pathOf (obs: DoctorObservations): DoctorPath | undefined {
  const r = obs.reservations[0]
  if (r == null) return undefined
  const proxy = obs.proxies.find(p => p.inUse && p.relays.includes(r.peerId))
  return {
    relay: r.peerId,
    transport: r.transport,
    viaProxy: proxy != null,
    ...(r.addr != null ? { addr: r.addr } : {}),
    ...(proxy != null ? { proxy: proxy.url } : {})
  }
}

function value (checks: DoctorCheck[], name: DoctorCheck['name']): CheckValue {
  return checks.find(c => c.name === name)?.value ?? 'unknown'
}

function verdictOf (obs: DoctorObservations, checks: DoctorCheck[], path: DoctorPath | undefined): string {
  const v = (n: DoctorCheck['name']): CheckValue => value(checks, n)
  const sentences: string[] = []
  const portal = captivePortalSentence(obs)
  if (portal != null) sentences.push(portal)
  if (path != null) {
    const how = transportWords(path.transport, portOf(path.addr))
    sentences.push(path.viaProxy
      ? `You can donate: reachable only through proxy ${path.proxy ?? '?'}, to relay ${shortPeerId(path.relay)} over ${how}.`
      : `You can donate: reachable through relay ${shortPeerId(path.relay)} over ${how}.`)
  } else if (obs.relays.length === 0) {
    sentences.push('You cannot donate yet: no bootstrap relay is configured (give one with --bootstrap, WORLDCOMPUTE_BOOTSTRAP or "bootstrap" in config.json).')
  } else if (obs.relays.every(r => relayLooksDown(obs, r))) {
    sentences.push(`You cannot donate right now: every bootstrap relay refused the connection (${obs.relays.map(shortPeerId).join(', ')} look down, or their ports are closed); this says little about your network — try again later or use another relay.`)
  } else {
    sentences.push(`You cannot donate from this network yet: no relay could be reserved (${checks.find(c => c.name === 'reservation')?.detail ?? 'no attempt finished'}).`)
  }
  const blocked: string[] = []
  if (v('udp') === 'no') blocked.push('UDP is blocked')
  else if (v('quic') === 'no') blocked.push('QUIC to the relay gets no answer')
  if (v('tcp-connect') === 'yes' && v('libp2p-over-tcp') === 'no') {
    const ports = [...new Set(rungsOf(obs, r => r.transport === 'tcp' && r.outcome === 'failure' && connectedTcp(r)).map(r => r.port))].join(', ')
    blocked.push(`TCP ${ports} connects but the libp2p handshake is dropped — likely a protocol-inspecting firewall`)
  } else if (v('tcp-connect') === 'no') {
    const ports = [...new Set(rungsOf(obs, r => r.transport === 'tcp' && r.proxy == null && r.outcome === 'failure').map(r => r.port))].join(', ')
    blocked.push(`TCP ${ports} ${rungsOf(obs, r => r.transport === 'tcp' && r.code === 'ECONNREFUSED').length > 0 ? 'is refused' : 'is blocked'}`)
  }
  if (v('dns') === 'no') blocked.push(v('doh') === 'yes' ? 'the OS resolver cannot resolve the relays\' names, but DNS-over-HTTPS can' : 'the relays\' names do not resolve, not even over DNS-over-HTTPS')
  if (blocked.length > 0) {
    const text = blocked.join('; ')
    sentences.push(`${text.charAt(0).toUpperCase()}${text.slice(1)}.`)
  }
  if (v('tls-intercepted') === 'yes') sentences.push(`TLS to the relay is intercepted (${obs.tls.find(t => t.intercepted === true)?.issuer ?? 'unknown issuer'}); Noise still authenticates the relay end to end.`)
  if (v('webrtc') === 'no') {
    const why = obs.nat.udp === 'no' || obs.nat.mapping === 'no-udp' ? 'no UDP' : obs.nat.mapping === 'address-and-port-dependent' ? 'symmetric NAT' : 'address-dependent NAT'
    sentences.push(`Direct connections to other donors are not possible from this network (${why}); jobs will go through the relay.`)
  } else if (v('webrtc') === 'yes' && path != null) {
    sentences.push(`Direct connections to other donors are possible (${obs.nat.mapping === 'none' ? 'no NAT' : 'endpoint-independent NAT'}).`)
  }
  if (v('proxy-auth') === 'no') sentences.push(`The proxy asks for authentication we could not give: ${checks.find(c => c.name === 'proxy-auth')?.detail ?? ''}.`)
  if (v('clock-skew') === 'yes') sentences.push('This machine\'s clock is off by more than a minute: fix it (NTP).')
  const fallback = httpsFallbackSentence(v)
  if (fallback != null) sentences.push(fallback)
  if (v('proxy-discovery') === 'yes') sentences.push(`The proxy was named by ${obs.proxyDiscovery?.source?.startsWith('wpad') === true ? 'the network\'s PAC file (WPAD)' : 'the PAC file given'} ${obs.proxyDiscovery?.url ?? ''}.`)
  else if (v('proxy-discovery') === 'no' && path == null) sentences.push('Direct dials failed and the network names no usable proxy (no PAC by DHCP or wpad.<search domain>): if it has one, give it with --proxy-pac URL or HTTPS_PROXY.')
  if (v('ipv6') === 'no') sentences.push(obs.ipv6?.ipv4 === false ? 'This host has only IPv6, and IPv6 to the relays fails: ask for outbound IPv6 (or NAT64) to them.' : 'IPv6 to the relays fails; IPv4 is used instead.')
  return sentences.join(' ')
}

/**
 * Only what the checks showed missing, and only what the network can fix:
 * a relay that refuses is down, not blocked; a rung that already works
 * needs nothing.
 */
function allowlistOf (obs: DoctorObservations, checks: DoctorCheck[]): string[] {
  const v = (n: DoctorCheck['name']): CheckValue => value(checks, n)
  const out: string[] = []
  const anyUp = obs.rungs.some(r => r.outcome === 'success')
  for (const r of obs.rungs) {
    if (r.outcome !== 'failure' || relayLooksDown(obs, r.relay)) continue
    if (r.code != null && REFUSED.has(r.code)) continue
    const relay = `relay ${shortPeerId(r.relay)}`
    if (r.proxy != null) {
      if (r.phase === 'proxy' && r.code?.startsWith('PROXY_AUTH_') !== true) out.push(`CONNECT to ${hostPort(r)} through proxy ${r.proxy} (${transportWords(r.transport)} to ${relay})`)
      continue
    }
    if (r.transport === 'quic' && v('quic') === 'no') out.push(`outbound UDP to ${hostPort(r)} (QUIC to ${relay})`)
    else if (r.transport === 'tcp' && connectedTcp(r)) out.push(`TCP to ${hostPort(r)} without protocol inspection: let the libp2p handshake (/multistream/1.0.0, Noise) through, or exempt ${r.host ?? 'the relay'} from deep packet inspection`)
    else if (r.transport === 'tcp' && r.phase === 'tcp-connect') out.push(`outbound TCP to ${hostPort(r)} (libp2p over TCP to ${relay})`)
    else if (r.transport === 'wss' && r.port === 443 && !anyUp) out.push(`outbound TCP to ${hostPort(r)} (WebSocket over TLS to ${relay})`)
    else if (r.transport === 'wss' && r.phase === 'tcp-connect') out.push(`outbound TCP to ${hostPort(r)} (WebSocket over TLS to ${relay})`)
    else if (r.transport === 'ws' && !anyUp) out.push(`outbound TCP to ${hostPort(r)} (WebSocket to ${relay})`)
  }
  if (v('udp') === 'no') {
    const servers = obs.nat.servers.length > 0 ? obs.nat.servers.join(', ') : 'the relays on UDP 3478-3479'
    out.push(`outbound UDP to ${servers} (STUN: NAT detection and direct donor-to-donor connections)`)
  }
  if (v('udp') === 'yes' && v('webrtc') === 'no') {
    out.push('endpoint-independent UDP NAT mapping for this host (RFC 4787 REQ-1, "port preservation"/no --random-fully), so donors can connect to each other directly instead of through a relay')
  }
  if (v('dns') === 'no' && v('doh') !== 'yes') {
    const names = [...new Set(obs.dns.filter(r => r.via === 'failed').map(r => r.addr.split('/')[2]))]
    out.push(`DNS (UDP and TCP 53) to your resolver for ${names.join(', ') || 'the relays\' names'}`)
    for (const p of obs.doh.filter(x => !x.ok)) out.push(`HTTPS to ${p.endpoint} (DNS-over-HTTPS)`)
  }
  if (v('tls-intercepted') === 'yes') {
    for (const t of obs.tls.filter(x => x.intercepted === true)) out.push(`exempt ${t.addr.split('/')[2] ?? t.addr} from TLS inspection (its certificate is re-signed by ${t.issuer ?? 'the middlebox'})`)
  }
  out.push(...httpsFallbackAllowlist(obs, v))
  return [...new Set(out)]
}

export function assess (obs: DoctorObservations): Assessed {
  const checks: DoctorCheck[] = [
    checkDns(obs),
    checkDoh(obs),
    checkUdp(obs),
    checkNat(obs),
    checkTcpConnect(obs),
    checkLibp2pOverTcp(obs),
    checkRung(obs, 'quic', r => r.transport === 'quic', 'no QUIC address in the bootstrap list: not tested'),
    checkRung(obs, 'ws', r => r.transport === 'ws', 'no plain WebSocket address in the bootstrap list: not tested'),
    checkRung(obs, 'wss-443', r => r.transport === 'wss' && r.port === 443, 'no WebSocket-over-TLS address on port 443 in the bootstrap list: not tested'),
    checkTls(obs),
    checkProxy(obs),
    checkReservation(obs),
    checkReachability(obs),
    checkWebrtc(obs),
    checkClock(obs),
    checkHttpsFallback(obs),
    checkProxyDiscovery(obs),
    checkProxyAuth(obs),
    checkIpv6(obs),
    checkPortMapping(obs),
    checkCaptivePortal(obs)
  ]
  const path = pathOf(obs)
  return {
    // behind a sign-in page nothing is dependable until someone signs in: the exit code says so
    canDonate: obs.reservations.length > 0 && obs.captivePortal?.state !== 'yes',
    verdict: verdictOf(obs, checks, path),
    ...(path != null ? { path } : {}),
    natMapping: obs.nat.mapping,
    checks,
    allowlist: allowlistOf(obs, checks)
  }
}
