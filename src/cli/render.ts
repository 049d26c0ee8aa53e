import { shortPeerId } from '../core/format.ts'
import { ago, type Output } from './output.ts'
import type { DaemonStatus, DialAttempt, PingResult } from '../core/types.ts'
import { renderControls } from './commands/controls.ts'

export function renderStatus (o: Output, s: DaemonStatus): void {
  o.out(`PeerId:        ${s.peerId}`)
  o.out(`Reachability:  ${s.reachability} (${s.reachabilityReason})`)
  if (s.natMapping != null) {
    o.out(`NAT:           mapping ${s.natMapping}, filtering ${s.natFiltering ?? 'unknown'}, UDP ${s.udp ?? 'unknown'}${s.nat?.mappedAddress != null ? `, seen as ${s.nat.mappedAddress}` : ''}`)
    if (s.nat != null) o.out(`               ${s.nat.reason}${s.nat.at != null ? ` (STUN ${s.nat.servers.join(', ')}, ${ago(s.nat.at)})` : ''}`)
  }
  o.out(`Dispatchable:  ${s.relays.length > 0 || s.reachability === 'public' ? 'yes' : 'no'}`)
  const portal = s.captivePortal
  if (portal?.state === 'yes') o.out(`Captive portal: this network shows a sign-in page at ${portal.url ?? '?'} (since ${portal.since ?? '?'}): open it in a browser and sign in; the donor joins by itself afterwards`)
  else if (portal?.state === 'no') o.out('Captive portal: none (a relay answered the probe)')
  o.out(`Started:       ${s.startedAt} (${ago(s.startedAt)}), version ${s.version}`)
  if (s.executor != null) {
    const e = s.executor
    o.out(e.accepting
      ? `Executor:      ${e.state === 'stopped' && e.onDemand === true ? `sandbox stopped until a job needs it${e.lastStartError != null ? ` (its last start failed: ${e.lastStartError})` : ''}` : e.state ?? '?'}, ${e.running ?? 0}/${e.maxConcurrent ?? '?'} job(s) running, ${e.queued ?? 0} queued${(e.restarts ?? 0) > 0 ? `, ${e.restarts ?? 0} sandbox restart(s)` : ''}`
      : `Executor:      not accepting jobs (${e.reason ?? 'disabled'})`)
  }
  if (s.controls != null) {
    o.out('Controls:')
    renderControls(o, s.controls, '  ')
  }
  if (s.executorsListening === false) o.out('Executors:     not listening for them until this daemon places a job')
  else if (s.knownExecutors != null) o.out(`Executors:     ${s.knownExecutors} other peer(s) accept jobs (a job gets at most that many replicas)`)
  if (s.proxies != null && s.proxies.length > 0) {
    o.out('Proxy:')
    for (const p of s.proxies) {
      const use = p.inUse ? `in use by the relay path (${p.relays.map(shortPeerId).join(', ')})` : `not used by the relay path${p.tunnels > 0 ? `, ${p.tunnels} other tunnel(s) open` : ''}`
      o.out(`  ${p.url} (${p.kind}, from ${p.source}) for ${p.usedFor.join('/')} dials${p.noProxyRules > 0 ? `, ${p.noProxyRules} NO_PROXY rule(s)` : ''}: ${use}`)
    }
  }
  o.out('Relays:')
  if (s.relays.length === 0) o.out('  (no reservation yet)')
  for (const r of s.relays) {
    o.out(`  ${r.peerId} over ${r.transport}, reserved since ${r.since} (${ago(r.since)})${r.source != null && r.source !== 'bootstrap' ? `, learned from ${r.source}` : ''}`)
    o.out(`    ${r.circuitAddr}`)
    if (r.reason != null) o.out(`    why ${r.transport}: ${r.reason}`)
    if (r.tlsIntercepted === 'yes') o.out(`    TLS intercepted by '${r.tlsInterceptor ?? '?'}' (Noise still authenticates the relay)`)
    else if (r.tlsIntercepted === 'no') o.out('    TLS not intercepted (the relay\'s own certificate)')
  }
  const learned = s.knownRelays ?? []
  if (learned.length > 0) {
    // relays beyond the bootstrap list: a standby replaces a lost reservation within seconds
    o.out('Learned relays:')
    for (const k of learned) o.out(`  ${k.peerId} (${k.source}): ${k.state}${k.retryAt != null ? `, next try ${k.retryAt}` : ''}${k.lastError != null && k.state !== 'reserved' ? ` — ${k.lastError}` : ''}`)
  }
  o.out('Bootstrap:')
  if (s.bootstrap.length === 0) o.out('  (none configured: set --bootstrap or WORLDCOMPUTE_BOOTSTRAP)')
  for (const b of s.bootstrap) {
    let line = `  ${b.addr}: ${b.state}`
    if (b.failures > 0) line += `, ${b.failures} failed attempt(s)`
    if (b.nextAttemptAt != null) line += `, next try ${b.nextAttemptAt}`
    o.out(line)
    // how names were resolved, only when there were names: "resolved over DoH https://… (OS resolver: no answer within 1.5 s)"
    for (const r of b.resolution ?? []) {
      if (r.via === 'literal') continue
      const to = r.resolved.length > 0 && r.resolved[0] !== r.addr ? ` → ${r.resolved.join(', ')}` : ''
      if (r.via === 'doh') o.out(`    ${r.addr}: resolved over DoH ${r.endpoint ?? ''} (OS resolver: ${r.osError ?? 'failed'})${to}`)
      else if (r.via === 'os') o.out(`    ${r.addr}: resolved by the OS resolver${to}`)
      else if (r.via === 'at-connect') o.out(`    ${r.addr}: name kept, resolved when connecting (${r.note ?? 'TLS checks the name'})`)
      else o.out(`    ${r.addr}: did not resolve: ${r.note ?? 'unknown cause'}`)
    }
    if (b.lastError != null) o.out(`    last error: ${b.lastError}`)
  }
  o.out('Listen addresses:')
  if (s.listenAddrs.length === 0) o.out('  (none yet)')
  for (const a of s.listenAddrs) o.out(`  ${a}`)
  o.out(`Connections (${s.connections.length}):`)
  for (const c of s.connections) {
    o.out(`  ${shortPeerId(c.peerId)}  ${c.direct ? 'direct ' : 'relayed'}  ${c.transport.padEnd(7)} ${c.remoteAddr}`)
  }
  // direct upgrades of peers met through a relay: why each is direct or not
  if (s.directPaths != null && s.directPaths.length > 0) {
    o.out(`Direct paths (${s.directPaths.length}):`)
    for (const p of s.directPaths) o.out(`  ${shortPeerId(p.peerId)}  ${p.state.padEnd(7)}  ${(p.transport ?? '-').padEnd(7)} ${p.reason}`)
  }
}

export function renderPing (o: Output, r: PingResult): void {
  for (const p of r.probes) {
    if (!p.ok) {
      o.out(`ping ${p.seq}: ${shortPeerId(r.peerId ?? r.target)} failed: ${p.error ?? 'unknown error'}`)
      continue
    }
    const path = p.path === 'relay'
      ? `via relay ${shortPeerId(p.relay ?? '?')} (${p.transport ?? '?'} to the relay)`
      : `direct over ${p.transport ?? '?'}`
    o.out(`pong from ${shortPeerId(r.peerId ?? r.target)} ${path} in ${p.rttMs ?? '?'} ms`)
  }
}

export function renderDials (o: Output, attempts: DialAttempt[], total: number): void {
  o.out(`${attempts.length} most recent of ${total} dial attempt(s):`)
  for (const a of attempts) {
    const took = a.duration_ms >= 1000 ? `${(a.duration_ms / 1000).toFixed(1)} s` : `${Math.round(a.duration_ms)} ms`
    const what = a.outcome === 'success' ? 'ok' : a.outcome
    o.out(`${a.ts} ${what.padEnd(9)} ${a.transport.padEnd(7)} ${a.phase.padEnd(11)} ${took.padStart(8)}  ${a.target}`)
    if (a.outcome !== 'success') o.out(`    ${a.cause}`)
  }
}
