import { parseArgs, type ParseArgsConfig } from 'node:util'
import { WorldComputeError } from '../core/errors.ts'

/** A mistake in how the command was called: printed as one line, exit code 2. */
export class UsageError extends WorldComputeError {
  constructor (message: string) {
    super(message, 'USAGE')
  }
}

export type Options = NonNullable<ParseArgsConfig['options']>

export const commonOptions = {
  'data-dir': { type: 'string' },
  json: { type: 'boolean', default: false },
  'log-format': { type: 'string' },
  help: { type: 'boolean', short: 'h', default: false }
} as const satisfies Options

/**
 * Sees every options table `parse` is given: `worldcompute completion` learns
 * each command's flags from the table the command itself parses with.
 */
let parseObserver: ((options: Options) => void) | undefined
export function observeParse (observer: ((options: Options) => void) | undefined): void { parseObserver = observer }

export function parse<O extends Options> (argv: string[], options: O, command: string): { values: ReturnType<typeof parseArgs<{ options: O, allowPositionals: true, strict: true, args: string[] }>>['values'], positionals: string[] } {
  parseObserver?.(options)
  try {
    const { values, positionals } = parseArgs({ args: argv, options, allowPositionals: true, strict: true })
    return { values, positionals }
  } catch (err) {
    throw new UsageError(`${command}: ${(err as Error).message} (see \`worldcompute ${command} --help\`)`)
  }
}
