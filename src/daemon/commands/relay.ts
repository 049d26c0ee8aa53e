import { parse } from '../../cli/args.ts'
import { loadRelayConfig } from '../../config/config.ts'
import { startRelay } from '../daemon.ts'
import { runUntilSignal } from '../../cli/lifecycle.ts'
import type { Output } from '../../cli/output.ts'
import { metricsFlags, metricsOptions, nodeFlags, nodeOptions, warnUnknownConfigKeys } from './node-flags.ts'

export const help = `worldcompute relay [--data-dir DIR] [--listen MA]... [--announce MA]... [--tls-cert FILE --tls-key FILE]

Runs a publicly reachable relay: circuit relay v2 server with limits sized for
jobs, identify, ping, AutoNAT v2 server and the mesh gossip.

  --listen MA               listen address; repeatable (default: TCP 4001,
                            QUIC 4001, WebSocket 4002 on all interfaces,
                            IPv4 and IPv6)
  --announce MA             address to advertise (the public one); repeatable
  --tls-cert F --tls-key F  serve WebSocket over TLS; adds /ip4/0.0.0.0/tcp/443/tls/ws
                            and /ip6/::/tcp/443/tls/ws unless a /tls/ws listen
                            address is given
  --relay-data-limit SIZE   bytes per relayed connection (default 64MiB)
  --relay-duration-limit D  lifetime of a relayed connection (default 1h)
  --max-reservations N      reservations held at once (default 1024)
  --max-reservations-per-ip N  reservations held by peers from one IP (IPv4
                            address, IPv6 /64) (default 32)
  --max-connections-per-ip N   open connections from one IP (default 64)
  --max-circuits-per-ip N      relayed connections with an end at one IP (default 256)
  --max-connections-per-peer N open connections of one peer (default 8)
  --max-circuits-per-peer N    relayed connections one peer is an end of (default 64)
  --max-poll-sessions N        HTTPS poll sessions open at once (default 1024)
  --max-poll-sessions-per-ip N HTTPS poll sessions open from one IP (default 32)
  --reservation-grace D     how long a reservation outlives its holder's last
                            connection (default 15s)
  --per-ip-exempt CIDR      addresses the per-IP limits leave alone; repeatable;
                            "none" for none (default 127.0.0.0/8 and ::1)
  --stun-port N             STUN responder port (UDP); give it twice for the
                            primary and alternate port (default 3478 and 3479)
  --no-stun                 no STUN responder (donors then cannot tell their NAT type from this relay)
  --metrics HOST:PORT       serve Prometheus metrics at http://HOST:PORT/metrics
                            (off by default; HOST must be loopback unless
                            --metrics-allow-remote; docs/metrics.md)
  --metrics-allow-remote    allow a non-loopback --metrics HOST (no authentication:
                            firewall it)
  --public-range CIDR       treat this address range as public (private deployments,
                            e.g. 10.0.0.0/8); repeatable; also "publicRanges" in config.json
  --json                    print the start-up line as JSON ({"peerId","listenAddrs","announceAddrs","stunAddrs","tlsCertificate"})`

export async function run (argv: string[], o: Output): Promise<number> {
  const { values } = parse(argv, {
    ...nodeOptions,
    ...metricsOptions,
    announce: { type: 'string', multiple: true },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'relay-data-limit': { type: 'string' },
    'relay-duration-limit': { type: 'string' },
    'max-reservations': { type: 'string' },
    'max-reservations-per-ip': { type: 'string' },
    'max-connections-per-ip': { type: 'string' },
    'max-circuits-per-ip': { type: 'string' },
    'max-connections-per-peer': { type: 'string' },
    'max-circuits-per-peer': { type: 'string' },
    'max-poll-sessions': { type: 'string' },
    'max-poll-sessions-per-ip': { type: 'string' },
    'reservation-grace': { type: 'string' },
    'per-ip-exempt': { type: 'string', multiple: true },
    'stun-port': { type: 'string', multiple: true },
    'no-stun': { type: 'boolean', default: false }
  }, 'relay')
  if (values.help) { o.out(help); return 0 }
  const config = loadRelayConfig({
    ...nodeFlags(values),
    ...metricsFlags(values),
    announce: values.announce,
    tlsCert: values['tls-cert'],
    tlsKey: values['tls-key'],
    dataLimit: values['relay-data-limit'],
    durationLimit: values['relay-duration-limit'],
    maxReservations: values['max-reservations'],
    maxReservationsPerIp: values['max-reservations-per-ip'],
    maxConnectionsPerIp: values['max-connections-per-ip'],
    maxCircuitsPerIp: values['max-circuits-per-ip'],
    maxConnectionsPerPeer: values['max-connections-per-peer'],
    maxCircuitsPerPeer: values['max-circuits-per-peer'],
    maxPollSessions: values['max-poll-sessions'],
    maxPollSessionsPerIp: values['max-poll-sessions-per-ip'],
    reservationGrace: values['reservation-grace'],
    perIpExempt: values['per-ip-exempt'],
    stunPorts: values['stun-port'],
    noStun: values['no-stun']
  })
  warnUnknownConfigKeys(config)
  await runUntilSignal(o, async () => await startRelay(config), (handle) => {
    const { info } = handle
    if (values.json) {
      o.out(JSON.stringify({ peerId: info.peerId, listenAddrs: info.listenAddrs, announceAddrs: info.announceAddrs, stunAddrs: info.stunAddrs, ...(info.tlsCertificate != null ? { tlsCertificate: info.tlsCertificate } : {}) }))
    } else {
      o.out(`relay ${info.peerId} running`)
      o.out('listening on:')
      for (const a of info.listenAddrs) o.out(`  ${a}`)
      o.out('advertising:')
      for (const a of info.announceAddrs) o.out(`  ${a}`)
      if (handle.metricsPort != null) o.out(`metrics: port ${handle.metricsPort}, path /metrics`)
      o.out(info.stunAddrs.length > 0 ? `STUN (UDP): ${info.stunAddrs.join(', ')}` : 'STUN: off')
      // donors compare this with the certificate they are served: a different one means TLS interception
      if (info.tlsCertificate != null) o.out(`TLS certificate: SHA-256 ${info.tlsCertificate.fingerprint256} (${info.tlsCertificate.subject}, issued by ${info.tlsCertificate.issuer})`)
      o.out(`limits: ${info.limits.dataLimitBytes} bytes and ${info.limits.durationLimitMs / 1000} s per relayed connection, ${info.limits.maxReservations} reservations`)
      o.out(`per IP (${exemptText(info.limits.perIpExempt)}): ${info.limits.maxReservationsPerIp} reservations, ${info.limits.maxConnectionsPerIp} connections, ${info.limits.maxCircuitsPerIp} circuits; per peer: ${info.limits.maxConnectionsPerPeer} connections, ${info.limits.maxCircuitsPerPeer} circuits; a reservation outlives its holder's last connection by ${info.limits.reservationGraceMs / 1000} s`)
      o.out(`HTTPS poll: ${info.limits.maxPollSessions} sessions, ${info.limits.maxPollSessionsPerIp} per IP`)
    }
  })
  return 0
}

function exemptText (ranges: ReadonlyArray<{ text: string }>): string {
  return ranges.length === 0 ? 'every address' : `not ${ranges.map(r => r.text).join(', ')}`
}
