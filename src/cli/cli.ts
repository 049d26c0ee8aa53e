import { WorldComputeError } from '../core/errors.ts'
import { VERSION } from '../core/version.ts'
import { configureLogging, operatorLine, type LogFormat } from '../log/logger.ts'
import { UsageError } from './args.ts'
import { stdio, type Output } from './output.ts'

/** One command: parses its own arguments, writes through `o`, returns the exit code. */
export type Command = (argv: string[], o: Output) => Promise<number>

/**
 * The commands of `worldcompute`, in the order `help` lists them. Each is
 * loaded on demand: `daemon`, `relay` and `doctor` pull in js-libp2p (about
 * 1 s of module loading on a cold start), which `status`, `dials` and `job`
 * — run often, by people and by scripts polling a daemon — never need.
 */
export type Commands = Record<string, { load: () => Promise<Command>, summary: string }>

function usage (commands: Commands): string {
  return `worldcompute ${VERSION}: volunteer compute mesh

Usage: worldcompute <command> [options]   (worldcompute <command> --help for more)

${Object.entries(commands).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`).join('\n')}

Global: --data-dir DIR (or WORLDCOMPUTE_DATA_DIR; default ~/.worldcompute),
        --log-format text|json, WORLDCOMPUTE_LOG=info,net=debug`
}

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

/**
 * Runs one `worldcompute` command line: global options, help and version,
 * then the named command; every failure becomes a message and an exit code
 * (2: the command was called wrongly, 1: it failed).
 */
export async function main (argv: string[], commands: Commands, o: Output = stdio): Promise<number> {
  try {
    const { argv: rest, format } = takeLogFormat(argv)
    configureLogging({ spec: process.env.WORLDCOMPUTE_LOG, format: format ?? 'text' })
    const [name, ...args] = rest
    if (name == null || name === 'help' || name === '--help' || name === '-h') {
      o.out(usage(commands))
      return name == null ? 2 : 0
    }
    if (name === '--version' || name === '-V' || name === 'version') {
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
      // expected failures: one line, no stack (a JSON record with --log-format json, for log collectors)
      operatorLine((line) => { o.err(line) }, 'worldcompute', 'error', `worldcompute: ${err.message}`, { code: err.code })
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
