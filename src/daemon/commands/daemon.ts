import { parse, UsageError } from '../../cli/args.ts'
import { loadDaemonConfig } from '../../config/config.ts'
import { startDaemon } from '../daemon.ts'
import { runUntilSignal } from '../../cli/lifecycle.ts'
import type { Output } from '../../cli/output.ts'
import { operatorLine } from '../../log/logger.ts'
import { metricsFlags, metricsOptions, nodeFlags, resolvingNodeOptions, warnUnknownConfigKeys } from './node-flags.ts'

export const help = `worldcompute daemon [--data-dir DIR] [--bootstrap MA]... [--listen MA]... [--api-port N]

Runs the donor: a persistent identity, connections to the bootstrap relays
(retried for ever with backoff), a reservation on every relay it reaches, and
the local API on 127.0.0.1.

  --bootstrap MA   relay multiaddr ending in /p2p/<PeerId>; repeatable.
                   Also WORLDCOMPUTE_BOOTSTRAP (comma-separated) or "bootstrap"
                   in DATA_DIR/config.json. Precedence: flag > env > file.
                   /dns4, /dns6 and /dnsaddr names are resolved with the OS
                   resolver, then DNS-over-HTTPS when it fails.
  --doh URL        DNS-over-HTTPS endpoint (RFC 8484), tried in order when the
                   OS resolver fails; repeatable. Also WORLDCOMPUTE_DOH
                   (comma-separated) or "doh" in config.json; default: a
                   built-in list of public resolvers by IP address.
  --listen MA      direct listen address; repeatable. "--listen /p2p-circuit"
                   alone means: reachable only through relays.
  --api-port N     local API port (default 7767, or the next free one when another
                   donor holds it; a port given here that is taken stops the
                   start; 0 picks a free port)
  --public-range CIDR  treat this address range as public (a private deployment,
                   e.g. 10.0.0.0/8): AutoNAT checks it and it is advertised;
                   repeatable. Also "publicRanges" in config.json.
  --no-execute     only submit jobs; run none for others
  --no-direct      keep every peer relayed: no direct dial of a peer's public
                   or LAN address, no WebRTC through cone NATs (on by default:
                   the relayed connection stays as fallback either way)
  --no-port-mapping  do not ask the home router (PCP, NAT-PMP, UPnP IGD) to
                   forward the TCP/QUIC listen ports; by default a donor
                   listening on a private LAN address maps them, renews the
                   lease and deletes it at stop. Also "portMapping": false
                   in config.json.
  --refuse-intercepted  do not use a relay path whose TLS a middlebox re-signs
                   (a TLS-inspecting proxy); by default it is reported and
                   used, since Noise authenticates the relay end to end.
                   Also "refuseIntercepted": true in config.json.
  --proxy-pac URL  proxy auto-config (PAC) file, http://, https:// or file://:
                   its FindProxyForURL picks the proxy of each relay dial.
                   Also "proxyPac" in config.json. Without it and with no
                   HTTPS_PROXY/HTTP_PROXY/ALL_PROXY, the network's PAC is
                   looked for (WPAD: DHCP option 252, then
                   http://wpad.<search domain>/wpad.dat) once a direct dial
                   fails.
  --max-jobs N     jobs run at once (default: cores - 1, at least 1)
  --max-job-memory SIZE   memory a job may use (default 256MiB)
  --max-deadline D        longest deadline a job may ask for (default 10m)
  --max-payload SIZE      module + input + directories of one job, streamed
                   in 256 KiB frames (default 64MiB; at most 4GiB)
  --content-cache SIZE    disk kept for modules and inputs over 8 MiB, fetched
                   by CID and kept for the next job (default 2GiB)
  --memory-budget SIZE    memory all running jobs together may use (default: half of RAM)
  --max-tasks-per-broker N  tasks one submitter may hold here at once (default:
                   every slot; lower it on a donor open to strangers)
  --replica-network-prefix V4,V6  replicas of one job run in distinct networks,
                   by the address the broker or a relay observed: no two in
                   one IPv4 /V4 or IPv6 /V6 (default 24,48; 32,128 counts
                   every address apart, e.g. a lab behind one router)
  --metrics HOST:PORT  serve Prometheus metrics at http://HOST:PORT/metrics
                   (off by default; HOST must be loopback, e.g. 127.0.0.1:9464;
                   docs/metrics.md lists them). Also "metrics" in config.json.
  --metrics-allow-remote  allow a non-loopback --metrics HOST (the endpoint has
                   no authentication: firewall it)
  --keep-jobs N    finished jobs the job store keeps, newest first; older
                   ones are deleted with their outputs (default 10000)
  --cpu-limit PERCENT  jobs together use at most PERCENT of one core on
                   average (1-100, default 100): the sandbox is run and stopped
                   in turn over each second. Also "cpuLimit" in config.json.
  --suspend-when-busy PERCENT  suspend jobs while other programs use more
                   than PERCENT of this machine; resume when they stop (default
                   off; Linux). Also "suspendWhenBusy" in config.json.
  --run-hours START-END  run jobs only in this local-time window, e.g. 18-08
                   (wraps past midnight) or 09:30-17:00; 0-24 is always (the
                   default). Also "runHours" in config.json. Outside it, jobs
                   are suspended and offers declined; \`worldcompute pause\`
                   does the same until \`worldcompute resume\`.
  --log-format F   text (default) or json; WORLDCOMPUTE_LOG filters, e.g.
                   WORLDCOMPUTE_LOG=info,net=debug`

export async function run (argv: string[], o: Output): Promise<number> {
  const { values } = parse(argv, {
    ...resolvingNodeOptions,
    ...metricsOptions,
    'api-port': { type: 'string' },
    'no-execute': { type: 'boolean', default: false },
    'no-direct': { type: 'boolean', default: false },
    'no-port-mapping': { type: 'boolean', default: false },
    'refuse-intercepted': { type: 'boolean', default: false },
    'max-jobs': { type: 'string' },
    'max-job-memory': { type: 'string' },
    'max-deadline': { type: 'string' },
    'max-payload': { type: 'string' },
    'content-cache': { type: 'string' },
    'memory-budget': { type: 'string' },
    'max-tasks-per-broker': { type: 'string' },
    'replica-network-prefix': { type: 'string' },
    'keep-jobs': { type: 'string' },
    'cpu-limit': { type: 'string' },
    'suspend-when-busy': { type: 'string' },
    'run-hours': { type: 'string' }
  }, 'daemon')
  if (values.help) { o.out(help); return 0 }
  // the daemon prints no result to format: a --json meant for it would be silently lost
  if (values.json) throw new UsageError('daemon: --json has nothing to format here; use --log-format json for JSON log lines, and `worldcompute status --json` for the daemon\'s state')
  const config = loadDaemonConfig({
    ...nodeFlags(values),
    ...metricsFlags(values),
    doh: values.doh,
    apiPort: values['api-port'],
    noExecute: values['no-execute'],
    noDirect: values['no-direct'],
    noPortMapping: values['no-port-mapping'],
    refuseIntercepted: values['refuse-intercepted'],
    proxyPac: values['proxy-pac'],
    maxJobs: values['max-jobs'],
    maxJobMemory: values['max-job-memory'],
    maxDeadline: values['max-deadline'],
    maxPayload: values['max-payload'],
    contentCache: values['content-cache'],
    memoryBudget: values['memory-budget'],
    maxTasksPerBroker: values['max-tasks-per-broker'],
    replicaNetworkPrefix: values['replica-network-prefix'],
    keepJobs: values['keep-jobs'],
    cpuLimit: values['cpu-limit'],
    suspendWhenBusy: values['suspend-when-busy'],
    runHours: values['run-hours']
  })
  warnUnknownConfigKeys(config)
  await runUntilSignal(o, async () => await startDaemon(config), (handle) => {
    operatorLine(o.err, 'daemon', 'info', `worldcompute daemon ${handle.peerId} running; API on 127.0.0.1:${handle.apiPort}${handle.metricsPort != null ? `; metrics on port ${handle.metricsPort}` : ''}; \`worldcompute status --data-dir ${config.dataDir}\` shows what it is doing`, { peerId: handle.peerId, apiPort: handle.apiPort, dataDir: config.dataDir })
  })
  return 0
}
