import { Socket } from 'node:net'
import { parse, UsageError } from '../../cli/args.ts'
import { loadDaemonConfig, parseDurationMs } from '../../config/config.ts'
import { runDoctor } from '../doctor.ts'
import { writeEvidenceBundle } from '../../doctor/evidence.ts'
import { configureLogging } from '../../log/logger.ts'
import { printJson, type Output } from '../../cli/output.ts'
import { nodeFlags, resolvingNodeOptions } from './node-flags.ts'
import { renderDoctor } from './render-doctor.ts'

export const help = `worldcompute doctor [--bootstrap MA]... [--doh URL]... [--duration S] [--evidence DIR] [--json]

Tells you, in plain words, what this network allows and blocks, which path a
donor would use, and what to ask your network administrators to open. It runs
the daemon's own network stack (no daemon needs to be running; a running one
is not disturbed: the doctor uses a throw-away identity) against the
bootstrap relays for about 15 seconds:

  each relay address on its own (QUIC, TCP, WebSocket, WebSocket/TLS on 443,
  through the configured proxy where one applies), names (OS resolver, then
  DNS-over-HTTPS), UDP and the NAT type (STUN against the relays), a relay
  reservation, AutoNAT v2 reachability, TLS interception, the clock, and a
  captive portal (a sign-in page answering in place of the relays).

Each check is yes, no or unknown (unknown: it could not run; never a guess).
Exit code 0 when donating is possible from here, 1 when not (and behind a
captive portal, until you sign in).

  --bootstrap MA   relay multiaddr ending in /p2p/<PeerId>; repeatable (default:
                   WORLDCOMPUTE_BOOTSTRAP, then "bootstrap" in config.json)
  --doh URL        DNS-over-HTTPS endpoint; repeatable (as for the daemon)
  --public-range CIDR  treat this range as public (a private deployment)
  --no-port-mapping  do not ask the home router (PCP, NAT-PMP, UPnP IGD) for a
                   mapping of the doctor's listen ports (port-mapping: unknown)
  --duration S     keep the full stack running S seconds (or 5m, 1h) and
                   record every dial attempt, reservation and failure
  --evidence DIR   write an evidence bundle to DIR/phase1/firewall-traversal/<UTC time>/
                   (run.log, metadata.json, results.json, trace.jsonl, index.md;
                   proxy credentials redacted); check it with
                   \`worldcompute evidence validate DIR\`
  --json           the report as JSON (canDonate, verdict, path, natMapping,
                   checks, allowlist, observations)
  --proxy-pac URL  proxy auto-config (PAC) file, http://, https:// or file://
                   (as for the daemon)
  Proxies come from HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY, as for the
  daemon; with none set, a PAC (--proxy-pac, else WPAD) once a direct dial fails.`

/**
 * Everything the doctor started is stopped when the report is printed, so
 * the process should end by itself. One thing can outlive it: a plain
 * WebSocket dial whose handshake a middlebox stalled (an inspecting firewall
 * dropping the relay's replies). @libp2p/websockets aborts it with
 * `WebSocket.close(1006)`, which the WHATWG API rejects (1006 may not be
 * sent), and a graceful close waits behind the very segments the firewall
 * drops, so the socket lingers until TCP gives up (~15 min). If anything is
 * still open a moment after the report, name it and release it, so a
 * one-shot command ends; the timer is unref'd and costs nothing otherwise.
 */
function releaseLeftoverSockets (o: Output, graceMs = 1_500): void {
  setTimeout(() => {
    const handles = (process as unknown as { _getActiveHandles?: () => unknown[] })._getActiveHandles?.() ?? []
    const sockets = handles.filter((h): h is Socket => h instanceof Socket && h.remoteAddress != null && !h.destroyed)
    if (sockets.length === 0) return
    o.err(`worldcompute doctor: ${sockets.length} connection(s) still open after the checks (${sockets.map(s => `${s.remoteAddress ?? '?'}:${s.remotePort ?? '?'}`).join(', ')}): a stalled WebSocket handshake js-libp2p cannot abort; closing them`)
    for (const s of sockets) s.destroy()
  }, graceMs).unref()
}

/** Log lines shown on stderr while the doctor runs: its own report is what a person reads. */
function isWarning (line: string): boolean {
  return /^\S+ +(WARN|ERROR)\b/.test(line) || /"level":"(warn|error)"/.test(line)
}

export async function run (argv: string[], o: Output): Promise<number> {
  const { values, positionals } = parse(argv, {
    ...resolvingNodeOptions,
    duration: { type: 'string' },
    evidence: { type: 'string' },
    'no-port-mapping': { type: 'boolean', default: false }
  }, 'doctor')
  if (values.help) { o.out(help); return 0 }
  if (positionals.length > 0) throw new UsageError(`doctor takes no arguments, got "${positionals.join(' ')}" (see \`worldcompute doctor --help\`)`)
  const durationMs = values.duration != null ? parseDurationMs(values.duration, '--duration') : undefined
  const config = loadDaemonConfig({ ...nodeFlags(values), doh: values.doh, proxyPac: values['proxy-pac'], noPortMapping: values['no-port-mapping'] })

  // every log line goes to the bundle's run.log; warnings (and everything, when
  // WORLDCOMPUTE_LOG asks for it) to stderr as usual
  const logLines: string[] = []
  let logBytes = 0
  const verbose = process.env.WORLDCOMPUTE_LOG != null && process.env.WORLDCOMPUTE_LOG !== ''
  configureLogging({
    sink: (line) => {
      if (values.evidence != null && logBytes < 64 * 1024 * 1024) {
        logLines.push(line)
        logBytes += line.length + 1
      }
      if (verbose || isWarning(line)) process.stderr.write(line + '\n')
    }
  })

  const controller = new AbortController()
  const onSignal = (sig: NodeJS.Signals): void => {
    o.err(`received ${sig}, stopping the doctor`)
    controller.abort(new Error(`interrupted by ${sig}`))
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  let result
  try {
    result = await runDoctor(config, { durationMs, signal: controller.signal })
  } catch (err) {
    if (controller.signal.aborted) {
      o.err('worldcompute doctor: interrupted before the checks finished; no report')
      return 130
    }
    throw err
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
  const { report, trace } = result
  if (values.evidence != null) {
    report.evidence = writeEvidenceBundle({
      root: values.evidence,
      report,
      trace,
      log: logLines.join('\n') + '\n',
      command: ['worldcompute', 'doctor', ...argv].join(' ')
    })
  }
  if (values.json) printJson(o, report)
  else renderDoctor(o, report)
  releaseLeftoverSockets(o)
  return report.canDonate ? 0 : 1
}
