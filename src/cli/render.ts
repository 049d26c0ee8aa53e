import { ago, shortId, type Output } from './output.ts'
import type { DaemonStatus, DialAttempt, PingResult } from '../core/types.ts'

export function renderStatus (o: Output, s: DaemonStatus): void {
  o.out(`PeerId:        ${s.peerId}`)
  o.out(`Reachability:  ${s.reachability} (${s.reachabilityReason})`)
  o.out(`Dispatchable:  ${s.relays.length > 0 || s.reachability === 'public' ? 'yes' : 'no'}`)
  o.out(`Started:       ${s.startedAt} (${ago(s.startedAt)}), version ${s.version}`)
  if (s.executor != null) {
    const e = s.executor
    o.out(e.accepting
      ? `Executor:      ${e.state ?? '?'}, ${e.running ?? 0}/${e.maxConcurrent ?? '?'} job(s) running, ${e.queued ?? 0} queued${(e.restarts ?? 0) > 0 ? `, ${e.restarts ?? 0} sandbox restart(s)` : ''}`
      : `Executor:      not accepting jobs (${e.reason ?? 'disabled'})`)
  }
  o.out('Relays:')
  if (s.relays.length === 0) o.out('  (no reservation yet)')
  for (const r of s.relays) {
    o.out(`  ${r.peerId} over ${r.transport}, reserved since ${r.since} (${ago(r.since)})`)
    o.out(`    ${r.circuitAddr}`)
    if (r.reason != null) o.out(`    why ${r.transport}: ${r.reason}`)
  }
  o.out('Bootstrap:')
  if (s.bootstrap.length === 0) o.out('  (none configured: set --bootstrap or WORLDCOMPUTE_BOOTSTRAP)')
  for (const b of s.bootstrap) {
    let line = `  ${b.addr}: ${b.state}`
    if (b.failures > 0) line += `, ${b.failures} failed attempt(s)`
    if (b.nextAttemptAt != null) line += `, next try ${b.nextAttemptAt}`
    o.out(line)
    if (b.lastError != null) o.out(`    last error: ${b.lastError}`)
  }
  o.out('Listen addresses:')
  if (s.listenAddrs.length === 0) o.out('  (none yet)')
  for (const a of s.listenAddrs) o.out(`  ${a}`)
  o.out(`Connections (${s.connections.length}):`)
  for (const c of s.connections) {
    o.out(`  ${shortId(c.peerId)}  ${c.direct ? 'direct ' : 'relayed'}  ${c.transport.padEnd(7)} ${c.remoteAddr}`)
  }
}

export function renderPing (o: Output, r: PingResult): void {
  for (const p of r.probes) {
    if (!p.ok) {
      o.out(`ping ${p.seq}: ${shortId(r.peerId ?? r.target)} failed: ${p.error ?? 'unknown error'}`)
      continue
    }
    const path = p.path === 'relay'
      ? `via relay ${shortId(p.relay ?? '?')} (${p.transport ?? '?'} to the relay)`
      : `direct over ${p.transport ?? '?'}`
    o.out(`pong from ${shortId(r.peerId ?? r.target)} ${path} in ${p.rttMs ?? '?'} ms`)
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
