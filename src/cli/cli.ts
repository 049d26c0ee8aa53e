import { WorldComputeError } from '../core/errors.ts'
import { VERSION } from '../core/version.ts'
import { configureLogging, type LogFormat } from '../log/logger.ts'
import { UsageError } from './args.ts'
import { stdio, type Output } from './output.ts'

type Command = (argv: string[], o: Output) => Promise<number>

// Commands are loaded on demand: `daemon`, `relay` and `demo` pull in
// js-libp2p (about 1 s of module loading on a cold start), which `status`,
// `dials` and `job` — run often, by people and by scripts polling a daemon —
// never need.
const commands: Record<string, { load: () => Promise<Command>, summary: string }> = {
  id: { load: async () => (await import('./commands/id.ts')).run, summary: 'print this node\'s PeerId (creates the identity)' },
  daemon: { load: async () => (await import('./commands/daemon.ts')).run, summary: 'run the donor daemon' },
  relay: { load: async () => (await import('./commands/relay.ts')).run, summary: 'run a relay' },
  status: { load: async () => (await import('./commands/status.ts')).run, summary: 'what the running daemon is doing' },
  ping: { load: async () => (await import('./commands/ping.ts')).run, summary: 'reach a peer through the daemon and show the path' },
  job: { load: async () => (await import('./commands/job.ts')).run, summary: 'submit a WASM job and get its result (submit, status, result, list)' },
  dials: { load: async () => (await import('./commands/status.ts')).runDials, summary: 'the daemon\'s recent dial attempts and why they failed' },
  demo: { load: async () => (await import('./commands/demo.ts')).run, summary: 'start a relay and two relay-only donors on loopback and show them join' },
  doctor: { load: async () => (await import('./commands/doctor.ts')).run, summary: 'what this network allows and blocks, the path a donor would use, what to ask IT (--evidence DIR)' },
  evidence: { load: async () => (await import('./commands/evidence.ts')).run, summary: 'check an evidence bundle (evidence validate PATH)' }
}

const usage = `worldcompute ${VERSION}: volunteer compute mesh

Usage: worldcompute <command> [options]   (worldcompute <command> --help for more)

${Object.entries(commands).map(([name, c]) => `  ${name.padEnd(8)} ${c.summary}`).join('\n')}

Global: --data-dir DIR (or WORLDCOMPUTE_DATA_DIR; default ~/.worldcompute),
        --log-format text|json, WORLDCOMPUTE_LOG=info,net=debug`

/** Pulls `--log-format` out wherever it stands, so every command accepts it. */
function takeLogFormat (argv: string[]): { argv: string[], format?: LogFormat } {
  const out: string[] = []
  let format: string | undefined
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--log-format') { format = argv[++i]; continue }
    if (a.startsWith('--log-format=')) { format = a.slice('--log-format='.length); continue }
    out.push(a)
  }
  if (format !== undefined && format !== 'text' && format !== 'json') {
    throw new UsageError(`--log-format must be text or json, got "${format}"`)
  }
  return { argv: out, format: format as LogFormat | undefined }
}

export async function main (argv: string[], o: Output = stdio): Promise<number> {
  try {
    const { argv: rest, format } = takeLogFormat(argv)
    configureLogging({ spec: process.env.WORLDCOMPUTE_LOG, format: format ?? 'text' })
    const [name, ...args] = rest
    if (name == null || name === 'help' || name === '--help' || name === '-h') {
      o.out(usage)
      return name == null ? 2 : 0
    }
    if (name === '--version' || name === 'version') {
      o.out(VERSION)
      return 0
    }
    const command = commands[name]
    if (command == null) throw new UsageError(`unknown command "${name}"; commands: ${Object.keys(commands).join(', ')}`)
    const run = await command.load()
    return await run(args, o)
  } catch (err) {
    if (err instanceof UsageError) {
      o.err(`worldcompute: ${err.message}`)
      return 2
    }
    if (err instanceof WorldComputeError) {
      // expected failures: one line, no stack
      o.err(`worldcompute: ${err.message}`)
      return 1
    }
    if (err instanceof Error && /^WORLDCOMPUTE_LOG:/.test(err.message)) {
      o.err(`worldcompute: ${err.message}`)
      return 2
    }
    o.err(`worldcompute: unexpected error (a bug; please report it with this trace):\n${err instanceof Error ? err.stack ?? err.message : String(err)}`)
    return 1
  }
}
